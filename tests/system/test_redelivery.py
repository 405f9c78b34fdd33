"""Duplicate deliveries of one task id never run it twice at once, and never lose it.

Real `celery -A easyrag worker` subprocesses with a 4 s visibility timeout and a 2 s lock TTL.
"""

from __future__ import annotations

import uuid

from easyrag.celery import app
from easyrag.task_app.records import TaskStatus
from tests.support import tasks
from tests.support.broker import FAST_RECOVERY, broker_idle, record, status
from tests.support.waiting import wait_until


def _completed(redis_client, task_id: str, timeout: float) -> None:
    wait_until(lambda: status(redis_client, task_id) is TaskStatus.COMPLETED, timeout=timeout,
               interval=0.1, message=f"task {task_id} to complete")


def test_same_task_id_published_twice_to_two_workers_runs_once(worker_process, redis_client):
    worker_process("a", env=FAST_RECOVERY)
    worker_process("b", env=FAST_RECOVERY)
    task_id = str(uuid.uuid4())
    tasks.traced.apply_async(kwargs={"seconds": 2}, task_id=task_id)
    tasks.traced.apply_async(kwargs={"seconds": 2}, task_id=task_id)
    _completed(redis_client, task_id, timeout=30)
    wait_until(lambda: broker_idle(redis_client), timeout=20, message="the duplicate's deferral to end")
    assert tasks.traces(task_id) == {"starts": 1, "ends": 1, "overlaps": 0}


def test_task_longer_than_visibility_timeout_and_lock_ttl_runs_once(worker_process, redis_client):
    worker_process("a", env=FAST_RECOVERY)
    worker_process("b", env=FAST_RECOVERY)
    result = tasks.traced.apply_async(kwargs={"seconds": 14})  # > 3 x 4 s visibility, > 3 x 2 s lock
    _completed(redis_client, result.id, timeout=60)
    wait_until(lambda: broker_idle(redis_client), timeout=20, message="the broker to drain")
    assert tasks.traces(result.id) == {"starts": 1, "ends": 1, "overlaps": 0}


def test_duplicate_that_deletes_the_shared_unacked_entry_then_holder_killed_still_completes_once(
        worker_process, redis_client):
    """kombu gives every copy one delivery tag: the duplicate's ack removes the original's entry."""
    workers = {w.nodename: w for w in (worker_process("a", env=FAST_RECOVERY),
                                       worker_process("b", env=FAST_RECOVERY))}
    result = tasks.traced.apply_async(kwargs={"seconds": 10})
    wait_until(lambda: tasks.traces(result.id)["starts"] == 1, timeout=20, message="the first start")
    holder = workers[record(redis_client, result.id).worker]
    (tag,) = redis_client.hkeys("unacked")
    # Redeliver the running message exactly as kombu's restore sweep does (same delivery tag).
    with app.connection() as connection:
        connection.default_channel.qos.restore_by_tag(tag)
    # The idle worker receives the copy, finds the task busy, defers it and acks: the shared entry
    # is gone, so kombu would never restore the original if its worker died now...
    wait_until(lambda: redis_client.zscore("unacked_index", tag) is None
               and redis_client.exists("async_task:defer:" + result.id), timeout=20,
               message="the duplicate to be deferred and acknowledged")
    holder.kill()
    # ...but the deferral message finds the lock expired and runs it.
    _completed(redis_client, result.id, timeout=40)
    assert tasks.traces(result.id) == {"starts": 2, "ends": 1, "overlaps": 0}
    assert record(redis_client, result.id).worker != holder.nodename
