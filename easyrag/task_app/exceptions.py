"""Every error the task layer raises on purpose.

::

    TaskFrameworkError                       base of everything we raise on purpose
    ├── TaskValidationError (ValueError)     a submission refused; nothing queued or recorded
    │   ├── UnknownTaskTypeError  InvalidPriorityError  InvalidTaskDataError
    │   ├── TaskDataTooLargeError  InvalidTimeoutError  InvalidRetriesError
    │   └── InvalidIdempotencyKeyError  IdempotencyConflictError (the key's first task: ``.task_id``)
    ├── QueueFullError                       queue_size waiting tasks already
    ├── LockError                            could not acquire / not the holder
    ├── PermanentTaskError                   raised by a handler: fail now, never retried
    │   ├── FileAccessError (ValueError)     a path outside ASYNC_TASK_FILE_ROOTS
    │   ├── TaskDataError (ValueError)       a task_data field missing or wrong (``.field``)
    │   ├── TaskCrashLoopError               its executions kept killing their worker
    │   └── ResultNotJSONError               the handler returned something JSON cannot hold
    ├── WebhookError                         a webhook unreachable or answering an error: retried
    ├── TaskFailedError                      AsyncResult.get() of a task that ended FAILED
    ├── TaskTimeoutError                     the handler overran its timeout: final TIMEOUT
    ├── TaskCancelledError                   cancel_task() stopped it: final CANCELLED
    └── TaskReleasedError                    its worker shut down: back to PENDING, not a crash

The legacy consumer's errors (``async_command``) are in ``easyrag/legacy/errors.py``.

Configuration errors are Django's ``ImproperlyConfigured``.
"""

from __future__ import annotations


class TaskFrameworkError(Exception):
    """Base of every error the task layer raises on purpose."""


class TaskValidationError(TaskFrameworkError, ValueError):
    """A submission was refused; nothing was queued or recorded.  ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownTaskTypeError(TaskValidationError):
    """No handler is registered under this task type."""


class InvalidPriorityError(TaskValidationError):
    """The priority is not an int from 0 (URGENT) to 3 (LOW)."""


class InvalidTaskDataError(TaskValidationError):
    """The task data is not a JSON object (or a handler refused its contents)."""


class TaskDataTooLargeError(TaskValidationError):
    """The task data's JSON is larger than ASYNC_TASK_MAX_DATA_BYTES."""


class InvalidTimeoutError(TaskValidationError):
    """The timeout is not a positive number of seconds."""


class InvalidRetriesError(TaskValidationError):
    """max_retries is not an integer >= 0."""


class InvalidIdempotencyKeyError(TaskValidationError):
    """The idempotency key is not a non-empty string of at most 200 characters."""


class IdempotencyConflictError(TaskValidationError):
    """The idempotency key was used before, by this user for this task type, for another request.

    ``task_id`` is the task the key names."""

    def __init__(self, message: str, task_id: str | None = None) -> None:
        super().__init__(message, "idempotency_key")
        self.task_id = task_id


class QueueFullError(TaskFrameworkError):
    """ASYNC_TASK_QUEUE_SIZE tasks are already waiting in the broker."""


class LockError(TaskFrameworkError):
    """A lock could not be acquired in time, or this holder no longer owns it."""


class PermanentTaskError(TaskFrameworkError):
    """Raised by a handler: the task fails now and is never retried."""


class FileAccessError(PermanentTaskError, ValueError):
    """A path in task data resolves outside ASYNC_TASK_FILE_ROOTS."""


class TaskCrashLoopError(PermanentTaskError):
    """The task's executions killed their worker ASYNC_TASK_MAX_CRASHES times; it is not run again."""


class ResultNotJSONError(PermanentTaskError):
    """The task's return value cannot be stored as JSON (e.g. a dict with tuple keys); it ends FAILED."""


class TaskFailedError(TaskFrameworkError):
    """Celery's result API on a guarded task that ended FAILED: the message is the record's error."""


class TaskTimeoutError(TaskFrameworkError):
    """The handler ran longer than its timeout; the task ends TIMEOUT and is not retried."""


class TaskCancelledError(TaskFrameworkError):
    """cancel_task() stopped the task while it ran; it ends CANCELLED."""


class TaskReleasedError(TaskFrameworkError):
    """The worker running the task is shutting down: the run stops and the task waits for another."""


class TaskDataError(PermanentTaskError, ValueError):
    """A field of task_data is missing or wrong; the task fails at once.  ``field`` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class WebhookError(TaskFrameworkError):
    """The webhook could not be reached or answered an error status: retried by the task's policy."""
