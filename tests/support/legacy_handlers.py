"""Test-only handlers for ``async_command --handler tests.support.legacy_handlers.<name>``.

``record`` leaves its trace in Redis, where the test reads it: ``RPUSH EVENTS_KEY "start <id>"``
and ``"end <id>"`` (Redis orders them, so the list replays the true overlap), and per-id counts in
the hashes STARTS_KEY and ENDS_KEY.  An item is ``{"type": "ok" | "fail", "data": {"id": ...,
"seconds": ...}}``; type ``fail`` raises after its start mark.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from easyrag.config import get_config

EVENTS_KEY = "legacy-test:events"
STARTS_KEY = "legacy-test:starts"
ENDS_KEY = "legacy-test:ends"

_client: aioredis.Redis | None = None


def _redis() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(get_config().redis.url, decode_responses=True)
    return _client


async def _mark(what: str, item_id: str) -> None:
    """Write a mark, riding out a Redis restart (tests restart a private server under the consumer)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            async with _redis().pipeline(transaction=True) as pipe:
                pipe.rpush(EVENTS_KEY, f"{what} {item_id}")
                pipe.hincrby(STARTS_KEY if what == "start" else ENDS_KEY, item_id, 1)
                await pipe.execute()
            return
        except RedisConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def record(data: dict[str, Any]) -> None:
    """Mark the start, sleep ``seconds`` (default 0.02), fail for type ``fail``, mark the end."""
    item_id = str(data["data"]["id"])
    await _mark("start", item_id)
    await asyncio.sleep(data["data"].get("seconds", 0.02))
    if data.get("type") == "fail":
        raise RuntimeError(f"failing on purpose: item {item_id}")
    await _mark("end", item_id)


def not_async(data: dict[str, Any]) -> None:
    """A plain function: --handler must refuse it."""
