"""get_task_stats(): cluster-wide figures from Redis counters and one broadcast to the live nodes."""

from __future__ import annotations

import time
from typing import Any

from celery import current_app

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app import keys, queues
from easyrag.task_app.nodes import live_nodes
from easyrag.task_app.scheduler import scheduled_count


def _ask_nodes(nodes: list[str], timeout: float) -> dict[str, dict[str, int]]:
    """Each live node's figures; returns as soon as all have answered, or after ``timeout``.

    kombu's ``limit`` counts event-loop wake-ups, not replies, so one broadcast may return early
    without every answer: ask again the nodes that have not answered, until the deadline.
    """
    workers: dict[str, dict[str, int]] = {}
    deadline = time.monotonic() + timeout
    missing = list(nodes)
    while missing and (left := deadline - time.monotonic()) > 0:
        for reply in current_app.control.broadcast("easyrag_stats", destination=missing, reply=True,
                                                   timeout=left, limit=len(missing)):
            workers.update(reply)
        missing = [node for node in missing if node not in workers]
    return workers


COUNTER_NAMES = ("total", "pending", "running", "completed", "failed", "cancelled", "timeout")


def get_task_stats(instance_id: str, inspect_timeout: float = 0.5) -> dict[str, Any]:
    """The spec's stats dict.  No key scans: one pipeline (counters, queue lengths), the node
    registry, and one broadcast answered by every live node (returns when all have replied)."""
    client = get_redis_instance()
    counters = client.hgetall(keys.counters_key())
    queue_sizes = queues.queue_sizes(client)
    nodes = live_nodes()
    workers = _ask_nodes(nodes, inspect_timeout)
    stats: dict[str, Any] = {f"{name}_tasks": int(counters.get(name, 0)) for name in COUNTER_NAMES}
    stats.update(queue_size=sum(queue_sizes.values()), queue_sizes=queue_sizes, workers=workers,
                 instance_id=instance_id, scheduled_tasks=scheduled_count(client))
    return stats
