"""Every way Celery ends, drops or interrupts a guarded task ends in one final record (issue 12).

Real ``celery -A easyrag worker`` subprocesses (prefork) with a 4 s visibility timeout and a 2 s lock
TTL: hard and soft time limits, ``expires``, a cancel of a task whose worker is dead, and a warm
shutdown, which releases a running task instead of counting a crash.  Each test checks the record,
the counters (nothing left pending or running, one final count per task), the lock, and how often
the body ran.  Revoke and chains: test_guard_revoke_and_chains.py.
"""

from __future__ import annotations

import re
import signal
import time
from datetime import UTC, datetime, timedelta

from easyrag.celery import app
from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import cancel_task, get_task_status, submit_task
from easyrag.task_app.records import TaskStatus
from tests.support import handlers, tasks
from tests.support.broker import FAST_RECOVERY, record
from tests.support.guard import assert_counters, assert_no_lock, final_record, wait_broker_idle
from tests.support.waiting import wait_until

#: A warm shutdown lets running tasks finish for 1 s, then releases them (issue 12, item 7).
SHUTDOWN_GRACE = {**FAST_RECOVERY, "ASYNC_TASK_SHUTDOWN_GRACE": "1"}


def _handler_mark(client, task_id: str, what: str) -> str | None:
    return client.get(handlers.mark_key(task_id, what))


def _wait_for_clock_past(moment: datetime) -> None:
    wait_until(lambda: datetime.now(UTC) > moment, timeout=30, message=f"the clock to pass {moment}")


# --- time limits ------------------------------------------------------------------------------------

def test_hard_time_limit_ends_timeout_and_the_task_is_not_run_again(worker_process, redis_client):
    worker_process("a", env=FAST_RECOVERY)
    result = tasks.traced.apply_async(kwargs={"seconds": 30}, time_limit=2)  # the pool kills the child
    task = final_record(result.id, timeout=20)
    assert task.status is TaskStatus.TIMEOUT, (task.status, task.error)
    assert re.search(r"time[ _]?limit", task.error or "", re.IGNORECASE), task.error
    wait_broker_idle(redis_client)
    assert tasks.traces(result.id) == {"starts": 1, "ends": 0, "overlaps": 0}
    assert get_task_status(result.id).status is TaskStatus.TIMEOUT
    assert_counters(redis_client, total=1, timeout=1)
    assert_no_lock(redis_client, result.id)


def test_soft_time_limit_ends_timeout_cancels_the_coroutine_and_the_worker_runs_the_next_task(
        worker_process, redis_client):
    worker = worker_process("a", concurrency=1, env=FAST_RECOVERY)
    sleepy = app.tasks["SleepyTaskHandler"].apply_async(kwargs={"seconds": 30}, soft_time_limit=1)
    task = final_record(sleepy.id, timeout=40)
    assert task.status is TaskStatus.TIMEOUT, (task.status, task.error)  # not FAILED, not retried
    wait_until(lambda: _handler_mark(redis_client, sleepy.id, "cancelled") == "1", timeout=5,
               message="the handler coroutine to get CancelledError")
    # The same pool process (concurrency 1), on its reused event loop, runs the next task normally.
    follower = submit_task("EchoTaskHandler", {"after": "soft time limit"})
    done = final_record(follower, timeout=20)
    assert (done.status, done.worker) == (TaskStatus.COMPLETED, worker.nodename)
    assert done.result == {"echo": {"after": "soft time limit"}, "user_id": None}
    wait_broker_idle(redis_client)
    assert _handler_mark(redis_client, sleepy.id, "starts") == "1"
    assert_counters(redis_client, total=2, timeout=1, completed=1)
    assert_no_lock(redis_client, sleepy.id, follower)


# --- expires -----------------------------------------------------------------------------------------

def test_task_expired_before_a_worker_took_it_ends_cancelled_and_never_starts(worker_process, redis_client):
    expires_at = datetime.now(UTC) + timedelta(seconds=1)
    sleepy = app.tasks["SleepyTaskHandler"].apply_async(kwargs={"seconds": 0}, expires=expires_at)
    _wait_for_clock_past(expires_at + timedelta(seconds=1))  # no worker yet: it expires in the queue
    worker_process("late", env=FAST_RECOVERY)
    task = final_record(sleepy.id, timeout=20)
    assert task.status is TaskStatus.CANCELLED, (task.status, task.error)
    assert "expired" in f"{task.message} {task.error}".lower(), (task.message, task.error)
    wait_broker_idle(redis_client)
    assert _handler_mark(redis_client, sleepy.id, "starts") is None
    assert_counters(redis_client, total=1, cancelled=1)
    assert_no_lock(redis_client, sleepy.id)


def test_task_started_before_its_expiry_runs_again_elsewhere_when_its_worker_dies_after_it(
        worker_process, redis_client):
    """The redelivered copy still carries ``expires``: it must run, not be dropped as expired."""
    workers = {w.nodename: w for w in (worker_process("a", env=FAST_RECOVERY),
                                       worker_process("b", env=FAST_RECOVERY))}
    expires_at = datetime.now(UTC) + timedelta(seconds=4)
    result = tasks.traced.apply_async(kwargs={"seconds": 8}, expires=expires_at)
    wait_until(lambda: tasks.traces(result.id)["starts"] == 1, timeout=4, interval=0.02,
               message="the first start, before the expiry")
    holder = workers[record(redis_client, result.id).worker]
    _wait_for_clock_past(expires_at + timedelta(seconds=1))
    assert tasks.traces(result.id)["ends"] == 0  # still running: 8 s of work, killed after ~5 s
    holder.kill()
    task = final_record(result.id, timeout=40)
    assert task.status is TaskStatus.COMPLETED, (task.status, task.error)
    assert task.worker != holder.nodename
    wait_broker_idle(redis_client)
    assert tasks.traces(result.id) == {"starts": 2, "ends": 1, "overlaps": 0}
    assert_counters(redis_client, total=1, completed=1)
    assert_no_lock(redis_client, result.id)


# --- cancel of a task whose worker is dead --------------------------------------------------------------

def test_cancel_of_a_running_task_whose_worker_died_ends_cancelled_at_once_and_it_never_runs_again(
        worker_process, redis_client):
    worker = worker_process("a", env=FAST_RECOVERY)
    task_id = submit_task("SleepyTaskHandler", {"seconds": 60})
    wait_until(lambda: _handler_mark(redis_client, task_id, "starts") == "1", timeout=20,
               message="the handler to start")
    worker.kill()
    wait_until(lambda: not redis_client.exists(keys.task_lock_key(task_id)), timeout=10,
               message="the dead holder's lock to expire")
    assert get_task_status(task_id).status is TaskStatus.RUNNING  # nobody has taken it over yet
    assert cancel_task(task_id) is True
    task = get_task_status(task_id)  # at once: no live holder will ever record it
    assert task.status is TaskStatus.CANCELLED, task.status
    assert_counters(redis_client, total=1, cancelled=1)
    # The dead worker's message comes back after the visibility timeout: it must not run again.
    worker_process("b", env=FAST_RECOVERY)
    wait_broker_idle(redis_client, timeout=40)
    assert _handler_mark(redis_client, task_id, "starts") == "1"
    assert get_task_status(task_id).status is TaskStatus.CANCELLED
    assert_counters(redis_client, total=1, cancelled=1)
    assert_no_lock(redis_client, task_id)


# --- a warm shutdown is not a crash ------------------------------------------------------------------------

def test_warm_shutdown_releases_a_running_task_without_counting_a_crash(worker_process, redis_client):
    """Three rollouts each stop the worker mid-task; the fourth worker completes it (no FAILED)."""
    task_id = submit_task("SleepyTaskHandler", {"seconds": 8})
    guard = keys.guard_key(task_id)
    for rollout in (1, 2, 3):
        worker = worker_process(f"rollout{rollout}", env=SHUTDOWN_GRACE)
        wait_until(lambda n=rollout: _handler_mark(redis_client, task_id, "starts") == str(n),
                   timeout=40, message=f"rollout {rollout}: the handler to start")
        stopping = time.monotonic()
        returncode = worker.stop(timeout=20)  # SIGTERM; SIGKILL if it overstays
        took = time.monotonic() - stopping
        assert returncode != -signal.SIGKILL and took < 12, (
            f"rollout {rollout}: the worker did not exit by itself ({took:.1f} s):\n{worker.log_tail()}")
        task = get_task_status(task_id)
        assert task.status is TaskStatus.PENDING, f"rollout {rollout}: {task.status} {task.error}"
        assert redis_client.hget(guard, "crashes") in (None, "0"), f"rollout {rollout}"
        assert_counters(redis_client, total=1, pending=1)
    worker_process("final", env=SHUTDOWN_GRACE)
    task = final_record(task_id, timeout=60)
    assert task.status is TaskStatus.COMPLETED, (task.status, task.error)
    assert redis_client.hget(keys.counters_key(), "crashes") is None  # no crash was ever counted
    wait_broker_idle(redis_client)
    assert _handler_mark(redis_client, task_id, "starts") == "4"
    assert_counters(redis_client, total=1, completed=1)
    assert_no_lock(redis_client, task_id)
