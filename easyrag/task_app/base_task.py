"""GuardedTask: a Celery base task under which a task id runs at most once at a time, and never again
after it finished.

Publishing (``apply_async``) writes the PENDING record and the guard first, then publishes; a
failed publish takes the record back.  Every delivery of a message then goes through CLAIM (one
Lua round trip over the guard hash, the lock, the record and the deferral marker):

- ``DONE``: the task already completed, failed, timed out or was cancelled.  The delivery is
  acknowledged and the body never runs (redeliveries, ``apply_async(task_id=same)``).  One
  exception: a COMPLETED task in a chain returns its recorded result, so Celery publishes the next
  link that a worker killed right after FINISH never did (chain links have fixed task ids: a link
  published twice still runs once).
- ``GONE``: the same, for a task whose record has expired; ``STALE``: a copy of an attempt
  before the current retry (the retry's own message runs the task); ``EXPIRED``: it never
  started and its ``expires`` has passed: CLAIM recorded it CANCELLED.
- ``BUSY``: a live holder runs it.  The delivery re-publishes itself with a countdown (not a
  retry), unless a deferral of this task is already in flight, and is acknowledged.  Why not just
  drop it: kombu gives every copy of a message one delivery tag, so acknowledging the duplicate
  deletes the unacked entry that protects the original.  The deferral message is the task's
  insurance: if the holder dies, the deferral finds the lock expired and runs the task.
- ``OK``: this delivery holds the lock ``lock:async_task:task:{id}`` (value ``"<fence>:<owner>"``)
  and the record says RUNNING.  A daemon thread renews the lock and the message's kombu unacked
  entry (runner.LockRenewal); the outcome is written by FINISH together with the lock release, and
  only if this holder's fence is still the current one.

Whatever happens after a claim ends in FINISH: a result JSON cannot hold ends FAILED saying so,
and a FINISH that cannot reach Redis is retried until it can, or the message is put back
(``Reject(requeue=True)``) rather than acknowledged with the task left RUNNING.

A claim that finds the task RUNNING with no lock knows the last holder died; after
``ASYNC_TASK_MAX_CRASHES`` such crashes the task ends FAILED instead of being run again.  Celery's
own ways of ending a task from outside the run (revoke, terminate, hard time limit, a warm
shutdown) are handled in ``interruptions.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from celery.signals import worker_init
from celery.worker.request import Request

from easyrag.common.redis_utils import durability_warnings, get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import keys, scripts, submission
from easyrag.task_app.exceptions import (
    IdempotencyConflictError,
    QueueFullError,
    ResultNotJSONError,
    TaskCancelledError,
    TaskCrashLoopError,
    TaskReleasedError,
    TaskTimeoutError,
)
from easyrag.task_app.records import TaskPriority, TaskRecord, TaskStatus, json_result, now_iso
from easyrag.task_app.runner import Renewal, get_renewer

logger = logging.getLogger(__name__)

#: Message header: ISO time the task was first published (kept across deferrals and retries).
CREATED_AT_HEADER = "easyrag_created_at"
#: Message header: the message was published after its guard was written (see scripts.CLAIM).
GUARDED_HEADER = "easyrag_guarded"
#: Message header: the token of a deferral message (see module docstring).
DEFER_HEADER = "easyrag_defer_token"
#: Message header: the submitting user's id, kept in the record.
USER_ID_HEADER = "easyrag_user_id"
#: Message header: epoch seconds after which the task must not start (Celery's ``expires``, which
#: the guard enforces in CLAIM so that Celery never silently drops a guarded message; a task that
#: has started once never expires).
EXPIRES_HEADER = "easyrag_expires"
#: Message header: the ISO due time of a delayed start (kept in the record's ``eta`` while it runs).
ETA_HEADER = "easyrag_eta"
#: Seconds a FINISH keeps retrying while Redis does not answer, at least.
FINISH_RETRY_S = 60.0


def task_data_of(args: Any, kwargs: dict) -> dict:
    """The record's ``task_data``: the keyword arguments, or both when there are positional ones."""
    return dict(kwargs) if not args else {"args": list(args), "kwargs": dict(kwargs)}


_worker_nodename: str | None = None


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    """Keep the node name (``worker-1@host``: Celery gives threads/solo pools only the bare host),
    and warn once when Redis could lose tasks or run finished ones again."""
    global _worker_nodename
    _worker_nodename = getattr(sender, "hostname", None)
    try:
        warnings = durability_warnings(get_redis_instance())
    except redis.RedisError as error:
        warnings = [f"could not read Redis's persistence settings ({error})"]
    for warning in warnings:
        logger.warning("%s", warning)


def worker_nodename(request: Any = None) -> str:
    """The Celery node name of the worker running ``request`` (of this worker process)."""
    return _worker_nodename or getattr(request, "hostname", None) or "unknown"


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _due_epoch(countdown: Any, eta: Any) -> float | None:
    """Celery's ``countdown`` (seconds) or ``eta`` (a datetime or an ISO string) as epoch seconds."""
    if countdown:
        return time.time() + float(countdown)
    return _expiry_epoch(eta) if eta else None


def _expiry_epoch(expires: Any) -> float | None:
    """Celery's ``expires`` (seconds from now, a datetime or an ISO string) as epoch seconds."""
    if expires is None:
        return None
    if isinstance(expires, int | float):
        return time.time() + float(expires)
    if isinstance(expires, str):
        expires = datetime.fromisoformat(expires)
    if expires.tzinfo is None:  # Celery reads a naive datetime in the app's time zone: UTC here
        expires = expires.replace(tzinfo=UTC)
    return expires.timestamp()


@dataclass(eq=False)
class Run:
    """One claimed execution of a guarded task: what CLAIM granted, its RUNNING record, the
    renewal that keeps its lock, and what FINISH recorded."""

    task_id: str
    claim: scripts.Claim
    record: TaskRecord
    renewal: Renewal | None = None
    outcome: scripts.Finish | None = None
    began: float = field(default_factory=time.monotonic)  # the runtime histogram's start

    async def report_progress(self, percent: int, message: str) -> None:
        """Record ``percent`` and ``message``: one PROGRESS round trip sending only the record's
        tail, fenced by this claim (a run that lost its claim writes nothing)."""
        self.record.progress, self.record.message = percent, message  # FINISH keeps the last ones
        written = await asyncio.to_thread(scripts.progress, get_redis_instance(), self.task_id,
                                          self.claim.lock_value, self.record.progress_tail())
        if not written:
            logger.warning("task %s: progress not recorded: this run lost its claim", self.task_id)


class GuardedRequest(Request):
    """Celery's worker request, for guarded tasks.

    Celery acknowledges a delivery whose pool process was lost once the task's SUCCESS is stored,
    instead of requeueing it.  A guarded task's record says COMPLETED from its FINISH on, before
    Celery publishes the next link of its chain: a process lost in between would take the link
    with it.  A chain link's delivery is therefore requeued like any other whose process was lost;
    the redelivery meets the COMPLETED task and passes its recorded result on (``__call__``).
    """

    def _success_was_stored(self) -> Any:
        _, _, embed = self._payload
        if embed.get("chain") and not embed.get("chord"):
            return False
        return super()._success_was_stored()


class GuardedTask(Task):
    """Celery base task: claim → run → finish, once per task id (see the module docstring)."""

    Request = GuardedRequest

    #: Renew the lock this many times per lock TTL (at least once a second: cancel latency).
    renewals_per_ttl = 3
    #: The record is this task's result: RecordBackend stores nothing else for it.
    keeps_a_record = True

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: str | None = None,
                    producer: Any = None, link: Any = None, link_error: Any = None, shadow: Any = None,
                    **options: Any) -> Any:
        """Queue a new task and record it PENDING in one atomic round trip (submission.py).

        Extra options: ``queue_bound`` (QueueFullError when that many messages wait in the queue's
        lists), ``idempotency_key`` with ``fingerprint`` (a repeat returns the first task's result,
        another request under the key raises IdempotencyConflictError), ``waiter=False`` (the
        caller will not wait on the result: no pub/sub subscription).  Retries and deferrals
        re-publish a known id: the message only.

        ``countdown``/``eta`` (a retry's back-off and a deferral's too) never reach Celery: the
        message is built to run at once and waits in Redis until it is due (scheduler.py), not
        unacknowledged in a worker's memory.
        """
        headers = dict(options.pop("headers", None) or {})
        headers.setdefault(CREATED_AT_HEADER, now_iso())
        queue_bound = options.pop("queue_bound", 0)
        idempotency_key, fingerprint = options.pop("idempotency_key", ""), options.pop("fingerprint", "")
        waiter = options.pop("waiter", True)
        # expires=None overrides a class-level Task.expires too: Celery must never drop our copies.
        expires = _expiry_epoch(options.pop("expires", None) or self.expires)
        if expires is not None and DEFER_HEADER not in headers:  # a deferral's task has started
            headers[EXPIRES_HEADER] = expires
        if self.app.conf.task_always_eager:  # runs in this process at once, unguarded: no record
            return super().apply_async(args, kwargs, task_id=task_id, producer=producer, link=link,
                                       link_error=link_error, shadow=shadow, headers=headers, **options)
        task_id = task_id or str(uuid.uuid4())
        headers[GUARDED_HEADER] = 1
        due = _due_epoch(options.pop("countdown", None), options.pop("eta", None))
        publish = functools.partial(super().apply_async, args, kwargs, task_id=task_id, link=link,
                                    link_error=link_error, shadow=shadow, headers=headers, expires=None)
        if due is not None and not options.get("retries") and DEFER_HEADER not in headers:
            headers[ETA_HEADER] = _iso(due)  # the task's own due time (not a retry's, a deferral's)
        if options.get("retries") or DEFER_HEADER in headers:
            new_task = scripts.Submission(task_id, "", due=due, republish=True)
        else:
            record = TaskRecord(
                task_id=task_id, task_type=self.task_type_of(args or (), kwargs or {}),
                task_data=self.task_data_of(args or (), kwargs or {}),
                priority=options.get("priority", TaskPriority.NORMAL), status=TaskStatus.PENDING,
                created_at=headers[CREATED_AT_HEADER], user_id=headers.get(USER_ID_HEADER),
                eta=_iso(due),
            )
            key = keys.idempotency_key(self.name, record.user_id, idempotency_key) if idempotency_key else ""
            new_task = scripts.Submission(task_id, record.to_json(), record.user_id, time.time(),
                                          queue_bound, key, fingerprint, due=due, task_type=record.task_type)
        connection = options.pop("connection", None)
        with submission.submitting(new_task, waiter) as pending:
            # Our producer, whatever the caller passed (a group's, a batch's): only its channel
            # queues and records in one step.  A ``connection=`` names the broker to use.
            result = publish(producer=submission.producer(self.app, connection), **options)
        if pending.outcome is scripts.Submitted.FULL:
            raise QueueFullError(f"{queue_bound} tasks are already waiting in the broker "
                                 f"(ASYNC_TASK_QUEUE_SIZE = {queue_bound}); try again later")
        if pending.outcome is scripts.Submitted.CONFLICT:
            raise IdempotencyConflictError(
                f"idempotency_key was first used for task {pending.detail} with another request; "
                "use a new key for a new request", task_id=pending.detail)
        if pending.outcome is scripts.Submitted.SAME:
            first = self.AsyncResult(pending.detail)
            first.repeated_key = True  # the idempotency key's first task, not a new one
            return first
        if pending.outcome is None:  # cannot happen with the submit producer; never pass it silently
            raise RuntimeError(f"task {task_id} was published without its record")
        return result

    def task_type_of(self, args: Any, kwargs: dict) -> str:
        """The record's ``task_type`` for a call with these arguments: the task's name."""
        return self.name

    def task_data_of(self, args: Any, kwargs: dict) -> dict:
        """The record's ``task_data`` for a call with these arguments."""
        return task_data_of(args, kwargs)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:  # "self" may be a task-data key
        request = self.request
        if request.called_directly or request.is_eager:
            return self.run(*args, **kwargs)  # not a broker delivery: nothing to guard
        defer_token = uuid.uuid4().hex
        claim, running = self._claim(args, kwargs, defer_token)
        if claim.outcome is scripts.ClaimOutcome.OK:
            return self._run_claimed(Run(request.id, claim, running), args, kwargs)
        task_id = request.id
        if claim.outcome is scripts.ClaimOutcome.BUSY:
            self._defer(claim, defer_token)
        elif (claim.outcome is scripts.ClaimOutcome.DONE and claim.state == TaskStatus.COMPLETED
              and self._in_a_chain()):
            logger.info("task %s (%s): already COMPLETED; passing its result on to its chain again",
                        task_id, self.name)
            # Chain links have fixed task ids, so a link published twice still runs once; link=
            # callbacks get a new id each time they are sent: those are not sent again.
            request.callbacks = None
            return self._recorded_result()
        elif claim.outcome is scripts.ClaimOutcome.EXPIRED:
            logger.info("task %s (%s): expired before it started; CANCELLED", task_id, self.name)
        else:
            logger.info("task %s (%s): %s; this delivery is dropped", task_id, self.name, {
                "DONE": f"already {claim.state}", "GONE": "finished long ago (its record expired)",
                "STALE": "a copy of an attempt before the current retry",
            }[claim.outcome])
        raise Ignore()

    def _claim(self, args: tuple, kwargs: dict, defer_token: str) -> tuple[scripts.Claim, TaskRecord]:
        """CLAIM this delivery (one round trip).  Redis unreachable: the message goes back."""
        config = get_config()
        request = self.request
        running = self._record(args, kwargs)
        expires = self._header(EXPIRES_HEADER)
        expired_json = ""
        if expires is not None:
            expired_json = running.replace(status=TaskStatus.CANCELLED, started_at=None, worker=None,
                                           message="expired before it started", finished_at=now_iso(),
                                           error="expired before it started").to_json()
        try:
            claim = scripts.claim(
                get_redis_instance(), request.id,
                owner=f"{worker_nodename(request)}:{os.getpid()}:{uuid.uuid4().hex[:12]}",
                lock_ttl_ms=int(config.lock_timeout * 1000), running_json=running.to_json(),
                carried_defer_token=self._header(DEFER_HEADER) or "", new_defer_token=defer_token,
                defer_ttl_ms=config.visibility_timeout * 1000, retries=request.retries or 0,
                guarded_publish=self._header(GUARDED_HEADER) is not None, now=time.time(),
                expires=None if expires is None else float(expires), expired_json=expired_json,
                record_ttl=config.result_ttl, task_type=running.task_type,
            )
        except redis.RedisError as error:
            logger.warning("task %s (%s): could not claim (%s); the message goes back to the queue",
                           request.id, self.name, error)
            raise Reject(error, requeue=True) from error
        if claim.outcome is scripts.ClaimOutcome.OK and claim.retries != running.retries:
            # A crashed retry's copy of an earlier attempt: the guard's count of attempts wins.
            request.retries = running.retries = claim.retries
            scripts.write(get_redis_instance(), request.id, claim.lock_value, running.to_json())
        return claim, running

    def _run_claimed(self, run: Run, args: tuple, kwargs: dict) -> Any:
        config = get_config()
        task_id, claim = run.task_id, run.claim
        if claim.crashes >= config.max_crashes:
            error = TaskCrashLoopError(
                f"task {task_id} killed its worker {claim.crashes} times "
                f"(ASYNC_TASK_MAX_CRASHES = {config.max_crashes}); not run again")
            logger.error("task %s (%s): %s", task_id, self.name, error)
            self._finish(run, TaskStatus.FAILED, error=str(error))
            raise error
        if claim.cancel_requested:  # cancelled while its last holder was dying
            self._finish(run, TaskStatus.CANCELLED)
            raise Ignore()
        if claim.crashes:
            logger.warning("task %s (%s): running again after %s crashed execution(s)",
                           task_id, self.name, claim.crashes)
        renewer = get_renewer(get_redis_instance(), min(1.0, config.lock_timeout / self.renewals_per_ttl))
        run.renewal = Renewal(
            task_id, self._unacked_index_key(), claim.lock_value, int(config.lock_timeout * 1000),
            delivery_tag=str((self.request.properties or {}).get("delivery_tag") or ""),
        )
        self.request.easyrag_run = run  # current_run(): the one thing a task body may need
        with renewer.keep_alive(run.renewal):  # renewed until FINISH is written, retries included
            try:
                return self._run_and_finish(run, args, kwargs)
            except SoftTimeLimitExceeded:
                # Raised into this thread by a signal: it can land after the body returned, in the
                # result check or in FINISH itself (a re-sent FINISH answers as the first did).
                if run.outcome is None:
                    self._finish(run, TaskStatus.TIMEOUT, error="exceeded its soft time limit")
                raise

    def execute(self, run: Run, args: tuple, kwargs: dict) -> Any:
        """The claimed body's one hook: Celery's ``run`` by default; handler tasks run their
        handler with ``run`` (its record, its progress writes, its renewal's cancel)."""
        return self.run(*args, **kwargs)

    def current_run(self) -> Run | None:
        """The claimed execution this worker thread is running, or None outside one (a direct call,
        eager mode)."""
        return getattr(self.request, "easyrag_run", None)

    def _run_and_finish(self, run: Run, args: tuple, kwargs: dict) -> Any:
        """Run the body and FINISH with its outcome; every way out of the body ends in a FINISH."""
        try:
            result = self.execute(run, args, kwargs)
        except Retry as retry:  # its message waits in Redis until when (scheduler.py)
            when = retry.when
            due = _due_epoch(when, None) if isinstance(when, int | float) else _due_epoch(None, when)
            self._finish(run, TaskStatus.RETRYING, eta=_iso(due))
            raise
        except TaskReleasedError:
            if self._finish(run, TaskStatus.PENDING) is scripts.Finish.RECORDED:
                raise Reject("released by a worker shutting down", requeue=True) from None
            raise Ignore() from None
        except TaskCancelledError:
            self._finish(run, TaskStatus.CANCELLED)
            raise Ignore() from None
        except (TaskTimeoutError, SoftTimeLimitExceeded) as exc:
            error = str(exc) if isinstance(exc, TaskTimeoutError) else "exceeded its soft time limit"
            self._finish(run, TaskStatus.TIMEOUT, error=error)
            raise
        except Exception as exc:
            self._finish(run, TaskStatus.FAILED,
                         error="".join(traceback.format_exception_only(exc)).strip())
            raise
        try:
            result = json_result(result)
        except ResultNotJSONError as error:
            logger.error("task %s (%s): %s", self.request.id, self.name, error)
            self._finish(run, TaskStatus.FAILED, error=str(error))
            raise
        if self._finish(run, TaskStatus.COMPLETED, result=result) is scripts.Finish.FENCED_OUT:
            raise Ignore()  # another holder took over: its outcome is the one recorded
        return result

    def _finish(self, run: Run, status: TaskStatus, result: Any = None, error: str | None = None,
                eta: str | None = None) -> scripts.Finish:
        """Record the outcome and release the lock in one round trip.

        Safe to re-send, so a Redis that does not answer is retried for at least FINISH_RETRY_S
        (the renewal thread keeps the lock meanwhile); after that the message goes back to the
        queue (Reject), never acknowledged with the task left RUNNING.
        """
        config = get_config()
        task_id, claim, running = run.task_id, run.claim, run.record
        live = status in (TaskStatus.RETRYING, TaskStatus.PENDING)
        record = running.replace(
            status=status, result=result, error=error, eta=eta or running.eta,
            progress=100 if status is TaskStatus.COMPLETED else running.progress,
            finished_at=None if live else now_iso(),
        )
        if status is TaskStatus.PENDING:
            record = record.replace(started_at=None, worker=None,
                                    message="given back by a worker shutting down; waiting for another")
        # A cancel requested while this run was failing or being released ends the task instead.
        cancelled = (running.replace(status=TaskStatus.CANCELLED, message="cancelled", finished_at=now_iso())
                     if live else None)
        runtime = time.monotonic() - run.began  # not the time spent retrying FINISH
        deadline = time.monotonic() + max(FINISH_RETRY_S, 2 * config.visibility_timeout)
        while True:
            try:
                outcome = scripts.finish(
                    get_redis_instance(), task_id, claim.lock_value, status.value, record.to_json(),
                    config.result_ttl, cancelled.to_json() if cancelled else "",
                    next_retries=(self.request.retries or 0) + 1, task_type=running.task_type,
                    runtime=runtime)
                break
            except (redis.RedisError, SoftTimeLimitExceeded) as failure:  # FINISH first, always
                if time.monotonic() > deadline:
                    logger.error("task %s (%s): could not record %s (%s); the message goes back to the "
                                 "queue", task_id, self.name, status.value, failure)
                    raise Reject(failure, requeue=True) from failure
                logger.warning("task %s (%s): recording %s failed (%s); trying again", task_id,
                               self.name, status.value, failure)
                time.sleep(1.0)
        run.outcome = outcome
        if run.renewal is not None:  # the claim ended here: a renewal already in flight means nothing
            run.renewal.active = False
        if outcome is scripts.Finish.RECORDED_CANCELLED:
            logger.info("task %s (%s): cancelled while %s; not run again", task_id, self.name,
                        "failing" if status is TaskStatus.RETRYING else "being given back")
        elif outcome is scripts.Finish.RECORDED:
            # Success is DEBUG: Celery's worker already logs "Task ... succeeded" at INFO.
            level = logging.DEBUG if status is TaskStatus.COMPLETED else logging.INFO
            logger.log(level, "task %s (%s): %s", task_id, self.name, status.value)
        else:
            logger.warning("task %s (%s): lost its lock before recording %s; another holder's "
                           "outcome stands", task_id, self.name, status.value)
        return outcome

    def _defer(self, claim: scripts.Claim, token: str) -> None:
        """Put a BUSY delivery off: re-publish it (same id, not a retry) unless a deferral is live.

        The deferral must exist before this copy is acknowledged: if it cannot be published, the
        marker is taken back and this copy returns to the queue instead.
        """
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
        headers.pop(EXPIRES_HEADER, None)  # the task has started: its insurance never expires
        try:
            self.signature_from_request(countdown=countdown, headers=headers).apply_async()
        except Exception as error:
            logger.warning("task %s (%s): could not publish its deferral (%s); the message goes back",
                           task_id, self.name, error)
            with contextlib.suppress(redis.RedisError):
                scripts.drop_defer(get_redis_instance(), task_id, token)
            raise Reject(error, requeue=True) from error
        logger.info("task %s (%s): running elsewhere; delivery deferred by %.1f s", task_id, self.name,
                    countdown)

    def _in_a_chain(self) -> bool:
        """True when Celery publishes the chain's next link after this one succeeds, outside a
        chord (a chord counts its members' results: a repeated one would be counted twice)."""
        request = self.request
        return bool(request.chain) and not request.chord

    def _recorded_result(self) -> Any:
        text = get_redis_instance().get(keys.record_key(self.request.id))
        if text is None:
            raise Ignore()
        return TaskRecord.from_json(text).result

    def _record(self, args: tuple, kwargs: dict) -> TaskRecord:
        """The RUNNING record of this delivery, built from the message alone."""
        request = self.request
        priority = (request.delivery_info or {}).get("priority")
        now = now_iso()
        return TaskRecord(
            task_id=request.id, task_type=self.task_type_of(args, kwargs),
            task_data=self.task_data_of(args, kwargs),
            priority=TaskPriority.NORMAL if priority is None else priority,
            status=TaskStatus.RUNNING, retries=request.retries or 0,
            created_at=self._header(CREATED_AT_HEADER) or now, started_at=now,
            worker=worker_nodename(request), user_id=self._header(USER_ID_HEADER),
            eta=self._header(ETA_HEADER),
        )

    def _header(self, name: str) -> Any:
        return (self.request.headers or {}).get(name) or getattr(self.request, name, None)

    def _unacked_index_key(self) -> str:
        options = self.app.conf.broker_transport_options or {}
        return options.get("global_keyprefix", "") + options.get("unacked_index_key", "unacked_index")
