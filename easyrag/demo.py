"""The demo (``python3 scripts/dev.py demo``): every built-in handler on sample inputs, on a real worker.

It copies samples/ into the file roots and Django storage (easyrag.demo_samples), starts one
``celery -A easyrag worker``, submits a task of every handler type through ``submit_task`` (a
document parse for each sample document: PDF, HTML, Markdown), shows a live progress bar per task
from ``get_task_status``, then prints each task's status and result, the notification it received
and ``get_task_stats()``.  Exit status 0 only if every task COMPLETED.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _start_worker(nodename: str, concurrency: int, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "easyrag", "worker", "-c", str(concurrency),
             "-n", nodename, "-l", "info"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _wait_for_worker(app, nodename: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not app.control.ping(destination=[nodename], timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"demo: the worker {nodename} did not start")


def _stop_worker(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def _follow(tasks: list, console, deadline: float) -> None:
    """Live progress bars until every task is final or the deadline passes."""
    from rich.progress import BarColumn, Progress, TextColumn

    from easyrag.task_app.async_task_framework import get_task_status

    columns = (TextColumn("{task.description:<24}"), BarColumn(bar_width=30),
               TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[status]:<9}"),
               TextColumn("{task.fields[message]}", style="dim"))
    with Progress(*columns, console=console) as progress:
        submitted = [task for task in tasks if task.task_id]
        bars = [progress.add_task(task.label, total=100, status="PENDING", message="") for task in submitted]
        while time.monotonic() < deadline:
            for bar, task in zip(bars, submitted, strict=True):
                task.record = get_task_status(task.task_id) or task.record
                if task.record is not None:
                    progress.update(bar, completed=task.record.progress, status=task.record.status.value,
                                    message=(task.record.message or "")[:60])
            if all(task.record is not None and task.record.status.is_final for task in submitted):
                return
            time.sleep(0.2)


def _received(subscriber, wait: float = 1.0) -> list[str]:
    """Messages published on the demo's channel (the notification task sends one)."""
    messages: list[str] = []
    deadline = time.monotonic() + wait
    while not messages and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=0.1)
        if message and message["type"] == "message":
            messages.append(message["data"])
    return messages


def _report(tasks: list, notifications: list[str], console) -> None:
    from rich.table import Table

    from easyrag.demo_samples import summarize
    from easyrag.task_app.async_task_framework import get_task_stats

    table = Table(title="Tasks")
    for column in ("handler", "status", "result"):
        table.add_column(column, overflow="fold")
    for task in tasks:
        status = task.record.status.value if task.record else ("REFUSED" if task.refused else "UNKNOWN")
        line = summarize(task.task_type, task.record.result) if status == "COMPLETED" else (
            task.record.error if task.record else task.refused or "no record")
        colour = "green" if status == "COMPLETED" else "red"
        table.add_row(task.task_type, f"[{colour}]{status}[/]", line)
    console.print(table)
    for message in notifications:
        console.print(f"received on the demo's Redis channel: {message}")
    stats = get_task_stats()
    figures = Table(title="get_task_stats()")
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    for key in ("total_tasks", "pending_tasks", "running_tasks", "completed_tasks", "failed_tasks",
                "cancelled_tasks", "queue_size"):
        figures.add_row(key, str(stats.get(key)))
    for name, worker in sorted(stats.get("workers", {}).items()):
        figures.add_row(f"worker {name}",
                        f"active {worker.get('active')}, processed {worker.get('processed')}")
    figures.add_row("instance_id", str(stats.get("instance_id")))
    console.print(figures)


def _django_task(result, deadline: float) -> bool:
    """Wait for a Django Task's result; True when it succeeded."""
    while True:
        result.refresh()
        if result.is_finished or time.monotonic() > deadline:
            return result.status == "SUCCESSFUL"
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the EasyRAG task layer demo.")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the tasks (120)")
    parser.add_argument("--summary-json", type=Path,
                        help="also write each task's id, type, status and result to this file")
    options = parser.parse_args(argv)

    from easyrag.config import load_or_exit

    config = load_or_exit()
    import django

    django.setup()
    from django.core.management import call_command
    from rich.console import Console

    from easyrag.celery import app
    from easyrag.common.redis_utils import get_redis_instance
    from easyrag.demo_samples import NOTIFY_SUBSCRIBE, count_words, prepare
    from easyrag.task_app.async_task_framework import TaskValidationError, submit_task

    console = Console()
    # The facade logs each submission at INFO; the progress bars say it better here.
    logging.getLogger("EasyRAG.task_app.async_task_framework").setLevel(logging.WARNING)
    redis = get_redis_instance()
    if not redis.health_check():
        console.print(f"demo: Redis at {config.redis.url} does not answer")
        return 1
    call_command("migrate", verbosity=0)
    tasks = prepare(config)
    nodename = f"demo-{os.getpid()}@{socket.gethostname()}"
    log_path = ROOT / ".run" / "demo-worker.log"
    worker = _start_worker(nodename, config.max_workers, log_path)
    subscriber = redis.pubsub(ignore_subscribe_messages=True)
    try:
        with console.status(f"starting worker {nodename} (concurrency {config.max_workers})"):
            _wait_for_worker(app, nodename, worker)
        console.print(f"worker [bold]{nodename}[/] ready on {config.redis.url} (log, with the e-mail: "
                      f"{log_path})")
        subscriber.subscribe(NOTIFY_SUBSCRIBE)
        for task in tasks:
            try:
                task.task_id = submit_task(task.task_type, task.task_data)
            except TaskValidationError as error:
                task.refused = str(error)
        django_task = count_words.enqueue("Django's Tasks API on the guarded Celery workers")
        console.print(f"submitted {sum(bool(task.task_id) for task in tasks)} of {len(tasks)} tasks: "
                      "one or more of every built-in handler, and one Django Task")
        _follow(tasks, console, time.monotonic() + options.timeout)
        notifications = _received(subscriber)
        _report(tasks, notifications, console)
        django_done = _django_task(django_task, time.monotonic() + 30)
        console.print(f"Django Task {django_task.task.name}: {django_task.status} "
                      f"{django_task.return_value if django_done else ''}")
    finally:
        subscriber.close()
        _stop_worker(worker)
    completed = [task for task in tasks if task.record and task.record.status.value == "COMPLETED"]
    if not django_done:
        completed = completed[:-1]  # the demo fails when its Django Task did not succeed either
    if options.summary_json:
        options.summary_json.write_text(json.dumps([
            {"label": task.label, "task_id": task.task_id, "task_type": task.task_type,
             "status": task.record.status.value if task.record else None,
             "result": task.record.result if task.record else None} for task in tasks], indent=2))
    console.print(f"{len(completed)} of {len(tasks)} tasks completed")
    return 0 if len(completed) == len(tasks) else 1


if __name__ == "__main__":
    sys.exit(main())
