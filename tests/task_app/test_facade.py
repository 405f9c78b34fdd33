"""The documented API on a real in-process worker: submit, status, progress, cancel, retries, timeout."""

from __future__ import annotations

import time

import pytest
from celery import chain, group

from easyrag.celery import app
from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import (
    InvalidPriorityError,
    InvalidRetriesError,
    InvalidTaskDataError,
    InvalidTimeoutError,
    QueueFullError,
    TaskDataTooLargeError,
    TaskPriority,
    TaskStatus,
    UnknownTaskTypeError,
    cancel_task,
    get_task_status,
    submit_task,
)
from tests.support.handlers import mark_key
from tests.support.waiting import wait_until


def _wait_for(task_id: str, status: TaskStatus, timeout: float = 15):
    return wait_until(lambda: (t := get_task_status(task_id)) and t.status is status and t,
                      timeout=timeout, message=f"{task_id} to be {status}")


def test_submit_then_status_until_completed(live_worker, redis_client):
    task_id = submit_task("EchoTaskHandler", {"x": [1, 2]}, priority=TaskPriority.HIGH.value, user_id=7)
    task = _wait_for(task_id, TaskStatus.COMPLETED)
    assert task.result == {"echo": {"x": [1, 2]}, "user_id": 7}
    assert (task.task_type, task.priority, task.progress, task.retries) == ("EchoTaskHandler", 1, 100, 0)
    assert task.worker == live_worker.nodename and task.user_id == 7
    assert task.created_at <= task.started_at <= task.finished_at
    assert not redis_client.exists(keys.task_lock_key(task_id))


def test_unknown_id_has_no_status():
    assert get_task_status("never-submitted") is None


def test_pending_record_is_written_at_submit(redis_client):
    task_id = submit_task("EchoTaskHandler", {}, priority=3)  # no worker: it stays queued
    task = get_task_status(task_id)
    assert (task.status, task.priority, task.started_at) == (TaskStatus.PENDING, 3, None)


def test_progress_is_observed_in_order(live_worker):
    task_id = submit_task("StepsTaskHandler", {"pause": 0.3})
    seen = []

    def progress_done():
        task = get_task_status(task_id)
        if task and (not seen or seen[-1] != task.progress) and task.status is TaskStatus.RUNNING:
            seen.append(task.progress)
        return task and task.status is TaskStatus.COMPLETED

    wait_until(progress_done, timeout=15, interval=0.05, message="completion")
    assert len(seen) >= 3 and seen == sorted(seen)
    assert get_task_status(task_id).message == "step 100"


def test_cancelled_pending_task_never_runs_even_on_a_worker_started_later(redis_client, worker_process):
    task_id = submit_task("SleepyTaskHandler", {"seconds": 0})
    assert cancel_task(task_id) is True
    assert get_task_status(task_id).status is TaskStatus.CANCELLED  # at once
    worker_process("late")
    follower = submit_task("EchoTaskHandler", {}, priority=3)  # queued after the cancelled one
    _wait_for(follower, TaskStatus.COMPLETED, timeout=30)
    assert redis_client.get(mark_key(task_id, "starts")) is None
    assert get_task_status(task_id).status is TaskStatus.CANCELLED


def test_cancelled_running_task_ends_cancelled_within_about_a_second(live_worker, redis_client):
    task_id = submit_task("SleepyTaskHandler", {"seconds": 60})
    _wait_for(task_id, TaskStatus.RUNNING)
    wait_until(lambda: redis_client.get(mark_key(task_id, "starts")), message="the handler to start")
    started = time.monotonic()
    assert cancel_task(task_id) is True
    _wait_for(task_id, TaskStatus.CANCELLED, timeout=3)  # the renewal round trip runs every second
    print(f"cancel of a running task took {time.monotonic() - started:.2f} s")
    assert redis_client.get(mark_key(task_id, "cancelled")) == "1"  # the coroutine got CancelledError
    assert not redis_client.exists(keys.task_lock_key(task_id))


def test_cancel_of_finished_or_unknown_task_is_false(live_worker):
    task_id = submit_task("EchoTaskHandler", {})
    _wait_for(task_id, TaskStatus.COMPLETED)
    assert cancel_task(task_id) is False
    assert cancel_task("never-submitted") is False


def test_retry_then_success_counts_the_retries(live_worker):
    task_id = submit_task("FlakyTaskHandler", {"failures": 2}, max_retries=3)
    task = _wait_for(task_id, TaskStatus.COMPLETED, timeout=20)
    assert (task.retries, task.result) == (2, {"attempts": 3})


def test_exhausted_retries_end_failed_with_the_error(live_worker, redis_client):
    task_id = submit_task("FlakyTaskHandler", {"failures": 5}, max_retries=1)
    task = _wait_for(task_id, TaskStatus.FAILED, timeout=20)
    assert "flaky attempt 2" in task.error and task.retries == 1
    assert redis_client.get(mark_key(task_id, "attempts")) == "2"


def test_permanent_error_fails_after_one_attempt(live_worker, redis_client):
    task_id = submit_task("RefusingTaskHandler", {}, max_retries=3)
    task = _wait_for(task_id, TaskStatus.FAILED)
    assert "can never work" in task.error
    assert redis_client.get(mark_key(task_id, "attempts")) == "1"


def test_timeout_ends_timeout_and_the_worker_runs_the_next_task(live_worker):
    task_id = submit_task("SleepyTaskHandler", {"seconds": 30}, timeout=0.5)
    task = _wait_for(task_id, TaskStatus.TIMEOUT)
    assert "timeout" in task.error
    _wait_for(submit_task("EchoTaskHandler", {}), TaskStatus.COMPLETED)


def test_plain_celery_delay_gets_the_same_record(live_worker):
    result = app.tasks["EchoTaskHandler"].delay(y=2)
    task = _wait_for(result.id, TaskStatus.COMPLETED)
    assert task.result == {"echo": {"y": 2}, "user_id": None}


def test_chains_and_groups_get_records_too(live_worker):
    echo = app.tasks["EchoTaskHandler"]
    chained = chain(echo.si(step=1), echo.si(step=2)).apply_async()
    grouped = group(echo.si(member=n) for n in range(3)).apply_async()
    ids = [chained.parent.id, chained.id, *(result.id for result in grouped.results)]
    tasks = [_wait_for(task_id, TaskStatus.COMPLETED) for task_id in ids]
    expected = [{"step": 1}, {"step": 2}, *({"member": n} for n in range(3))]
    assert [task.task_data for task in tasks] == expected
    assert {task.task_type for task in tasks} == {"EchoTaskHandler"}


@pytest.mark.parametrize(("arguments", "error", "field"), [
    (("NoSuchTaskHandler", {}), UnknownTaskTypeError, "task_type"),
    (("EchoTaskHandler", ["not", "a", "dict"]), InvalidTaskDataError, "task_data"),
    (("EchoTaskHandler", {"x": object()}), InvalidTaskDataError, "task_data"),
    (("EchoTaskHandler", {"x": "y" * (1024 * 1024 + 1)}), TaskDataTooLargeError, "task_data"),
    (("EchoTaskHandler", {}, 4), InvalidPriorityError, "priority"),
    (("EchoTaskHandler", {}, "HIGH"), InvalidPriorityError, "priority"),
    (("EchoTaskHandler", {}, 2, 0), InvalidTimeoutError, "timeout"),
    (("EchoTaskHandler", {}, 2, -5), InvalidTimeoutError, "timeout"),
    (("EchoTaskHandler", {}, 2, None, -1), InvalidRetriesError, "max_retries"),
    (("EchoTaskHandler", {}, 2, None, 1.5), InvalidRetriesError, "max_retries"),
    (("EchoTaskHandler", {1: "x"}), InvalidTaskDataError, "task_data"),
    (("EchoTaskHandler", {"x": float("nan")}), InvalidTaskDataError, "task_data"),
])
def test_bad_input_raises_the_named_error_and_writes_nothing(redis_client, arguments, error, field):
    before = redis_client.dbsize()
    with pytest.raises(error) as raised:
        submit_task(*arguments)
    assert raised.value.field == field and field in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert redis_client.dbsize() == before


def test_queue_full_until_a_worker_drains_it(env, redis_client, worker_process):
    env(ASYNC_TASK_QUEUE_SIZE="3")
    for _ in range(3):
        submit_task("EchoTaskHandler", {})
    before = redis_client.dbsize()
    with pytest.raises(QueueFullError, match="3 tasks are already waiting"):
        submit_task("EchoTaskHandler", {})
    assert redis_client.dbsize() == before
    worker_process("drain")
    wait_until(lambda: redis_client.llen("celery:2") == 0, timeout=30, message="the queue to drain")
    assert get_task_status(submit_task("EchoTaskHandler", {})) is not None


def test_any_string_key_is_task_data_even_self(live_worker):
    task = _wait_for(submit_task("EchoTaskHandler", {"self": 1, "task": 2}), TaskStatus.COMPLETED)
    assert task.result["echo"] == {"self": 1, "task": 2}


def test_direct_calls_and_eager_mode_run_the_handler_unguarded(redis_client):
    echo = app.tasks["EchoTaskHandler"]
    assert echo(z=1) == {"echo": {"z": 1}, "user_id": None}
    assert echo.apply(kwargs={"z": 2}).get() == {"echo": {"z": 2}, "user_id": None}
    app.conf.task_always_eager = True
    try:
        result = echo.delay(z=3)
    finally:
        app.conf.task_always_eager = False
    assert result.get() == {"echo": {"z": 3}, "user_id": None}
    assert get_task_status(result.id) is None  # nothing claimed, nothing recorded
    assert redis_client.hgetall(keys.counters_key()) == {}


def test_a_run_that_lost_its_lock_to_another_holder_is_stopped_and_records_nothing(live_worker, redis_client):
    task_id = submit_task("SleepyTaskHandler", {"seconds": 60})
    wait_until(lambda: redis_client.get(mark_key(task_id, "starts")), message="the handler to start")
    running = redis_client.get(keys.record_key(task_id))
    # What a takeover after a long stall looks like to the first holder: a newer fence holds the lock.
    fence = redis_client.hincrby(keys.guard_key(task_id), "fence", 1)
    redis_client.set(keys.task_lock_key(task_id), f"{fence}:another-holder", px=60_000)
    wait_until(lambda: redis_client.get(mark_key(task_id, "cancelled")), timeout=5,
               message="the coroutine to be cancelled")
    assert redis_client.get(keys.record_key(task_id)) == running  # fenced out: nothing recorded
    assert redis_client.get(keys.task_lock_key(task_id)) == f"{fence}:another-holder"
