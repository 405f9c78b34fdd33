"""Ending a task from outside its run: cancel requests, and Celery's revoke and time limits.

A waiting task becomes CANCELLED at once; a running one is told to stop.  The request lives in
Redis (the guard's ``cancel`` flag and state), so it holds on every worker, including workers
started later; Celery's in-memory revoke would not.  The holder's renewal thread sees the flag
within a second and cancels the handler's coroutine.  A running task whose holder is dead — its
lock expired, or Celery killed the process running it — has nobody to stop it: it ends at once.
"""

from __future__ import annotations

import logging

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import keys, scripts
from easyrag.task_app.records import TaskRecord, TaskStatus, now_iso

logger = logging.getLogger("EasyRAG.task_app.async_task_framework")


def end_task(task_id: str, status: TaskStatus = TaskStatus.CANCELLED, message: str = "cancelled",
             error: str | None = None, killed_on_node: str | None = None) -> scripts.Cancel:
    """End ``task_id`` in the final ``status`` (CANCELLED, TIMEOUT or FAILED), or ask its live holder
    to stop.

    ``killed_on_node``: Celery killed the process of that node running the task (revoke with
    terminate, hard time limit), so its lock means nothing any more.  Two round trips: the record
    (to keep its fields), then CANCEL, which is safe to re-send.
    """
    client = get_redis_instance()
    text = client.get(keys.record_key(task_id))
    if text is None:
        return scripts.Cancel.UNKNOWN
    final = TaskRecord.from_json(text).replace(status=status, finished_at=now_iso(), message=message,
                                               error=error)
    outcome = scripts.cancel(client, task_id, final.to_json(), get_config().result_ttl, scripts.new_token(),
                             state=status.value,
                             dead_owner_prefix=f"{killed_on_node}:" if killed_on_node else "",
                             task_type=final.task_type)
    if outcome is scripts.Cancel.ENDED:
        logger.info("task %s (%s): %s", task_id, final.task_type, message)
    elif outcome is scripts.Cancel.ASKED:
        logger.info("task %s (%s): cancel requested while running", task_id, final.task_type)
    return outcome


def request_cancel(task_id: str) -> bool:
    """True when the task was pending or running (two round trips); False if unknown or final."""
    return end_task(task_id) in (scripts.Cancel.ENDED, scripts.Cancel.ASKED)
