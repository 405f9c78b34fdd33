"""Running a claimed task: the renewal thread that keeps claims alive, and the handler event loop.

Every ``interval`` seconds the thread sends one pipelined round trip with a RENEW per running task
of this process: it resets each lock's TTL, refreshes the score of each task's message in kombu's
unacked index (so kombu never redelivers a message whose task is alive, however long it runs),
and reads each cancel flag.  A task shorter than one interval costs no renewal at all.

A thread, not an asyncio task, so a handler that blocks its event loop cannot starve it; one per
process, not one per task, because starting a thread per task cost ~160 µs of a no-op task's time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from easyrag.task_app import scripts
from easyrag.task_app.exceptions import TaskCancelledError, TaskReleasedError, TaskTimeoutError

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Renewal:
    """One running task's claim, as the renewal thread sees it."""

    task_id: str
    unacked_index: str  # kombu's unacked index, whose entry of this task's message RENEW refreshes
    lock_value: str
    lock_ttl_ms: int
    delivery_tag: str
    #: Called (on the renewal thread) when the run must stop: cancel, release or lost claim.
    on_stop: Callable[[], None] | None = None
    lost: bool = False
    cancel_requested: bool = False
    release_requested: bool = False
    active: bool = True

    def apply(self, reply: scripts.Renewed) -> None:
        """Act on what RENEW found."""
        if not self.active or self.lost:
            return
        if reply is scripts.Renewed.FENCED_OUT:
            self.lost = True
            logger.warning("task %s: lock lost to another holder; this run's outcome will not be "
                           "recorded", self.task_id)
        elif reply is scripts.Renewed.CANCEL_REQUESTED and not self.cancel_requested:
            self.cancel_requested = True
        elif reply is scripts.Renewed.RELEASE_REQUESTED and not self.release_requested:
            self.release_requested = True
            logger.info("task %s: its worker is shutting down; giving the task back", self.task_id)
        else:
            return
        if self.on_stop:
            self.on_stop()

    @property
    def must_stop(self) -> bool:
        """Whether the run must stop: its claim was lost, or a cancel or release was requested."""
        return self.lost or self.cancel_requested or self.release_requested


class LockRenewer:
    """The renewal thread of one process and the claims it keeps alive."""

    def __init__(self, client: redis.Redis, interval: float) -> None:
        self.client, self.interval = client, interval
        self._lock = threading.Lock()
        self._active: set[Renewal] = set()
        self._thread: threading.Thread | None = None

    @contextmanager
    def keep_alive(self, renewal: Renewal) -> Iterator[Renewal]:
        """Renew ``renewal`` until the block exits."""
        with self._lock:
            self._active.add(renewal)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lock-renewal", daemon=True)
                self._thread.start()
        try:
            yield renewal
        finally:
            renewal.active = False
            with self._lock:
                self._active.discard(renewal)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                active = list(self._active)
            if not active:
                continue
            try:
                replies = scripts.renew_many(self.client, [
                    scripts.Renewing(r.task_id, r.lock_value, r.lock_ttl_ms, r.delivery_tag, r.unacked_index)
                    for r in active
                ], now=time.time())
            except redis.RedisError as error:
                # Redis away: keep trying; a lock that lapsed with nobody taking over is
                # re-acquired by the next successful tick (same fence).
                logger.warning("lock renewal of %s task(s) failed: %s", len(active), error)
                continue
            for renewal, reply in zip(active, replies, strict=True):
                renewal.apply(reply)


_renewers: dict[int, LockRenewer] = {}
_renewers_lock = threading.Lock()


def get_renewer(client: redis.Redis, interval: float) -> LockRenewer:
    """This process's renewer (a forked pool child gets its own thread)."""
    pid = os.getpid()
    with _renewers_lock:
        renewer = _renewers.get(pid)
        if renewer is None or renewer.client is not client or renewer.interval != interval:
            renewer = _renewers[pid] = LockRenewer(client, interval)
        return renewer


# --- the event loops that handler coroutines run on ----------------------------------------------

_local = threading.local()


def get_event_loop() -> asyncio.AbstractEventLoop:
    """The calling thread's handler event loop, made once and kept for the life of the thread.

    Pool processes and pool threads live as long as the worker, and so do their loops.  Running
    the coroutine in the calling thread avoids two thread hand-offs per task.
    """
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed() or getattr(_local, "pid", None) != os.getpid():
        loop = _local.loop = asyncio.new_event_loop()
        _local.pid = os.getpid()  # a forked child must not reuse its parent's loop
    return loop


def run_coroutine(make_coroutine: Callable[[], Awaitable[Any]], timeout: float,
                  renewal: Renewal | None = None) -> Any:
    """Run a handler coroutine on this thread's loop, within ``timeout`` seconds; block until done.

    A cancel request seen by the renewal thread cancels the coroutine (it gets CancelledError at
    its next await) and this raises TaskCancelledError once the coroutine has unwound; running past
    ``timeout`` cancels it the same way and raises TaskTimeoutError; a worker shutting down
    (release) raises TaskReleasedError.  Celery's soft time limit, raised into this thread by a
    signal while the loop runs, cancels the coroutine too (the loop is reused by the next task:
    nothing of this one may stay scheduled on it) and raises TaskTimeoutError.
    """
    loop = get_event_loop()

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await make_coroutine()

    task = loop.create_task(bounded())
    if renewal is not None:
        # A cancel or release request, or the claim lost to another holder (a stall longer than
        # the lock's TTL): stop this run; a lost run's outcome is fenced out anyway.
        renewal.on_stop = lambda: loop.call_soon_threadsafe(task.cancel)
        if renewal.must_stop:  # happened before the hook was in place
            task.cancel()
    try:
        return loop.run_until_complete(task)
    except TimeoutError:
        raise TaskTimeoutError(f"ran longer than its timeout of {timeout:g} s") from None
    except asyncio.CancelledError:
        if renewal is not None and renewal.release_requested and not renewal.cancel_requested:
            raise TaskReleasedError("its worker is shutting down") from None
        raise TaskCancelledError("cancelled while running") from None
    except BaseException as interrupted:  # raised into the loop from outside: unwind the coroutine
        _unwind(loop, task)
        if isinstance(interrupted, SoftTimeLimitExceeded):
            raise TaskTimeoutError(f"exceeded its soft time limit ({interrupted})") from None
        raise
    finally:
        if renewal is not None:
            renewal.on_stop = None


def _unwind(loop: asyncio.AbstractEventLoop, task: asyncio.Task, grace: float = 5.0) -> None:
    """Cancel ``task`` and run the loop until it has unwound (its finally blocks ran), for at most
    ``grace`` seconds."""
    if task.done():
        return
    task.cancel()
    loop.run_until_complete(asyncio.wait({task}, timeout=grace))
    if not task.done():
        logger.warning("a handler coroutine ignored its cancellation for %g s; it stays scheduled", grace)
