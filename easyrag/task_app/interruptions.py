"""Celery's own ways of ending a guarded task from outside its run, each ending in one final record.

All of these run in the worker's main process, not in the pool process that ran the task, on a
thread of their own (end_in_background): Celery has already dropped or acknowledged the message.
A holder "killed on this node" is matched by node name, not process: Celery's signals do not say
which pool process ran the task.

- **Hard time limit** (``time_limit``): the pool kills the process, Celery sends ``task_failure``
  with TimeLimitExceeded and acknowledges the message.  The record ends TIMEOUT.
- **Revoke** (``app.control.revoke``, Flower's Revoke button): the worker drops every later copy
  of the id it holds in memory — retries and deferrals included — and sends ``task_revoked``.  The
  record ends CANCELLED, or its live holder is asked to stop, exactly as ``cancel_task`` does.
  (As in Celery, a revoke without ``terminate`` does not reach a run already going: the task is
  cancelled when a later copy meets the revoke.)  With ``terminate=True`` the process running it
  was killed: CANCELLED at once.
- **Unknown task**: a worker that does not import the task's module drops its message
  (``task_unknown``): nothing can run it any more, so the record ends FAILED saying so.  An ``expires``
  that Celery enforces itself (a message published without GuardedTask.apply_async, such as
  ``send_task``) arrives here the same way.
- **Warm shutdown** (SIGTERM): Celery waits for the running tasks.  After
  ``ASYNC_TASK_SHUTDOWN_GRACE`` seconds the tasks still running are asked to give the task back:
  their coroutine is cancelled, the record returns to PENDING and the message to the queue, so the
  next worker runs it without counting a crash (a SIGKILL after the orchestrator's grace would).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure, task_revoked, task_unknown, worker_shutting_down
from celery.worker import state

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import scripts
from easyrag.task_app.base_task import GuardedTask, worker_nodename
from easyrag.task_app.cancellation import end_task
from easyrag.task_app.records import TaskStatus

logger = logging.getLogger(__name__)

#: Seconds a worker keeps trying to record the end of a task that Celery ended from outside.
END_RETRY_S = 600.0


@task_failure.connect
def _on_hard_time_limit(sender: Any = None, task_id: str | None = None, exception: Any = None,
                        **_: Any) -> None:
    """The pool killed the process running ``task_id`` at its hard time limit: end it TIMEOUT."""
    if not (isinstance(exception, TimeLimitExceeded) and isinstance(sender, GuardedTask) and task_id):
        return
    limit = exception.args[0] if exception.args else "?"
    end_in_background(task_id, TaskStatus.TIMEOUT, message="killed at its hard time limit",
                      error=f"exceeded its hard time limit of {limit} s", killed_on_node=worker_nodename())


@task_revoked.connect
def _on_revoked(sender: Any = None, request: Any = None, terminated: bool = False, expired: bool = False,
                **_: Any) -> None:
    """A revoked (or, for ``send_task`` messages, expired) copy was dropped: end the task as cancel does."""
    if not isinstance(sender, GuardedTask) or request is None:
        return
    reason = "expired" if expired else "revoked"
    end_in_background(request.id, TaskStatus.CANCELLED, message=reason,
                      error="expired before it started" if expired else None,
                      killed_on_node=worker_nodename() if terminated else None)


@task_unknown.connect
def _on_unknown(name: str | None = None, id: str | None = None, **_: Any) -> None:
    """A worker that does not know the task dropped its message: nothing will ever run it."""
    if id:
        end_in_background(id, TaskStatus.FAILED, message="no such task",
                          error=f"worker {worker_nodename()} has no task named {name!r}; its message was "
                                f"dropped (check ASYNC_TASK_HANDLER_MODULES on every worker)")


def end_in_background(task_id: str, status: TaskStatus, message: str, error: str | None = None,
                      killed_on_node: str | None = None) -> threading.Thread:
    """end_task() on a thread of its own, until the record is final (or unknown).

    Celery has already dropped or acknowledged the message, so this may be the task's last chance:
    a Redis error is retried, and a live holder asked to stop (ASKED) is checked again after its
    lock could have expired, since that holder may have died in the meantime with no message left
    to run the task again.  Gives up after ``END_RETRY_S``.
    """
    def run() -> None:
        lock_timeout = get_config().lock_timeout
        deadline = time.monotonic() + END_RETRY_S
        while time.monotonic() < deadline:
            try:
                outcome = end_task(task_id, status, message=message, error=error,
                                   killed_on_node=killed_on_node)
            except redis.RedisError as failure:
                logger.warning("task %s: could not record %s yet (%s)", task_id, status.value, failure)
                time.sleep(1.0)
                continue
            if outcome is not scripts.Cancel.ASKED:
                return
            time.sleep(lock_timeout + 1.0)
        logger.error("task %s: gave up recording %s after %g s", task_id, status.value, END_RETRY_S)

    thread = threading.Thread(target=run, name=f"end-{task_id}", daemon=True)
    thread.start()
    return thread


@worker_shutting_down.connect
def _on_shutting_down(sender: Any = None, **_: Any) -> None:
    """Start the grace period after which running guarded tasks are given back (see module docstring)."""
    nodename = str(sender or worker_nodename())
    threading.Thread(target=release_after_grace, args=(nodename, get_config().shutdown_grace),
                     name="release-at-shutdown", daemon=True).start()


def release_after_grace(nodename: str, grace: float) -> None:
    """Wait up to ``grace`` seconds while guarded tasks run here, then ask those still running to
    give their task back (one pipelined round trip)."""
    deadline = time.monotonic() + grace
    while _running_guarded() and time.monotonic() < deadline:
        time.sleep(0.1)
    task_ids = _running_guarded()
    if task_ids:
        asked = scripts.ask_release(get_redis_instance(), task_ids, f"{nodename}:")
        logger.warning("worker %s shutting down: giving back %s running task(s) after %g s: %s",
                       nodename, asked, grace, ", ".join(task_ids))


def _running_guarded() -> list[str]:
    """Ids of the guarded tasks this worker runs now."""
    return [request.id for request in list(state.active_requests) if isinstance(request.task, GuardedTask)]
