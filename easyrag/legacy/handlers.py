"""The seed's default ``async_handle`` with its task types, and loading a replacement for it.

``async_handle`` is the seed's demonstration handler: it logs and simulates each type's work.
Replace it without editing the command: ``--handler package.module.function`` or the environment
variable ``ASYNC_COMMAND_HANDLER`` names an ``async def handler(data: dict)`` that gets the whole
item (``{"type": ..., "data": {...}}``); an exception in it fails the item (dead-lettered).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from easyrag.legacy.errors import HandlerNotFoundError
from easyrag.legacy.items import Brief

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

HANDLER_ENV = "ASYNC_COMMAND_HANDLER"

#: Seconds each documented task type takes in the default handler.
DURATIONS: dict[str, float] = {
    "email": 1.0,
    "file_process": 2.0,
    "fast_task": 0.5,
    "medium_task": 1.0,
    "slow_task": 2.0,
}
#: Seconds of the default handling of a type not listed above.
DEFAULT_DURATION = 0.1

#: The log line of each type, in the seed's words: operators' log searches match them verbatim.
#: The seed shows the email and file lines; the others follow them, named as its type list names them.
TYPE_LINES: dict[str, str] = {
    "email": "处理邮件任务: %s",
    "file_process": "处理文件任务: %s",
    "fast_task": "处理快速任务: %s",
    "medium_task": "处理中等任务: %s",
    "slow_task": "处理慢任务: %s",
}
#: The line of the default handling: the seed's type list calls it 未知类型任务, handled by default.
DEFAULT_LINE = "处理未知类型任务: %s"


async def async_handle(data: dict[str, Any]) -> None:
    """Handle one item ``{"type": ..., "data": {...}}`` the way the seed's example does.

    ``data["data"]``, when given, must be a JSON object; an unknown or missing type gets the
    default handling.
    """
    task_type = data.get("type")
    task_data = data.get("data", {})
    if not isinstance(task_data, dict):
        raise ValueError(f"'data' must be a JSON object, got {type(task_data).__name__}")
    logger.info("开始处理任务: %s", Brief(data))  # Brief: a payload is shown up to LOG_LIMIT characters
    if isinstance(task_type, str) and task_type in DURATIONS:
        await asyncio.sleep(DURATIONS[task_type])
        logger.info(TYPE_LINES[task_type], Brief(task_data))
    else:
        await asyncio.sleep(DEFAULT_DURATION)
        logger.info(DEFAULT_LINE, Brief(task_data))
    logger.info("任务处理完成: %s", Brief(data))


def handler_path_from_env() -> str | None:
    """The dotted path in ASYNC_COMMAND_HANDLER, or None.

    Read here rather than in easyrag.config: it concerns this command (and the workers that run
    its forwarded items), not the task layer's settings table.
    """
    return os.environ.get(HANDLER_ENV, "").strip() or None


def load_handler(path: str | None) -> Handler:
    """The ``async def`` function at ``path`` (``package.module.function``); None: ``async_handle``.

    Raises ``HandlerNotFoundError`` naming what is wrong with the path.
    """
    if not path:
        return async_handle
    module_name, _, name = path.rpartition(".")
    if not module_name or not name:
        raise HandlerNotFoundError(f"handler {path!r} must be a dotted path like package.module.function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise HandlerNotFoundError(f"handler {path!r}: cannot import {module_name!r}: {error}") from None
    handler = getattr(module, name, None)
    if handler is None:
        raise HandlerNotFoundError(f"handler {path!r}: module {module_name!r} has no {name!r}")
    if not inspect.iscoroutinefunction(handler):
        raise HandlerNotFoundError(f"handler {path!r} must be an async def function taking the item dict")
    return handler
