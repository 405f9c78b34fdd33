"""submit_task in one atomic round trip: an exact queue bound and idempotency keys (spec 1 and 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from easyrag.celery import app
from easyrag.task_app import keys, queues
from easyrag.task_app.async_task_framework import (
    IdempotencyConflictError,
    InvalidIdempotencyKeyError,
    QueueFullError,
    TaskStatus,
    get_task_status,
    submit_task,
)
from tests.support.submitter import GATE
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _run_submitters(processes: int, count: int, key: str | None = None) -> list[dict]:
    """Start ``processes`` submitter processes, open the gate when all are waiting, collect them."""
    command = [sys.executable, "-m", "tests.support.submitter", str(count), *([key] if key else [])]
    children = [subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, text=True)
                for _ in range(processes)]
    from easyrag.common.redis_utils import get_redis_instance

    client = get_redis_instance()
    # Each child has imported Django and is polling when its first GETs... give them a moment by
    # waiting for every one to have connected (CLIENT LIST counts this database's connections).
    wait_until(lambda: sum(1 for c in client.client_list() if c.get("cmd") == "exists") >= processes,
               timeout=60, message="every submitter to wait at the gate")
    client.set(GATE, "1")
    outputs = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0, out
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


def test_the_bound_is_exact_with_eight_processes_submitting_at_once(env, redis_client):
    env(ASYNC_TASK_QUEUE_SIZE="40")
    outputs = _run_submitters(processes=8, count=15)
    accepted = [task_id for output in outputs for task_id in output["ids"]]
    assert len(accepted) == len(set(accepted)) == 40
    assert sum(output["refused"] for output in outputs) == 8 * 15 - 40
    assert sum(queues.queue_sizes(redis_client).values()) == 40
    assert all(get_task_status(task_id).status is TaskStatus.PENDING for task_id in accepted)
    assert redis_client.hget(keys.counters_key(), "pending") == "40"


def test_a_refused_submission_writes_nothing(env, redis_client):
    env(ASYNC_TASK_QUEUE_SIZE="1")
    submit_task("EchoTaskHandler", {})
    before = {key: redis_client.dump(key) for key in redis_client.scan_iter("*")}
    with pytest.raises(QueueFullError):
        submit_task("EchoTaskHandler", {}, user_id=5, idempotency_key="k")
    assert {key: redis_client.dump(key) for key in redis_client.scan_iter("*")} == before


def test_submit_is_one_round_trip(redis_client):
    submit_task("EchoTaskHandler", {"warm": 1}, user_id=3)  # first use: scripts loaded, queue declared
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    commands: list[tuple[str, str]] = []
    ready, done = threading.Event(), threading.Event()

    def watch() -> None:
        with redis_client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if command.get("db") == db and command.get("client_type") != "lua":
                    if command["command"] == "GET easyrag-test:monitor-end":
                        done.set()
                        return
                    commands.append((command.get("client_port"), command["command"]))

    threading.Thread(target=watch, daemon=True).start()
    ready.wait(5)
    redis_client.get("easyrag-test:monitor-start")
    submit_task("EchoTaskHandler", {"n": 2}, user_id=3, idempotency_key="one-trip")
    redis_client.get("easyrag-test:monitor-end")
    assert done.wait(5)
    test_port = next(port for port, command in commands if command == "GET easyrag-test:monitor-start")
    submitted = [command for port, command in commands if port != test_port]  # the test's own go
    assert len(submitted) == 1 and submitted[0].startswith("EVALSHA "), submitted


def test_a_repeated_key_returns_the_first_task_and_queues_nothing(redis_client):
    first = submit_task("EchoTaskHandler", {"order": 42}, user_id=1, idempotency_key="order-42")
    assert submit_task("EchoTaskHandler", {"order": 42}, user_id=1, idempotency_key="order-42") == first
    assert sum(queues.queue_sizes(redis_client).values()) == 1
    # scoped to user and task type: another user's key, or another type's, is another task
    assert submit_task("EchoTaskHandler", {"order": 42}, user_id=2, idempotency_key="order-42") != first
    assert submit_task("StepsTaskHandler", {}, user_id=1, idempotency_key="order-42") != first
    assert submit_task("EchoTaskHandler", {"order": 42}, user_id=1) != first  # no key: always new


def test_the_same_key_with_other_data_is_a_conflict_and_writes_nothing(redis_client):
    first = submit_task("EchoTaskHandler", {"order": 1}, idempotency_key="k")
    before = {key: redis_client.dump(key) for key in redis_client.scan_iter("*")}
    with pytest.raises(IdempotencyConflictError) as raised:
        submit_task("EchoTaskHandler", {"order": 2}, idempotency_key="k")
    assert raised.value.field == "idempotency_key" and raised.value.task_id == first
    assert {key: redis_client.dump(key) for key in redis_client.scan_iter("*")} == before


@pytest.mark.parametrize("key", ["", "x" * 201, 7])
def test_a_bad_key_is_refused(redis_client, key):
    before = redis_client.dbsize()
    with pytest.raises(InvalidIdempotencyKeyError) as raised:
        submit_task("EchoTaskHandler", {}, idempotency_key=key)
    assert raised.value.field == "idempotency_key"
    assert redis_client.dbsize() == before


def test_eight_processes_with_one_key_make_one_task(redis_client):
    outputs = _run_submitters(processes=8, count=3, key="once")
    ids = {task_id for output in outputs for task_id in output["ids"]}
    assert len(ids) == 1
    assert sum(queues.queue_sizes(redis_client).values()) == 1
    assert redis_client.hget(keys.counters_key(), "total") == "1"


def test_the_key_is_kept_as_long_as_the_first_tasks_record(live_worker, redis_client):
    first = submit_task("EchoTaskHandler", {}, idempotency_key="kept")
    wait_until(lambda: (t := get_task_status(first)) and t.status is TaskStatus.COMPLETED, message="done")
    assert submit_task("EchoTaskHandler", {}, idempotency_key="kept") == first  # finished: still the first
    key = keys.idempotency_key("EchoTaskHandler", None, "kept")
    assert abs(redis_client.ttl(key) - redis_client.ttl(keys.record_key(first))) <= 1
    redis_client.delete(keys.record_key(first), keys.guard_key(first), key)  # as when the record expires
    assert submit_task("EchoTaskHandler", {}, idempotency_key="kept") != first


def test_apply_async_of_a_guarded_task_is_one_atomic_step_too(redis_client):
    result = app.tasks["EchoTaskHandler"].apply_async(kwargs={"a": 1})
    assert get_task_status(result.id).status is TaskStatus.PENDING
    assert redis_client.llen("celery:2") == 1
