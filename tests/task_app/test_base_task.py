"""GuardedTask with an in-process worker: the record it writes, and a finished id never runs again."""

from __future__ import annotations

import json
import uuid

from easyrag.task_app import keys
from easyrag.task_app.records import TaskRecord, TaskStatus
from tests.support import tasks
from tests.support.waiting import wait_until


def _record(redis_client, task_id: str) -> TaskRecord | None:
    text = redis_client.get(keys.record_key(task_id))
    return TaskRecord.from_json(text) if text else None


def _status(redis_client, task_id: str) -> TaskStatus | None:
    record = _record(redis_client, task_id)
    return record.status if record else None


def test_completed_task_is_recorded_once_with_its_worker_and_result(live_worker, redis_client):
    result = tasks.traced.apply_async(kwargs={"seconds": 0}, priority=1)
    assert result.get(timeout=10) == live_worker.nodename
    record = _record(redis_client, result.id)
    assert record.status is TaskStatus.COMPLETED
    assert (record.task_type, record.task_data, record.priority) == ("tests.traced", {"seconds": 0}, 1)
    assert record.result == live_worker.nodename
    assert record.worker == live_worker.nodename
    assert record.progress == 100 and record.retries == 0
    assert record.created_at <= record.started_at <= record.finished_at
    # the raw JSON is readable with redis-cli get, with the spec's field names
    raw = json.loads(redis_client.get(keys.record_key(result.id)))
    assert raw["status"] == "COMPLETED" and raw["priority"] == 1
    # the lock is released, the guard is gone (the final record is the task's one key), and
    # kombu's unacked entry is gone
    assert not redis_client.exists(keys.task_lock_key(result.id), keys.guard_key(result.id))
    wait_until(lambda: redis_client.hlen("unacked") == 0, timeout=5, message="the ack")


def test_same_task_id_published_again_after_completion_never_runs_again(live_worker, redis_client):
    task_id = str(uuid.uuid4())
    tasks.traced.apply_async(kwargs={"seconds": 0}, task_id=task_id).get(timeout=10)
    tasks.traced.apply_async(kwargs={"seconds": 0}, task_id=task_id)
    sentinel = tasks.traced.apply_async(kwargs={"seconds": 0}, priority=3)  # queued after the copy
    wait_until(lambda: _status(redis_client, sentinel.id) is TaskStatus.COMPLETED, message="sentinel")
    wait_until(lambda: redis_client.hlen("unacked") == 0, timeout=5, message="the copy to be acked")
    assert tasks.traces(task_id) == {"starts": 1, "ends": 1, "overlaps": 0}


def test_failing_body_is_recorded_failed_with_the_error(live_worker, redis_client):
    result = tasks.traced.apply_async(kwargs={"seconds": "not a number"})
    wait_until(lambda: _status(redis_client, result.id) is TaskStatus.FAILED, message="FAILED")
    record = _record(redis_client, result.id)
    assert "TypeError" in record.error
    assert record.finished_at is not None
    assert not redis_client.exists(keys.task_lock_key(result.id))


def test_task_called_directly_runs_without_the_guard(redis_client):
    assert tasks.add(1, 2) == 3
    assert tasks.traced.run(seconds=0)  # a plain call runs the body
    assert not list(redis_client.scan_iter(match="async_task:*"))
