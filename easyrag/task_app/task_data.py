"""What handlers use to read task_data: typed fields, confined paths, blocking steps, progress.

- ``get_field`` and its typed forms (``get_text``, ``get_choice``, ``get_positive_int``): each field
  present and of the right type, or TaskDataError naming it.
- ``confined_path``: a path from task data, resolved inside ASYNC_TASK_FILE_ROOTS or refused with
  FileAccessError; ``open_confined`` opens such a file without following links.
- ``run_step``: one piece of blocking work off the handler event loop, finished before a cancel unwinds.
- ``Progress``: measured work mapped onto a span of percent, written only when the percent changes.

Every error raised here is a PermanentTaskError: the task fails at once, without retries.  The
facade (``easyrag.task_app.async_task_framework``) re-exports these names.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from easyrag.config import get_config
from easyrag.task_app.exceptions import FileAccessError, TaskDataError
from easyrag.task_app.records import Task

__all__ = (
    "REQUIRED",
    "Progress",
    "confined_path",
    "get_choice",
    "get_field",
    "get_positive_int",
    "get_text",
    "open_beneath",
    "open_confined",
    "run_step",
)

T = TypeVar("T")

# --- typed fields -------------------------------------------------------------------------------

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


# --- confined paths -----------------------------------------------------------------------------

def confined_path(value: Any, field: str) -> Path:
    """The resolved absolute path of ``value`` (the task_data field ``field``), inside the file roots.

    Every handler that reads or writes a path named in task_data goes through here.  Relative paths
    are taken against the first root; the result is resolved (``..`` and symlinks followed) and
    must lie inside one of the roots, so ``../x``, ``/etc/passwd`` and a link pointing out are
    refused.  Raises FileAccessError (with ``.field``) naming the field and the value as given (never
    the resolved path or the roots) when ``value`` is not a non-empty string or resolves outside
    every root.  The path need not exist.  To read a file, use ``open_confined``: checking here and
    opening the path later would follow a link swapped in between.
    """
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise _refused(field, f"{field} must be a non-empty path string, got {value!r}")
    roots = get_config().file_roots
    if not roots:
        raise _refused(field, f"{field} {value!r} refused: ASYNC_TASK_FILE_ROOTS is empty")
    given = Path(value)
    absolute = given if given.is_absolute() else roots[0] / given
    resolved = absolute.resolve()
    if any(resolved.is_relative_to(root) for root in roots):
        return resolved
    # os.path.abspath folds ".." without following links: inside by that reading means a link led out.
    lexical = Path(os.path.abspath(absolute))
    how = "is a symlink (or passes through one) leading" if any(
        lexical.is_relative_to(root) for root in roots) else "resolves"
    # Neither the resolved path nor the roots are echoed: the error reaches whoever submitted the task.
    raise _refused(field, f"{field} {value!r} {how} outside ASYNC_TASK_FILE_ROOTS")


#: Why an open beneath the roots failed, by errno; anything else is "cannot be read".
_OPEN_PROBLEMS = {
    errno.ENOENT: "does not exist",
    errno.ENOTDIR: "does not exist",
    errno.ELOOP: "changed into a symlink while it was opened",
    errno.EACCES: "cannot be read (permission denied)",
    errno.EPERM: "cannot be read (permission denied)",
}


def open_confined(value: Any, field: str) -> BinaryIO:
    """Open the regular file named by ``value`` (the task_data field ``field``) beneath the roots, to read.

    ``confined_path`` first; then the file is opened one component at a time from its root
    (``openat`` with ``O_NOFOLLOW``), so a component swapped for a symlink after the check is refused
    instead of followed, and the *open* file is checked with ``fstat``: a directory, a FIFO or a device
    is refused.  Raises FileAccessError naming the field, never an OSError, and never echoing an
    absolute path.  Blocking: call it through ``run_step``.
    """
    path = confined_path(value, field)
    root = next(root for root in get_config().file_roots if path.is_relative_to(root))
    parts = path.relative_to(root).parts
    if not parts:
        raise _refused(field, f"{field} {value!r} is not a file")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        inner = open_beneath(root, parts, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        problem = _OPEN_PROBLEMS.get(error.errno, "cannot be read")
        raise _refused(field, f"{field} {value!r} {problem}") from None
    if not stat.S_ISREG(os.fstat(inner).st_mode):
        os.close(inner)
        raise _refused(field, f"{field} {value!r} is not a file")
    os.set_blocking(inner, True)
    return os.fdopen(inner, "rb")


def open_beneath(root: Path, parts: tuple[str, ...], flags: int) -> int:
    """``os.open`` of ``root/parts`` with ``flags``, walking from ``root`` one component at a time
    with ``O_NOFOLLOW``: a folder swapped for a symlink after a check is refused (OSError), never
    followed.  An empty ``parts`` opens ``root`` itself.  Returns the descriptor; blocking."""
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    if not parts:
        return descriptor
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = inner
        return os.open(parts[-1], flags, dir_fd=descriptor)
    finally:
        os.close(descriptor)


def _refused(field: str, message: str) -> FileAccessError:
    error = FileAccessError(message)
    error.field = field  # as TaskValidationError and TaskDataError carry it
    return error


# --- blocking steps -----------------------------------------------------------------------------

async def run_step(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a worker thread; on cancellation, wait for it, then re-raise.

    Handlers share one event loop per worker process, so file and network work runs in a thread, in
    steps, with progress written between them.  A thread cannot be interrupted: when the task is
    cancelled or times out mid-step, plain ``asyncio.to_thread`` would let the handler close its
    files while the step still uses them.  ``run_step`` waits for the step to end first, then
    re-raises CancelledError, so a cancel lands at most one step late.
    """
    step = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
    try:
        return await asyncio.shield(step)
    except asyncio.CancelledError:
        await asyncio.wait({step})
        if not step.cancelled():
            step.exception()  # marks a failure of the step as seen: the cancel is what the task reports
        raise


# --- progress -----------------------------------------------------------------------------------

class Progress:
    """Maps ``done / total`` units of work onto ``start``..``end`` percent of the task.

    The record is written only when the percent changes, so a handler may report every unit.
    """

    def __init__(self, task: Task, start: int = 0, end: int = 100) -> None:
        self.task, self.start, self.end = task, start, end
        self.last: int | None = None

    async def report(self, done: int, total: int, message: str) -> None:
        """Record the percent for ``done`` of ``total`` (one round trip, skipped when unchanged)."""
        fraction = 1.0 if total <= 0 else min(1.0, done / total)
        percent = self.start + int((self.end - self.start) * fraction)
        if percent != self.last:
            self.last = percent
            await self.task.update_progress(percent, message)
