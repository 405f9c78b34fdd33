"""DistributedLock against the real Redis: one holder at a time, token-checked release and extend."""

from __future__ import annotations

import os
import queue
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
#: A holder in another process: acquire, say "held", wait for a line on stdin, release, say "released".
HOLDER = """
import sys
from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app.lock import DistributedLock
lock = DistributedLock(get_redis_instance(), sys.argv[1], timeout=30)
assert lock.acquire(timeout=0), "the child could not take the lock"
print("held", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""


def key(name):
    return f"lock:async_task:{name}"


def _line_reader(stream):
    """Lines of ``stream`` on a queue (None at EOF), so the test never blocks on a silent child."""
    lines = queue.Queue()

    def pump():
        for line in stream:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_lock_held_by_another_process_is_refused_then_acquired_once_it_releases(redis_client):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, "shared"], cwd=ROOT, env=os.environ,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        lines = _line_reader(child.stdout)
        assert lines.get(timeout=20) == "held"
        child_token = redis_client.get(key("shared"))
        assert child_token
        mine = DistributedLock(redis_client, "shared", timeout=30)
        assert mine.acquire(timeout=0) is False
        assert redis_client.get(key("shared")) == child_token
        assert mine.locked() and not mine.owned()

        child.stdin.write("release\n")
        child.stdin.flush()
        assert mine.acquire(timeout=10) is True
        assert mine.owned()
        assert redis_client.get(key("shared")) not in (None, child_token)
        assert lines.get(timeout=10) == "released"
        assert child.wait(timeout=10) == 0
        mine.release()
        assert not redis_client.exists(key("shared"))
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
        child.stdin.close()
        child.stdout.close()


def test_blocking_acquire_waits_and_succeeds_when_the_holder_releases(redis_client):
    holder = DistributedLock(redis_client, "wait", timeout=30)
    waiter = DistributedLock(redis_client, "wait", timeout=30)
    assert holder.acquire(timeout=0)
    holder_token = redis_client.get(key("wait"))
    waiting, outcome = threading.Event(), []

    def wait_for_lock():
        waiting.set()
        outcome.append(waiter.acquire(timeout=10))

    thread = threading.Thread(target=wait_for_lock, daemon=True)
    thread.start()
    try:
        wait_until(waiting.is_set, timeout=5, message="the waiter to start waiting")
        assert not outcome  # still waiting: the lock is held
        assert redis_client.get(key("wait")) == holder_token
        holder.release()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert outcome == [True]
        assert waiter.owned()
        assert redis_client.get(key("wait")) not in (None, holder_token)
    finally:
        thread.join(timeout=10)
    waiter.release()
    assert not redis_client.exists(key("wait"))


def test_release_by_non_holder_raises_and_keeps_holders_key_and_value(redis_client):
    holder = DistributedLock(redis_client, "mine", timeout=30)
    assert holder.acquire(timeout=0)
    token = redis_client.get(key("mine"))
    stranger = DistributedLock(redis_client, "mine", timeout=30)
    with pytest.raises(LockError, match="lock:async_task:mine"):
        stranger.release()
    assert redis_client.get(key("mine")) == token
    assert 29_000 < redis_client.pttl(key("mine")) <= 30_000
    assert holder.owned()


def test_release_by_expired_holder_keeps_new_holders_lock(redis_client):
    old = DistributedLock(redis_client, "lapse", timeout=0.2)
    assert old.acquire(timeout=0)
    wait_until(lambda: not redis_client.exists(key("lapse")), timeout=5, message="the lock to expire")
    new = DistributedLock(redis_client, "lapse", timeout=30)
    assert new.acquire(timeout=0)
    new_token = redis_client.get(key("lapse"))
    with pytest.raises(LockError):
        old.release()
    assert redis_client.get(key("lapse")) == new_token
    assert 29_000 < redis_client.pttl(key("lapse")) <= 30_000
    assert new.owned() and not old.owned()


def test_extend_by_holder_resets_ttl_to_timeout_instead_of_adding(redis_client):
    holder = DistributedLock(redis_client, "ttl", timeout=10)
    assert holder.acquire(timeout=0)
    token = redis_client.get(key("ttl"))
    holder.extend()
    holder.extend()
    assert 9_000 < redis_client.pttl(key("ttl")) <= 10_000  # adding would give ~30 s
    assert redis_client.get(key("ttl")) == token


def test_extend_by_holder_renews_a_short_ttl_back_to_timeout(redis_client):
    holder = DistributedLock(redis_client, "renew", timeout=1)
    assert holder.acquire(timeout=0)
    wait_until(lambda: redis_client.pttl(key("renew")) < 800, timeout=5, message="the TTL to run down")
    holder.extend()
    assert 800 < redis_client.pttl(key("renew")) <= 1_000  # was < 800; adding would exceed 1 s


def test_extend_by_never_acquired_non_holder_raises_and_leaves_ttl(redis_client):
    holder = DistributedLock(redis_client, "ttl", timeout=10)
    assert holder.acquire(timeout=0)
    token = redis_client.get(key("ttl"))
    before = redis_client.pttl(key("ttl"))
    with pytest.raises(LockError):
        DistributedLock(redis_client, "ttl", timeout=100).extend()
    assert 0 < redis_client.pttl(key("ttl")) <= before  # not pushed to 100 s
    assert redis_client.get(key("ttl")) == token


def test_extend_by_expired_holder_raises_and_leaves_new_holders_ttl(redis_client):
    old = DistributedLock(redis_client, "taken", timeout=0.2)
    assert old.acquire(timeout=0)
    wait_until(lambda: not redis_client.exists(key("taken")), timeout=5, message="the lock to expire")
    new = DistributedLock(redis_client, "taken", timeout=10)
    assert new.acquire(timeout=0)
    new_token = redis_client.get(key("taken"))
    with pytest.raises(LockError):
        old.extend()
    assert 9_000 < redis_client.pttl(key("taken")) <= 10_000  # not cut to the old holder's 0.2 s
    assert redis_client.get(key("taken")) == new_token


def test_acquire_with_zero_timeout_tries_once_and_returns_false_at_once_when_held(redis_client):
    holder = DistributedLock(redis_client, "once", timeout=30)
    assert holder.acquire(timeout=0)
    token = redis_client.get(key("once"))
    other = DistributedLock(redis_client, "once", timeout=30)
    started = time.monotonic()
    assert other.acquire(timeout=0) is False
    assert time.monotonic() - started < 0.5
    assert redis_client.get(key("once")) == token
    assert not other.owned() and other.locked()


def test_context_manager_releases_on_exception_and_lets_it_propagate(redis_client):
    lock = DistributedLock(redis_client, "ctx", timeout=30)
    with pytest.raises(RuntimeError, match="boom"), lock:
        assert redis_client.exists(key("ctx")) and lock.owned()
        raise RuntimeError("boom")
    assert not redis_client.exists(key("ctx"))
    assert not lock.locked()


def test_context_manager_raises_lock_error_after_blocking_timeout_when_held(redis_client):
    holder = DistributedLock(redis_client, "ctx", timeout=30)
    assert holder.acquire(timeout=0)
    token = redis_client.get(key("ctx"))
    entered = []
    started = time.monotonic()
    with pytest.raises(LockError, match=r"within 0\.2 s"), \
            DistributedLock(redis_client, "ctx", timeout=30, blocking_timeout=0.2):
        entered.append(True)
    assert not entered
    assert 0.15 < time.monotonic() - started < 2
    assert redis_client.get(key("ctx")) == token
    assert holder.owned()


def test_lock_lives_on_lock_async_task_key_with_a_new_token_per_holder(redis_client):
    tokens = []
    for _ in range(2):
        lock = DistributedLock(redis_client, "task:abc", timeout=30)
        assert lock.key == "lock:async_task:task:abc"
        with lock:
            assert redis_client.keys("lock:*") == ["lock:async_task:task:abc"]
            tokens.append(redis_client.get("lock:async_task:task:abc"))
        assert not redis_client.exists("lock:async_task:task:abc")
    assert None not in tokens and tokens[0] != tokens[1]
