"""``python manage.py task_stats [--watch [SECONDS]] [--json]``: get_task_stats() for people and scripts."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from easyrag.task_app.async_task_framework import get_task_stats

COUNTS = ("total", "pending", "running", "completed", "failed", "cancelled", "timeout", "scheduled")


def render(stats: dict[str, Any]) -> Group:
    """Three small tables: task counts, queue lengths per priority, workers."""
    counts = Table(title=f"tasks (instance {stats['instance_id']})")
    for name in COUNTS:
        counts.add_column(name, justify="right")
    counts.add_row(*(str(stats[f"{name}_tasks"]) for name in COUNTS))
    queues = Table(title=f"waiting in the broker: {stats['queue_size']}")
    for name in stats["queue_sizes"]:
        queues.add_column(name, justify="right")
    queues.add_row(*(str(length) for length in stats["queue_sizes"].values()))
    workers = Table(title=f"workers: {len(stats['workers'])}")
    workers.add_column("node")
    workers.add_column("active", justify="right")
    workers.add_column("processed", justify="right")
    for node, figures in sorted(stats["workers"].items()):
        workers.add_row(node, str(figures["active"]), str(figures["processed"]))
    return Group(counts, queues, workers)


class Command(BaseCommand):
    help = "Print the task layer's stats (counts, queue lengths, workers) as tables or JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        output = parser.add_mutually_exclusive_group()
        output.add_argument("--json", action="store_true", help="print get_task_stats() as JSON")
        output.add_argument("--watch", type=float, nargs="?", const=1.0, metavar="SECONDS",
                            help="refresh in place every SECONDS (default 1) until Ctrl+C")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["json"]:
            self.stdout.write(json.dumps(get_task_stats(), indent=2, sort_keys=True))
            return
        console = Console(file=self.stdout)
        if options["watch"] is None:
            console.print(render(get_task_stats()))
            return
        interval = max(0.1, options["watch"])
        try:
            with Live(render(get_task_stats()), console=console, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)  # the refresh period the user asked for
                    live.update(render(get_task_stats()), refresh=True)
        except KeyboardInterrupt:
            pass
