"""wait_until(): poll a condition with a deadline instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
               message: str = "condition") -> T:
    """Return the first truthy value of ``condition()``; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def wait_final(task_id: str, timeout: float = 15):
    """The task's record once its status is final (COMPLETED, FAILED, CANCELLED or TIMEOUT)."""
    from easyrag.task_app.async_task_framework import get_task_status

    return wait_until(lambda: (task := get_task_status(task_id)) and task.status.is_final and task,
                      timeout=timeout, message=f"task {task_id} to finish")


def wait_django_result(result, timeout: float = 20):
    """A Django TaskResult, refreshed until it is finished (SUCCESSFUL or FAILED)."""
    def finished() -> bool:
        result.refresh()
        return result.is_finished

    wait_until(finished, timeout=timeout, message=f"django task {result.id} to finish")
    return result
