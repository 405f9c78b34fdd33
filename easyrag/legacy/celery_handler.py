"""LegacyTaskHandler: runs a forwarded legacy item (--forward) of an unmapped type on a Celery worker.

Not a built-in: add this module to ASYNC_TASK_HANDLER_MODULES of the workers and of the forwarding
consumer.  The worker runs the item with the handler named by its own ASYNC_COMMAND_HANDLER, else
the seed's ``async_handle``, as ``async_command`` would have.

The worker half of the bridge that forward.py begins; like forward.py it imports the task layer
through the facade only.
"""

from __future__ import annotations

from typing import Any

from easyrag.legacy.handlers import handler_path_from_env, load_handler
from easyrag.task_app.async_task_framework import Task, TaskHandler, register_task_handler


class LegacyTaskHandler(TaskHandler):
    """task_data is the legacy item ``{"type": ..., "data": {...}}``; the result names its type."""

    async def handle_task(self, task: Task) -> dict[str, Any]:
        handler = load_handler(handler_path_from_env())
        await handler(task.task_data)
        return {"type": task.task_data.get("type"), "handled": True}


register_task_handler(LegacyTaskHandler)
