#!/usr/bin/env python
"""Concurrency demo of async_command on the seed's seven tasks (seed 004).

    python scripts/test_concurrent_tasks.py --mode test     [--max-concurrent 5] [--redis-key async_tasks]
    python scripts/test_concurrent_tasks.py --mode compare  [--max-concurrent 5] [--redis-key async_tasks]
    python scripts/test_concurrent_tasks.py --mode monitor  [--consumer-name HOST] [--redis-key async_tasks]

test     pushes 3 fast (0.5 s), 2 medium (1 s) and 2 slow (2 s) tasks, runs a consumer (the
         command's engine, in this process, with the default async_handle) until the seven are
         done, and prints ``total: <seconds> s``.
compare  does that at --max-concurrent 1 and at --max-concurrent (5), and prints
         ``serial: <seconds> s`` and ``concurrent: <seconds> s`` (seed: 7.5 s vs about 2 s).
monitor  shows a progress bar of processed/remaining items of the list (waiting, plus running in
         the processing list of --consumer-name, default the host name, as the command's) until
         both are empty, or until Ctrl+C.  Start a consumer in another terminal.

test and compare need the list empty, and no other consumer on it.  Redis: the project's
(REDIS_URL, or REDIS_HOST/...).  Run with the project's virtual environment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import time

from test_async_command import connect, push  # same folder; puts the project root on sys.path

from easyrag.legacy.consumer import run_consumer
from easyrag.legacy.handlers import async_handle
from easyrag.legacy.lists import dead_key, processing_key
from easyrag.legacy.options import ConsumerOptions

#: The seed's seven tasks, longest first: with 5 at once the two slow ones start at once and the
#: total is the slowest task's 2 s (fast tasks first would start the slow ones 0.5 s late).
SEVEN_TASKS: list[dict] = [
    *({"type": "slow_task", "data": {"n": n}} for n in (1, 2)),
    *({"type": "medium_task", "data": {"n": n}} for n in (1, 2)),
    *({"type": "fast_task", "data": {"n": n}} for n in (1, 2, 3)),
]


def run_seven(redis_key: str, max_concurrent: int) -> float:
    """Push the seven tasks, consume exactly them, return the seconds from push to the last finish."""
    client = connect()
    waiting = client.llen(redis_key)
    if waiting:
        print(f"'{redis_key}' already holds {waiting} items; clear it (scripts/test_async_command.py "
              f"--action clear) or pass another --redis-key", file=sys.stderr)
        raise SystemExit(1)
    options = ConsumerOptions(redis_key=redis_key, max_tasks=len(SEVEN_TASKS), max_concurrent=max_concurrent,
                              consumer_name=f"{socket.gethostname()}:test_concurrent_tasks")
    started = time.perf_counter()
    push(client, redis_key, SEVEN_TASKS)
    report = asyncio.run(run_consumer(options, async_handle))
    elapsed = time.perf_counter() - started
    if report.succeeded != len(SEVEN_TASKS):
        print(f"only {report.succeeded} of {len(SEVEN_TASKS)} tasks succeeded", file=sys.stderr)
        raise SystemExit(1)
    return elapsed


def monitor(redis_key: str, consumer_name: str) -> int:
    """A live bar of processed/remaining until nothing waits or runs; Ctrl+C ends it early."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    client = connect()
    keys = (redis_key, processing_key(redis_key, consumer_name), dead_key(redis_key))

    def lengths() -> tuple[int, int, int]:
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
            return tuple(pipe.execute())

    waiting, running, dead_at_start = lengths()
    processed, remaining = 0, waiting + running
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("waiting {task.fields[waiting]} · running {task.fields[running]} · "
                          "dead-lettered {task.fields[dead]}"), TimeElapsedColumn())
    try:
        with Progress(*columns) as progress:
            bar = progress.add_task(redis_key, total=remaining, waiting=waiting, running=running, dead=0)
            while remaining:
                time.sleep(0.2)
                waiting, running, dead = lengths()
                now = waiting + running
                processed += max(0, remaining - now)  # items pushed meanwhile grow the total instead
                remaining = now
                progress.update(bar, completed=processed, total=processed + remaining, waiting=waiting,
                                running=running, dead=dead - dead_at_start)
    except KeyboardInterrupt:
        print(f"stopped: processed {processed}, remaining {remaining}")
        return 0
    dead = lengths()[2] - dead_at_start
    print(f"processed {processed} items, {dead} dead-lettered; '{redis_key}' is empty")
    return 0


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("test", "compare", "monitor"), required=True)
    parser.add_argument("--redis-key", default="async_tasks")
    parser.add_argument("--max-concurrent", type=positive_int, default=5)
    parser.add_argument("--consumer-name", default=socket.gethostname(),
                        help="monitor: the consumer whose processing list counts as running")
    options = parser.parse_args()
    if options.mode == "monitor":
        return monitor(options.redis_key, options.consumer_name)
    quiet = options.mode == "compare"
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    if options.mode == "test":
        print(f"total: {run_seven(options.redis_key, options.max_concurrent):.2f} s")
        return 0
    serial = run_seven(options.redis_key, 1)
    print(f"serial: {serial:.2f} s", flush=True)
    concurrent = run_seven(options.redis_key, options.max_concurrent)
    print(f"concurrent: {concurrent:.2f} s")
    print(f"speed-up: {serial / concurrent:.1f}x at --max-concurrent {options.max_concurrent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
