"""Cancel requests: a waiting task becomes CANCELLED at once, a running one is told to stop.

The request lives in Redis (the guard's ``cancel`` flag and state), so it holds on every worker,
including workers started later; Celery's in-memory revoke would not.  The holder's renewal
thread sees the flag within a second and cancels the handler's coroutine.
"""

from __future__ import annotations

import logging

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import keys, scripts
from easyrag.task_app.records import TaskRecord, TaskStatus, now_iso

logger = logging.getLogger("EasyRAG.task_app.async_task_framework")


def request_cancel(task_id: str) -> bool:
    """True when the task was pending or running (two round trips); False if unknown or final."""
    client = get_redis_instance()
    text = client.get(keys.record_key(task_id))
    if text is None:
        return False
    cancelled = TaskRecord.from_json(text).replace(
        status=TaskStatus.CANCELLED, finished_at=now_iso(), message="cancelled")
    outcome = scripts.cancel(client, [keys.guard_key(task_id), keys.record_key(task_id), keys.counters_key()],
                             cancelled.to_json(), get_config().result_ttl)
    if outcome == 1:
        logger.info("task %s (%s): cancelled before it started", task_id, cancelled.task_type)
    elif outcome == 2:
        logger.info("task %s (%s): cancel requested while running", task_id, cancelled.task_type)
    return outcome in (1, 2)
