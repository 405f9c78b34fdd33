"""The facade against raw Celery, side by side in one run, on a private redis-server.

    python3 scripts/dev.py run -- python bench/facade_bench.py [--tasks 2000] [--rounds 3]

1. Submit rate and drain throughput (alternating rounds, medians): ``--tasks`` no-ops published
   from one process, then drained by ``celery worker -c 2`` (prefork, the project's settings).
   ``raw``: a plain Celery task with the same body, published with ``apply_async`` (its result
   kept, as Celery does by default).  ``facade``: the body as a TaskHandler, published with
   ``submit_task`` (validation, queue bound, PENDING record) and run under the guard (claim,
   record, finish).  Per task: Redis commands (INFO commandstats of the private server), worker
   CPU (the worker's process tree, from /proc) and Redis CPU, for submit and drain.
2. Round-trip latency, one idle ``-c 1`` worker: ``raw`` = ``apply_async(...).get()``;
   ``facade`` = ``submit_task`` then ``get_task_status`` every millisecond until COMPLETED.
3. ``get_task_stats()`` latency with 3 live workers (each call asks all three).

The server is private so that every command counted is the benchmark's.  Prints the figures and
writes bench/results/facade_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "easyrag.settings")

import redis  # noqa: E402

from tests.support.redis_server import RedisServer  # noqa: E402

VARIANTS = ("raw", "facade")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_S = 0.02


def commands(client: redis.Redis) -> int:
    """Commands the server has run since it started."""
    return sum(stat["calls"] for stat in client.info("commandstats").values())


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its children (the prefork pool)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def worker(variant: str, env: dict[str, str], concurrency: int, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.noop_app", "worker", "-c", str(concurrency),
         "-P", "prefork", "-n", f"{name}@%h", "-l", "warning", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env={**env, "BENCH_VARIANT": variant}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextmanager
def running(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


def throughput_round(variant: str, env: dict[str, str], client: redis.Redis, tasks: int) -> dict:
    """Submit ``tasks`` no-ops in a child process, then drain them with a fresh -c 2 worker."""
    client.flushdb()
    memory = client.info("memory")["used_memory"]
    code = f"""
import time
from bench.noop_app import submit
started = time.perf_counter()
for _ in range({tasks}):
    submit({tasks})
print(time.perf_counter() - started)
"""
    before = commands(client)
    submitted = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                               text=True, env={**env, "BENCH_VARIANT": variant})
    submit_commands = commands(client) - before
    with running(worker(variant, env, 2, f"drain-{variant}")) as process:
        deadline = time.monotonic() + 300
        while client.get("bench:noop:first") is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: the {variant} worker did not start")
            time.sleep(POLL_S)
        cpu, server_cpu, count, polls = tree_cpu(process.pid), redis_cpu(client), commands(client), 0
        while client.get("bench:noop:last") is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: the {variant} worker did not drain {tasks} tasks")
            time.sleep(POLL_S)
            polls += 1
        drained = int(client.get("bench:noop:count"))
        cpu, server_cpu = tree_cpu(process.pid) - cpu, redis_cpu(client) - server_cpu
        count = commands(client) - count - polls - 3  # minus this loop's own GETs and INFOs
        span = float(client.get("bench:noop:last")) - float(client.get("bench:noop:first"))
    per_task = drained or 1
    kept = finished_task_keys(client, variant)
    return {
        "submit_per_s": tasks / float(submitted.stdout.split()[-1]),
        "drain_per_s": (tasks - 1) / span,
        "submit_commands_per_task": submit_commands / tasks,
        "drain_commands_per_task": count / per_task,
        "worker_cpu_ms_per_task": 1000 * cpu / per_task,
        "redis_cpu_ms_per_task": 1000 * server_cpu / per_task,
        # what Redis keeps per finished task (the worker stopped, every message acknowledged)
        "bytes_per_finished_task": (client.info("memory")["used_memory"] - memory) / tasks,
        "keys_per_finished_task": kept["keys"] / tasks,
        "result_bytes_mean": kept["value_bytes_mean"],
    }


#: The keys a finished task leaves, per variant: Celery's result, or the record (and a guard).
TASK_KEYS = {"raw": ("celery-task-meta-*",), "facade": ("async_task:task:*", "async_task:guard:*")}


def finished_task_keys(client: redis.Redis, variant: str) -> dict[str, float]:
    """How many per-task keys the run left, and the mean size of its first pattern's values."""
    found = {pattern: list(client.scan_iter(pattern, count=1000)) for pattern in TASK_KEYS[variant]}
    values = found[TASK_KEYS[variant][0]][:200]
    sizes = [client.strlen(key) for key in values]
    return {"keys": sum(len(names) for names in found.values()),
            "value_bytes_mean": statistics.mean(sizes) if sizes else 0.0}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": 1000 * statistics.median(ordered),
            "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))], "max_ms": 1000 * ordered[-1]}


def latencies(variant: str, env: dict[str, str], calls: int) -> dict[str, float]:
    """Submit → finished, one task at a time, against one idle -c 1 worker (run in a child)."""
    code = f"""
import json, time
from bench.noop_app import TASKS, submit
from easyrag.task_app.async_task_framework import get_task_status
from tests.support.waiting import wait_until

def finished_facade():
    task_id = submit(0)
    while (task := get_task_status(task_id)) is None or task.status != "COMPLETED":
        time.sleep(0.001)

def finished_raw():
    TASKS["raw"].apply_async((0,)).get(timeout=30)

finish = finished_facade if "{variant}" == "facade" else finished_raw
for _ in range(20):  # warm up: connections, imports, the worker's first task
    finish()
samples = []
for _ in range({calls}):
    started = time.perf_counter()
    finish()
    samples.append(time.perf_counter() - started)
print(json.dumps(samples))
"""
    with running(worker(variant, env, 1, f"latency-{variant}")):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                             text=True, env={**env, "BENCH_VARIANT": variant}, timeout=300)
    return percentiles(json.loads(out.stdout.splitlines()[-1]))


def stats_latency(env: dict[str, str], calls: int, nodes: int = 3) -> dict:
    """get_task_stats() with ``nodes`` live workers; every call must hear from all of them."""
    code = f"""
import json, time
from easyrag.task_app.async_task_framework import get_task_stats
from easyrag.task_app.nodes import live_nodes
from tests.support.waiting import wait_until

wait_until(lambda: len(live_nodes()) == {nodes}, timeout=60, message="{nodes} live workers")
wait_until(lambda: len(get_task_stats()["workers"]) == {nodes}, timeout=60, message="all answer")
samples, heard = [], []
for _ in range({calls}):
    started = time.perf_counter()
    stats = get_task_stats()
    samples.append(time.perf_counter() - started)
    heard.append(len(stats["workers"]))
print(json.dumps([samples, min(heard)]))
"""
    processes = [worker("facade", env, 1, f"stats-{index}") for index in range(nodes)]
    try:
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                             text=True, env={**env, "BENCH_VARIANT": "facade"}, timeout=300)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    samples, fewest = json.loads(out.stdout.splitlines()[-1])
    return {**percentiles(samples), "workers": nodes, "fewest_workers_heard": fewest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-calls", type=int, default=300)
    parser.add_argument("--stats-calls", type=int, default=300)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "facade_bench.json")
    options = parser.parse_args()

    from rich.progress import Progress

    with tempfile.TemporaryDirectory() as data_dir:
        server = RedisServer(Path(data_dir)).start()
        try:
            client = redis.Redis(port=server.port, decode_responses=True)
            # The queue bound stays on (the facade's default path) but above what is queued.
            # Both log only warnings (celery -l warning; the project's loggers likewise).
            env = {**os.environ, "REDIS_URL": server.url, "ASYNC_TASK_QUEUE_SIZE": str(options.tasks + 1),
                   "ASYNC_TASK_HANDLER_MODULES": "", "ASYNC_TASK_LOG_LEVEL": "WARNING"}
            runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
            with Progress() as progress:
                bar = progress.add_task("throughput rounds", total=options.rounds * len(VARIANTS))
                for _ in range(options.rounds):
                    for variant in VARIANTS:  # alternate, so drift on the machine hits both alike
                        runs[variant].append(throughput_round(variant, env, client, options.tasks))
                        progress.advance(bar)
            client.flushdb()
            latency = {variant: latencies(variant, env, options.latency_calls) for variant in VARIANTS}
            client.flushdb()
            stats = stats_latency(env, options.stats_calls)
        finally:
            server.stop()

    medians = {variant: {metric: statistics.median(run[metric] for run in runs[variant])
                         for metric in runs[variant][0]} for variant in VARIANTS}
    ratios = {metric: medians["facade"][metric] / medians["raw"][metric]
              for metric in ("submit_per_s", "drain_per_s", "submit_commands_per_task",
                             "drain_commands_per_task", "worker_cpu_ms_per_task", "bytes_per_finished_task")}
    print(f"\n{'':<8} {'submit/s':>9} {'drain/s':>8} {'cmds/submit':>12} {'cmds/task':>10} "
          f"{'worker ms/task':>15} {'redis ms/task':>14} {'latency p50/p95 ms':>19}")
    for variant in VARIANTS:
        m, lat = medians[variant], latency[variant]
        print(f"{variant:<8} {m['submit_per_s']:>9.0f} {m['drain_per_s']:>8.0f} "
              f"{m['submit_commands_per_task']:>12.1f} {m['drain_commands_per_task']:>10.1f} "
              f"{m['worker_cpu_ms_per_task']:>15.2f} {m['redis_cpu_ms_per_task']:>14.3f} "
              f"{lat['p50_ms']:>9.2f}/{lat['p95_ms']:.2f}")
    print(f"{'ratio':<8} {ratios['submit_per_s']:>9.2f} {ratios['drain_per_s']:>8.2f} "
          f"{ratios['submit_commands_per_task']:>12.2f} {ratios['drain_commands_per_task']:>10.2f} "
          f"{ratios['worker_cpu_ms_per_task']:>15.2f}   (facade / raw)")
    for variant in VARIANTS:
        m = medians[variant]
        print(f"{variant:<8} per finished task: {m['bytes_per_finished_task']:.0f} bytes of Redis memory, "
              f"{m['keys_per_finished_task']:.2f} keys; its stored result/record: "
              f"{m['result_bytes_mean']:.0f} bytes")
    facade = medians["facade"]
    print(f"facade memory per finished task / (1.2 x record + 100): "
          f"{facade['bytes_per_finished_task'] / (1.2 * facade['result_bytes_mean'] + 100):.2f}")
    print(f"get_task_stats() with {stats['workers']} workers: p50 {stats['p50_ms']:.2f} ms, "
          f"p95 {stats['p95_ms']:.2f} ms, max {stats['max_ms']:.2f} ms "
          f"(every call heard from at least {stats['fewest_workers_heard']})")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps({
        "tasks": options.tasks, "rounds": options.rounds, "drain_concurrency": 2, "pool": "prefork",
        "runs": runs, "medians": medians, "ratio_facade_over_raw": ratios, "latency": latency,
        "get_task_stats": stats,
    }, indent=2) + "\n")
    print(f"written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
