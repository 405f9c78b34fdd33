"""What waits in the broker: kombu's per-priority lists on Redis and their lengths.

The queue_size bound is checked inside the submit step (scripts.SUBMIT), not here.
"""

from __future__ import annotations

import redis

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
