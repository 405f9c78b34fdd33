"""Every way out of a claimed run ends in one final record, and copies that must not run never do.

Real workers: the in-process worker for results and retries, worker subprocesses where a worker
must start after the fact.
"""

from __future__ import annotations

import json
import uuid

import pytest

from easyrag.celery import app
from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import (
    InvalidTaskDataError,
    TaskStatus,
    cancel_task,
    get_task_status,
    submit_task,
)
from tests.support import tasks
from tests.support.broker import FAST_RECOVERY, broker_idle
from tests.support.handlers import mark_key
from tests.support.waiting import wait_final, wait_until

#: Records and guards of finished tasks expire after 8 s (the allowed minimum: 2 x V = 2 x 4 s).
SHORT_TTL = {**FAST_RECOVERY, "ASYNC_TASK_RESULT_TTL": "8"}


def _counters(redis_client) -> dict[str, int]:
    return {name: int(value) for name, value in redis_client.hgetall(keys.counters_key()).items()}


def test_result_json_cannot_hold_ends_failed_saying_so(live_worker, redis_client):
    task = wait_final(submit_task("TupleKeysTaskHandler", {}))
    assert task.status is TaskStatus.FAILED
    assert "cannot be stored as JSON" in task.error
    assert not redis_client.exists(keys.task_lock_key(task.task_id))
    assert _counters(redis_client) == {"total": 1, "pending": 0, "running": 0, "failed": 1}


def test_non_finite_numbers_in_a_result_are_stored_as_null(live_worker, redis_client):
    task = wait_final(submit_task("NonFiniteTaskHandler", {}))
    assert task.status is TaskStatus.COMPLETED
    assert task.result == {"mean": None, "values": [1.5, None, None]}
    json.loads(redis_client.get(keys.record_key(task.task_id)), parse_constant=lambda name: 1 / 0)  # strict


def test_a_handler_that_declares_its_fields_refuses_any_other_key_and_writes_nothing(redis_client):
    before = redis_client.dbsize()
    with pytest.raises(InvalidTaskDataError) as refused:
        submit_task("DeclaredFieldsTaskHandler", {"name": "a", "blob": "x" * 1000})
    assert refused.value.field == "task_data"
    assert "unknown field(s) 'blob'; DeclaredFieldsTaskHandler takes name, count" in str(refused.value)
    assert redis_client.dbsize() == before
    assert get_task_status(submit_task("DeclaredFieldsTaskHandler", {"name": "a"})) is not None
    assert get_task_status(submit_task("EchoTaskHandler", {"anything": 1})) is not None  # undeclared


def test_cancelled_task_never_runs_after_its_record_expired(env, redis_client, worker_process):
    env(**SHORT_TTL)
    task_id = submit_task("SleepyTaskHandler", {"seconds": 0})
    assert cancel_task(task_id) is True
    wait_until(lambda: not redis_client.exists(keys.record_key(task_id), keys.guard_key(task_id)),
               timeout=20, message="the cancelled record and guard to expire")
    worker_process("late", env=SHORT_TTL)  # its message still waits in the queue
    follower = submit_task("EchoTaskHandler", {}, priority=3)
    assert wait_final(follower, timeout=30).status is TaskStatus.COMPLETED
    wait_until(lambda: broker_idle(redis_client), timeout=20, message="the cancelled copy to be dropped")
    assert redis_client.get(mark_key(task_id, "starts")) is None
    assert get_task_status(task_id) is None  # no record written again
    assert _counters(redis_client) == {"total": 2, "pending": 0, "running": 0, "cancelled": 1, "completed": 1}


def test_completed_task_never_runs_again_when_a_copy_arrives_after_its_record_expired(
        env, redis_client, worker_process):
    env(**SHORT_TTL)
    worker_process("a", env=SHORT_TTL)
    task_id = str(uuid.uuid4())
    tasks.traced.apply_async(kwargs={"seconds": 0}, task_id=task_id)
    tasks.traced.apply_async(kwargs={"seconds": 0}, task_id=task_id, countdown=12)  # due after expiry
    wait_until(lambda: tasks.traces(task_id)["ends"] == 1, timeout=20, message="the first run")
    wait_until(lambda: not redis_client.exists(keys.record_key(task_id)), timeout=20,
               message="the finished record to expire")
    wait_until(lambda: broker_idle(redis_client), timeout=40, message="the late copy to be dropped")
    assert tasks.traces(task_id) == {"starts": 1, "ends": 1, "overlaps": 0}
    assert get_task_status(task_id) is None
    assert _counters(redis_client) == {"total": 1, "pending": 0, "running": 0, "completed": 1}


def test_stale_copy_delivered_while_retrying_runs_no_extra_attempt(live_worker, redis_client):
    task_id = submit_task("FlakyTaskHandler", {"failures": 5}, max_retries=2)
    # After the second attempt failed, the third waits 1-2 s as RETRYING: deliver an attempt-0 copy.
    wait_until(lambda: (task := get_task_status(task_id)) and task.status is TaskStatus.RETRYING
               and redis_client.get(mark_key(task_id, "attempts")) == "2", timeout=20,
               interval=0.01, message="the second retry to be scheduled")
    app.tasks["FlakyTaskHandler"].apply_async(kwargs={"failures": 5}, task_id=task_id)
    task = wait_final(task_id, timeout=30)
    assert (task.status, task.retries) == (TaskStatus.FAILED, 2)
    wait_until(lambda: broker_idle(redis_client), timeout=20, message="the stale copy to be dropped")
    assert redis_client.get(mark_key(task_id, "attempts")) == "3"  # max_retries=2: three attempts
    assert _counters(redis_client) == {"total": 1, "pending": 0, "running": 0, "failed": 1}


def test_worker_warns_at_start_when_redis_could_lose_tasks_and_not_when_it_cannot(worker_process,
                                                                                   redis_server):
    durable = redis_server(appendonly=True)  # AOF on, noeviction
    quiet = worker_process("durable", env={"REDIS_URL": durable.url})
    volatile = redis_server()  # AOF off: what the set-up's throw-away servers run with
    volatile.client().config_set("maxmemory-policy", "allkeys-lru")
    loud = worker_process("volatile", env={"REDIS_URL": volatile.url})
    for worker in (quiet, loud):
        wait_until(lambda w=worker: "ready." in w.log_tail(200), timeout=20, message="the worker's start")
    assert "appendonly" not in quiet.log_tail(200) and "maxmemory-policy" not in quiet.log_tail(200)
    log = loud.log_tail(200)
    assert "Redis persistence (appendonly) is off" in log
    assert "Redis maxmemory-policy is allkeys-lru" in log
