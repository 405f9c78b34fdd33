"""The guard's steps hold when Redis's reply to one of them is lost and redis-py re-sends it.

redis-py retries a command on a connection error, so a Lua step whose reply was lost runs twice;
each step must answer the second time as it did the first (STYLE 7).  And a step that cannot reach
Redis for longer than the client's retries must still end the task in a final state.  The workers
reach Redis through a RedisProxy that drops the reply (or the request) of one script's EVALSHA; the
test process publishes and reads directly.  Script SHAs come from ``scripts`` at test time.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import pytest
from celery import chain

from easyrag.celery import app
from easyrag.task_app import keys, scripts
from easyrag.task_app.async_task_framework import cancel_task, get_task_status, submit_task
from easyrag.task_app.records import TaskStatus
from easyrag.task_app.task_handlers import ensure_handlers_loaded
from tests.support import tasks
from tests.support.broker import FAST_RECOVERY, record
from tests.support.redis_proxy import RedisProxy, evalsha_of
from tests.support.waiting import wait_until


@pytest.fixture
def proxy(redis_test_url: str) -> Iterator[RedisProxy]:
    """A RedisProxy in front of the test database."""
    with RedisProxy(redis_test_url) as running:
        yield running


def _worker_env(proxy: RedisProxy, **extra: str) -> dict[str, str]:
    return {**FAST_RECOVERY, "REDIS_URL": proxy.url, **extra}


@contextlib.contextmanager
def _diagnosed(client, task_ids: list[str], proxy: RedisProxy, workers=()) -> Iterator[None]:
    """On a failed assertion, add what Redis, the proxy and the workers saw."""
    try:
        yield
    except AssertionError as failure:
        lines = [str(failure), f"counters: {client.hgetall(keys.counters_key())}",
                 f"proxy drops: {_drops(proxy)}"]
        for task_id in task_ids:
            lines.append(f"{task_id}: record={client.get(keys.record_key(task_id))} "
                         f"guard={client.hgetall(keys.guard_key(task_id))} "
                         f"lock={client.get(keys.task_lock_key(task_id))} "
                         f"traces={tasks.traces(task_id, client)}")
        for worker in workers:
            lines.append(f"--- {worker.nodename} (alive={worker.alive})\n{worker.log_tail(60)}")
        raise AssertionError("\n".join(lines)) from None


def _drops(proxy: RedisProxy) -> str:
    """What the proxy dropped, e.g. ``2 x reply EVALSHA f4efe7dc (reply b':1')``."""
    seen = Counter((drop.kind, *(arg.decode(errors="replace")[:8] for arg in (*drop.args, b"", b"")[:2]),
                    drop.reply[:40]) for drop in proxy.drops)
    return ", ".join(f"{count} x {kind} {name} {arg}" + (f" (reply {reply!r})" if reply else "")
                     for (kind, name, arg, reply), count in seen.items()) or "nothing"


def _final(client, task_id: str):
    """The task's record once its status is final, else None."""
    found = record(client, task_id)
    return found if found and found.status.is_final else None


@pytest.mark.parametrize("max_crashes", ["3", "1"])
def test_claim_whose_reply_was_lost_is_not_counted_as_a_crash(worker_process, redis_client, proxy,
                                                               max_crashes):
    worker = worker_process("a", env=_worker_env(proxy, ASYNC_TASK_MAX_CRASHES=max_crashes))
    rule = proxy.drop_reply(evalsha_of(scripts.CLAIM))
    task_id = tasks.traced.apply_async(kwargs={"seconds": 0.2}).id
    with _diagnosed(redis_client, [task_id], proxy, [worker]):
        wait_until(lambda: rule.dropped == 1, timeout=30, message="the claim's reply to be dropped")
        final = wait_until(lambda: _final(redis_client, task_id), timeout=30,
                           message="a final state")
        crashes = redis_client.hget(keys.counters_key(), "crashes")
        assert (final.status, final.retries, crashes) == (TaskStatus.COMPLETED, 0, None)
        assert tasks.traces(task_id) == {"starts": 1, "ends": 1, "overlaps": 0}


def test_finish_whose_reply_was_lost_still_publishes_the_next_link_of_a_chain(worker_process, redis_client,
                                                                              proxy):
    worker = worker_process("a", env=_worker_env(proxy))
    rule = proxy.drop_reply(evalsha_of(scripts.FINISH))
    ensure_handlers_loaded()  # registers EchoTaskHandler in this process too
    echo = app.tasks["EchoTaskHandler"]
    second = chain(echo.si(step=1), echo.si(step=2)).apply_async()
    first_id, second_id = second.parent.id, second.id
    with _diagnosed(redis_client, [first_id, second_id], proxy, [worker]):
        wait_until(lambda: rule.dropped == 1, timeout=30, message="the first finish's reply to be dropped")
        wait_until(lambda: _final(redis_client, first_id), timeout=30, message="the first link to end")
        wait_until(lambda: _final(redis_client, second_id), timeout=30, message="the second link to end")
        statuses = [get_task_status(task_id).status for task_id in (first_id, second_id)]
        assert statuses == [TaskStatus.COMPLETED, TaskStatus.COMPLETED]
        assert get_task_status(second_id).result["echo"] == {"step": 2}
        counters = redis_client.hgetall(keys.counters_key())
        assert (counters.get("completed"), counters.get("running")) == ("2", "0")


def test_cancel_whose_reply_was_lost_still_answers_true(redis_client, proxy, env):
    env(REDIS_URL=proxy.url)  # this process's get_redis_instance() goes through the proxy too
    task_id = submit_task("SleepyTaskHandler", {"seconds": 0})  # no worker: it stays PENDING
    rule = proxy.drop_reply(evalsha_of(scripts.CANCEL))
    with _diagnosed(redis_client, [task_id], proxy):
        answer = cancel_task(task_id)
        assert rule.dropped == 1, "the proxy did not drop CANCEL's reply"
        counters = redis_client.hgetall(keys.counters_key())
        assert (answer, record(redis_client, task_id).status, counters.get("cancelled"),
                counters.get("pending")) == (True, TaskStatus.CANCELLED, "1", "0")


def test_finish_that_cannot_reach_redis_for_longer_than_the_clients_retries_still_ends_final(
        worker_process, redis_client, proxy):
    # The project's client retries 20 times, backing off to 1 s: FINISH gives up after about 18 s.
    # Refuse it for longer.  The visibility timeout (30 s) outlasts those retries: with FAST_RECOVERY's
    # 4 s, kombu would re-deliver the message while the first FINISH still retries, and that second
    # run would hide what becomes of a run whose FINISH gave up.
    worker = worker_process("a", env=_worker_env(proxy, ASYNC_TASK_VISIBILITY_TIMEOUT="30"))
    rule = proxy.drop_request(evalsha_of(scripts.FINISH), duration_s=25)
    task_id = tasks.traced.apply_async(kwargs={"seconds": 0.2}).id
    with _diagnosed(redis_client, [task_id], proxy, [worker]):
        wait_until(lambda: rule.dropped >= 1, timeout=30, message="a finish to be refused")
        final = wait_until(lambda: _final(redis_client, task_id), timeout=90, interval=0.2,
                           message="a final state after Redis answers FINISH again")
        assert final.status is TaskStatus.COMPLETED
        assert redis_client.hget(keys.counters_key(), "running") == "0"
        assert not redis_client.exists(keys.task_lock_key(task_id))
        assert tasks.traces(task_id)["overlaps"] == 0
        print(f"finish refused {rule.dropped} times; traces {tasks.traces(task_id)}")
