"""Delayed tasks on `celery -A easyrag worker` subprocesses at a short visibility timeout (spec 10):
due in 25 s, a task runs once with no redelivery, also while every worker is SIGKILLed and
replaced during the wait; thousands spread over a minute each start within 2 s of their time."""

from __future__ import annotations

import statistics
import time
from datetime import datetime

from easyrag.celery import app
from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import TaskStatus, get_task_status
from easyrag.task_app.records import TaskRecord
from tests.support.broker import FAST_RECOVERY
from tests.support.handlers import mark_key
from tests.support.waiting import wait_final, wait_until

#: Workers that would redeliver an unacknowledged countdown every 4 s.
SHORT_VISIBILITY = {**FAST_RECOVERY, "ASYNC_TASK_VISIBILITY_TIMEOUT": "6"}


def _deliveries(workers, task_id: str) -> int:
    """How many times a worker received the task's message (Celery logs each at INFO)."""
    return sum(worker.log_path.read_text(errors="replace").count(f"[{task_id}] received")
               for worker in workers)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _mget(client, names: list[str]) -> list:
    return [value for start in range(0, len(names), 1000) for value in client.mget(names[start:start + 1000])]


def _started_after_submit(task_id: str, submitted: float) -> float:
    return datetime.fromisoformat(get_task_status(task_id).started_at).timestamp() - submitted


def test_due_in_25_s_it_runs_once_with_no_redelivery(worker_process, redis_client):
    worker = worker_process("a", env=SHORT_VISIBILITY)
    submitted = time.time()
    result = app.tasks["SleepyTaskHandler"].apply_async(kwargs={"seconds": 0}, countdown=25)
    assert wait_final(result.id, timeout=45).status is TaskStatus.COMPLETED
    assert 24 <= _started_after_submit(result.id, submitted) <= 27
    assert redis_client.get(mark_key(result.id, "starts")) == "1"
    assert _deliveries([worker], result.id) == 1  # never held unacknowledged, never redelivered


def test_every_worker_killed_and_replaced_while_it_waits(worker_process, redis_client):
    submitted = time.time()
    result = app.tasks["SleepyTaskHandler"].apply_async(kwargs={"seconds": 0}, countdown=25)
    workers = []
    for name in ("a", "b"):
        worker = worker_process(name, env=SHORT_VISIBILITY)
        workers.append(worker)
        wait_until(lambda: time.time() - submitted > 6 * len(workers), timeout=30, message="time passing")
        worker.kill()  # SIGKILL, the whole process group
    workers.append(worker_process("c", env=SHORT_VISIBILITY))
    assert wait_final(result.id, timeout=45).status is TaskStatus.COMPLETED
    assert 24 <= _started_after_submit(result.id, submitted) <= 27
    assert redis_client.get(mark_key(result.id, "starts")) == "1"
    assert _deliveries(workers, result.id) == 1


def test_thousands_spread_over_a_minute_each_start_within_2_s_of_their_time(worker_process, redis_client):
    count = 10_000
    workers = [worker_process(name, concurrency=2, env=SHORT_VISIBILITY) for name in ("a", "b")]
    sleepy = app.tasks["SleepyTaskHandler"]
    ids = [sleepy.apply_async(kwargs={"seconds": 0}, countdown=1 + 59 * index / count).id
           for index in range(count)]
    wait_until(lambda: int(redis_client.hget(keys.counters_key(), "completed") or 0) == count,
               timeout=180, interval=1, message=f"{count} delayed tasks to complete")
    records = [TaskRecord.from_json(text) for text in _mget(redis_client, [keys.record_key(i) for i in ids])]
    late = sorted(_epoch(task.started_at) - _epoch(task.eta) for task in records)
    print(f"{count} delayed tasks: lateness p50 {1000 * statistics.median(late):.0f} ms, "
          f"p99 {1000 * late[int(0.99 * (count - 1))]:.0f} ms, max {1000 * late[-1]:.0f} ms")
    assert late[-1] <= 2.0 and late[0] >= -0.05
    assert set(_mget(redis_client, [mark_key(i, "starts") for i in ids])) == {"1"}  # each ran once
    assert sum(_deliveries(workers, task_id) for task_id in ids[:200]) == 200
