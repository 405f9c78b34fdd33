"""The live worker nodes: a Redis registry kept by each worker, and a one-reply stats command.

``get_task_stats()`` must be cheap enough to poll every second.  Celery's inspect API waits its
whole timeout unless it knows how many replies to expect, so each worker registers its node name
at start-up (``P:nodes`` set; on worker_init, which in-process test workers send too, unlike
worker_ready) and keeps ``P:node:{name}`` alive while it runs; the stats then broadcast one
``easyrag_stats`` command to exactly the live nodes and return as soon as all have answered.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_init, worker_shutdown
from celery.worker import state
from celery.worker.control import inspect_command

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app import keys

logger = logging.getLogger(__name__)

#: Seconds between a worker's heartbeats, and how long a silent node stays listed.
HEARTBEAT_S, NODE_TTL_S = 2.0, 10

_stops: dict[str, threading.Event] = {}


@inspect_command()
def easyrag_stats(state_: Any, **_: Any) -> dict[str, int]:
    """Tasks this worker runs now, and tasks it ran since it started."""
    return {"active": len(state.active_requests), "processed": state.all_total_count[0]}


def _heartbeat(nodename: str, stop: threading.Event) -> None:
    client = get_redis_instance()
    while True:
        try:
            with client.pipeline(transaction=False) as pipe:
                pipe.sadd(keys.nodes_key(), nodename)
                pipe.set(keys.node_key(nodename), "1", ex=NODE_TTL_S)
                pipe.execute()
        except Exception as error:  # the registry is best effort: never stop the heartbeat
            logger.warning("node %s: registry heartbeat failed: %s", nodename, error)
        if stop.wait(HEARTBEAT_S):
            return


@worker_init.connect
def _register(sender: Any = None, **_: Any) -> None:
    nodename = sender.hostname
    stop = _stops[nodename] = threading.Event()
    threading.Thread(target=_heartbeat, args=(nodename, stop), name="node-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _unregister(sender: Any = None, **_: Any) -> None:
    nodename = getattr(sender, "hostname", None)
    if nodename:
        forget_node(nodename)


def forget_node(nodename: str) -> None:
    """Stop this process's heartbeat for ``nodename`` and take it out of the registry."""
    if nodename in _stops:
        _stops.pop(nodename).set()
    client = get_redis_instance()
    client.srem(keys.nodes_key(), nodename)
    client.delete(keys.node_key(nodename))


def live_nodes() -> list[str]:
    """Names of the nodes whose heartbeat is fresh (two round trips); forgets silent ones."""
    client = get_redis_instance()
    names = sorted(client.smembers(keys.nodes_key()))
    if not names:
        return []
    alive = client.mget([keys.node_key(name) for name in names])
    dead = [name for name, mark in zip(names, alive, strict=True) if not mark]
    if dead:
        client.srem(keys.nodes_key(), *dead)
    return [name for name, mark in zip(names, alive, strict=True) if mark]
