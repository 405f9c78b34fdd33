"""Celery's result API reads a guarded task's record (spec 8), on a real in-process worker."""

from __future__ import annotations

import threading

import pytest
from celery import chord, group, states
from celery.exceptions import TaskRevokedError

from easyrag.celery import app
from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import TaskStatus, cancel_task, get_task_status, submit_task
from easyrag.task_app.exceptions import TaskFailedError, TaskTimeoutError
from tests.support.waiting import wait_until


def _keys_naming(client, task_id: str) -> set[str]:
    return {key for key in client.scan_iter(f"*{task_id}*")}


def test_success_returns_the_handlers_result_and_leaves_only_the_record_and_the_guard(
        live_worker, redis_client):
    result = app.tasks["EchoTaskHandler"].delay(word="hi")
    assert result.get(timeout=15) == {"echo": {"word": "hi"}, "user_id": None}
    assert (result.state, result.ready(), result.successful(), result.failed()) == (
        states.SUCCESS, True, True, False)
    assert app.AsyncResult(result.id).result == {"echo": {"word": "hi"}, "user_id": None}
    assert _keys_naming(redis_client, result.id) == {keys.record_key(result.id)}  # no celery-task-meta


def test_failure_raises_with_the_records_error(live_worker):
    result = app.tasks["RefusingTaskHandler"].delay()
    with pytest.raises(TaskFailedError, match="this input can never work"):
        result.get(timeout=15)
    assert (result.state, result.failed(), result.ready()) == (states.FAILURE, True, True)
    assert get_task_status(result.id).status is TaskStatus.FAILED


def test_timeout_is_a_failure_raising_the_timeout(live_worker):
    task_id = submit_task("SleepyTaskHandler", {"seconds": 30}, timeout=0.5)
    with pytest.raises(TaskTimeoutError):
        app.AsyncResult(task_id).get(timeout=15)
    assert app.AsyncResult(task_id).state == states.FAILURE


def test_pending_without_a_worker_then_revoked_after_cancel(redis_client):
    task_id = submit_task("EchoTaskHandler", {})
    result = app.AsyncResult(task_id)
    assert (result.state, result.ready(), result.result) == (states.PENDING, False, None)
    assert cancel_task(task_id) is True
    result = app.AsyncResult(task_id)
    assert (result.state, result.ready(), result.failed()) == (states.REVOKED, True, False)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=5)


def test_started_with_progress_as_info_while_running(live_worker):
    result = app.tasks["StepsTaskHandler"].delay(pause=0.4)
    info = wait_until(lambda: (r := app.AsyncResult(result.id)).state == states.STARTED
                      and r.info["progress"] >= 20 and r.info, timeout=15, message="progress as info")
    assert info["message"].startswith("step ")
    assert result.get(timeout=15) == {"steps": 6}


def test_get_wakes_through_pub_sub_without_polling(live_worker, redis_client):
    """While .get() waits, the record is read once (before waiting), never polled."""
    result = app.tasks["SleepyTaskHandler"].delay(seconds=1.5)
    reads: list[str] = []
    published, monitor_ready = threading.Event(), threading.Event()

    def watch() -> None:
        with redis_client.monitor() as monitor:
            monitor_ready.set()
            for command in monitor.listen():
                if result.id in command["command"] and command["command"].startswith("MGET"):
                    reads.append(command["command"])
                if command["command"].startswith("PUBLISH") and result.id in command["command"]:
                    published.set()
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    monitor_ready.wait(5)
    assert result.get(timeout=15) == {"slept": 1.5}
    watcher.join(timeout=5)
    assert published.is_set()  # the finishing step published the record on the result channel
    assert len(reads) == 1, reads  # the one read before waiting; polling every 0.5 s would make 3+


def test_a_cancel_while_waiting_wakes_get(live_worker):
    result = app.tasks["SleepyTaskHandler"].delay(seconds=30)
    wait_until(lambda: app.AsyncResult(result.id).state == states.STARTED, timeout=15, message="started")
    threading.Timer(0.3, cancel_task, args=(result.id,)).start()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=15)


def test_group_and_chord_of_guarded_tasks(live_worker):
    echo = app.tasks["EchoTaskHandler"]
    results = group(echo.s(n=n) for n in range(3)).apply_async().get(timeout=20)
    assert [r["echo"]["n"] for r in results] == [0, 1, 2]
    total = chord((echo.s(n=n) for n in range(3)), app.tasks["tests.count_echoes"].s()).apply_async()
    assert total.get(timeout=20) == 3


def test_a_plain_celery_task_keeps_celerys_own_result(live_worker, redis_client):
    result = app.tasks["tests.add"].delay(2, 3)
    assert result.get(timeout=15) == 5
    assert redis_client.exists(app.backend.get_key_for_task(result.id).decode())
    assert get_task_status(result.id) is None


def test_a_finished_task_costs_redis_about_its_records_size(live_worker, redis_client):
    """used_memory over 1,000 finished tasks: at most 1.2 x the mean record + 100 bytes each (the
    record is the task's one key; a bare SET of the same size costs about 1.2 x + 60 here)."""
    echo, count = app.tasks["EchoTaskHandler"], 1000
    padding = "x" * 225  # the echo doubles it: records of about 870 bytes, as the issue measured
    wait_until(lambda: echo.delay(warm=1).get(timeout=15), timeout=20, message="a warm worker")
    before = redis_client.info("memory")["used_memory"]
    results = [echo.delay(pad=padding) for _ in range(count)]
    for result in results:
        result.get(timeout=60)
    wait_until(lambda: redis_client.hlen("unacked") == 0, timeout=10, message="every ack")
    per_task = (redis_client.info("memory")["used_memory"] - before) / count
    sizes = [redis_client.strlen(keys.record_key(result.id)) for result in results]
    mean_record = sum(sizes) / count
    print(f"{per_task:.0f} bytes of Redis memory per finished task, for a {mean_record:.0f}-byte record")
    assert 800 <= mean_record <= 950
    assert per_task <= 1.2 * mean_record + 100
