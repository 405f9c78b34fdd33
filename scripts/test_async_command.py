#!/usr/bin/env python
"""Push the seed's sample tasks onto the async_command list, or empty the list (seed 004).

    python scripts/test_async_command.py --action add   [--redis-key async_tasks]
    python scripts/test_async_command.py --action clear [--redis-key async_tasks]

Then ``python manage.py async_command`` processes them.  Redis is the project's (REDIS_URL, or
REDIS_HOST/REDIS_PORT/REDIS_PASSWORD/REDIS_DB).  Run it with the project's virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "easyrag.settings")

import redis  # noqa: E402

#: One task of each documented type, and one of a type async_handle does not know.
SAMPLE_TASKS: list[dict] = [
    {"type": "email", "data": {"to": "user@example.com", "subject": "Welcome", "body": "Hello from EasyRAG"}},
    {"type": "file_process", "data": {"file_path": "data/report.csv", "operation": "analyze"}},
    {"type": "fast_task", "data": {"task_id": 1}},
    {"type": "medium_task", "data": {"task_id": 2}},
    {"type": "slow_task", "data": {"task_id": 3}},
    {"type": "unknown_type", "data": {"message": "handled by the default branch"}},
]


def connect() -> redis.Redis:
    """The project's Redis (one PING, no retries); a bad setting or no answer: one line, exit 1."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from easyrag.config import load_or_exit

    config = load_or_exit().redis
    client = redis.Redis.from_url(config.url, decode_responses=True, retry=Retry(NoBackoff(), 0),
                                  socket_timeout=config.socket_timeout,
                                  socket_connect_timeout=config.socket_connect_timeout)
    try:
        client.ping()
    except redis.RedisError as error:
        kwargs = client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db')}"
        print(f"cannot connect to Redis at {where}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    return client


def push(client: redis.Redis, redis_key: str, tasks: list[dict]) -> int:
    """LPUSH the tasks in order (the consumer takes from the right: first pushed, first taken)."""
    return client.lpush(redis_key, *(json.dumps(task, ensure_ascii=False) for task in tasks))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--action", choices=("add", "clear"), required=True)
    parser.add_argument("--redis-key", default="async_tasks")
    options = parser.parse_args()
    client = connect()
    if options.action == "add":
        length = push(client, options.redis_key, SAMPLE_TASKS)
        for task in SAMPLE_TASKS:
            print(f"added: {json.dumps(task, ensure_ascii=False)}")
        print(f"added {len(SAMPLE_TASKS)} tasks to '{options.redis_key}' ({length} waiting)")
    else:
        with client.pipeline(transaction=True) as pipe:
            pipe.llen(options.redis_key).delete(options.redis_key)
            removed, _ = pipe.execute()
        print(f"cleared '{options.redis_key}': removed {removed} waiting tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
