"""What waits in the broker: kombu's per-priority lists on Redis, their lengths, the queue_size bound."""

from __future__ import annotations

import redis

from easyrag.task_app.exceptions import QueueFullError
from easyrag.task_app.records import TaskPriority

#: The default queue and kombu's list per priority step (celeryconfig: steps 0-3, sep ":").
QUEUE = "celery"


def priority_list(priority: TaskPriority) -> str:
    """kombu's Redis list for ``priority`` of the default queue (priority 0 uses the bare name)."""
    return QUEUE if priority == 0 else f"{QUEUE}:{int(priority)}"


def queue_sizes(client: redis.Redis) -> dict[str, int]:
    """Messages waiting per priority name, read in one round trip (cancelled ones included)."""
    with client.pipeline(transaction=False) as pipe:
        for priority in TaskPriority:
            pipe.llen(priority_list(priority))
        lengths = pipe.execute()
    return {priority.name: length for priority, length in zip(TaskPriority, lengths, strict=True)}


def ensure_room(client: redis.Redis, queue_size: int) -> None:
    """Raise QueueFullError when ``queue_size`` messages wait already (0 = unbounded).

    Check-then-publish: concurrent submitters can overshoot the bound by at most their number.
    """
    if queue_size and sum(queue_sizes(client).values()) >= queue_size:
        raise QueueFullError(f"{queue_size} tasks are already waiting in the broker "
                             f"(ASYNC_TASK_QUEUE_SIZE = {queue_size}); try again later")
