"""Celery's own ways of ending a guarded task from outside its run, each ending in one final record.

All of these run in the worker's main process, not in the pool process that ran the task:

- **Hard time limit** (``time_limit``): the pool kills the process, Celery sends ``task_failure``
  with TimeLimitExceeded and acknowledges the message.  The record ends TIMEOUT.
- **Revoke** (``app.control.revoke``, Flower's Revoke button): the worker drops every later copy
  of the id it holds in memory — retries and deferrals included — and sends ``task_revoked``.  The
  record ends CANCELLED, or its live holder is asked to stop, exactly as ``cancel_task`` does.
  With ``terminate=True`` the process running it was killed: CANCELLED at once.  An ``expires``
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

from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure, task_revoked, worker_shutting_down
from celery.worker import state

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import scripts
from easyrag.task_app.base_task import GuardedTask, worker_nodename
from easyrag.task_app.cancellation import end_task
from easyrag.task_app.records import TaskStatus

logger = logging.getLogger(__name__)


@task_failure.connect
def _on_hard_time_limit(sender: Any = None, task_id: str | None = None, exception: Any = None,
                        **_: Any) -> None:
    """The pool killed the process running ``task_id`` at its hard time limit: end it TIMEOUT."""
    if not (isinstance(exception, TimeLimitExceeded) and isinstance(sender, GuardedTask) and task_id):
        return
    limit = exception.args[0] if exception.args else "?"
    end_task(task_id, TaskStatus.TIMEOUT, message="killed at its hard time limit",
             error=f"exceeded its hard time limit of {limit} s", killed_on_node=worker_nodename())


@task_revoked.connect
def _on_revoked(sender: Any = None, request: Any = None, terminated: bool = False, expired: bool = False,
                **_: Any) -> None:
    """A revoked (or, for ``send_task`` messages, expired) copy was dropped: end the task as cancel does."""
    if not isinstance(sender, GuardedTask) or request is None:
        return
    reason = "expired" if expired else "revoked"
    end_task(request.id, TaskStatus.CANCELLED, message=reason,
             error="expired before it started" if expired else None,
             killed_on_node=worker_nodename() if terminated else None)


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
