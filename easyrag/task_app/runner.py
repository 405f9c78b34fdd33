"""Keeping a running task's claim alive: lock renewal and kombu heartbeat on a daemon thread.

A thread, not an asyncio task, so a handler that blocks its event loop cannot starve it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from easyrag.task_app import scripts

logger = logging.getLogger(__name__)


class LockRenewal:
    """Renew a lock every ``interval`` seconds until stopped; report a lost lock or a cancel.

    Each tick is one round trip (RENEW): it resets the lock's TTL, refreshes the score of the
    task's message in kombu's unacked index (so kombu does not redeliver a message whose task is
    alive, however long it runs), and reads the cancel flag.
    """

    def __init__(self, client: redis.Redis, keys: list[str], lock_value: str, lock_ttl_ms: int,
                 delivery_tag: str, interval: float, task_id: str,
                 on_cancel: Callable[[], None] | None = None,
                 on_lost: Callable[[], None] | None = None) -> None:
        self.client, self.keys, self.lock_value = client, keys, lock_value
        self.lock_ttl_ms, self.delivery_tag, self.interval = lock_ttl_ms, delivery_tag, interval
        self.task_id = task_id
        self.on_cancel, self.on_lost = on_cancel, on_lost
        self.lost = False
        self.cancel_requested = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"renew-{task_id}", daemon=True)

    def __enter__(self) -> LockRenewal:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                reply = scripts.renew(self.client, self.keys, self.lock_value, self.lock_ttl_ms,
                                      self.delivery_tag, time.time())
            except redis.RedisError as error:
                # Redis away: keep trying; if the lock lapses and nobody takes over, the next
                # successful tick re-acquires it (same fence).
                logger.warning("task %s: lock renewal failed: %s", self.task_id, error)
                continue
            if reply == -1:
                logger.warning("task %s: lock lost to another holder; this run's outcome will "
                               "not be recorded", self.task_id)
                self.lost = True
                if self.on_lost:
                    self.on_lost()
                return
            if reply == 2 and not self.cancel_requested:
                self.cancel_requested = True
                if self.on_cancel:
                    self.on_cancel()
