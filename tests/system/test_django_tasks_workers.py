"""Django Tasks on `celery -A easyrag worker` subprocesses (spec 9): results, priority order with a
busy worker, a function that kills its worker, a cancel before it starts."""

from __future__ import annotations

import uuid

import pytest

from easyrag.task_app.async_task_framework import TaskStatus, cancel_task, get_task_status
from easyrag.task_app.django_tasks import TaskResultStatus
from tests.support import dj_tasks
from tests.support.broker import FAST_RECOVERY
from tests.support.waiting import wait_django_result, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

STARTS = "easyrag-test:dj-starts"


def _finished(result, timeout: float = 30):
    return wait_django_result(result, timeout)


def test_sync_async_and_context_functions_on_a_worker_process(worker_process):
    worker = worker_process("a", concurrency=2)
    added, slept, context = (dj_tasks.add.enqueue(2, 3), dj_tasks.sleeps.enqueue(0.1),
                             dj_tasks.who_am_i.enqueue(tag="x"))
    assert _finished(added).return_value == 5 and added.worker_ids == [worker.nodename]
    assert _finished(slept).return_value == "slept"
    assert _finished(context).return_value == {"attempt": 1, "id": context.id, "tag": "x"}
    failed = _finished(dj_tasks.fails.enqueue("broken"))
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[-1].exception_class_path == "builtins.ValueError"
    assert get_task_status(added.id).task_type == "tests.support.dj_tasks.add"


def test_priority_80_starts_before_earlier_ones_at_minus_10(worker_process, redis_client):
    worker_process("a", concurrency=1)
    release = f"easyrag-test:release:{uuid.uuid4().hex}"
    blocker = dj_tasks.block.enqueue(release)
    wait_until(lambda: get_task_status(blocker.id).status is TaskStatus.RUNNING, timeout=30,
               message="the worker to be busy")
    low = [dj_tasks.record_start.using(priority=-10).enqueue(f"low-{n}") for n in range(2)]
    high = dj_tasks.record_start.using(priority=80).enqueue("high")
    redis_client.set(release, "1")
    for result in (*low, high):
        _finished(result)
    assert redis_client.lrange(STARTS, 0, -1) == ["high", "low-0", "low-1"]


def test_a_function_that_kills_its_worker_runs_again_and_completes_once(worker_process, redis_client):
    worker_process("a", concurrency=2, env=FAST_RECOVERY)
    key = f"easyrag-test:kills:{uuid.uuid4().hex}"
    result = _finished(dj_tasks.kills_its_worker_once.enqueue(key), timeout=60)
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 2)
    assert redis_client.get(key) == "2"


def test_a_pending_django_task_cancelled_never_runs(worker_process, redis_client):
    doomed = dj_tasks.record_start.enqueue("doomed")
    assert cancel_task(doomed.id) is True
    worker_process("a")
    after = _finished(dj_tasks.record_start.using(priority=-50).enqueue("after"))
    assert after.status == TaskResultStatus.SUCCESSFUL
    assert redis_client.lrange(STARTS, 0, -1) == ["after"]
    doomed.refresh()
    assert doomed.status == TaskResultStatus.FAILED
