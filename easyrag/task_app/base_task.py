"""GuardedTask: a Celery base task under which a task id runs at most once at a time, and never again
after it finished.

Every delivery of a message goes through CLAIM (one Lua round trip over the guard hash, the lock,
the record and the deferral marker):

- ``DONE``: the task already completed, failed, timed out or was cancelled.  The delivery is
  acknowledged and the body never runs (redeliveries, ``apply_async(task_id=same)``).
- ``BUSY``: a live holder runs it.  The delivery re-publishes itself with a countdown (not a
  retry), unless a deferral of this task is already in flight, and is acknowledged.  Why not just
  drop it: kombu gives every copy of a message one delivery tag, so acknowledging the duplicate
  deletes the unacked entry that protects the original.  The deferral message is the task's
  insurance: if the holder dies, the deferral finds the lock expired and runs the task.
- ``OK``: this delivery holds the lock ``lock:async_task:task:{id}`` (value ``"<fence>:<owner>"``)
  and the record says RUNNING.  A daemon thread renews the lock and the message's kombu unacked
  entry (runner.LockRenewal); the outcome is written by FINISH together with the lock release, and
  only if this holder's fence is still the current one.

A claim that finds the task RUNNING with no lock knows the last holder died; after
``ASYNC_TASK_MAX_CRASHES`` such crashes the task ends FAILED instead of being run again.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
import uuid
from typing import Any

from celery import Task
from celery.exceptions import Ignore, Retry
from celery.signals import worker_init

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import keys, scripts
from easyrag.task_app.exceptions import TaskCancelledError, TaskCrashLoopError, TaskTimeoutError
from easyrag.task_app.records import TaskPriority, TaskRecord, TaskStatus, now_iso
from easyrag.task_app.runner import Renewal, get_renewer

logger = logging.getLogger(__name__)

#: Message header: ISO time the task was first published (kept across deferrals and retries).
CREATED_AT_HEADER = "easyrag_created_at"
#: Message header: the token of a deferral message (see module docstring).
DEFER_HEADER = "easyrag_defer_token"
#: Message header: the submitting user's id, kept in the record.
USER_ID_HEADER = "easyrag_user_id"


def task_data_of(args: Any, kwargs: dict) -> dict:
    """The record's ``task_data``: the keyword arguments, or both when there are positional ones."""
    return dict(kwargs) if not args else {"args": list(args), "kwargs": dict(kwargs)}


_worker_nodename: str | None = None


@worker_init.connect
def _remember_worker_nodename(sender: Any = None, **_: Any) -> None:
    """Keep the node name (``worker-1@host``): Celery gives threads/solo pools only the bare host."""
    global _worker_nodename
    _worker_nodename = getattr(sender, "hostname", None)


def worker_nodename(request: Any) -> str:
    """The Celery node name of the worker running ``request``."""
    return _worker_nodename or request.hostname


class GuardedTask(Task):
    """Celery base task: claim → run → finish, once per task id (see the module docstring)."""

    #: Renew the lock this many times per lock TTL (at least once a second: cancel latency).
    renewals_per_ttl = 3

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: str | None = None,
                    producer: Any = None, link: Any = None, link_error: Any = None, shadow: Any = None,
                    **options: Any) -> Any:
        """Publish, then record the task PENDING (one more round trip) so its status is known.

        Publish first: a failed publish leaves no record behind, and a worker that claims the task
        before the PENDING record is written simply makes SUBMIT a no-op.  Retries and deferrals
        re-publish a known id and skip SUBMIT.
        """
        headers = dict(options.pop("headers", None) or {})
        headers.setdefault(CREATED_AT_HEADER, now_iso())
        result = super().apply_async(args, kwargs, task_id=task_id, producer=producer, link=link,
                                     link_error=link_error, shadow=shadow, headers=headers, **options)
        if self.app.conf.task_always_eager:  # ran in this process already, unguarded: no record
            return result
        if not options.get("retries") and DEFER_HEADER not in headers:
            record = TaskRecord(
                task_id=result.id, task_type=self.name, task_data=task_data_of(args or (), kwargs or {}),
                priority=options.get("priority", TaskPriority.NORMAL), status=TaskStatus.PENDING,
                created_at=headers[CREATED_AT_HEADER], user_id=headers.get(USER_ID_HEADER),
            )
            task_keys = [keys.guard_key(result.id), keys.record_key(result.id), keys.counters_key()]
            if record.user_id is not None:  # the owner's list of tasks (the REST API's GET /api/tasks/)
                task_keys.append(keys.owner_index_key(record.user_id))
            scripts.submit(get_redis_instance(), task_keys, record.to_json(), get_config().result_ttl,
                           result.id, time.time())
        return result

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:  # "self" may be a task-data key
        request = self.request
        if request.called_directly or request.is_eager:
            return self.run(*args, **kwargs)  # not a broker delivery: nothing to guard
        config = get_config()
        client = get_redis_instance()
        task_id = request.id
        defer_token = uuid.uuid4().hex
        running = self._record(args, kwargs)
        claim = scripts.claim(
            client, [keys.guard_key(task_id), keys.task_lock_key(task_id), keys.record_key(task_id),
                     keys.defer_key(task_id), keys.counters_key()],
            owner=f"{worker_nodename(request)}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            lock_ttl_ms=int(config.lock_timeout * 1000), running_json=running.to_json(),
            carried_defer_token=self._header(DEFER_HEADER) or "", new_defer_token=defer_token,
            defer_ttl_ms=config.visibility_timeout * 1000,
        )
        if claim.outcome == "DONE":
            logger.info("task %s (%s): already %s; this delivery is dropped", task_id, self.name, claim.state)
            raise Ignore()
        if claim.outcome == "BUSY":
            self._defer(claim, defer_token)
            raise Ignore()
        return self._run_claimed(claim, running, args, kwargs)

    def _run_claimed(self, claim: scripts.Claim, running: TaskRecord, args: tuple, kwargs: dict) -> Any:
        config = get_config()
        task_id = self.request.id
        if claim.crashes >= config.max_crashes:
            error = TaskCrashLoopError(
                f"task {task_id} killed its worker {claim.crashes} times "
                f"(ASYNC_TASK_MAX_CRASHES = {config.max_crashes}); not run again")
            logger.error("task %s (%s): %s", task_id, self.name, error)
            self._finish(claim, running, TaskStatus.FAILED, error=str(error))
            raise error
        if claim.cancel_requested:  # cancelled while its last holder was dying
            self._finish(claim, running, TaskStatus.CANCELLED)
            raise Ignore()
        if claim.crashes:
            logger.warning("task %s (%s): running again after %s crashed execution(s)",
                           task_id, self.name, claim.crashes)
        renewer = get_renewer(get_redis_instance(), min(1.0, config.lock_timeout / self.renewals_per_ttl))
        renewal = Renewal(
            task_id, [keys.task_lock_key(task_id), keys.guard_key(task_id), self._unacked_index_key()],
            claim.lock_value, int(config.lock_timeout * 1000),
            delivery_tag=str((self.request.properties or {}).get("delivery_tag") or ""),
        )
        # What run() may need: handler tasks report progress and cancel through these.
        self.request.easyrag_claim, self.request.easyrag_record = claim, running
        self.request.easyrag_renewal = renewal
        with renewer.keep_alive(renewal):
            try:
                result = self.run(*args, **kwargs)
            except Retry:
                self._finish(claim, running, TaskStatus.RETRYING)
                raise
            except TaskCancelledError:
                self._finish(claim, running, TaskStatus.CANCELLED)
                raise Ignore() from None
            except TaskTimeoutError as exc:
                self._finish(claim, running, TaskStatus.TIMEOUT, error=str(exc))
                raise
            except Exception as exc:
                self._finish(claim, running, TaskStatus.FAILED,
                             error="".join(traceback.format_exception_only(exc)).strip())
                raise
        if not self._finish(claim, running, TaskStatus.COMPLETED, result=result):
            raise Ignore()  # another holder took over: its outcome is the one recorded
        return result

    def _finish(self, claim: scripts.Claim, running: TaskRecord, status: TaskStatus,
                result: Any = None, error: str | None = None) -> bool:
        """Record the outcome and release the lock in one round trip; False if fenced out."""
        config = get_config()
        task_id = self.request.id
        record = running.replace(
            status=status, result=result, error=error,
            progress=100 if status is TaskStatus.COMPLETED else running.progress,
            finished_at=None if status is TaskStatus.RETRYING else now_iso(),
        )
        # A cancel requested while this run was failing ends the task instead of retrying it.
        cancelled = (running.replace(status=TaskStatus.CANCELLED, message="cancelled", finished_at=now_iso())
                     if status is TaskStatus.RETRYING else None)
        recorded = scripts.finish(
            get_redis_instance(),
            [keys.guard_key(task_id), keys.task_lock_key(task_id), keys.record_key(task_id),
             keys.counters_key()],
            claim.lock_value, status.value, record.to_json(), config.result_ttl,
            cancelled.to_json() if cancelled else "",
        )
        if recorded == 2:
            logger.info("task %s (%s): cancelled while failing; not retried", task_id, self.name)
        elif recorded:
            # Success is DEBUG: Celery's worker already logs "Task ... succeeded" at INFO.
            level = logging.DEBUG if status is TaskStatus.COMPLETED else logging.INFO
            logger.log(level, "task %s (%s): %s", task_id, self.name, status.value)
        else:
            logger.warning("task %s (%s): lost its lock before recording %s; another holder's "
                           "outcome stands", task_id, self.name, status.value)
        return bool(recorded)

    def _defer(self, claim: scripts.Claim, token: str) -> None:
        """Put a BUSY delivery off: re-publish it (same id, not a retry) unless a deferral is live."""
        task_id = self.request.id
        if not claim.must_defer:
            logger.info("task %s (%s): running elsewhere and already deferred; duplicate dropped",
                        task_id, self.name)
            return
        visibility = get_config().visibility_timeout
        # Back before the holder's lock can expire, and before the marker (TTL V) does.
        countdown = min(max(claim.lock_ttl_ms, 0) / 1000 + 1, visibility / 2)
        headers = {**(self.request.headers or {}), DEFER_HEADER: token}
        headers.setdefault(CREATED_AT_HEADER, self._header(CREATED_AT_HEADER) or now_iso())
        self.signature_from_request(countdown=countdown, headers=headers).apply_async()
        logger.info("task %s (%s): running elsewhere; delivery deferred by %.1f s", task_id, self.name,
                    countdown)

    def _record(self, args: tuple, kwargs: dict) -> TaskRecord:
        """The RUNNING record of this delivery, built from the message alone."""
        request = self.request
        priority = (request.delivery_info or {}).get("priority")
        now = now_iso()
        return TaskRecord(
            task_id=request.id, task_type=self.name,
            task_data=task_data_of(args, kwargs),
            priority=TaskPriority.NORMAL if priority is None else priority,
            status=TaskStatus.RUNNING, retries=request.retries or 0,
            created_at=self._header(CREATED_AT_HEADER) or now, started_at=now,
            worker=worker_nodename(request), user_id=self._header(USER_ID_HEADER),
        )

    def _header(self, name: str) -> Any:
        return (self.request.headers or {}).get(name) or getattr(self.request, name, None)

    def _unacked_index_key(self) -> str:
        options = self.app.conf.broker_transport_options or {}
        return options.get("global_keyprefix", "") + options.get("unacked_index_key", "unacked_index")
