"""Priority routing on the Redis broker: with the only worker busy, higher priorities start first."""

from __future__ import annotations

import uuid

import pytest

from tests.support import tasks
from tests.support.waiting import wait_until

URGENT, HIGH, NORMAL, LOW = 0, 1, 2, 3
NAMES = {URGENT: "URGENT", HIGH: "HIGH", NORMAL: "NORMAL", LOW: "LOW"}


@pytest.fixture
def busy_worker(worker_process, redis_client):
    """The only worker (concurrency 1), busy on a blocking task; call the result to release it."""
    worker_process("prio", concurrency=1)
    release_key, started_key = f"easyrag-test:release:{uuid.uuid4()}", f"easyrag-test:started:{uuid.uuid4()}"
    tasks.block.apply_async(args=[release_key, started_key, 60], priority=NORMAL)
    wait_until(lambda: redis_client.llen(started_key), timeout=20, message="the blocking task to start")
    return lambda: redis_client.rpush(release_key, "go")


def _start_order(redis_client, expected: int) -> list[str]:
    wait_until(lambda: redis_client.llen(tasks.STARTS_KEY) >= expected, timeout=30,
               message=f"{expected} tasks to start")
    return redis_client.lrange(tasks.STARTS_KEY, 0, -1)


def test_urgent_starts_before_every_low_task_queued_earlier(busy_worker, redis_client):
    for n in range(20):
        tasks.record_start.apply_async(args=[f"LOW-{n}"], priority=LOW)
    tasks.record_start.apply_async(args=["URGENT"], priority=URGENT)
    busy_worker()
    order = _start_order(redis_client, 21)
    assert order[0] == "URGENT"
    assert order[1:] == [f"LOW-{n}" for n in range(20)]  # and LOW tasks keep their FIFO order


def test_each_priority_starts_before_the_lower_ones_and_fifo_within_one(busy_worker, redis_client):
    submitted = []
    for n in range(3):
        for priority in (LOW, NORMAL, HIGH, URGENT):  # interleaved, lowest first
            label = f"{NAMES[priority]}-{n}"
            tasks.record_start.apply_async(args=[label], priority=priority)
            submitted.append((priority, label))
    busy_worker()
    order = _start_order(redis_client, len(submitted))
    expected = [label for _, label in sorted(submitted, key=lambda item: item[0])]  # stable: FIFO
    assert order == expected


def test_task_without_priority_is_normal(busy_worker, redis_client):
    tasks.record_start.apply_async(args=["LOW"], priority=LOW)
    tasks.record_start.delay("default")
    tasks.record_start.apply_async(args=["HIGH"], priority=HIGH)
    busy_worker()
    assert _start_order(redis_client, 3) == ["HIGH", "default", "LOW"]
