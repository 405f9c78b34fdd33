"""Delayed tasks wait in Redis, not in a worker, and run once when due (spec 10), on real workers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from easyrag.celery import app
from easyrag.task_app import keys, queues
from easyrag.task_app.async_task_framework import TaskStatus, cancel_task, get_task_stats, get_task_status
from tests.support.handlers import mark_key
from tests.support.waiting import wait_final, wait_until


def _scheduled(client) -> int:
    return client.zcard(keys.scheduled_key())


def test_a_countdown_waits_in_redis_then_runs_once_when_due(live_worker, redis_client):
    sent = time.time()
    result = app.tasks["SleepyTaskHandler"].apply_async(kwargs={"seconds": 0}, countdown=2)
    task = get_task_status(result.id)
    assert task.status is TaskStatus.PENDING
    due = datetime.fromisoformat(task.eta).timestamp()
    assert abs(due - (sent + 2)) < 1
    assert _scheduled(redis_client) == 1 and sum(queues.queue_sizes(redis_client).values()) == 0
    assert get_task_stats()["scheduled_tasks"] == 1
    final = wait_final(result.id, timeout=20)
    assert final.status is TaskStatus.COMPLETED
    started = datetime.fromisoformat(final.started_at).timestamp()
    print(f"a task due at +2 s started {started - due:+.2f} s from its due time")
    assert started >= due - 0.05  # never early (clocks of one machine)
    assert redis_client.get(mark_key(result.id, "starts")) == "1"
    assert _scheduled(redis_client) == 0


def test_a_task_due_in_an_hour_is_held_by_no_worker(live_worker, redis_client):
    eta = datetime.now(UTC) + timedelta(hours=1)
    result = app.tasks["EchoTaskHandler"].apply_async(kwargs={}, eta=eta)
    assert get_task_status(result.id).eta == eta.isoformat()
    assert _scheduled(redis_client) == 1
    assert sum(queues.queue_sizes(redis_client).values()) == 0
    assert redis_client.hlen("unacked") == 0  # no worker holds it unacknowledged
    scheduled = app.control.inspect(destination=[live_worker.nodename], timeout=2).scheduled() or {}
    assert not any(scheduled.values())  # nor in memory, waiting for its ETA


def test_cancel_of_a_delayed_task_is_final_and_it_never_runs(live_worker, redis_client):
    doomed = app.tasks["SleepyTaskHandler"].apply_async(kwargs={"seconds": 0}, countdown=1)
    assert cancel_task(doomed.id) is True
    assert get_task_status(doomed.id).status is TaskStatus.CANCELLED  # at once
    assert _scheduled(redis_client) == 0 and get_task_stats()["scheduled_tasks"] == 0
    later = app.tasks["SleepyTaskHandler"].apply_async(kwargs={"seconds": 0}, countdown=1.5)
    assert wait_final(later.id, timeout=20).status is TaskStatus.COMPLETED  # past the doomed one's time
    assert redis_client.get(mark_key(doomed.id, "starts")) is None
    assert get_task_status(doomed.id).status is TaskStatus.CANCELLED


def test_a_retrys_back_off_waits_in_redis(live_worker, redis_client):
    result = app.tasks["FlakyTaskHandler"].apply_async(kwargs={"failures": 1}, headers={
        "easyrag_max_retries": 2})
    retrying = wait_until(lambda: (t := get_task_status(result.id)) and t.status is TaskStatus.RETRYING and t,
                          timeout=15, message="the retry's back-off")
    back_off = datetime.fromisoformat(retrying.eta) - datetime.fromisoformat(retrying.started_at)
    assert timedelta(0) < back_off < timedelta(seconds=2)  # min(60, 2^0) x [0.5, 1] s after the try
    final = wait_final(result.id, timeout=20)
    assert (final.status, final.retries, final.result) == (TaskStatus.COMPLETED, 1, {"attempts": 2})
    assert _scheduled(redis_client) == 0


def test_a_delayed_task_survives_every_worker_stopping(redis_client, worker_process):
    first = worker_process("first")
    result = app.tasks["SleepyTaskHandler"].apply_async(kwargs={"seconds": 0}, countdown=8)
    first.stop()
    assert _scheduled(redis_client) == 1  # no worker left, nothing lost
    worker_process("second")
    assert wait_final(result.id, timeout=30).status is TaskStatus.COMPLETED
    assert redis_client.get(mark_key(result.id, "starts")) == "1"
