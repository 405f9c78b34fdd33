"""End-state checks of guarded tasks: the counters hash agrees, no lock is left behind."""

from __future__ import annotations

import redis

from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import Task, get_task_status
from tests.support.broker import broker_idle
from tests.support.waiting import wait_final, wait_until

COUNTER_FIELDS = ("total", "pending", "running", "completed", "failed", "cancelled", "timeout")


def counters(client: redis.Redis) -> dict[str, int]:
    """The counters hash, every field present (0 when unset)."""
    found = client.hgetall(keys.counters_key())
    return {name: int(found.get(name) or 0) for name in COUNTER_FIELDS}


def assert_counters(client: redis.Redis, **expected: int) -> None:
    """The counters are exactly ``expected`` (fields not named are 0: nothing pending or running)."""
    assert counters(client) == {name: expected.get(name, 0) for name in COUNTER_FIELDS}


def assert_no_lock(client: redis.Redis, *task_ids: str, timeout: float = 0.0) -> None:
    """No task lock of ``task_ids`` exists (within ``timeout`` seconds: a dead holder's TTL)."""
    lock_keys = [keys.task_lock_key(task_id) for task_id in task_ids]
    wait_until(lambda: not client.exists(*lock_keys), timeout=timeout, message=f"no lock of {task_ids}")


def wait_broker_idle(client: redis.Redis, timeout: float = 30.0) -> None:
    """Nothing queued or unacknowledged: every copy of every message was consumed."""
    wait_until(lambda: broker_idle(client), timeout=timeout, interval=0.1, message="the broker to drain")


def final_record(task_id: str, timeout: float) -> Task:
    """The task's record once final; on timeout, fail saying where it is stuck."""
    try:
        return wait_final(task_id, timeout=timeout)
    except AssertionError:
        task = get_task_status(task_id)
        where = (f"{task.status.value} (error {task.error!r}, message {task.message!r})" if task
                 else "no record")
        raise AssertionError(f"task {task_id} not final after {timeout} s: {where}") from None
