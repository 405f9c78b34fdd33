"""The facade: exactly the names EasyRAG's async task documentation uses, on Celery.

    from easyrag.task_app.async_task_framework import submit_task, get_task_status, TaskPriority

It also re-exports the handler toolkit (``easyrag.task_app.task_data``: typed task_data fields,
confined paths, blocking steps, progress, and their errors), so a handler module imports one place:

    from easyrag.task_app.async_task_framework import TaskHandler, get_text, register_task_handler
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import keys
from easyrag.task_app.base_task import USER_ID_HEADER
from easyrag.task_app.cancellation import request_cancel
from easyrag.task_app.exceptions import (
    FileAccessError,
    IdempotencyConflictError,
    InvalidIdempotencyKeyError,
    InvalidPriorityError,
    InvalidRetriesError,
    InvalidTaskDataError,
    InvalidTimeoutError,
    LockError,
    PermanentTaskError,
    QueueFullError,
    TaskDataError,
    TaskDataTooLargeError,
    TaskValidationError,
    UnknownTaskTypeError,
)
from easyrag.task_app.framework import TaskFramework, get_task_framework, start_task_framework
from easyrag.task_app.lock import DistributedLock
from easyrag.task_app.records import Task, TaskPriority, TaskStatus
from easyrag.task_app.stats import get_task_stats as _collect_stats
from easyrag.task_app.task_data import (
    REQUIRED,
    Progress,
    confined_path,
    get_choice,
    get_field,
    get_positive_int,
    get_text,
    open_beneath,
    open_confined,
    run_step,
)
from easyrag.task_app.task_handlers import (
    MAX_RETRIES_HEADER,
    TIMEOUT_HEADER,
    TaskHandler,
    ensure_handlers_loaded,
    register_task_handler,
)
from easyrag.task_app.validation import fingerprint, validate_submission

__all__ = (
    "REQUIRED",
    "DistributedLock",
    "FileAccessError",
    "IdempotencyConflictError",
    "InvalidIdempotencyKeyError",
    "InvalidPriorityError",
    "InvalidRetriesError",
    "InvalidTaskDataError",
    "InvalidTimeoutError",
    "LockError",
    "PermanentTaskError",
    "Progress",
    "QueueFullError",
    "Task",
    "TaskDataError",
    "TaskDataTooLargeError",
    "TaskFramework",
    "TaskHandler",
    "TaskPriority",
    "TaskStatus",
    "TaskValidationError",
    "UnknownTaskTypeError",
    "cancel_task",
    "confined_path",
    "get_choice",
    "get_field",
    "get_positive_int",
    "get_task_framework",
    "get_task_stats",
    "get_task_status",
    "get_text",
    "open_beneath",
    "open_confined",
    "register_task_handler",
    "run_step",
    "start_task_framework",
    "submit_task",
)

logger = logging.getLogger("EasyRAG.task_app.async_task_framework")


def submit_task(task_type: str, task_data: dict[str, Any], priority: int = TaskPriority.NORMAL,
                timeout: float | None = None, max_retries: int | None = None, user_id: Any = None,
                idempotency_key: str | None = None) -> str:
    """Queue a task for its handler and return its id at once.

    Raises a TaskValidationError subclass naming the bad field, or QueueFullError; either way
    nothing is queued or recorded.  With an ``idempotency_key``, a repeat by the same ``user_id``
    for the same ``task_type`` returns the first task's id and queues nothing (a different request
    under the key raises IdempotencyConflictError).  One Redis round trip (submission.py).
    """
    return submit_or_find(task_type, task_data, priority, timeout, max_retries, user_id, idempotency_key)[0]


def submit_or_find(task_type: str, task_data: dict[str, Any], priority: int = TaskPriority.NORMAL,
                   timeout: float | None = None, max_retries: int | None = None, user_id: Any = None,
                   idempotency_key: str | None = None) -> tuple[str, bool]:
    """submit_task, also saying whether this call created the task (False: the idempotency key's
    first task was returned).  The REST API answers 201 or 200 from it."""
    ensure_handlers_loaded()
    validate_submission(task_type, task_data, priority, timeout, max_retries, idempotency_key)
    framework = get_task_framework()
    headers = {USER_ID_HEADER: user_id, TIMEOUT_HEADER: timeout, MAX_RETRIES_HEADER: max_retries}
    result = current_app.tasks[task_type].apply_async(
        kwargs=task_data, priority=int(priority),
        headers={name: value for name, value in headers.items() if value is not None},
        queue_bound=framework.queue_size if framework.running else get_config().queue_size,
        idempotency_key=idempotency_key or "",
        fingerprint=fingerprint(task_data, priority, timeout, max_retries) if idempotency_key else "",
        waiter=False,
    )
    created = not getattr(result, "repeated_key", False)
    if created:
        logger.info("task %s (%s): submitted with priority %s", result.id, task_type,
                    TaskPriority(priority).name)
    else:
        logger.info("task %s (%s): idempotency key seen before; its first task is returned", result.id,
                    task_type)
    return result.id, created


def get_task_status(task_id: str) -> Task | None:
    """The task's record, or None for an id never submitted (or whose record expired)."""
    text = get_redis_instance().get(keys.record_key(task_id))
    return Task.from_json(text) if text else None


def cancel_task(task_id: str) -> bool:
    """Cancel a pending or running task: True if it was; False for unknown or finished tasks."""
    return request_cancel(task_id)


def get_task_stats() -> dict[str, Any]:
    """Cluster-wide counts, queue lengths per priority and per-worker figures (see stats.py)."""
    return _collect_stats(get_task_framework().instance_id)
