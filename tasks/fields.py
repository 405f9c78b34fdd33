"""Reading a handler's task_data: each field present and of the right type, or TaskDataError naming it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from easyrag.task_app.exceptions import TaskDataError

#: Marks a field without a default: it must be present.
REQUIRED: Any = object()


def get_field(data: Mapping[str, Any], field: str, kind: type | tuple[type, ...], what: str,
              default: Any = REQUIRED) -> Any:
    """``data[field]`` if it is an instance of ``kind`` (never a bool for int), else TaskDataError.

    ``what`` describes the expected value for the message ("a string"); a missing field or a null
    takes ``default``, or is an error when there is none.
    """
    value = data.get(field)
    if value is None:
        if default is REQUIRED:
            raise TaskDataError(f"{field} is required ({what})", field)
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
        raise TaskDataError(f"{field} must be {what}, got {value!r}", field)
    return value


def get_text(data: Mapping[str, Any], field: str, default: Any = REQUIRED) -> str:
    """A non-empty string field."""
    value = get_field(data, field, str, "a non-empty string", default)
    if value is not default and not value.strip():
        raise TaskDataError(f"{field} must be a non-empty string, got {value!r}", field)
    return value


def get_choice(data: Mapping[str, Any], field: str, choices: Iterable[str], default: Any = REQUIRED) -> str:
    """A string field that is one of ``choices``."""
    choices = tuple(choices)
    what = "one of " + ", ".join(repr(choice) for choice in choices)
    value = get_field(data, field, str, what, default)
    if value not in choices:
        raise TaskDataError(f"{field} must be {what}, got {value!r}", field)
    return value


def get_positive_int(data: Mapping[str, Any], field: str, default: Any = REQUIRED) -> int:
    """An integer field >= 1."""
    value = get_field(data, field, int, "a positive integer", default)
    if value is not default and value < 1:
        raise TaskDataError(f"{field} must be a positive integer, got {value!r}", field)
    return value


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
