"""The live worker nodes: a Redis registry kept by each worker, and a one-reply stats command.

``get_task_stats()`` must be cheap enough to poll every second.  Celery's inspect API waits its
whole timeout unless it knows how many replies to expect, so each worker registers its node name
at start-up (``P:nodes`` set; on worker_init, which in-process test workers send too, unlike
worker_ready) and keeps ``P:node:{name}`` alive while it runs; the stats then broadcast one
``easyrag_stats`` command to exactly the live nodes and return as soon as all have answered.

A node whose heartbeat stopped without a warm shutdown (killed, or its host lost) is moved to
``P:nodes:lost`` by the first reader that notices, and reported down (``celery_worker_up`` 0)
for LOST_KEPT_S, so an alert on a dead worker fires; a warm stop forgets the node at once.

The heartbeat carries the node's figures too (``{"active", "processed"}``, at most HEARTBEAT_S
old): /metrics and the dashboard read them from Redis without asking any worker.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from celery.signals import worker_init, worker_shutdown
from celery.worker import state
from celery.worker.control import inspect_command

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app import keys, scripts

logger = logging.getLogger(__name__)

#: Seconds between a worker's heartbeats, and how long a silent node stays listed.
HEARTBEAT_S, NODE_TTL_S = 1.0, 10
#: Seconds a node that died stays reported down, unless a node of that name starts again.
LOST_KEPT_S = 3600

#: Each node's heartbeat of this process: its stop event and its thread.
_heartbeats: dict[str, tuple[threading.Event, threading.Thread]] = {}


def _figures() -> dict[str, int]:
    """Tasks this worker runs now, and tasks it ran since it started."""
    return {"active": len(state.active_requests), "processed": state.all_total_count[0]}


@inspect_command()
def easyrag_stats(state_: Any, **_: Any) -> dict[str, int]:
    """Tasks this worker runs now, and tasks it ran since it started."""
    return _figures()


def _heartbeat(nodename: str, stop: threading.Event) -> None:
    client = get_redis_instance()
    while True:
        try:
            with client.pipeline(transaction=False) as pipe:
                pipe.sadd(keys.nodes_key(), nodename)
                pipe.zrem(keys.lost_nodes_key(), nodename)
                pipe.set(keys.node_key(nodename), json.dumps(_figures()), ex=NODE_TTL_S)
                pipe.execute()
        except Exception as error:  # the registry is best effort: never stop the heartbeat
            logger.warning("node %s: registry heartbeat failed: %s", nodename, error)
        if stop.wait(HEARTBEAT_S):
            return


@worker_init.connect
def _register(sender: Any = None, **_: Any) -> None:
    nodename = sender.hostname
    stop = threading.Event()
    thread = threading.Thread(target=_heartbeat, args=(nodename, stop), name="node-heartbeat", daemon=True)
    _heartbeats[nodename] = stop, thread
    thread.start()


@worker_shutdown.connect
def _unregister(sender: Any = None, **_: Any) -> None:
    nodename = getattr(sender, "hostname", None)
    if nodename:
        forget_node(nodename)


def forget_node(nodename: str) -> None:
    """Stop this process's heartbeat for ``nodename`` and take it out of the registry."""
    if nodename in _heartbeats:
        stop, thread = _heartbeats.pop(nodename)
        stop.set()
        thread.join(timeout=HEARTBEAT_S + 5)  # a beat in flight must not register the node again
    client = get_redis_instance()
    with client.pipeline(transaction=False) as pipe:
        pipe.srem(keys.nodes_key(), nodename)
        pipe.zrem(keys.lost_nodes_key(), nodename)
        pipe.delete(keys.node_key(nodename))
        pipe.execute()


def live_nodes() -> list[str]:
    """Names of the nodes whose heartbeat is fresh (two round trips); forgets silent ones."""
    return list(live_workers())


def live_workers(names: Any = None) -> dict[str, dict[str, int]]:
    """Each live node's figures of its last heartbeat, by name (two round trips; one when the
    registry's ``names`` were read already); forgets silent nodes."""
    client = get_redis_instance()
    names = sorted(client.smembers(keys.nodes_key()) if names is None else names)
    if not names:
        return {}
    beats = client.mget([keys.node_key(name) for name in names])
    dead = [name for name, beat in zip(names, beats, strict=True) if not beat]
    if dead:  # atomic against a warm stop forgetting the node, or the node starting again
        scripts.lose_nodes(client, dead, time.time())
    return {name: _decoded(beat) for name, beat in zip(names, beats, strict=True) if beat}


def _decoded(beat: str) -> dict[str, int]:
    try:
        figures = json.loads(beat)
    except ValueError:  # a heartbeat of an earlier version: "1"
        figures = None
    return figures if isinstance(figures, dict) else {"active": 0, "processed": 0}
