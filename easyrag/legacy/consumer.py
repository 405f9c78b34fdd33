"""The legacy consumer's asyncio loop: take items, run them with bounded concurrency, finish them.

The life of an item (keys in lists.py)::

    taken      LMOVE / BLMOVE  source -> processing list          (step, take_blocking)
    running    the handler's coroutine; at most max_concurrent at once
    finished   LREM from the processing list (+ LPUSH of its dead letter), in the next step
    put back   LREM from the processing list + RPUSH to the source (stop, grace period over)

If the process dies anywhere in between, the item is still in the processing list, and the next
start under the same consumer name moves it back to the queue first: every item runs at least
once, none is lost.  An item holds its slot from its take until its removal is written, so the
processing list never holds more than max_concurrent items, and the round trip that records a
finished item also takes the item that refills its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from easyrag.config import RedisConfig, get_config
from easyrag.legacy.errors import (
    InvalidItemError,
    LegacyConsumerError,
    RedisUnavailableError,
)
from easyrag.legacy.handlers import Handler
from easyrag.legacy.items import dead_letter, parse_item, shorten
from easyrag.legacy.lease import NameLease
from easyrag.legacy.lists import LegacyList, create_async_client, lease_key
from easyrag.legacy.options import ConsumerOptions, ConsumerReport
from easyrag.legacy.retry import RetryWindow

logger = logging.getLogger(__name__)

#: Bytes of finished items (and their dead letters) one step sends, unless a single item is larger:
#: Redis drops a client whose command passes its query buffer limit (1 GiB by default), so a few
#: huge items finishing together are written in several steps rather than one refused command.
STEP_BYTES = 64 * 1024 * 1024


class Consumer:
    """One consumer of one list; ``run()`` until stopped, ``max_tasks`` reached or Redis lost."""

    def __init__(self, client: aioredis.Redis, handler: Handler, options: ConsumerOptions,
                 redis_label: str = "Redis") -> None:
        self.options = options
        self.handler = handler
        self.lists = LegacyList(client, options.redis_key, options.consumer_name)
        self.lease = NameLease(client, lease_key(options.redis_key, options.consumer_name),
                               options.consumer_name, ttl=max(10.0, 2 * options.retry_window))
        self.redis = RetryWindow(
            options.retry_window, redis_label,
            f"tasks in progress stay in {self.lists.processing} and are resumed by the next start of "
            f"consumer {options.consumer_name!r}")
        self.report = ConsumerReport()
        self._running: set[asyncio.Task] = set()
        self._finished: list[tuple[bytes, bytes]] = []  # (item, dead letter or b''), not yet written
        self._writing = 0  # finished items in a write on the flusher's connection
        self._held: Counter[bytes] = Counter()  # what our processing list holds, as far as we know
        self._cancelled: list[tuple[int, bytes]] = []  # (take number, item) of cancelled items
        self._wake = asyncio.Event()
        self._stop_at: float | None = None
        self._force = False
        self._fatal: LegacyConsumerError | None = None
        self._blocking = False
        self._flusher: asyncio.Task | None = None
        self._unblocker: asyncio.Task | None = None

    # --- control ---

    def request_stop(self) -> None:
        """First call: take nothing more and let running items finish; second: end the grace now."""
        if self._stop_at is None:
            self._stop_at = time.monotonic()
            logger.info("Stop requested: taking no new tasks; %s running get up to %g s to finish",
                        len(self._running), self.options.grace_period)
        else:
            self._force = True
            logger.info("Second stop request: ending the grace period now")
        self._wake.set()
        if self._blocking and self._unblocker is None:
            self._unblocker = asyncio.create_task(self._unblock())

    async def _unblock(self) -> None:
        """End the blocking take at once rather than after up to --interval seconds.

        A stop that lands between the take's two round trips finds nothing blocked yet: try again
        until the take returns.  Best effort: if Redis is unreachable, the take times out anyway.
        """
        try:
            while self._blocking and not await self.lists.unblock():
                await asyncio.sleep(0.02)
        except (RedisConnectionError, RedisTimeoutError) as error:
            logger.debug("Could not end the blocking take early: %s", error)
        finally:
            self._unblocker = None

    async def run(self) -> ConsumerReport:
        """Resume what a crashed run left, consume, then finish cleanly.

        Raises ``LegacyConsumerError`` subclasses; items in progress then stay in the processing
        list, to be resumed by the next start.
        """
        kind = await self.redis.call(self.lists.key_type)
        if kind not in ("list", "none"):
            raise LegacyConsumerError(f"Redis key {self.lists.source!r} holds a {kind}, not a list")
        await self.redis.call(self.lease.acquire)
        renewer = asyncio.create_task(self._keep_lease())
        try:
            self.report.recovered = await self.redis.call(self.lists.recover)
            self._log_start()
            await self._take_loop()
            await self._drain()
            await self._reconcile()
        except BaseException:
            await self._abandon()
            raise
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self.lists.close()
        await self.redis.call(self.lease.release)
        report = self.report
        logger.info("Stopped: took %s tasks: %s succeeded, %s dead-lettered, %s put back",
                    report.taken, report.succeeded, report.failed, report.requeued)
        return report

    # --- taking ---

    def _taking(self) -> bool:
        limit = self.options.max_tasks
        return self._stop_at is None and (limit is None or self.report.taken < limit)

    async def _take_loop(self) -> None:
        while True:
            self._check_fatal()
            if self.redis.reconnected:
                await self._reconcile()
            if not self._taking():
                if self._stop_at is None:
                    logger.info("Reached --max-tasks %s; waiting for %s running tasks",
                                self.options.max_tasks, len(self._running))
                return
            batch = self._take_finished()
            # finished items left for the next step (STEP_BYTES) still hold their slots
            want = self.options.max_concurrent - len(self._running) - self._writing - len(self._finished)
            if self.options.max_tasks is not None:
                want = min(want, self.options.max_tasks - self.report.taken)
            if not want and not batch:
                await self._wait()
                continue
            items = await self._write(batch, want)
            if want and not items and not self._finished:  # nothing waits and nothing to write
                items = await self._take_blocking()
            if self._stop_at is not None:  # taken after the stop request: put back untouched
                await self._put_back(items)
                continue
            for item in items:
                self._start(item)

    async def _take_blocking(self) -> list[bytes]:
        self._blocking = True
        try:
            item = await self.redis.call(self.lists.take_blocking, self.options.interval)
        finally:
            self._blocking = False
        if item is None:
            return []
        self._held[item] += 1
        return [item]

    async def _write(self, batch: list[tuple[bytes, bytes]], take: int) -> list[bytes]:
        """Record finished items and take up to ``take`` new ones, in one round trip."""
        items = await self.redis.call(self.lists.step, batch, take)
        self._release(item for item, _ in batch)
        self._held.update(items)
        return items

    # --- running ---

    def _start(self, item: bytes) -> None:
        self.report.taken += 1
        number = self.report.taken
        task = asyncio.create_task(self._run_item(item, number))
        self._running.add(task)
        logger.info("启动并发任务 #%s，当前运行任务数: %s", number, len(self._running))

    async def _run_item(self, item: bytes, number: int) -> None:
        try:
            letter = await self._execute(item, number)
        except asyncio.CancelledError:
            self._cancelled.append((number, item))
            raise
        finally:
            self._running.discard(asyncio.current_task())
        self._finished.append((item, letter))
        if self._blocking and self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        self._wake.set()

    async def _execute(self, item: bytes, number: int) -> bytes:
        """Run one item; its dead letter, or b'' when it succeeded."""
        try:
            payload = parse_item(item)
        except InvalidItemError as error:
            return self._failed(item, number, str(error))
        except Exception as error:  # whatever else the parser raises: dead-lettered, never held for ever
            return self._failed(item, number, f"unparseable item: {type(error).__name__}: {error}",
                                exc_info=True)
        try:
            await self.handler(payload)
        except Exception as error:
            return self._failed(item, number, f"{type(error).__name__}: {error}", exc_info=True)
        self.report.succeeded += 1
        logger.info("成功处理任务 #%s", number)
        return b""

    def _failed(self, item: bytes, number: int, error: str, exc_info: bool = False) -> bytes:
        self.report.failed += 1
        logger.error("Task #%s failed: %s; dead-lettered to %s", number, shorten(error), self.lists.dead,
                     exc_info=exc_info)
        return dead_letter(item, error)

    # --- finishing ---

    def _take_finished(self) -> list[tuple[bytes, bytes]]:
        """The finished items of the next step, oldest first: up to STEP_BYTES, at least one."""
        size = count = 0
        for item, letter in self._finished:
            size += len(item) + len(letter)
            if size > STEP_BYTES and count:
                break
            count += 1
        batch, self._finished = self._finished[:count], self._finished[count:]
        return batch

    def _release(self, items: Any) -> None:
        for item in items:
            self._held[item] -= 1
            if self._held[item] <= 0:
                del self._held[item]

    async def _flush(self) -> None:
        """Write finished items while the take loop waits in a blocking take (own connection)."""
        try:
            while self._finished:
                batch = self._take_finished()
                self._writing += len(batch)
                try:
                    await self.redis.call(self.lists.step, batch, 0)
                finally:
                    self._writing -= len(batch)
                self._release(item for item, _ in batch)
        except LegacyConsumerError as error:
            self._fatal = error
        finally:
            self._flusher = None
            self._wake.set()

    async def _drain(self) -> None:
        """Let running items finish (bounded by the grace period after a stop request) and write them."""
        if self._running:
            logger.info("Waiting for %s running tasks to finish", len(self._running))
        while True:
            self._check_fatal()
            batch = self._take_finished()
            if batch:
                await self._write(batch, 0)
                continue
            if not self._running and not self._writing:
                return
            left = self._grace_left()
            if left is not None and left <= 0 and self._running:
                await self._put_back_running()
                continue
            await self._wait(left)

    def _grace_left(self) -> float | None:
        if self._stop_at is None:
            return None
        if self._force:
            return 0.0
        return self._stop_at + self.options.grace_period - time.monotonic()

    async def _put_back_running(self) -> None:
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=5)
        if stuck:  # a handler that ignores cancellation: its item stays held, resumed at next start
            logger.error("%s tasks ignore cancellation; their items stay in %s", len(stuck),
                         self.lists.processing)
        cancelled = [item for _, item in sorted(self._cancelled)]  # oldest first: they keep their turn
        self._cancelled = []
        await self._put_back(cancelled)
        logger.warning("Grace period over: put %s unfinished tasks back on %s", len(cancelled),
                       self.lists.source)
        self._running -= set(tasks)

    async def _put_back(self, items: list[bytes]) -> None:
        if items:
            self.report.requeued += await self.redis.call(self.lists.requeue, items)
            self._release(items)

    async def _reconcile(self) -> None:
        """Put back items our processing list holds that we do not know of.

        A take whose reply was lost (the connection dropped after Redis ran it) leaves such an
        item; at the end of a run every item left is one.  Items finished meanwhile are skipped
        by the requeue script, which only moves what is still there.
        """
        self.redis.reconnected = False
        listed = await self.redis.call(self.lists.held)
        extra = Counter(listed) - self._held
        orphans = []
        for item in reversed(listed):  # oldest first
            if extra[item] > 0:
                extra[item] -= 1
                orphans.append(item)
        if orphans:
            moved = await self.redis.call(self.lists.requeue, orphans)
            logger.warning("Put %s taken but unconfirmed items back on %s", moved, self.lists.source)

    async def _abandon(self) -> None:
        """On a fatal error: stop every coroutine; held items stay in the processing list."""
        tasks = [*self._running, *([self._flusher] if self._flusher else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    # --- Redis and waiting ---

    async def _wait(self, timeout: float | None = None) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    async def _keep_lease(self) -> None:
        try:
            await self.lease.keep(self.redis.call)
        except LegacyConsumerError as error:
            self._fatal = error
            self._wake.set()

    def _log_start(self) -> None:
        # The seed's lines are kept in its words (operators' log searches match them); ours are English.
        options = self.options
        logger.info("启动异步任务处理器")
        logger.info("Redis键: %s", options.redis_key)
        logger.info("轮询间隔: %g秒", options.interval)
        logger.info("Max concurrent tasks: %s; max tasks: %s", options.max_concurrent,
                    options.max_tasks or "unlimited")
        logger.info("Consumer: %s (processing list %s, dead letters %s)", options.consumer_name,
                    self.lists.processing, self.lists.dead)
        if self.report.recovered:
            logger.info("Took back %s unfinished tasks left by a previous run of consumer %s",
                        self.report.recovered, options.consumer_name)


def describe(client: aioredis.Redis) -> str:
    """Where the client connects, without the password."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"Redis at unix://{kwargs['path']}"
    return f"Redis at {kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


async def run_consumer(options: ConsumerOptions, handler: Handler, config: RedisConfig | None = None,
                       handle_signals: bool = True) -> ConsumerReport:
    """Connect (one try), run a Consumer until it stops; SIGINT/SIGTERM request a graceful stop.

    Raises ``RedisUnavailableError`` when Redis does not answer at start, and the other
    ``LegacyConsumerError`` subclasses from ``Consumer.run``.
    """
    client = create_async_client(config or get_config().redis, options.interval)
    label = describe(client)
    try:
        try:
            await client.ping()
        except (RedisConnectionError, RedisTimeoutError) as error:
            raise RedisUnavailableError(f"cannot connect to {label}: {error}") from None
        consumer = Consumer(client, handler, options, redis_label=label)
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
        for number in signals:
            loop.add_signal_handler(number, consumer.request_stop)
        try:
            return await consumer.run()
        finally:
            for number in signals:
                loop.remove_signal_handler(number)
    finally:
        await client.aclose()
