"""Raw Celery no-op throughput and submit rate: the project's settings against Celery's defaults.

    python3 scripts/dev.py run -- python bench/celery_throughput.py [--tasks 2000] [--rounds 3]

For each variant and round, in an empty Redis database of its own: submit ``--tasks`` no-op tasks
from this process (submit rate), then start ``celery worker -c 2`` (prefork) and time the span from
the first task's start to the last task's (drain rate).  Prints the medians and the ratio
project/defaults, and writes everything to bench/results/celery_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "easyrag.settings")

from tests.support.redis_db import claim_empty_database, delete_keys  # noqa: E402

VARIANTS = ("defaults", "project")
#: Variant names of bench/noop_app.py.
ALL_VARIANTS = ("defaults", "project", "guarded")


def run_round(variant: str, url: str, tasks: int) -> dict[str, float]:
    """Submit ``tasks`` no-ops, then drain them with a fresh -c 2 worker; return both rates."""
    env = {**os.environ, "REDIS_URL": url, "BENCH_VARIANT": variant}
    code = f"""
import time
from bench.noop_app import TASKS
task = TASKS["{variant}"]
started = time.perf_counter()
for _ in range({tasks}):
    task.delay({tasks})
print(time.perf_counter() - started)
"""
    submit = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True)
    submit_seconds = float(submit.stdout.split()[-1])
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.noop_app", "worker", "-c", "2", "-P", "prefork",
         "-l", "warning", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis.from_url(url, decode_responses=True)
        deadline = time.monotonic() + 300
        while client.get("bench:noop:last") is None:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: the {variant} worker did not drain {tasks} tasks")
            time.sleep(0.1)
        span = float(client.get("bench:noop:last")) - float(client.get("bench:noop:first"))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return {"submit_per_s": tasks / submit_seconds, "drain_per_s": (tasks - 1) / span}


def compare(variants: tuple[str, ...], tasks: int, rounds: int) -> dict[str, dict[str, float]]:
    """Run every variant ``rounds`` times, alternating; return {variant: median figures} and runs."""
    from rich.progress import Progress

    url, client = claim_empty_database(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
    try:
        with Progress() as progress:
            bar = progress.add_task("throughput rounds", total=rounds * len(variants))
            for _ in range(rounds):
                for variant in variants:  # alternate, so drift on the machine hits all alike
                    delete_keys(client, keep=("easyrag-test:claim",))
                    runs[variant].append(run_round(variant, url, tasks))
                    progress.advance(bar)
    finally:
        delete_keys(client)
    medians = {variant: {metric: statistics.median(run[metric] for run in runs[variant])
                         for metric in ("submit_per_s", "drain_per_s")} for variant in variants}
    return {"medians": medians, "runs": runs}


def print_table(medians: dict[str, dict[str, float]], numerator: str, denominator: str) -> dict:
    """Print the medians and the ratio numerator / denominator; return the ratios."""
    ratios = {metric: medians[numerator][metric] / medians[denominator][metric]
              for metric in ("submit_per_s", "drain_per_s")}
    print(f"{'variant':<10} {'submit/s':>10} {'drain/s (-c 2)':>15}")
    for variant, figures in medians.items():
        print(f"{variant:<10} {figures['submit_per_s']:>10.0f} {figures['drain_per_s']:>15.0f}")
    print(f"{'ratio':<10} {ratios['submit_per_s']:>10.2f} {ratios['drain_per_s']:>15.2f}"
          f"   ({numerator} / {denominator})")
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "celery_throughput.json")
    options = parser.parse_args()

    figures = compare(VARIANTS, options.tasks, options.rounds)
    runs, medians = figures["runs"], figures["medians"]
    ratios = print_table(medians, "project", "defaults")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps({
        "tasks": options.tasks, "rounds": options.rounds, "concurrency": 2, "pool": "prefork",
        "runs": runs, "medians": medians, "ratio_project_over_defaults": ratios,
    }, indent=2) + "\n")
    print(f"written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
