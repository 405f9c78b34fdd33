"""confined_path(): a path from task data, resolved inside ASYNC_TASK_FILE_ROOTS or refused.

Every handler that reads or writes a path named in task_data goes through here.  Relative paths
are taken against the first root; the result is resolved (``..`` and symlinks followed) and must
lie inside one of the roots, so ``../x``, ``/etc/passwd`` and a link pointing out are refused with
FileAccessError, a PermanentTaskError: the task fails at once, without retries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from easyrag.config import get_config
from easyrag.task_app.exceptions import FileAccessError


def confined_path(value: Any, field: str) -> Path:
    """The resolved absolute path of ``value`` (the task_data field ``field``), inside the file roots.

    Raises FileAccessError (with ``.field``) naming the field and the path when ``value`` is not a
    non-empty string or resolves outside every root.  The path need not exist.
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
    allowed = ", ".join(str(root) for root in roots)
    # os.path.abspath folds ".." without following links: inside by that reading means a link led out.
    lexical = Path(os.path.abspath(absolute))
    how = "is a symlink (or passes through one) to" if any(
        lexical.is_relative_to(root) for root in roots) else "resolves to"
    raise _refused(field, f"{field} {value!r} {how} {resolved}, outside ASYNC_TASK_FILE_ROOTS ({allowed})")


def _refused(field: str, message: str) -> FileAccessError:
    error = FileAccessError(message)
    error.field = field  # as TaskValidationError and TaskDataError carry it
    return error
