"""The task record: TaskStatus, TaskPriority, and the JSON stored under ``P:task:{id}``.

The record is written whole by the guard's scripts (claim, progress, finish), always built here
from what the worker knows, so Lua never re-encodes users' JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

from easyrag.task_app.exceptions import ResultNotJSONError


class TaskStatus(StrEnum):
    """A task's state; the value is what Redis stores."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"

    @property
    def is_final(self) -> bool:
        """Whether the task has ended (COMPLETED, FAILED, CANCELLED or TIMEOUT) and will not run again."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED,
                            TaskStatus.TIMEOUT})


class TaskPriority(IntEnum):
    """0 is served first on the Redis broker."""

    URGENT = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3


def now_iso() -> str:
    """The current UTC time in ISO 8601, as records store their times."""
    return datetime.now(UTC).isoformat()


@dataclass
class TaskRecord:
    """One task, as ``redis-cli get async_task:task:<id>`` shows it."""

    task_id: str
    task_type: str
    task_data: dict[str, Any] = field(default_factory=dict)
    priority: int = TaskPriority.NORMAL
    status: TaskStatus = TaskStatus.PENDING
    progress: int = 0
    message: str = ""
    error: str | None = None
    result: Any = None
    retries: int = 0
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    worker: str | None = None
    user_id: Any = None
    eta: str | None = None  # a delayed task's due time (ISO 8601); None when it starts at once

    def to_dict(self) -> dict[str, Any]:
        """The record's fields as stored: status as its string, priority as its int.

        ``task_id`` and ``status`` come first (scripts.RECORDED_STATE reads them), ``progress`` and
        ``message`` last: a progress write replaces only that tail (scripts.PROGRESS), never
        re-sending task_data or the rest of the record.
        """
        # Not dataclasses.asdict: it deep-copies task_data and result, twice per task.
        values = {name: getattr(self, name) for name in _FIELD_NAMES}
        values["status"] = self.status.value
        values["priority"] = int(self.priority)
        return values

    def progress_tail(self) -> str:
        """The end of the record's JSON from its ``progress`` field on (see scripts.PROGRESS)."""
        return PROGRESS_MARK + json.dumps(self.progress) + ',"message":' + json.dumps(self.message) + "}"

    def to_json(self) -> str:
        """The record as stored in Redis: compact JSON of to_dict()."""
        return json.dumps(self.to_dict(), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str) -> TaskRecord:
        """The record stored as ``text``; unknown fields (from a newer version) are ignored."""
        values = json.loads(text)
        values["status"] = TaskStatus(values["status"])
        return cls(**{name: value for name, value in values.items() if name in _FIELD_NAMES})

    def replace(self, **changes: Any) -> TaskRecord:
        """A copy of the record with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


#: Field order of the stored JSON: task_id and status first (the guard's scripts read a final
#: record's status there without decoding task_data), progress and message last (see to_dict).
_FIELD_NAMES = ("task_id", "status",
                *(f.name for f in dataclasses.fields(TaskRecord)
                  if f.name not in ("task_id", "status", "progress", "message")),
                "progress", "message")
#: Where the record's progress tail starts: the last occurrence in the JSON is always ours, since
#: everything after it is a number and a JSON string (whose quotes are escaped).
PROGRESS_MARK = ',"progress":'


def json_result(value: Any) -> Any:
    """``value`` as a record stores it: strict JSON, with non-finite numbers as null.

    Raises ResultNotJSONError when JSON cannot hold it at all (a tuple as a dict key, an
    arbitrary object): the task then ends FAILED saying so, instead of never ending.
    """
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:  # NaN or an infinity somewhere: store null there, as the spec says
        return _finite(value)
    except (TypeError, RecursionError) as error:
        raise ResultNotJSONError(f"the task's result cannot be stored as JSON: {error}") from None
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


@dataclass
class Task(TaskRecord):
    """A task as ``get_task_status`` returns it and as a handler receives it.

    Inside a running handler, ``await task.update_progress(percent, message)`` records progress.
    """

    _report: Callable[[int, str], Awaitable[None]] | None = field(default=None, repr=False, compare=False)

    async def update_progress(self, percent: int, message: str = "") -> None:
        """Record ``percent`` (clamped to 0-100) and ``message`` in the task's record (one round trip)."""
        if self._report is None:
            raise RuntimeError("update_progress() works only inside a running handler")
        await self._report(max(0, min(100, int(percent))), str(message))
