"""Riding out a Redis outage: retry connection errors for up to a window, then give up clearly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from easyrag.legacy.errors import RedisLostError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RetryWindow:
    """Runs Redis operations, retrying connection errors for up to ``window`` seconds each.

    redis-py's own Retry counts attempts; a window in seconds is what an operator reasons about,
    and the consumer must know when a reply may have been lost (``reconnected``).
    """

    def __init__(self, window: float, where: str, hint: str) -> None:
        self.window = window
        self.where = where  # "Redis at host:port/db", never the password
        self.hint = hint  # what happens to the work in progress
        #: Set when an operation succeeded after connection errors: a reply may have been lost.
        self.reconnected = False

    async def call(self, operation: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await operation(*args)``; ``RedisLostError`` once Redis stayed unreachable for the window."""
        failing_since: float | None = None
        delay = 0.05
        while True:
            try:
                result = await operation(*args)
            except (RedisConnectionError, RedisTimeoutError) as error:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    logger.warning("Redis unreachable (%s); retrying for up to %g s", error, self.window)
                if now - failing_since >= self.window:
                    raise RedisLostError(f"lost the connection to {self.where} for more than "
                                         f"{self.window:g} s ({error}); {self.hint}") from None
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)
                continue
            if failing_since is not None:
                logger.info("Redis reachable again after %.1f s", time.monotonic() - failing_since)
                self.reconnected = True
            return result
