"""The Redis side of the legacy consumer: every key it uses and its Lua steps, one round trip each.

K = ``--redis-key`` (``async_tasks``), C = ``--consumer-name`` (the host name).

======================  ======  ================================================================
key                     type    content
======================  ======  ================================================================
``K``                   list    waiting items; producers LPUSH, consumers take from the right (FIFO)
``K:processing:C``      list    items consumer C has taken and not finished, newest on the left
``K:dead``              list    dead letters, newest on the left: ``{"raw", "error", "failed_at"}`` (items.py)
``K:consumer:C``        string  the lease of the live consumer named C (lease.py); expires
======================  ======  ================================================================

An item moves ``K`` -> ``K:processing:C`` atomically when it is taken (LMOVE / BLMOVE), and leaves
the processing list only when it is finished, together with its dead letter if it failed, or when
it is put back on ``K``.  So at every instant an item is in exactly one of the lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from easyrag.config import RedisConfig

STEP = """
-- step: finish what is done, then take up to ARGV[1] waiting items
-- KEYS[1] source list     KEYS[2] processing list     KEYS[3] dead-letter list
-- ARGV[1] how many items to take
-- ARGV[2k], ARGV[2k+1] (k >= 1) a finished item as taken, and its dead letter ('' if it succeeded)
-- returns the items taken, oldest first; each is now on the left of the processing list
for i = 2, #ARGV, 2 do
  -- count -1 searches from the right, where the oldest (usually the finishing) items are;
  -- the dead letter is written only while this consumer still holds the item
  if redis.call('LREM', KEYS[2], -1, ARGV[i]) == 1 and ARGV[i + 1] ~= '' then
    redis.call('LPUSH', KEYS[3], ARGV[i + 1])
  end
end
local taken = {}
for i = 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not item then break end
  taken[#taken + 1] = item
end
return taken
"""

REQUEUE = """
-- requeue: put held items back on the right of the source list (next to be taken), oldest rightmost
-- KEYS[1] source list     KEYS[2] processing list
-- ARGV[1..n] items as taken, oldest first
-- returns how many were put back (an item this consumer no longer holds is skipped)
local moved = 0
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[2], -1, ARGV[i]) == 1 then
    redis.call('RPUSH', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
return moved
"""

RECOVER = """
-- recover: move everything in the processing list back to the right of the source list,
-- newest first, so the oldest ends rightmost and is taken first
-- KEYS[1] source list     KEYS[2] processing list
-- returns how many items moved
local moved = 0
while redis.call('LMOVE', KEYS[2], KEYS[1], 'LEFT', 'RIGHT') do
  moved = moved + 1
end
return moved
"""


def processing_key(redis_key: str, consumer_name: str) -> str:
    return f"{redis_key}:processing:{consumer_name}"


def dead_key(redis_key: str) -> str:
    return f"{redis_key}:dead"


def lease_key(redis_key: str, consumer_name: str) -> str:
    return f"{redis_key}:consumer:{consumer_name}"


def create_async_client(config: RedisConfig, block_seconds: float) -> aioredis.Redis:
    """An asyncio client on the configured Redis (REDIS_URL wins over the parts).

    Replies are bytes: an item that is not UTF-8 must still be moved and removed exactly.  The
    socket timeout leaves room for a blocking take of ``block_seconds``.  redis-py's own retries
    are off: the consumer retries within its retry window and knows when a reply was lost.
    """
    return aioredis.Redis.from_url(
        config.url,
        socket_timeout=config.socket_timeout + block_seconds,
        socket_connect_timeout=config.socket_connect_timeout,
        max_connections=config.max_connections,
        retry=Retry(NoBackoff(), 0),
    )


class LegacyList:
    """One consumer's view of a legacy list: its source, processing and dead-letter lists."""

    def __init__(self, client: aioredis.Redis, redis_key: str, consumer_name: str) -> None:
        self.client = client
        self.source = redis_key
        self.processing = processing_key(redis_key, consumer_name)
        self.dead = dead_key(redis_key)
        # Blocking takes run on a connection of their own, so that a stop can end one at once
        # (CLIENT UNBLOCK needs that connection's id) instead of waiting out the block timeout.
        self._blocker = aioredis.Redis(connection_pool=client.connection_pool, single_connection_client=True)
        self._blocker_id: int | None = None
        self._step = client.register_script(STEP)
        self._requeue = client.register_script(REQUEUE)
        self._recover = client.register_script(RECOVER)

    async def key_type(self) -> str:
        """``list`` or ``none`` when the source key is usable."""
        kind = await self.client.type(self.source)
        return kind.decode() if isinstance(kind, bytes) else kind

    async def step(self, finished: Sequence[tuple[bytes, bytes]], take: int) -> list[bytes]:
        """Remove the finished items (writing dead letters, b'' = none), then take up to ``take``.

        One round trip.  Finishing and taking in the same script hands a freed slot straight to
        the next item.
        """
        args: list[bytes | int] = [take]
        for item, letter in finished:
            args += (item, letter)
        return await self._step(keys=[self.source, self.processing, self.dead], args=args)

    async def take_blocking(self, timeout: float) -> bytes | None:
        """Wait up to ``timeout`` seconds for one item (BLMOVE); None when none came or unblocked.

        Two round trips: the connection's id (it changes when redis-py reconnects), then BLMOVE.
        """
        self._blocker_id = await self._blocker.client_id()
        try:
            return await self._blocker.blmove(self.source, self.processing, timeout, "RIGHT", "LEFT")
        finally:
            self._blocker_id = None

    async def unblock(self) -> bool:
        """End a blocking take now, as if it timed out; False when none was blocked in Redis.

        Redis decides atomically: a take it already served returns its item (to be put back).
        """
        blocker_id = self._blocker_id
        return blocker_id is not None and bool(await self.client.client_unblock(blocker_id))

    async def close(self) -> None:
        """Give the blocking connection back to the pool."""
        await self._blocker.aclose()

    async def requeue(self, items: Sequence[bytes]) -> int:
        """Put held items back, next to be taken; one round trip."""
        if not items:
            return 0
        return await self._requeue(keys=[self.source, self.processing], args=list(items))

    async def recover(self) -> int:
        """Move everything left in the processing list back to the source list; one round trip."""
        return await self._recover(keys=[self.source, self.processing])

    async def held(self) -> list[bytes]:
        """The processing list's items, newest first."""
        return await self.client.lrange(self.processing, 0, -1)
