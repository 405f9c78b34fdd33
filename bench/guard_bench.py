"""The guard's cost, side by side in one run: the lock against a bare Redis cycle, and guarded
no-op tasks against raw Celery tasks with the same settings.

    python3 scripts/dev.py run -- python bench/guard_bench.py [--cycles 5000] [--tasks 2000] [--rounds 3]

1. Lock: ``DistributedLock.acquire(0)`` + ``release()`` cycles per second, against a bare
   ``SET key token NX PX`` + Lua compare-and-delete cycle on the same client.
2. Throughput: ``celery worker -c 2`` draining no-op tasks, plain (``project``) and under
   GuardedTask (``guarded``), alternating rounds (see bench/celery_throughput.py).

Prints both and writes bench/results/guard_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "easyrag.settings")

from bench.celery_throughput import compare, print_table  # noqa: E402
from tests.support.redis_db import claim_empty_database, delete_keys  # noqa: E402

COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lock_rates(cycles: int, rounds: int) -> dict[str, float]:
    """Median cycles/s of DistributedLock and of the bare SET NX PX + Lua DEL cycle."""
    from easyrag.common.redis_utils import create_redis_client
    from easyrag.config import get_config
    from easyrag.task_app.lock import DistributedLock

    url, claim_client = claim_empty_database(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    os.environ["REDIS_URL"] = url
    get_config.cache_clear()
    client = create_redis_client(get_config().redis)
    release = client.register_script(COMPARE_AND_DELETE)
    lock = DistributedLock(client, "bench", timeout=30)
    rates: dict[str, list[float]] = {"bare": [], "lock": []}
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(cycles):
                token = uuid.uuid4().hex
                client.set("lock:async_task:bare", token, nx=True, px=30000)
                release(keys=["lock:async_task:bare"], args=[token])
            rates["bare"].append(cycles / (time.perf_counter() - started))
            started = time.perf_counter()
            for _ in range(cycles):
                lock.acquire(timeout=0)
                lock.release()
            rates["lock"].append(cycles / (time.perf_counter() - started))
    finally:
        delete_keys(claim_client)
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "guard_bench.json")
    options = parser.parse_args()

    locks = lock_rates(options.cycles, options.rounds)
    lock_ratio = locks["lock"] / locks["bare"]
    print(f"lock cycles/s: DistributedLock {locks['lock']:.0f}, bare SET NX PX + Lua DEL "
          f"{locks['bare']:.0f}, ratio {lock_ratio:.2f}")
    throughput = compare(("project", "guarded"), options.tasks, options.rounds)
    ratios = print_table(throughput["medians"], "guarded", "project")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps({
        "lock": {"cycles": options.cycles, "rounds": options.rounds, "per_s": locks,
                 "ratio_lock_over_bare": lock_ratio},
        "throughput": {"tasks": options.tasks, "rounds": options.rounds, "concurrency": 2,
                       **throughput, "ratio_guarded_over_project": ratios},
        "guard_round_trips_per_task": {"claim": 1, "finish": 1, "renew_per_second_running": 1.5},
    }, indent=2) + "\n")
    print(f"written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
