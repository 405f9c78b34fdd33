"""Test-only tasks that workers import through ASYNC_TASK_HANDLER_MODULES.

They leave their traces in Redis (the test database) so tests can assert on what ran, where,
and in which order.
"""

import os
import signal
import time

from celery import shared_task

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app.base_task import GuardedTask, worker_nodename

STARTS_KEY = "easyrag-test:starts"


@shared_task(name="tests.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="tests.record_start")
def record_start(label: str) -> str:
    """Append ``label`` to the start-order list."""
    get_redis_instance().rpush(STARTS_KEY, label)
    return label


@shared_task(name="tests.block")
def block(release_key: str, started_key: str, timeout: float = 30.0) -> bool:
    """Say it started, then hold the worker until the test pushes to ``release_key``."""
    client = get_redis_instance()
    client.rpush(started_key, "1")
    return client.blpop([release_key], timeout=timeout) is not None


# --- guarded tasks: traces of executions, for the duplicate-execution tests -----------------------

def trace_key(task_id: str, what: str) -> str:
    """easyrag-test:trace:<id>:<starts|ends|running|overlaps>"""
    return f"easyrag-test:trace:{task_id}:{what}"


@shared_task(name="tests.traced", bind=True, base=GuardedTask)
def traced(self, seconds: float = 0.0) -> str:
    """Count starts, ends and overlapping executions of this task id; work for ``seconds``."""
    client = get_redis_instance()
    task_id = self.request.id
    client.incr(trace_key(task_id, "starts"))
    if client.incr(trace_key(task_id, "running")) > 1:
        client.incr(trace_key(task_id, "overlaps"))
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # the work: a busy task that yields now and then
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    finally:
        client.decr(trace_key(task_id, "running"))
    client.incr(trace_key(task_id, "ends"))
    return worker_nodename(self.request)


@shared_task(name="tests.kills_its_worker", bind=True, base=GuardedTask)
def kills_its_worker(self) -> None:
    """A poison task: SIGKILL the pool process running it."""
    get_redis_instance().incr(trace_key(self.request.id, "starts"))
    os.kill(os.getpid(), signal.SIGKILL)


def traces(task_id: str) -> dict[str, int]:
    client = get_redis_instance()
    names = ("starts", "ends", "overlaps")
    values = client.mget([trace_key(task_id, name) for name in names])
    return {name: int(value or 0) for name, value in zip(names, values, strict=True)}
