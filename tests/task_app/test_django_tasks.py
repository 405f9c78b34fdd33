"""Django's Tasks API on the guarded workers (spec 9): enqueue, results, priorities, context,
async functions, run_after, retries, cancel and signals, on a real in-process worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import TaskStatus, cancel_task, get_task_status
from easyrag.task_app.django_tasks import (
    GuardedTaskBackend,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)
from tests.support import dj_tasks
from tests.support.waiting import wait_django_result, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _finished(result, timeout: float = 30):
    return wait_django_result(result, timeout)


def test_the_project_uses_the_guarded_backend():
    assert isinstance(dj_tasks.add.get_backend(), GuardedTaskBackend)


def test_enqueue_runs_once_under_the_guard_and_reads_back_from_the_record(live_worker):
    result = dj_tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    _finished(result)
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 5)
    assert result.worker_ids == [live_worker.nodename]
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert (result.args, result.kwargs) == ([2, 3], {})
    record = get_task_status(result.id)  # the same record as any task
    assert (record.task_type, record.status) == ("tests.support.dj_tasks.add", TaskStatus.COMPLETED)
    again = dj_tasks.add.get_result(result.id)
    assert again.return_value == 5


def test_a_failure_names_the_exception_class_and_its_text(live_worker):
    result = _finished(dj_tasks.fails.enqueue("no good"))
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "builtins.ValueError"
    assert "no good" in result.errors[-1].traceback
    with pytest.raises(ValueError):
        result.return_value  # noqa: B018 - Django raises for a failed task


def test_context_gives_the_attempt_and_the_id(live_worker):
    result = _finished(dj_tasks.who_am_i.enqueue(tag="t"))
    assert result.return_value == {"attempt": 1, "id": result.id, "tag": "t"}


def test_async_functions_run_on_the_workers_loop(live_worker):
    assert _finished(dj_tasks.sleeps.enqueue(0.1)).return_value == "slept"


@pytest.mark.parametrize(("priority", "broker"), [(100, 0), (50, 0), (49, 1), (1, 1), (0, 2), (-1, 3),
                                                   (-100, 3)])
def test_priorities_map_onto_the_brokers_four(redis_client, priority, broker):
    result = dj_tasks.add.using(priority=priority).enqueue(1, 1)  # no worker: it waits
    assert get_task_status(result.id).priority == broker


def test_run_after_waits_in_redis_and_reads_ready(live_worker, redis_client):
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    result = dj_tasks.add.using(run_after=due).enqueue(1, 2)
    assert result.status == TaskResultStatus.READY
    assert get_task_status(result.id).eta == due.isoformat()
    assert redis_client.zcard(keys.scheduled_key()) == 1
    assert _finished(result).return_value == 3
    assert result.started_at >= due - timedelta(seconds=0.05)


def test_no_retries_unless_the_backend_asks_for_them(live_worker, redis_client):
    key = f"easyrag-test:flaky:{uuid.uuid4().hex}"
    assert _finished(dj_tasks.flaky.enqueue(key)).status == TaskResultStatus.FAILED
    with override_settings(TASKS={"default": {
            "BACKEND": "easyrag.task_app.django_tasks.GuardedTaskBackend", "OPTIONS": {"max_retries": 1}}}):
        other = f"easyrag-test:flaky:{uuid.uuid4().hex}"
        result = _finished(dj_tasks.flaky.enqueue(other), timeout=30)
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 2)
    assert result.attempts == 2


def test_cancel_task_ends_a_waiting_django_task_for_good(redis_client):
    result = dj_tasks.add.enqueue(1, 1)
    assert cancel_task(result.id) is True
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "easyrag.task_app.exceptions.TaskCancelledError"


def test_an_unknown_id_does_not_exist():
    with pytest.raises(TaskResultDoesNotExist):
        dj_tasks.add.get_result("no-such-task")


def test_djangos_signals_are_sent(live_worker):
    seen: list[tuple[str, str]] = []

    def record(signal_name):
        def receiver(sender, task_result, **_):
            seen.append((signal_name, task_result.status))
        return receiver

    receivers = {name: record(name) for name in ("enqueued", "started", "finished")}
    task_enqueued.connect(receivers["enqueued"])
    task_started.connect(receivers["started"])
    task_finished.connect(receivers["finished"])
    try:
        _finished(dj_tasks.add.enqueue(1, 1))
        wait_until(lambda: len(seen) == 3, timeout=5, message="three signals")
    finally:
        task_enqueued.disconnect(receivers["enqueued"])
        task_started.disconnect(receivers["started"])
        task_finished.disconnect(receivers["finished"])
    # the worker may start it before the enqueuing thread's task_enqueued: no order between the two
    assert sorted(seen) == [("enqueued", TaskResultStatus.READY), ("finished", TaskResultStatus.SUCCESSFUL),
                            ("started", TaskResultStatus.RUNNING)]
    assert seen.index(("started", TaskResultStatus.RUNNING)) < seen.index(
        ("finished", TaskResultStatus.SUCCESSFUL))
