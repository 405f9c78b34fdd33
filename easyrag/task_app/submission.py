"""A new task in one round trip: kombu builds its message, one Lua step queues it and records it.

Celery's ``apply_async`` builds the task message (protocol 2) and kombu's Redis channel serialises
it and would ``LPUSH`` it onto the queue's priority list.  The submit producer's channel
(``SubmitChannel``) hands that serialised message to SUBMIT (scripts.py) instead, which checks the
queue bound and the idempotency key, pushes the message and writes the PENDING record, its counters
and owner index in one atomic step: the task is queued and recorded, or neither.  So the bound is
exact however many processes submit, a repeated idempotency key never queues a second message, and
a submitter killed mid-submit leaves nothing half done.

Only new guarded tasks take this path (``GuardedTask.apply_async``); re-publishes of a known task
(retries, deferrals) and every other task use Celery's own producer as usual.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kombu
from celery import Celery
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import keys, scripts


@dataclass
class Pending:
    """The submission under way in this context, and what SUBMIT answered."""

    submission: scripts.Submission
    waiter: bool = True  # whether the caller may wait on the result (Celery subscribes at once)
    outcome: scripts.Submitted | None = None
    detail: str = ""


_pending: contextvars.ContextVar[Pending | None] = contextvars.ContextVar("easyrag_submission", default=None)


def current() -> Pending | None:
    """The submission being published in this context, if any."""
    return _pending.get()


@contextlib.contextmanager
def submitting(submission: scripts.Submission, waiter: bool = True) -> Iterator[Pending]:
    """Within the block, the submit producer's next message goes through SUBMIT for ``submission``."""
    pending = Pending(submission, waiter)
    token = _pending.set(pending)
    try:
        yield pending
    finally:
        _pending.reset(token)


class SubmitChannel(kombu_redis.Channel):
    """kombu's Redis channel, except that the message of a submission goes through SUBMIT."""

    def _put(self, queue: str, message: dict, **kwargs: Any) -> None:
        pending = _pending.get()
        if pending is None or pending.outcome is not None:
            super()._put(queue, message, **kwargs)
            return
        kwargs.pop("_publish_batch", None)  # a batch would send it later, outside the step
        priority = self._get_message_priority(message, reverse=False)
        with self.conn_or_acquire() as client:
            pending.outcome, pending.detail = scripts.submit(
                client, pending.submission, self._q_for_pri(queue, priority),
                [self._q_for_pri(queue, step) for step in self.priority_steps], dumps(message),
                get_config().result_ttl)


class SubmitTransport(kombu_redis.Transport):
    """kombu's Redis transport with SubmitChannel."""

    Channel = SubmitChannel


_local = threading.local()


def producer(app: Celery, connection: kombu.Connection | None = None) -> kombu.Producer:
    """This thread's submit producer for the app's broker (or ``connection``'s): its own broker
    connection (kombu producers are not thread-safe), made again after a fork."""
    url = connection.as_uri(include_password=True) if connection is not None else None
    held = getattr(_local, "held", None)
    if held is None or held[0] != os.getpid():
        held = _local.held = (os.getpid(), {})
    key = (id(app), url)
    if key not in held[1]:
        submit_connection = app.connection_for_write(url, transport=SubmitTransport)
        held[1][key] = app.amqp.Producer(submit_connection, auto_declare=False)
    return held[1][key]


def first_task_of_key(task_type: str, user_id: object, idempotency_key: str, fingerprint: str) -> str | None:
    """The task an earlier identical request under ``idempotency_key`` created, if any (one round
    trip; a read only: SUBMIT alone decides, atomically, when a task is created)."""
    value = get_redis_instance().get(keys.idempotency_key(task_type, user_id, idempotency_key))
    task_id, _, first = (value or "").partition(" ")
    return task_id if value and first == fingerprint else None
