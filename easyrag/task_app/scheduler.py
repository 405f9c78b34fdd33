"""Delayed tasks wait in Redis, not in a worker: the scheduled set and the thread that promotes it.

Celery on Redis keeps a message with a ``countdown``/``eta`` unacknowledged in a worker's memory
and gets it redelivered every visibility timeout until it is due (kombu#337, celery#4400), so a
task due in hours multiplies or holds memory, and a long visibility timeout slows crash recovery.
A guarded task's delayed start (``countdown=``/``eta=``, a retry's back-off, a deferral) never
reaches Celery as such: SUBMIT stores the message built to run at once in ``P:scheduled`` (a
sorted set by due time) and ``P:scheduled:messages``, and every worker's promoter pushes the due
ones onto their broker lists with PROMOTE — one atomic step, so a due message is pushed exactly
once however many workers run.  A task whose guard is gone by then (cancelled) is dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import redis
from celery.signals import worker_init

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app import keys, scripts

logger = logging.getLogger(__name__)

#: Seconds between two promotions: a due task is pushed within this long of its time.
PROMOTE_EVERY_S = 0.25

_started: set[int] = set()  # the processes whose promoter runs (one per worker process tree)
_lock = threading.Lock()


def scheduled_count(client: redis.Redis) -> int:
    """Delayed messages waiting for their time (``get_task_stats()['scheduled_tasks']``)."""
    return int(client.zcard(keys.scheduled_key()))


def _promote_forever() -> None:
    client = get_redis_instance()
    while True:
        try:
            while scripts.promote(client, time.time()) == 100:  # a backlog: go on at once
                pass
        except Exception as error:  # Redis away: the messages wait in Redis meanwhile
            logger.warning("promoting delayed tasks failed: %s", error)
        time.sleep(PROMOTE_EVERY_S)


@worker_init.connect
def start_promoter(**_: Any) -> None:
    """Every worker (its main process) promotes due delayed tasks; PROMOTE makes that safe."""
    with _lock:
        if os.getpid() in _started:
            return
        _started.add(os.getpid())
    threading.Thread(target=_promote_forever, name="delayed-task-promoter", daemon=True).start()
