"""What the staff dashboard shows, read from Redis in three round trips however many tasks exist.

The recent tasks and the recent failures come from two sorted sets of ids that the submit and
ending steps keep trimmed (keys.recent_key, keys.recent_failures_key): the page never scans.  A
task in them whose record has expired is simply left out.
"""

from __future__ import annotations

import json
from typing import Any

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app import keys, queues
from easyrag.task_app.nodes import live_workers
from easyrag.task_app.records import TaskPriority, now_iso
from easyrag.task_app.stats import COUNTER_NAMES

#: The fields of a task in the lists: everything but task_data and result, which may be large.
SUMMARY_FIELDS = ("task_id", "task_type", "status", "priority", "progress", "message", "error", "retries",
                  "created_at", "started_at", "finished_at", "worker", "user_id", "eta")
#: Characters of an error a list shows (the task's page shows it whole).
ERROR_SHOWN = 2000


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    summary = {name: record.get(name) for name in SUMMARY_FIELDS}
    error = summary["error"]
    if isinstance(error, str) and len(error) > ERROR_SHOWN:
        summary["error"] = error[:ERROR_SHOWN] + "…"
    return summary


def overview(recent: int = 50, failed: int = 20) -> dict[str, Any]:
    """The dashboard's data: the counts of get_task_stats(), the queue per priority, the live
    workers with their figures (at most a heartbeat old), the newest tasks and the newest failures."""
    client = get_redis_instance()
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.counters_key())
        for priority in TaskPriority:
            pipe.llen(queues.priority_list(priority))
        pipe.zcard(keys.scheduled_key())
        pipe.smembers(keys.nodes_key())
        pipe.zrevrange(keys.recent_key(), 0, recent - 1)
        pipe.zrevrange(keys.recent_failures_key(), 0, failed - 1)
        counters, *lengths, scheduled, names, recent_ids, failed_ids = pipe.execute()
    workers = live_workers(names)
    wanted = list(dict.fromkeys([*recent_ids, *failed_ids]))
    texts = client.mget([keys.record_key(task_id) for task_id in wanted]) if wanted else []
    records = {task_id: _summary(json.loads(text))
               for task_id, text in zip(wanted, texts, strict=True) if text}
    stats = {f"{name}_tasks": int(counters.get(name, 0)) for name in COUNTER_NAMES}
    stats.update(queue_size=sum(lengths), scheduled_tasks=int(scheduled),
                 crashes=int(counters.get("crashes", 0)))
    return {
        "stats": stats,
        "queues": [{"queue_name": queues.QUEUE, "priority": priority.name, "length": length}
                   for priority, length in zip(TaskPriority, lengths, strict=True)],
        "workers": [{"hostname": name, **figures} for name, figures in sorted(workers.items())],
        "recent": [records[task_id] for task_id in recent_ids if task_id in records],
        "failed": [records[task_id] for task_id in failed_ids if task_id in records],
        "generated_at": now_iso(),
    }


def task_detail(task_id: str) -> dict[str, Any] | None:
    """A task's whole record as stored (one round trip), or None when unknown or expired."""
    text = get_redis_instance().get(keys.record_key(task_id))
    return None if text is None else json.loads(text)
