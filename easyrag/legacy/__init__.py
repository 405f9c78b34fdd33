"""The legacy Redis-list consumer behind ``python manage.py async_command`` (seed 004), a Django app.

Producers push JSON tasks ``{"type": ..., "data": {...}}`` onto a Redis list; the consumer runs
them with bounded concurrency and loses none of them: each item is moved atomically into the
consumer's processing list and removed only when it is finished (or dead-lettered).

    apps.py            LegacyConfig, the app (label ``legacy``) that makes the command discoverable
    errors.py          the error tree: LegacyConsumerError and its kinds, the per-item errors
    lists.py           every key and the Lua steps on the source, processing and dead-letter lists
    items.py           the item format: parsing a taken item, the dead-letter record, its log form
    dead_letters.py    listing, requeueing and deleting dead letters (the dashboard's, synchronous)
    options.py         ConsumerOptions (the flags) and ConsumerReport (what a run did)
    lease.py           one running consumer per consumer name
    retry.py           riding out a Redis outage for up to the retry window
    consumer.py        the asyncio loop: take, run, finish, recover, stop gracefully
    handlers.py        the seed's default ``async_handle`` and loading a replacement (--handler)
    forward.py         --forward: submit each item to the Celery facade instead
    celery_handler.py  LegacyTaskHandler: runs a forwarded item of an unmapped type on a worker
    management/commands/async_command.py   the command: flags, logging level, the handler

It stands apart from the task layer: its modules import easyrag.config, their own package, the
standard library and redis-py (apps.py and the command: Django) only.  forward.py and
celery_handler.py, the two halves of --forward, alone reach the task layer: through its facade
(easyrag.task_app.async_task_framework), and forward.py also reads the handler registry
(task_handlers) to map legacy types.  Nothing in easyrag.task_app imports this package.
"""

from easyrag.legacy.consumer import Consumer, run_consumer
from easyrag.legacy.handlers import async_handle, load_handler
from easyrag.legacy.options import ConsumerOptions, ConsumerReport

__all__ = ("Consumer", "ConsumerOptions", "ConsumerReport", "async_handle", "load_handler", "run_consumer")
