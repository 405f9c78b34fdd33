"""``python manage.py start_async_task_framework --workers 4 --queue-size 100 --instance-id worker-1``

The seed's way to start a worker instance.  It is Celery's own worker (``app.worker_main``), run
as ``celery -A easyrag worker -c 4 -n worker-1@%h`` runs it: same pool, same signals (SIGTERM is
a warm shutdown: running tasks finish), same node name in the records it writes.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from easyrag.celery import app
from easyrag.config import get_config, non_negative_int, positive_int


class Command(BaseCommand):
    help = "Run a Celery worker of the EasyRAG task layer (like `celery -A easyrag worker`)."

    def add_arguments(self, parser: CommandParser) -> None:
        config = get_config()
        parser.add_argument("--workers", type=positive_int, default=config.max_workers,
                            help="worker processes (concurrency); default ASYNC_TASK_WORKERS (%(default)s)")
        parser.add_argument("--queue-size", type=non_negative_int, default=config.queue_size,
                            help="tasks allowed to wait in the broker, for tasks submitted from this "
                                 "process; default ASYNC_TASK_QUEUE_SIZE (%(default)s); 0 = unbounded")
        parser.add_argument("--instance-id", default="celery",
                            help="node name prefix: the worker is <instance-id>@<host> (default celery)")
        parser.add_argument("--loglevel", "-l", default="INFO",
                            choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], type=str.upper)
        parser.add_argument("--pool", "-P", default="prefork", choices=["prefork", "threads", "solo"],
                            help="Celery execution pool (default prefork)")

    def handle(self, *args: Any, **options: Any) -> None:
        os.environ["ASYNC_TASK_WORKERS"] = str(options["workers"])
        os.environ["ASYNC_TASK_QUEUE_SIZE"] = str(options["queue_size"])
        get_config.cache_clear()
        app.worker_main([
            "worker", "--concurrency", str(options["workers"]), "--pool", options["pool"],
            "--hostname", f"{options['instance_id']}@%h", "--loglevel", options["loglevel"],
        ])
