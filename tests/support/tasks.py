"""Test-only tasks that workers import through ASYNC_TASK_HANDLER_MODULES.

They leave their traces in Redis (the test database) so tests can assert on what ran, where,
and in which order.
"""

import os
import signal
import time
import uuid

import redis
from billiard.process import current_process
from celery import shared_task
from celery.signals import before_task_publish

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app.base_task import GuardedTask, worker_nodename

STARTS_KEY = "easyrag-test:starts"


@shared_task(name="tests.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="tests.count_echoes")
def count_echoes(results: list) -> int:
    """A plain chord body: how many results its header gave it."""
    return len(results)


@shared_task(name="tests.record_start")
def record_start(label: str) -> str:
    """Append ``label`` to the start-order list."""
    get_redis_instance().rpush(STARTS_KEY, label)
    return label


@shared_task(name="tests.block")
def block(release_key: str, started_key: str, timeout: float = 30.0) -> bool:
    """Say it started, then hold the worker until the test pushes to ``release_key``."""
    client = get_redis_instance()
    client.rpush(started_key, "1")
    return client.blpop([release_key], timeout=timeout) is not None


# --- guarded tasks: traces of executions, for the duplicate-execution tests -----------------------

def trace_key(task_id: str, what: str) -> str:
    """easyrag-test:trace:<id>:<starts|ends|running|overlaps>"""
    return f"easyrag-test:trace:{task_id}:{what}"


#: An execution refreshes its "alive" mark this often, and the mark expires after ALIVE_MS.
ALIVE_REFRESH_S, ALIVE_MS = 0.05, 500


@shared_task(name="tests.traced", bind=True, base=GuardedTask)
def traced(self, seconds: float = 0.0) -> str:
    """Count starts and ends of this task id, and overlapping executions; work for ``seconds``.

    Overlap detection survives SIGKILL: each execution keeps a 500 ms mark alive with its own id
    (``SET .. PX 500 GET``).  Finding another execution's mark means two ran at the same time; a
    killed execution's mark expires long before its lock does, so a takeover is not an overlap.
    """
    _trace_execution(self.request.id, seconds)
    return worker_nodename(self.request)


def _trace_execution(task_id: str, seconds: float) -> None:
    """The body of ``traced`` (and ``traced_step``): count, mark alive, work, count."""
    client = get_redis_instance()
    me = uuid.uuid4().hex
    alive = trace_key(task_id, "alive")

    def mark() -> None:
        previous = client.set(alive, me, px=ALIVE_MS, get=True)
        if previous not in (None, me):
            client.incr(trace_key(task_id, "overlaps"))

    client.incr(trace_key(task_id, "starts"))
    mark()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # the work: a task busy for `seconds`
        time.sleep(min(ALIVE_REFRESH_S, max(0.0, deadline - time.monotonic())))
        mark()
    if client.get(alive) == me:
        client.delete(alive)
    client.incr(trace_key(task_id, "ends"))


#: Keyword argument of ``traced_step``: a Redis key.  The pool process that is about to publish a
#: message carrying it SIGKILLs itself, once per key (see _kill_publisher_once).
KILL_PUBLISHER_KWARG = "kill_publisher_once"


@shared_task(name="tests.traced_step", bind=True, base=GuardedTask)
def traced_step(self, seconds: float = 0.0, kill_publisher_once: str = "") -> str:
    """``traced`` as a chain link whose publication can kill the worker publishing it.

    ``kill_publisher_once`` does nothing in the body: the before_task_publish receiver below acts
    on it when a worker publishes this task (e.g. as the next link of a chain).
    """
    _trace_execution(self.request.id, seconds)
    return worker_nodename(self.request)


@before_task_publish.connect
def _kill_publisher_once(sender: object = None, body: object = None, **_: object) -> None:
    """In a prefork pool process, SIGKILL ourselves before publishing a message whose kwargs carry
    ``kill_publisher_once``; ``SET <key> 1 NX`` makes that happen once per key, so the message is
    published normally the next time (a redelivery re-publishing it)."""
    kwargs = body[1] if isinstance(body, tuple | list) and len(body) > 1 else None
    key = kwargs.get(KILL_PUBLISHER_KWARG) if isinstance(kwargs, dict) else None
    if not key or "PoolWorker" not in current_process().name:  # never the test process itself
        return
    if get_redis_instance().set(key, "1", nx=True):
        os.kill(os.getpid(), signal.SIGKILL)


@shared_task(name="tests.kills_its_worker", bind=True, base=GuardedTask)
def kills_its_worker(self) -> None:
    """A poison task: SIGKILL the pool process running it."""
    get_redis_instance().incr(trace_key(self.request.id, "starts"))
    os.kill(os.getpid(), signal.SIGKILL)


def traces(task_id: str, client: redis.Redis | None = None) -> dict[str, int]:
    client = client or get_redis_instance()
    names = ("starts", "ends", "overlaps")
    values = client.mget([trace_key(task_id, name) for name in names])
    return {name: int(value or 0) for name, value in zip(names, values, strict=True)}
