"""The Celery app the throughput benchmark runs: the project's settings, or Celery's defaults.

BENCH_VARIANT=project loads celeryconfig (priority steps, no prefetch, late acks, ...);
BENCH_VARIANT=defaults sets only the broker, result backend and JSON, leaving the rest to Celery.
"""

import os
import time

import redis
from celery import Celery

from easyrag.config import get_config

VARIANT = os.environ.get("BENCH_VARIANT", "project")
COUNTER_KEY = "bench:noop:count"
FIRST_KEY, LAST_KEY = "bench:noop:first", "bench:noop:last"

app = Celery("bench")
if VARIANT == "project":
    app.config_from_object("celeryconfig")
    app.conf.imports = ()
else:
    url = get_config().redis.url
    app.conf.update(broker_url=url, result_backend=url, broker_connection_retry_on_startup=True)

_client = redis.Redis.from_url(get_config().redis.url)


@app.task(name="bench.noop", ignore_result=True)
def noop(total: int) -> None:
    """One round trip: count this run; the first and the last also stamp the time."""
    count = _client.incr(COUNTER_KEY)
    if count == 1:
        _client.set(FIRST_KEY, time.time())
    if count == total:
        _client.set(LAST_KEY, time.time())
