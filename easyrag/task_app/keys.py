"""Every Redis key of the task layer except the lock's (lock.py) and kombu's own.

P = ASYNC_TASK_REDIS_PREFIX (``async_task``).

=========================  ======  ==============================================================
key                        type    content
=========================  ======  ==============================================================
``P:task:{id}``            string  the task record, JSON (records.py); expires result_ttl
``P:guard:{id}``           hash    a live task's guard: state, fence, crashes, cancel, release, owner,
                                   retries, idem, and the tokens of the last SUBMIT/FINISH/CANCEL
                                   call; deleted when the task ends (its record says so then)
``P:defer:{id}``           string  token of the one live deferral message of a busy task; TTL V
``P:counters``              hash    total, pending, running, completed, failed, cancelled, timeout;
                                   crashes (crashed executions, cumulative)
``P:metrics``               hash    per task type, cumulative: ``<metric>|<type>`` for sent,
                                   started, succeeded, failed, retried, revoked, timeouts, crashes;
                                   ``runtime|<le>|<type>`` and ``runtime_sum|<type>`` (the runtime
                                   histogram, metrics.py); duplicate_deliveries
``P:recent``                zset    ids of the newest RECENT_TASKS_KEPT tasks, by creation time
``P:recent:failed``         zset    ids of the newest RECENT_FAILURES_KEPT failed or timed-out tasks,
                                   by the time they ended
``P:owner:{user_id}``       zset    ids of the tasks submitted with this user_id, by creation time
``P:api_live:{user_id}``    zset    a non-staff API user's places under the live-task limit
``P:idem:{type}:{user}:{h}``  string  an idempotency key's first task: ``"<task id> <fingerprint>"``;
                                   h = sha256 of the key; expires with that task's record
``P:scheduled``             zset    delayed messages by due time (scheduler.py): member = a token
``P:scheduled:messages``    hash    token → ``{"task_id", "list", "message"}``, the message to push
``P:nodes``                 set     names of worker nodes that registered (nodes.py)
``P:node:{name}``           string  a node's heartbeat, ``{"active", "processed"}``; expires 10 s
                                   after its last beat
``P:nodes:lost``            zset    nodes whose heartbeat stopped without a warm stop, by when
                                   that was noticed; reported down for an hour
``lock:async_task:task:{id}``      the running task's lock, ``"<fence>:<owner>"`` (lock.py)
=========================  ======  ==============================================================

A guarded task writes no ``celery-task-meta-{id}``: Celery's result API reads the record
(result_backend.py).  Its final state is published on that name as a pub/sub channel, which is
how ``AsyncResult.get()`` wakes.
"""

from __future__ import annotations

import hashlib

from easyrag.config import get_config
from easyrag.task_app.lock import lock_key


def _prefix() -> str:
    return get_config().redis_prefix


def record_key(task_id: str) -> str:
    """The task's record, JSON (records.py)."""
    return f"{_prefix()}:task:{task_id}"


def guard_key(task_id: str) -> str:
    """The guard of one task (a hash): state, fence, crashes, cancel, owner."""
    return f"{_prefix()}:guard:{task_id}"


def defer_key(task_id: str) -> str:
    """The token of a busy task's one live deferral message."""
    return f"{_prefix()}:defer:{task_id}"


def task_lock_key(task_id: str) -> str:
    """The lock a running task holds (lock.lock_key of ``task:<id>``)."""
    return lock_key(f"task:{task_id}")


def counters_key() -> str:
    """The cluster-wide counts by status (a hash)."""
    return f"{_prefix()}:counters"


def nodes_key() -> str:
    """The names of the worker nodes that registered (a set)."""
    return f"{_prefix()}:nodes"


def lost_nodes_key() -> str:
    """Nodes that died without a warm stop, by the time it was noticed (a sorted set)."""
    return f"{_prefix()}:nodes:lost"


def node_key(nodename: str) -> str:
    """One worker node's heartbeat; it expires 10 s after the last beat."""
    return f"{_prefix()}:node:{nodename}"


def metrics_key() -> str:
    """The cumulative per-task-type counters and runtime histogram of /metrics (a hash)."""
    return f"{_prefix()}:metrics"


#: Tasks the recent-tasks index keeps (the dashboard reads its newest; older ids are trimmed by
#: the step that adds one, so the index never needs a scan or a sweeper).
RECENT_TASKS_KEPT = 1000
#: Failed or timed-out tasks the recent-failures index keeps.
RECENT_FAILURES_KEPT = 200


def recent_key() -> str:
    """The newest tasks of the whole cluster, by creation time (a sorted set of ids)."""
    return f"{_prefix()}:recent"


def recent_failures_key() -> str:
    """The newest failed or timed-out tasks, by the time they ended (a sorted set of ids)."""
    return f"{_prefix()}:recent:failed"


def owner_index_key(user_id: object) -> str:
    """The index of one user's tasks, newest first (owners.OwnerTasks)."""
    return f"{_prefix()}:owner:{user_id}"


def api_live_key(user_id: object) -> str:
    """The places one non-staff API user holds (a sorted set: reservations and task ids, by time)."""
    return f"{_prefix()}:api_live:{user_id}"


def idempotency_key(task_type: str, user_id: object, key: str) -> str:
    """Where an idempotency key of ``task_type`` and ``user_id`` names its first task."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{_prefix()}:idem:{task_type}:{'' if user_id is None else user_id}:{digest}"


def result_channel(task_id: str) -> str:
    """The pub/sub channel Celery's result consumer listens on for ``task_id`` (its Redis backend's
    result key name, global key prefix included); '' when the result backend is not a key-value one."""
    from celery import current_app  # the app's backend knows its prefixes

    backend = current_app.backend
    if _channel_prefix[0] is not backend:
        key_for_task = getattr(backend, "get_key_for_task", None)
        key = key_for_task("-") if key_for_task is not None else None  # the prefix, then "-"
        key = key.decode() if isinstance(key, bytes) else key
        _channel_prefix[:] = [backend, None if key is None else key[:-1]]
    prefix = _channel_prefix[1]
    return "" if prefix is None else prefix + task_id


#: The backend result_channel last read its prefix from, and that prefix (None: no channel).
_channel_prefix: list = [None, None]


def scheduled_key() -> str:
    """Delayed messages waiting for their due time: tokens scored by due epoch (scheduler.py)."""
    return f"{_prefix()}:scheduled"


def scheduled_messages_key() -> str:
    """The delayed messages themselves, by token: ``{"task_id", "list", "message"}`` JSON."""
    return f"{_prefix()}:scheduled:messages"
