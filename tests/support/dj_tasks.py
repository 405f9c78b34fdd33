"""Django Tasks for the tests (module level, as Django requires); workers import them by path."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app.django_tasks import task


@task()
def add(x: int, y: int) -> int:
    return x + y


@task()
def fails(text: str) -> None:
    raise ValueError(text)


@task(takes_context=True)
def who_am_i(context, tag: str) -> dict:
    return {"attempt": context.attempt, "id": context.task_result.id, "tag": tag}


@task()
async def sleeps(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@task(priority=60)
def urgent() -> str:
    return "urgent"


@task()
def flaky(key: str) -> int:
    """Fails on its first attempt (counted in Redis under ``key``), then returns the attempt."""
    attempt = get_redis_instance().incr(key)
    if attempt == 1:
        raise ConnectionError("first attempt fails")
    return attempt


@task()
def record_start(label: str) -> str:
    """Appends ``label`` to the start-order list of the tests."""
    get_redis_instance().rpush("easyrag-test:dj-starts", label)
    return label


@task()
def block(release_key: str) -> bool:
    """Holds its worker until ``release_key`` exists (at most 30 s)."""
    client, deadline = get_redis_instance(), time.monotonic() + 30
    while not client.exists(release_key) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


@task()
def kills_its_worker_once(key: str) -> int:
    """SIGKILLs its own pool process on the first attempt; returns the attempt after that."""
    attempt = get_redis_instance().incr(key)
    if attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return attempt
