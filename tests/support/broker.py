"""What the Redis broker holds: queued lists per priority and kombu's unacked messages."""

from __future__ import annotations

import time

import redis

from easyrag.task_app import keys
from easyrag.task_app.records import TaskRecord, TaskStatus

QUEUE_LISTS = ("celery", "celery:1", "celery:2", "celery:3")

#: Worker settings that make redelivery and crash recovery happen within seconds in tests.
FAST_RECOVERY = {
    "ASYNC_TASK_VISIBILITY_TIMEOUT": "4",
    "ASYNC_TASK_LOCK_TIMEOUT": "2",
    "ASYNC_TASK_RESULT_TTL": "600",
}


def broker_idle(client: redis.Redis) -> bool:
    """Nothing queued, nothing delivered and unacknowledged (ETA messages held by workers count)."""
    with client.pipeline(transaction=False) as pipe:
        for name in QUEUE_LISTS:
            pipe.llen(name)
        pipe.hlen("unacked")
        return not any(pipe.execute())


def record(client: redis.Redis, task_id: str) -> TaskRecord | None:
    text = client.get(keys.record_key(task_id))
    return TaskRecord.from_json(text) if text else None


def status(client: redis.Redis, task_id: str) -> TaskStatus | None:
    found = record(client, task_id)
    return found.status if found else None


def where_is(client: redis.Redis, task_id: str) -> str:
    """Where a task's messages are now: the priority lists, kombu's unacked hash (with the age of
    its index entry), the delayed set; for a test's failure message."""
    found = []
    for name in QUEUE_LISTS:
        copies = sum(task_id in message for message in client.lrange(name, 0, -1))
        if copies:
            found.append(f"{copies} in {name}")
    for tag, message in client.hgetall("unacked").items():
        if task_id in message:
            score = client.zscore("unacked_index", tag)
            age = "no index entry" if score is None else f"indexed {time.time() - score:.0f} s ago"
            found.append(f"unacked {tag} ({age})")
    for token, entry in client.hgetall(keys.scheduled_messages_key()).items():
        if task_id in entry:
            found.append(f"scheduled {token} due {client.zscore(keys.scheduled_key(), token)}")
    return ", ".join(found) or "no message anywhere"
