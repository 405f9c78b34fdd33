"""get_task_stats(): counters agree with the records; per-worker figures from the live nodes."""

from __future__ import annotations

from easyrag.task_app.async_task_framework import (
    TaskStatus,
    cancel_task,
    get_task_stats,
    get_task_status,
    submit_task,
)
from tests.support.waiting import wait_until

KEYS = ("total_tasks", "pending_tasks", "running_tasks", "completed_tasks", "failed_tasks",
        "cancelled_tasks", "queue_size", "queue_sizes", "workers", "instance_id")


def test_stats_agree_exactly_with_the_records_after_a_mixed_run(worker_process):
    cancelled = [submit_task("SleepyTaskHandler", {"seconds": 0}, priority=3) for _ in range(2)]
    for task_id in cancelled:
        assert cancel_task(task_id)
    queued = get_task_stats()
    assert (queued["pending_tasks"], queued["cancelled_tasks"], queued["total_tasks"]) == (0, 2, 2)
    assert queued["queue_size"] == 2 and queued["queue_sizes"] == {"URGENT": 0, "HIGH": 0, "NORMAL": 0,
                                                                   "LOW": 2}
    worker = worker_process("stats", concurrency=2)
    ids = ([submit_task("EchoTaskHandler", {"n": n}) for n in range(5)]
           + [submit_task("RefusingTaskHandler", {}) for _ in range(2)]
           + [submit_task("FlakyTaskHandler", {"failures": 1}, max_retries=2)])
    wait_until(lambda: all(get_task_status(t).status.is_final for t in ids), timeout=30, message="all final")
    wait_until(lambda: get_task_stats()["queue_size"] == 0, timeout=30, message="cancelled ones dropped")
    statuses = [get_task_status(t).status for t in ids + cancelled]
    stats = get_task_stats()
    assert set(KEYS) <= set(stats)
    assert stats["total_tasks"] == len(statuses) == 10
    assert stats["completed_tasks"] == statuses.count(TaskStatus.COMPLETED) == 6
    assert stats["failed_tasks"] == statuses.count(TaskStatus.FAILED) == 2
    assert stats["cancelled_tasks"] == statuses.count(TaskStatus.CANCELLED) == 2
    assert (stats["pending_tasks"], stats["running_tasks"]) == (0, 0)
    assert stats["workers"][worker.nodename]["active"] == 0
    assert stats["workers"][worker.nodename]["processed"] >= 8


def test_stats_show_a_running_task_on_its_worker(worker_process):
    worker = worker_process("busy", concurrency=1)
    task_id = submit_task("SleepyTaskHandler", {"seconds": 30})
    wait_until(lambda: get_task_status(task_id).status is TaskStatus.RUNNING, message="running")
    stats = get_task_stats()
    assert stats["running_tasks"] == 1
    assert stats["workers"][worker.nodename]["active"] == 1
    cancel_task(task_id)
