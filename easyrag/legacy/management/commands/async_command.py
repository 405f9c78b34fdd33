"""``python manage.py async_command``: consume JSON tasks from a Redis list (seed 004), losing none.

Thin: flags, logging level, the handler; the engine is easyrag.legacy.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from easyrag.legacy.consumer import run_consumer
from easyrag.legacy.errors import LegacyConsumerError
from easyrag.legacy.handlers import HANDLER_ENV, handler_path_from_env, load_handler
from easyrag.legacy.options import (
    FORWARD_TYPES_ENV,
    ConsumerOptions,
    forward_types_from_env,
    parse_forward_types,
)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


positive_int.__name__ = "positive integer"  # argparse names the type in its error message
seconds.__name__ = "number of seconds"


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop for ``auto`` and ``uvloop`` when it is installed; None: asyncio's own.

    uvloop fires timers closer to their deadline and moves replies faster, which is what a slot
    refilled every few milliseconds waits on (bench/async_command_bench.py measures both).
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise CommandError("--event-loop uvloop: uvloop is not installed", returncode=1) from None
        return None
    return uvloop.new_event_loop


class Command(BaseCommand):
    help = ("Process JSON tasks {\"type\": ..., \"data\": {...}} from a Redis list with bounded "
            "concurrency; each item is held in a processing list until it is done.")
    requires_system_checks: list[str] = []  # a queue consumer does not need the site's checks

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--redis-key", default="async_tasks",
                            help="the Redis list (default: async_tasks)")
        parser.add_argument("--interval", type=seconds, default=1.0,
                            help="seconds a blocking take waits for an item before looking again "
                                 "(default: 1)")
        parser.add_argument("--max-tasks", type=positive_int, default=None,
                            help="stop after taking this many items, dead-lettered ones included "
                                 "(default: unlimited)")
        parser.add_argument("--max-concurrent", type=positive_int, default=5,
                            help="items processed at once (default: 5)")
        parser.add_argument("--consumer-name", default=socket.gethostname(),
                            help="names this consumer's processing list; a restart under the same name "
                                 "resumes what a crash left (default: the host name)")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--handler", default=None, metavar="DOTTED.PATH",
                            help=f"an async def handler(data: dict) to run instead of the default "
                                 f"async_handle (default: ${HANDLER_ENV})")
        source.add_argument("--forward", action="store_true",
                            help="submit each item to the Celery task layer (submit_task) instead of "
                                 "running it here")
        parser.add_argument("--forward-types", default=None, metavar="TYPE,TYPE",
                            help=f"with --forward: the task types (handler names) items may be submitted "
                                 f"as; others are dead-lettered (default: ${FORWARD_TYPES_ENV}, else "
                                 f"LegacyTaskHandler)")
        parser.add_argument("--grace-period", type=seconds, default=30.0,
                            help="after SIGINT/SIGTERM, seconds running items get to finish before they "
                                 "are put back on the list (default: 30)")
        parser.add_argument("--retry-window", type=seconds, default=20.0,
                            help="seconds Redis may stay unreachable before the command gives up "
                                 "(default: 20)")
        parser.add_argument("--event-loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                            help="auto: uvloop when installed, else asyncio's own (default: auto)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verbosity"] == 0:
            logging.getLogger("easyrag.legacy").setLevel(logging.WARNING)
        elif options["verbosity"] >= 2:
            logging.getLogger("easyrag.legacy").setLevel(logging.DEBUG)
        try:
            consumer_options = ConsumerOptions(
                redis_key=options["redis_key"], interval=options["interval"],
                max_tasks=options["max_tasks"], max_concurrent=options["max_concurrent"],
                consumer_name=options["consumer_name"], grace_period=options["grace_period"],
                retry_window=options["retry_window"],
            )
        except ValueError as error:
            raise CommandError(str(error), returncode=1) from None
        if options["forward_types"] is not None and not options["forward"]:
            raise CommandError("--forward-types applies to --forward only", returncode=1)
        try:
            if options["forward"]:
                from easyrag.legacy.forward import DEFAULT_FORWARD_TYPES, make_forwarder

                text = options["forward_types"]
                if text is None:
                    text = forward_types_from_env()
                types = DEFAULT_FORWARD_TYPES if text is None else parse_forward_types(text)
                handler = make_forwarder(types)
            else:
                handler = load_handler(options["handler"] or handler_path_from_env())
            with asyncio.Runner(loop_factory=loop_factory(options["event_loop"])) as runner:
                runner.run(run_consumer(consumer_options, handler))
        except LegacyConsumerError as error:
            raise CommandError(str(error), returncode=1) from None
