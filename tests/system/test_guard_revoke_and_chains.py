"""Celery's revoke (Flower's Revoke button) and chains of guarded tasks end in one final record
(issue 12, items 3 and 6).

Real ``celery -A easyrag worker`` subprocesses, or the in-process worker where no process dies.
Each test checks the record, the counters (nothing left pending or running, one final count per
task), the lock, and how often the body ran.
"""

from __future__ import annotations

import os
import signal
import uuid

from celery import chain

from easyrag.celery import app
from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import get_task_status, submit_task
from easyrag.task_app.base_task import GuardedTask
from easyrag.task_app.records import TaskStatus
from tests.support import handlers, tasks
from tests.support.broker import FAST_RECOVERY, status
from tests.support.guard import assert_counters, assert_no_lock, final_record, wait_broker_idle
from tests.support.waiting import wait_until


def _handler_mark(client, task_id: str, what: str) -> str | None:
    return client.get(handlers.mark_key(task_id, what))


def _revoke(worker, task_id: str, **options) -> None:
    """app.control.revoke, waiting for the worker's reply so it holds the revoke when this returns."""
    replies = app.control.revoke(task_id, destination=[worker.nodename], reply=True, timeout=5, **options)
    assert replies, f"{worker.nodename} did not answer the revoke"


# --- revoke ------------------------------------------------------------------------------------------

def test_revoke_of_a_pending_task_while_the_worker_is_busy_ends_cancelled_and_it_never_starts(
        worker_process, redis_client):
    # Default visibility timeout: the unguarded blocker must not be redelivered while it blocks.
    worker = worker_process("a", concurrency=1)
    release, started = (f"easyrag-test:{name}:{uuid.uuid4().hex}" for name in ("release", "started"))
    blocker = tasks.block.delay(release, started)
    wait_until(lambda: redis_client.llen(started), timeout=20, message="the blocker to hold the worker")
    task_id = submit_task("SleepyTaskHandler", {"seconds": 0})
    _revoke(worker, task_id)
    redis_client.rpush(release, "1")
    assert blocker.get(timeout=20) is True
    task = final_record(task_id, timeout=20)
    assert task.status is TaskStatus.CANCELLED, (task.status, task.error)
    wait_broker_idle(redis_client)
    assert _handler_mark(redis_client, task_id, "starts") is None
    assert_counters(redis_client, total=1, cancelled=1)
    assert_no_lock(redis_client, task_id)


def test_revoke_of_a_retrying_task_ends_cancelled_and_no_further_attempt_runs(worker_process, redis_client):
    worker = worker_process("a")
    task_id = submit_task("FlakyTaskHandler", {"failures": 5}, max_retries=3)
    attempts = handlers.mark_key(task_id, "attempts")
    # After the third failure the retry waits 2-4 s: a window wide enough to revoke in.
    wait_until(lambda: redis_client.get(attempts) == "3"
               and status(redis_client, task_id) is TaskStatus.RETRYING,
               timeout=30, interval=0.02, message="the task to be RETRYING after its third attempt")
    _revoke(worker, task_id)
    assert redis_client.get(attempts) == "3"  # revoked while RETRYING: the fourth attempt had not begun
    task = final_record(task_id, timeout=20)
    assert task.status is TaskStatus.CANCELLED, (task.status, task.error)
    wait_broker_idle(redis_client)
    assert redis_client.get(attempts) == "3"
    assert_counters(redis_client, total=1, cancelled=1)
    assert_no_lock(redis_client, task_id)


def test_revoke_with_terminate_of_a_running_task_ends_cancelled_within_seconds(worker_process, redis_client):
    worker = worker_process("a", env=FAST_RECOVERY)
    task_id = app.tasks["SleepyTaskHandler"].apply_async(kwargs={"seconds": 60}).id
    wait_until(lambda: _handler_mark(redis_client, task_id, "starts") == "1", timeout=20,
               message="the handler to start")
    _revoke(worker, task_id, terminate=True)  # SIGTERM to the pool process running it
    task = final_record(task_id, timeout=6)
    assert task.status is TaskStatus.CANCELLED, (task.status, task.error)
    assert_no_lock(redis_client, task_id, timeout=3)
    wait_broker_idle(redis_client)
    assert _handler_mark(redis_client, task_id, "starts") == "1"
    assert get_task_status(task_id).status is TaskStatus.CANCELLED
    assert_counters(redis_client, total=1, cancelled=1)
    assert worker.alive


def test_revoked_copy_of_a_task_whose_pool_process_just_died_still_ends_cancelled(worker_process,
                                                                                     redis_client):
    """The revoke cannot stop the run; the process dies; its requeued copy meets the revoke while
    the dead holder's lock still lives, so the cancel can only be asked, and that copy was the
    last one: the worker checks again once the lock has expired."""
    worker = worker_process("a", env=FAST_RECOVERY)
    task_id = app.tasks["SleepyTaskHandler"].apply_async(kwargs={"seconds": 60}).id
    wait_until(lambda: _handler_mark(redis_client, task_id, "starts") == "1", timeout=20,
               message="the handler to start")
    _revoke(worker, task_id)  # a run already going is not stopped by a revoke (as in Celery)
    owner = redis_client.hget(keys.guard_key(task_id), "owner")  # "<node>:<pid>:<token>"
    os.kill(int(owner.split(":")[1]), signal.SIGKILL)  # the pool process; the worker requeues its task
    task = final_record(task_id, timeout=15)
    assert task.status is TaskStatus.CANCELLED, (task.status, task.error)
    assert_no_lock(redis_client, task_id)
    wait_broker_idle(redis_client)
    assert _handler_mark(redis_client, task_id, "starts") == "1"
    assert_counters(redis_client, total=1, cancelled=1)


def test_task_no_worker_knows_ends_failed_saying_so(worker_process, redis_client):
    worker_process("a", env=FAST_RECOVERY)  # imports the project's task modules, not this test module
    task_id = only_in_this_process.delay().id
    task = final_record(task_id, timeout=20)
    assert task.status is TaskStatus.FAILED
    assert "has no task named 'tests.only_in_this_process'" in task.error
    wait_broker_idle(redis_client)
    assert_counters(redis_client, total=1, failed=1)


@app.task(name="tests.only_in_this_process", base=GuardedTask)
def only_in_this_process() -> None:
    """A guarded task that no worker subprocess imports."""


# --- chains ------------------------------------------------------------------------------------------

def test_chain_of_handler_tasks_gives_the_next_handler_the_previous_result(live_worker, redis_client):
    echo = app.tasks["EchoTaskHandler"]
    result = chain(echo.s(a=1), echo.s(b=2)).apply_async()
    first_id, second_id = result.parent.id, result.id
    second = final_record(second_id, timeout=20)
    first = get_task_status(first_id)
    assert (first.status, first.result) == (TaskStatus.COMPLETED, {"echo": {"a": 1}, "user_id": None})
    assert second.status is TaskStatus.COMPLETED, (second.status, second.error)
    assert second.task_data == {"b": 2, "previous_result": first.result}
    assert second.result == {"echo": {"b": 2, "previous_result": first.result}, "user_id": None}
    assert result.get(timeout=10) == second.result
    assert_counters(redis_client, total=2, completed=2)
    assert_no_lock(redis_client, first_id, second_id)


def test_chain_link_runs_once_when_the_worker_dies_between_finishing_a_link_and_publishing_the_next(
        worker_process, redis_client):
    """The pool process SIGKILLs itself as it publishes the second link, after the first link's FINISH;
    the first link's message is requeued (task_reject_on_worker_lost) and meets a COMPLETED task."""
    worker = worker_process("a", env=FAST_RECOVERY)
    kill_key = f"easyrag-test:kill-publisher:{uuid.uuid4().hex}"
    result = chain(tasks.traced.si(seconds=0),
                   tasks.traced_step.si(seconds=0, kill_publisher_once=kill_key)).apply_async()
    first_id, second_id = result.parent.id, result.id
    wait_until(lambda: redis_client.exists(kill_key), timeout=20,
               message="the pool process to die publishing the second link")
    assert status(redis_client, first_id) is TaskStatus.COMPLETED  # it died after the first's FINISH
    second = final_record(second_id, timeout=40)
    assert second.status is TaskStatus.COMPLETED, (second.status, second.error)
    wait_broker_idle(redis_client)
    assert tasks.traces(first_id) == {"starts": 1, "ends": 1, "overlaps": 0}
    assert tasks.traces(second_id) == {"starts": 1, "ends": 1, "overlaps": 0}
    assert_counters(redis_client, total=2, completed=2)
    assert_no_lock(redis_client, first_id, second_id)
    assert worker.alive
