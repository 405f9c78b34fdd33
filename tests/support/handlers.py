"""Test-only TaskHandlers, imported by workers through ASYNC_TASK_HANDLER_MODULES."""

from __future__ import annotations

import asyncio

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app.async_task_framework import (
    PermanentTaskError,
    Task,
    TaskHandler,
    register_task_handler,
)


def mark_key(task_id: str, what: str) -> str:
    return f"easyrag-test:handler:{task_id}:{what}"


class EchoTaskHandler(TaskHandler):
    async def handle_task(self, task: Task) -> dict:
        return {"echo": task.task_data, "user_id": task.user_id}


class StepsTaskHandler(TaskHandler):
    """Reports progress 0, 20, ... 100, pausing between steps."""

    async def handle_task(self, task: Task) -> dict:
        for percent in range(0, 101, 20):
            await task.update_progress(percent, f"step {percent}")
            await asyncio.sleep(task.task_data.get("pause", 0.3))
        return {"steps": 6}


class SleepyTaskHandler(TaskHandler):
    """Sleeps ``seconds``; leaves a mark when it starts and when it sees CancelledError."""

    async def handle_task(self, task: Task) -> dict:
        client = get_redis_instance()
        client.incr(mark_key(task.task_id, "starts"))
        try:
            await asyncio.sleep(task.task_data.get("seconds", 30))
        except asyncio.CancelledError:
            client.set(mark_key(task.task_id, "cancelled"), "1")
            raise
        return {"slept": task.task_data.get("seconds", 30)}


class GatedTaskHandler(TaskHandler):
    """Reports ``steps`` steps ("step k of n"); waits after each until the test opens the gate
    (``INCR mark_key(task_id, "gate")`` to k), so the test decides when the progress moves on."""

    async def handle_task(self, task: Task) -> dict:
        client = get_redis_instance()
        steps = task.task_data.get("steps", 3)
        for step in range(1, steps + 1):
            await task.update_progress(100 * step // (steps + 1), f"step {step} of {steps}")
            while int(client.get(mark_key(task.task_id, "gate")) or 0) < step:
                await asyncio.sleep(0.05)
        return {"steps": steps}


class FlakyTaskHandler(TaskHandler):
    """Fails its first ``failures`` attempts, then succeeds."""

    async def handle_task(self, task: Task) -> dict:
        attempt = get_redis_instance().incr(mark_key(task.task_id, "attempts"))
        if attempt <= task.task_data["failures"]:
            raise ConnectionError(f"flaky attempt {attempt}")
        return {"attempts": attempt}


class RefusingTaskHandler(TaskHandler):
    async def handle_task(self, task: Task) -> dict:
        get_redis_instance().incr(mark_key(task.task_id, "attempts"))
        raise PermanentTaskError("this input can never work")


for handler in (EchoTaskHandler, StepsTaskHandler, SleepyTaskHandler, GatedTaskHandler, FlakyTaskHandler,
                RefusingTaskHandler):
    register_task_handler(handler)
