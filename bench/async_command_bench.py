"""async_command throughput against its ideal, and its raw rate against redis-benchmark, in one run.

    python3 scripts/dev.py run -- python bench/async_command_bench.py [--seconds 3] [--rounds 3]

1. Ideal ratio: ``manage.py async_command --handler bench.legacy_handlers.sleep`` with 10 ms tasks
   at --max-concurrent 1, 10 and 100; the ideal is max_concurrent / 0.010 s items per second, and
   each run gets ideal x --seconds items.  Next to it, what the event loop alone allows: the same
   refill pattern in this process with no Redis and no command (``loop alone``).
2. Raw rate: no-op tasks (``bench.legacy_handlers.noop``) at --max-concurrent 100, items per
   second, against ``redis-benchmark -c 1 -t lpush,rpop`` on the same Redis and database (one
   client, one command per round trip; the consumer finishes and takes a batch per round trip).

Both with uvloop and with asyncio's own loop, at the default verbosity (per-task log lines, to a
file) and at ``--verbosity 0``.  Each run: the command starts on an empty list of a database
claimed for the benchmark and blocks in BLMOVE; all items are pushed in one LPUSH; the time runs
from that push until the list and the processing list are both empty (polled every 2 ms).
Medians of --rounds.  Prints the figures and writes bench/results/async_command_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "easyrag.settings")

import redis  # noqa: E402

from tests.support.redis_db import claim_empty_database, delete_keys  # noqa: E402

KEY = "bench:async_command"
CONSUMER = "bench"
TASK_SECONDS = 0.010


def run_once(url: str, client: redis.Redis, max_concurrent: int, handler: str, items: int,
             seconds: float | None, verbosity: int, loop: str) -> float:
    """Items per second of one command run over ``items`` items."""
    payload = json.dumps({"type": "bench", "data": {"seconds": seconds} if seconds else {}})
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    command = subprocess.Popen(
        [sys.executable, "manage.py", "async_command", "--redis-key", KEY, "--consumer-name", CONSUMER,
         "--max-concurrent", str(max_concurrent), "--max-tasks", str(items), "--handler", handler,
         "--verbosity", str(verbosity), "--event-loop", loop],
        cwd=ROOT, env={**os.environ, "REDIS_URL": url}, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not client.exists(f"{KEY}:consumer:{CONSUMER}"):  # started, about to block in BLMOVE
            if time.monotonic() > deadline or command.poll() is not None:
                raise RuntimeError("the command did not start")
            time.sleep(0.01)
        time.sleep(0.2)
        started = time.perf_counter()
        client.lpush(KEY, *([payload] * items))
        while True:
            with client.pipeline(transaction=False) as pipe:
                waiting, held = pipe.llen(KEY).llen(f"{KEY}:processing:{CONSUMER}").execute()
            if not waiting and not held:
                break
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        if command.wait(timeout=60) != 0:
            log.seek(0)
            raise RuntimeError(log.read().decode()[-2000:])
        if client.llen(f"{KEY}:dead"):
            raise RuntimeError("items were dead-lettered")
    finally:
        if command.poll() is None:
            command.kill()
        log.close()
    return items / elapsed


def redis_benchmark(url: str, requests: int) -> dict[str, float]:
    """redis-benchmark's single-client LPUSH and RPOP rates on the claimed database (one run)."""
    parts = urlsplit(url)
    command = [shutil.which("redis-benchmark") or "redis-benchmark", "-h", parts.hostname or "127.0.0.1",
               "-p", str(parts.port or 6379), "--dbnum", parts.path.lstrip("/") or "0",
               "-c", "1", "-n", str(requests), "-t", "lpush,rpop", "--csv"]
    if parts.password:
        command += ["-a", parts.password, "--no-auth-warning"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {row["test"].lower(): float(row["rps"]) for row in csv.DictReader(io.StringIO(output))}


async def _ceiling_run(max_concurrent: int, items: int) -> float:
    """Items/s of ``max_concurrent`` 10 ms sleeps, each refilled the moment one ends; no Redis at all."""
    semaphore = asyncio.Semaphore(max_concurrent)
    done = asyncio.Event()
    finished = 0

    async def one() -> None:
        nonlocal finished
        await asyncio.sleep(TASK_SECONDS)
        finished += 1
        semaphore.release()
        if finished == items:
            done.set()

    started = time.perf_counter()
    for _ in range(items):
        await semaphore.acquire()
        asyncio.create_task(one())  # noqa: RUF006 - `done` tracks them
    await done.wait()
    return items / (time.perf_counter() - started)


def ceiling(loop: str, max_concurrent: int, items: int) -> float:
    """What the event loop alone allows: the same refill pattern with no Redis and no command."""
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_ceiling_run(max_concurrent, items))


def measure(url: str, client: redis.Redis, options: argparse.Namespace, loop: str, verbosity: int) -> dict:
    """Ideal ratios at 1, 10 and 100, and the no-op rate, for one event loop and verbosity."""
    figures: dict = {"ideal": {}}
    for concurrency in (1, 10, 100):
        ideal = concurrency / TASK_SECONDS
        items = int(ideal * options.seconds)
        rates = [run_once(url, client, concurrency, "bench.legacy_handlers.sleep", items, TASK_SECONDS,
                          verbosity, loop) for _ in range(options.rounds)]
        rate = statistics.median(rates)
        limit = statistics.median(ceiling(loop, concurrency, items) for _ in range(options.rounds))
        figures["ideal"][str(concurrency)] = {
            "items": items, "ideal_per_s": ideal, "per_s": rate, "ratio": rate / ideal,
            "loop_ceiling_per_s": limit, "ratio_of_ceiling": rate / limit, "rounds_per_s": rates}
        print(f"{loop:>7} -v {verbosity}  10 ms tasks x {concurrency:>3}: {rate:7.0f}/s of ideal "
              f"{ideal:5.0f} = {rate / ideal:.2f}  (loop alone {limit / ideal:.2f})", flush=True)
    rates = [run_once(url, client, 100, "bench.legacy_handlers.noop", options.raw_items, None, verbosity,
                      loop) for _ in range(options.rounds)]
    figures["noop"] = {"items": options.raw_items, "max_concurrent": 100, "per_s": statistics.median(rates),
                       "rounds_per_s": rates}
    print(f"{loop:>7} -v {verbosity}  no-op tasks x 100: {statistics.median(rates):7.0f}/s", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="ideal duration of each run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--raw-items", type=int, default=30000)
    parser.add_argument("--output", type=Path,
                        default=ROOT / "bench" / "results" / "async_command_bench.json")
    options = parser.parse_args()

    url, claim_client = claim_empty_database(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    client = redis.Redis.from_url(url, decode_responses=True)
    results: dict = {"task_seconds": TASK_SECONDS, "rounds": options.rounds, "runs": {}}
    try:
        for loop in ("uvloop", "asyncio"):
            for verbosity in (1, 0):
                results["runs"][f"{loop}_v{verbosity}"] = measure(url, client, options, loop, verbosity)
        # Single-client ping-pong rates swing with how busy the machine is (an idle VM wakes slower):
        # medians of the same number of rounds.
        runs = [redis_benchmark(url, 50000) for _ in range(options.rounds)]
        reference = {test: statistics.median(run[test] for run in runs) for test in runs[0]}
    finally:
        delete_keys(claim_client)
    results["redis_benchmark_c1_per_s"] = {**reference, "rounds": runs}
    print(f"redis-benchmark -c 1: LPUSH {reference['lpush']:.0f}/s, RPOP {reference['rpop']:.0f}/s")
    for name, figures in results["runs"].items():
        noop = figures["noop"]["per_s"]
        figures["noop"]["over_redis_benchmark"] = {test: noop / rate for test, rate in reference.items()}
        print(f"{name}: no-op {noop:.0f}/s = {noop / reference['lpush']:.2f} x LPUSH, "
              f"{noop / reference['rpop']:.2f} x RPOP")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
