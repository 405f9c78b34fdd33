"""DistributedLock against the real Redis: one holder, token-checked release and extend."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from easyrag.task_app.exceptions import LockError
from easyrag.task_app.lock import DistributedLock
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys
from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app.lock import DistributedLock
lock = DistributedLock(get_redis_instance(), sys.argv[1], timeout=30)
assert lock.acquire(timeout=0)
print("held", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""


def test_only_one_of_two_processes_holds_the_lock_and_the_other_gets_it_after_release(redis_client):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, "shared"], cwd=ROOT, env=os.environ,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        child_token = redis_client.get("lock:async_task:shared")
        mine = DistributedLock(redis_client, "shared", timeout=30)
        assert mine.acquire(timeout=0) is False
        assert redis_client.get("lock:async_task:shared") == child_token
        child.stdin.write("release\n")
        child.stdin.flush()
        assert mine.acquire(timeout=10) is True
        assert redis_client.get("lock:async_task:shared") not in (None, child_token)
        assert child.stdout.readline().strip() == "released"
        mine.release()
    finally:
        child.kill()
        child.wait(timeout=10)


def test_blocking_acquire_waits_and_succeeds_when_the_holder_releases(redis_client):
    holder = DistributedLock(redis_client, "wait", timeout=30)
    waiter = DistributedLock(redis_client, "wait", timeout=30)
    assert holder.acquire(timeout=0)
    waiting, outcome = threading.Event(), []

    def wait_for_lock():
        waiting.set()
        outcome.append(waiter.acquire(timeout=10))

    thread = threading.Thread(target=wait_for_lock)
    thread.start()
    wait_until(waiting.is_set, message="the waiter to start waiting")
    assert not outcome  # still waiting while held
    holder.release()
    thread.join(timeout=10)
    assert outcome == [True]
    assert waiter.owned()
    waiter.release()


def test_release_by_a_non_holder_raises_and_keeps_the_holders_lock(redis_client):
    holder = DistributedLock(redis_client, "mine", timeout=30)
    assert holder.acquire(timeout=0)
    token = redis_client.get("lock:async_task:mine")
    with pytest.raises(LockError, match="lock:async_task:mine"):
        DistributedLock(redis_client, "mine", timeout=30).release()
    assert redis_client.get("lock:async_task:mine") == token


def test_release_by_expired_holder_keeps_new_holders_lock(redis_client):
    old = DistributedLock(redis_client, "lapse", timeout=0.2)
    assert old.acquire(timeout=0)
    wait_until(lambda: not redis_client.exists("lock:async_task:lapse"), message="the lock to expire")
    new = DistributedLock(redis_client, "lapse", timeout=30)
    assert new.acquire(timeout=0)
    new_token = redis_client.get("lock:async_task:lapse")
    with pytest.raises(LockError):
        old.release()
    assert redis_client.get("lock:async_task:lapse") == new_token


def test_extend_resets_the_ttl_for_the_holder_only(redis_client):
    holder = DistributedLock(redis_client, "ttl", timeout=10)
    assert holder.acquire(timeout=0)
    holder.extend()
    holder.extend()
    assert 9000 < redis_client.pttl("lock:async_task:ttl") <= 10000  # reset, never added up
    other = DistributedLock(redis_client, "ttl", timeout=100)
    with pytest.raises(LockError):
        other.extend()
    assert redis_client.pttl("lock:async_task:ttl") <= 10000


def test_zero_timeout_tries_once(redis_client):
    assert DistributedLock(redis_client, "once", timeout=30).acquire(timeout=0)
    started = time.monotonic()
    assert DistributedLock(redis_client, "once", timeout=30).acquire(timeout=0) is False
    assert time.monotonic() - started < 0.5


def test_context_manager_releases_on_exception_and_bounds_its_wait(redis_client):
    lock = DistributedLock(redis_client, "ctx", timeout=30)
    with pytest.raises(RuntimeError), lock:
        assert redis_client.exists("lock:async_task:ctx")
        raise RuntimeError("boom")
    assert not redis_client.exists("lock:async_task:ctx")
    assert lock.acquire(timeout=0)
    with pytest.raises(LockError, match=r"within 0\.2 s"), \
            DistributedLock(redis_client, "ctx", timeout=30, blocking_timeout=0.2):
        pass
    assert lock.owned()


def test_each_holder_gets_its_own_token_on_the_documented_key(redis_client):
    tokens = []
    for _ in range(2):
        lock = DistributedLock(redis_client, "task:abc", timeout=30)
        with lock:
            tokens.append(redis_client.get("lock:async_task:task:abc"))
    assert None not in tokens and tokens[0] != tokens[1]
