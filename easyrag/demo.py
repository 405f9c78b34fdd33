"""The demo (``python3 scripts/dev.py demo``): a real worker, tasks at all four priorities, progress.

It starts one ``celery -A easyrag worker`` with concurrency 1, keeps it busy with a first task,
queues three tasks per priority in the worst order (LOW first, URGENT last), and shows each task's
progress until all finish; then prints the order in which they started: URGENT first.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from celery import shared_task

PRIORITY_NAMES = {0: "URGENT", 1: "HIGH", 2: "NORMAL", 3: "LOW"}
ROOT = Path(__file__).resolve().parent.parent
BLOCK = 1024 * 1024


@shared_task(bind=True, name="easyrag.demo.checksum")
def checksum(self, label: str, megabytes: int) -> dict:
    """SHA-256 over ``megabytes`` MiB of deterministic data, reporting progress per MiB."""
    started_at = time.time()
    digest = hashlib.sha256()
    block = hashlib.sha512(label.encode()).digest() * (BLOCK // 64)
    for done in range(1, megabytes + 1):
        digest.update(block)
        block = block[1:] + block[:1]
        self.update_state(state="PROGRESS", meta={"percent": 100 * done // megabytes})
    return {
        "label": label,
        "sha256": digest.hexdigest(),
        "started_at": started_at,
        "seconds": round(time.time() - started_at, 3),
        "worker": self.request.hostname,
    }


def _start_worker(nodename: str, log_path: Path) -> subprocess.Popen:
    modules = ",".join(filter(None, (os.environ.get("ASYNC_TASK_HANDLER_MODULES"), "easyrag.demo")))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "easyrag", "worker", "-c", "1", "-n", nodename,
             "-l", "info"],
            cwd=ROOT, env={**os.environ, "ASYNC_TASK_HANDLER_MODULES": modules},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _wait_for_worker(app, nodename: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not app.control.ping(destination=[nodename], timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"demo: the worker {nodename} did not start")


def _show_progress(results: list, console) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<18}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TextColumn("{task.fields[state]:<8}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bars = [progress.add_task(result.label, total=100, state="PENDING") for result in results]
        while not progress.finished:
            for bar, result in zip(bars, results, strict=True):
                state, info = result.state, result.info
                if state == "PROGRESS" and isinstance(info, dict):
                    progress.update(bar, completed=info.get("percent", 0), state="RUNNING")
                elif state in ("SUCCESS", "FAILURE"):
                    progress.update(bar, completed=100, state=state)
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the EasyRAG task layer demo.")
    parser.add_argument("--per-priority", type=int, default=3, help="tasks per priority (3)")
    parser.add_argument("--megabytes", type=int, default=400, help="MiB hashed per task (400)")
    options = parser.parse_args(argv)

    from easyrag.config import load_or_exit

    config = load_or_exit()
    from rich.console import Console
    from rich.table import Table

    from easyrag.celery import app
    from easyrag.common.redis_utils import get_redis_instance

    console = Console()
    if not get_redis_instance().health_check():
        console.print(f"demo: Redis at {config.redis.url} does not answer")
        return 1
    nodename = f"demo-{os.getpid()}@{socket.gethostname()}"
    log_path = ROOT / ".run" / "demo-worker.log"
    worker = _start_worker(nodename, log_path)
    try:
        with console.status(f"starting worker {nodename} (concurrency 1)"):
            _wait_for_worker(app, nodename, worker)
        console.print(f"worker [bold]{nodename}[/] ready on {config.redis.url} (log: {log_path})")

        first = checksum.apply_async(args=["warm-up", options.megabytes * 2], priority=2)
        first.label = "warm-up (NORMAL)"
        with console.status("waiting for the worker to start the warm-up task"):
            while first.state == "PENDING":
                time.sleep(0.05)
        queued = []
        for priority in (3, 2, 1, 0):  # the worst order: LOW first, URGENT last
            for n in range(options.per_priority):
                label = f"{PRIORITY_NAMES[priority]} #{n + 1}"
                result = checksum.apply_async(args=[label, options.megabytes], priority=priority)
                result.label, result.priority = label, priority
                queued.append(result)
        console.print(f"queued {len(queued)} tasks while the worker is busy: LOW first, URGENT last")
        _show_progress([first, *queued], console)

        failed = [result for result in [first, *queued] if result.state != "SUCCESS"]
        if failed:
            console.print(f"[red]{len(failed)} task(s) failed[/]: {failed[0].label}: {failed[0].result!r}")
            return 1
        outcomes = sorted((result.result | {"priority": result.priority} for result in queued),
                          key=lambda outcome: outcome["started_at"])
        for result in [first, *queued]:
            result.forget()  # the demo leaves no results behind in the user's Redis
        table = Table(title="Start order (the worker picks the highest priority first)")
        for column in ("#", "task", "priority", "seconds", "sha256", "worker"):
            table.add_column(column)
        for order, outcome in enumerate(outcomes, 1):
            table.add_row(str(order), outcome["label"], PRIORITY_NAMES[outcome["priority"]],
                          f"{outcome['seconds']:.2f}", outcome["sha256"][:16], outcome["worker"])
        console.print(table)
        priorities = [outcome["priority"] for outcome in outcomes]
        honoured = priorities == sorted(priorities)
        console.print("priorities honoured: " + ("[green]yes[/]" if honoured else "[red]NO[/]"))
        return 0 if honoured else 1
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


if __name__ == "__main__":
    sys.exit(main())
