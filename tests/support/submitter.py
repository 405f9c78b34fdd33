"""A separate submitting process: ``python -m tests.support.submitter COUNT [KEY]``.

Waits for the start gate (``easyrag-test:go`` in the test database), then calls submit_task COUNT
times (with idempotency key KEY, if given) and prints one JSON line: the ids it got and how many
submissions QueueFullError refused.  Tests start several at once to submit concurrently.
"""

from __future__ import annotations

import json
import sys
import time

import django

GATE = "easyrag-test:go"


def main(count: int, key: str | None) -> None:
    django.setup()
    from easyrag.common.redis_utils import get_redis_instance
    from easyrag.task_app.async_task_framework import QueueFullError, submit_task

    client = get_redis_instance()
    deadline = time.monotonic() + 60
    while not client.exists(GATE):  # every submitter is started and waiting before the gate opens
        if time.monotonic() > deadline:
            raise SystemExit("the gate never opened")
        time.sleep(0.005)
    ids, refused = [], 0
    for _ in range(count):
        try:
            ids.append(submit_task("EchoTaskHandler", {"n": 1}, idempotency_key=key))
        except QueueFullError:
            refused += 1
    print(json.dumps({"ids": ids, "refused": refused}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
