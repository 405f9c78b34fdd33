"""Submission checks: each bad input raises a TaskValidationError subclass naming the field."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from easyrag.config import get_config
from easyrag.task_app.exceptions import (
    InvalidIdempotencyKeyError,
    InvalidPriorityError,
    InvalidRetriesError,
    InvalidTaskDataError,
    InvalidTimeoutError,
    TaskDataTooLargeError,
    UnknownTaskTypeError,
)
from easyrag.task_app.task_handlers import registered_handlers

MIB = 1024 * 1024
#: The longest idempotency key accepted (spec 1).
MAX_IDEMPOTENCY_KEY = 200


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"


def validate_submission(task_type: Any, task_data: Any, priority: Any, timeout: Any,
                        max_retries: Any, idempotency_key: Any = None) -> None:
    """Raise the first problem found; nothing is written anywhere."""
    handlers = registered_handlers()
    if not isinstance(task_type, str) or task_type not in handlers:
        known = ", ".join(sorted(handlers)) or "none"
        raise UnknownTaskTypeError(f"task_type {task_type!r} is not a registered handler (known: {known})",
                                   field="task_type")
    if not isinstance(task_data, dict):
        raise InvalidTaskDataError(
            f"task_data must be a JSON object (a dict), got {type(task_data).__name__}", field="task_data")
    odd_keys = [key for key in task_data if not isinstance(key, str)]
    if odd_keys:  # JSON would turn them into strings, and they cannot be keyword arguments
        raise InvalidTaskDataError(f"task_data keys must be strings, got {odd_keys[0]!r}", field="task_data")
    accepted = handlers[task_type].fields
    if accepted is not None:  # the handler declared what it reads: nothing else is stored for it
        unknown = sorted(key for key in task_data if key not in accepted)
        if unknown:
            raise InvalidTaskDataError(
                f"task_data has unknown field(s) {', '.join(map(repr, unknown))}; {task_type} takes "
                f"{', '.join(accepted) or 'no fields'}", field="task_data")
    try:
        size = len(json.dumps(task_data, allow_nan=False).encode())
    except (TypeError, ValueError) as error:
        raise InvalidTaskDataError(f"task_data is not JSON-serializable: {error}",
                                   field="task_data") from None
    limit = get_config().max_data_bytes
    if size > limit:
        raise TaskDataTooLargeError(
            f"task_data is {_size(size)}; the limit is ASYNC_TASK_MAX_DATA_BYTES = {_size(limit)}",
            field="task_data")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 3:
        raise InvalidPriorityError(f"priority must be an int from 0 (URGENT) to 3 (LOW), got {priority!r}",
                                   field="priority")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not timeout > 0):
        raise InvalidTimeoutError(f"timeout must be a positive number of seconds, got {timeout!r}",
                                  field="timeout")
    if max_retries is not None and (isinstance(max_retries, bool) or not isinstance(max_retries, int)
                                    or max_retries < 0):
        raise InvalidRetriesError(f"max_retries must be an integer >= 0, got {max_retries!r}",
                                  field="max_retries")
    if idempotency_key is not None and (not isinstance(idempotency_key, str) or not idempotency_key
                                        or len(idempotency_key) > MAX_IDEMPOTENCY_KEY):
        raise InvalidIdempotencyKeyError(
            f"idempotency_key must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY} characters, "
            f"got {idempotency_key!r:.60}", field="idempotency_key")


def fingerprint(task_data: dict[str, Any], priority: int, timeout: float | None,
                max_retries: int | None) -> str:
    """What identifies a request under an idempotency key: a repeat must match it exactly."""
    request = {"task_data": task_data, "priority": int(priority), "timeout": timeout,
               "max_retries": max_retries}
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
