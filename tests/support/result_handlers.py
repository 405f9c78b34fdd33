"""Test-only handlers: results JSON cannot hold as they are, and declared fields (imported by every
test worker)."""

from __future__ import annotations

from easyrag.task_app.async_task_framework import Task, TaskHandler, register_task_handler


class TupleKeysTaskHandler(TaskHandler):
    """Returns a dict keyed by tuples: no JSON can hold it."""

    async def handle_task(self, task: Task) -> dict:
        return {("row", 1): 2}


class NonFiniteTaskHandler(TaskHandler):
    """Returns infinities and NaN: strict JSON stores them as null."""

    async def handle_task(self, task: Task) -> dict:
        return {"mean": float("inf"), "values": [1.5, float("nan"), -float("inf")]}


for handler in (TupleKeysTaskHandler, NonFiniteTaskHandler):
    register_task_handler(handler)


class DeclaredFieldsTaskHandler(TaskHandler):
    """Reads two fields, and says so: any other key is refused at submit."""

    fields = ("name", "count")

    async def handle_task(self, task: Task) -> dict:
        return {"name": task.task_data.get("name"), "count": task.task_data.get("count", 0)}


register_task_handler(DeclaredFieldsTaskHandler)
