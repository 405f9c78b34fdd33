"""The Celery app the throughput benchmark runs: the project's settings, or Celery's defaults.

BENCH_VARIANT=project (and =guarded) load celeryconfig (priority steps, no prefetch, late acks, ...);
BENCH_VARIANT=defaults sets only the broker, result backend and JSON, leaving the rest to Celery.
``bench.noop`` is a plain task; ``bench.guarded_noop`` the same body under GuardedTask.
BENCH_VARIANT=raw is the project's settings with a plain task that keeps its result (as Celery does
by default); BENCH_VARIANT=facade is the project's own app with the same body as a TaskHandler,
submitted with ``submit_task`` (bench/facade_bench.py).
"""

import os
import time

import redis
from celery import Celery

from easyrag.config import get_config
from easyrag.task_app.async_task_framework import Task, TaskHandler, register_task_handler, submit_task
from easyrag.task_app.base_task import GuardedTask
from easyrag.task_app.task_handlers import load_handler_modules

VARIANT = os.environ.get("BENCH_VARIANT", "project")
COUNTER_KEY = "bench:noop:count"
FIRST_KEY, LAST_KEY = "bench:noop:first", "bench:noop:last"

if VARIANT == "facade":
    from easyrag.celery import app
elif VARIANT in ("project", "guarded", "raw"):
    app = Celery("bench")
    app.config_from_object("celeryconfig")
    app.conf.imports = ()
    # Celery's own Redis result backend: raw Celery, as it stores results without this project
    app.conf.result_backend = get_config().redis.url
else:
    app = Celery("bench")
    url = get_config().redis.url
    app.conf.update(broker_url=url, result_backend=url, broker_connection_retry_on_startup=True)

_client = redis.Redis.from_url(get_config().redis.url)


def _count(total: int) -> None:
    """One round trip: count this run; the first and the last also stamp the time."""
    count = _client.incr(COUNTER_KEY)
    if count == 1:
        _client.set(FIRST_KEY, time.time())
    if count == total:
        _client.set(LAST_KEY, time.time())


@app.task(name="bench.noop", ignore_result=True)
def noop(total: int) -> None:
    _count(total)


@app.task(name="bench.guarded_noop", ignore_result=True, base=GuardedTask)
def guarded_noop(total: int) -> None:
    _count(total)


@app.task(name="bench.noop_result")
def noop_result(total: int) -> dict:
    _count(total)
    return {}


class BenchNoopTaskHandler(TaskHandler):
    async def handle_task(self, task: Task) -> dict:
        _count(task.task_data["total"])
        return {}


if VARIANT == "facade":
    register_task_handler(BenchNoopTaskHandler)
    load_handler_modules()  # what Django's start-up (TaskAppConfig.ready) does in a web process

TASKS = {"defaults": noop, "project": noop, "guarded": guarded_noop, "raw": noop_result}


def submit(total: int) -> str:
    """Publish one no-op of this variant the way its users would; return the task id."""
    if VARIANT == "facade":
        return submit_task("BenchNoopTaskHandler", {"total": total})
    return TASKS[VARIANT].apply_async((total,)).id
