"""DistributedLock: a Redis lock with a token per holder, on redis-py's ``Lock``.

Key ``lock:async_task:{name}``.  redis-py's Lock already does the right things: ``SET NX PX``
with a random token, release by Lua compare-and-delete, extend by Lua compare-and-expire.  We add
the seed's names and semantics on top: ``acquire(timeout=...)`` in seconds (``None`` waits until
acquired, ``0`` tries once), ``extend()`` resets the TTL to the lock's ``timeout`` (redis-py adds
to the remaining TTL unless ``replace_ttl``), and errors are ours.

Why a token matters (the race compare-and-delete prevents)::

    A acquires (token a), stalls longer than the TTL  ->  the key expires
    B acquires (token b)
    A wakes and releases: a plain DEL would delete B's lock; compare-and-delete sees b != a
"""

from __future__ import annotations

import uuid
from types import TracebackType

import redis
from redis.exceptions import LockError as RedisLockError
from redis.exceptions import LockNotOwnedError

from easyrag.task_app.exceptions import LockError

KEY_PREFIX = "lock:async_task:"


def lock_key(name: str) -> str:
    """The Redis key of the lock called ``name``."""
    return f"{KEY_PREFIX}{name}"


class DistributedLock:
    """A lock on ``lock:async_task:{name}`` whose TTL is ``timeout`` seconds.

    ``blocking_timeout`` bounds how long ``with lock:`` waits (``None``: until acquired); past it
    ``LockError`` is raised.  The token is shared by all threads of the holder (redis-py's
    ``thread_local=False``), so a renewal thread can extend what the main thread acquired.
    """

    def __init__(self, redis_client: redis.Redis, name: str, timeout: float = 300,
                 blocking_timeout: float | None = None, sleep: float = 0.05) -> None:
        self.name = name
        self.key = lock_key(name)
        self.timeout = timeout
        self.blocking_timeout = blocking_timeout
        self._lock = redis_client.lock(self.key, timeout=timeout, sleep=sleep, thread_local=False)

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds (None: until acquired; 0: one try)."""
        token = uuid.uuid4().hex
        if timeout == 0:
            return self._lock.acquire(blocking=False, token=token)
        return self._lock.acquire(blocking=True, blocking_timeout=timeout, token=token)

    def release(self) -> None:
        """Release the lock; ``LockError`` if this holder no longer owns it (nothing is deleted)."""
        try:
            self._lock.release()
        except RedisLockError as error:
            raise LockError(f"cannot release lock {self.key!r}: not held by this holder") from error

    def extend(self) -> None:
        """Reset the TTL to ``timeout`` seconds; ``LockError`` if this holder no longer owns it."""
        try:
            self._lock.extend(self.timeout, replace_ttl=True)
        except LockNotOwnedError as error:
            raise LockError(f"cannot extend lock {self.key!r}: not held by this holder") from error
        except RedisLockError as error:
            raise LockError(f"cannot extend lock {self.key!r}: {error}") from error

    def locked(self) -> bool:
        """True when anyone holds the lock."""
        return self._lock.locked()

    def owned(self) -> bool:
        """True when this holder holds the lock."""
        return self._lock.owned()

    def __enter__(self) -> DistributedLock:
        if not self.acquire(timeout=self.blocking_timeout):
            raise LockError(f"could not acquire lock {self.key!r} within {self.blocking_timeout} s")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
