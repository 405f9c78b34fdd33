"""One live consumer per consumer name: a lease key that the running consumer keeps renewing.

Two consumers under one name would share one processing list, and the start-up recovery of the
second would put the first one's running items back on the queue, to run twice.  The lease
``K:consumer:C`` (lists.py) holds ``{"host", "pid", "token"}`` with a TTL.  A lease left by a
consumer that died on this host (its pid is gone) is taken over at once, so a restart after a
crash resumes immediately; a lease held from another host is waited out, up to its TTL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from easyrag.legacy.errors import ConsumerNameInUseError

logger = logging.getLogger(__name__)

RENEW = """
-- renew: reset the lease's TTL while it is still ours
-- KEYS[1] lease key       ARGV[1] our lease value     ARGV[2] ttl (ms)
-- returns 1 renewed · 0 not ours any more
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

REPLACE = """
-- replace: swap the lease's value if it is still ARGV[1] (a dead holder's, or ours to release)
-- KEYS[1] lease key       ARGV[1] expected value      ARGV[2] new value ('' deletes)
-- ARGV[3] ttl (ms)
-- returns 1 replaced · 0 the value had changed
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this host (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NameLease:
    """The lease of one consumer name, ``ttl`` seconds long."""

    def __init__(self, client: aioredis.Redis, key: str, name: str, ttl: float) -> None:
        self.client = client
        self.key = key
        self.name = name
        self.ttl_ms = int(ttl * 1000)
        self.host = socket.gethostname()
        self.value = json.dumps({"host": self.host, "pid": os.getpid(), "token": uuid.uuid4().hex})
        self._renew = client.register_script(RENEW)
        self._replace = client.register_script(REPLACE)

    async def acquire(self) -> None:
        """Take the lease; ``ConsumerNameInUseError`` when a live consumer keeps it."""
        deadline = time.monotonic() + self.ttl_ms / 1000 + 1
        waiting_logged = False
        while True:
            if await self.client.set(self.key, self.value, nx=True, px=self.ttl_ms):
                return
            current = await self.client.get(self.key)
            if current is None:
                continue
            holder = self._holder(current)
            if holder["host"] == self.host:
                if not pid_alive(holder["pid"]):
                    if await self._replace(keys=[self.key], args=[current, self.value, self.ttl_ms]):
                        logger.info("Consumer %s: taking over from pid %s, which is gone", self.name,
                                    holder["pid"])
                        return
                    continue
                raise ConsumerNameInUseError(
                    f"consumer name {self.name!r} is in use by pid {holder['pid']} on this host; "
                    f"give each consumer its own --consumer-name")
            if time.monotonic() > deadline:
                raise ConsumerNameInUseError(
                    f"consumer name {self.name!r} is in use by pid {holder['pid']} on host "
                    f"{holder['host']!r}; give each consumer its own --consumer-name")
            if not waiting_logged:
                logger.warning("Consumer %s: name held by pid %s on host %r; waiting up to %.0f s for "
                               "its lease to expire", self.name, holder["pid"], holder["host"],
                               self.ttl_ms / 1000)
                waiting_logged = True
            await asyncio.sleep(0.5)

    def _holder(self, current: bytes) -> dict:
        try:
            holder = json.loads(current)
            return {"host": str(holder["host"]), "pid": int(holder["pid"])}
        except (ValueError, KeyError, TypeError):
            return {"host": "(unknown)", "pid": 0}

    async def renew(self) -> bool:
        """Reset the TTL; False when the lease is no longer ours.  One round trip."""
        return bool(await self._renew(keys=[self.key], args=[self.value, self.ttl_ms]))

    async def keep(self, call: Callable[..., Awaitable[Any]]) -> None:
        """Renew every TTL / 4 through ``call`` (the consumer's retry window) until cancelled.

        Raises ``ConsumerNameInUseError`` when the lease was lost (it expired during an outage
        longer than the TTL and another consumer took the name).
        """
        while True:
            await asyncio.sleep(self.ttl_ms / 4000)
            if not await call(self.renew):
                raise ConsumerNameInUseError(f"consumer name {self.name!r}: the lease was lost to another "
                                             f"consumer; stopping")

    async def release(self) -> None:
        """Delete the lease if it is still ours."""
        await self._replace(keys=[self.key], args=[self.value, "", self.ttl_ms])
