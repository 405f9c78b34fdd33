"""Celery settings of the EasyRAG task layer, derived from easyrag.config (one source of truth).

Every line that decides ordering, acknowledgement or redelivery says why it is there.
Priorities on the Redis broker: 0 (URGENT) is served first, 3 (LOW) last.
"""

from easyrag.config import load_or_exit

_config = load_or_exit()

broker_url = _config.redis.url
# A guarded task's record is its result (one copy): Celery's Redis backend reading the records
# (easyrag/task_app/result_backend.py); other tasks keep Celery's celery-task-meta-<id>.
# ("class+url" is Celery's form for a backend class with a URL.)
result_backend = f"easyrag.task_app.result_backend:RecordBackend+{_config.redis.url}"
broker_connection_retry_on_startup = True

# JSON only: a pickle payload on a shared broker would let anyone who can write to Redis run code.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# Handler modules every worker (and the submitting process) imports at start-up: the built-in
# ones (easyrag.config.BUILTIN_HANDLER_MODULES), then ASYNC_TASK_HANDLER_MODULES.  Named, not
# imported here, so the configuration never imports tasks/.
imports = (*_config.all_handler_modules, "easyrag.task_app.django_tasks")

worker_concurrency = _config.max_workers
result_expires = _config.result_ttl

# --- priorities -------------------------------------------------------------------------------
# A task published without a priority is NORMAL (2), so the facade and plain .delay() agree.
task_default_priority = 2

broker_transport_options = {
    # kombu's Redis transport emulates priorities with one list per step and BRPOPs the lists in
    # step order.  Its default steps are [0, 3, 6, 9], which would put URGENT (0), HIGH (1) and
    # NORMAL (2) into the same list; one step per priority keeps the four apart.
    "priority_steps": [0, 1, 2, 3],
    # Lists are named celery, celery:1, celery:2, celery:3 (readable in redis-cli) instead of
    # kombu's default "\x06\x16" separator.
    "sep": ":",
    # Poll queues in their declared order instead of rotating them, so a worker that consumes
    # several queues never serves a later queue's urgent list after an earlier queue's low one
    # just because of the rotation.
    "queue_order_strategy": "priority",
    # Seconds a delivered but unacknowledged message may stay with a consumer before kombu puts it
    # back: this bounds how long a crashed worker's task waits to run elsewhere.
    "visibility_timeout": _config.visibility_timeout,
    # kombu >= 5.7 sweeps for expired unacked messages every interval x throttle seconds (10 x 10
    # by default: a crashed worker's task came back after 100 s).  Sweep every V/12 s (5 s at
    # V = 60), each time for real.  Recovery bound: last heartbeat + V + one sweep.
    "unacked_restore_interval": max(1, _config.visibility_timeout // 12),
    "unacked_restore_throttle": 1,
    # The sweep mutex outlives a worker killed mid-sweep by this long (kombu's 300 s would stall
    # every sweep for five minutes); double restores are already prevented by WATCH.
    "unacked_mutex_expire": min(30, max(5, _config.visibility_timeout // 2)),
}
# Celery's Redis caveats ask for the same visibility timeout in all three places; the shortest
# value set anywhere on a shared broker wins.
result_backend_transport_options = {"visibility_timeout": _config.visibility_timeout}
visibility_timeout = _config.visibility_timeout

# --- prefetch -----------------------------------------------------------------------------------
# A worker fetches a message only when a process is free to run it.  Prefetched messages sit in
# the worker's memory in arrival order, out of reach of a later URGENT task: with prefetch, a busy
# worker would run the LOW tasks it already holds before an URGENT one queued after them.
worker_prefetch_multiplier = 1
worker_disable_prefetch = True  # Celery >= 5.6, Redis only: no extra reserved message per process

# --- acknowledgement ------------------------------------------------------------------------------
# Acknowledge after the task has run, not when it is received: a worker that dies mid-task leaves
# the message unacknowledged, and kombu restores it after the visibility timeout.
task_acks_late = True
# A pool child killed mid-task (OOM, SIGKILL) makes the parent requeue the message at once instead
# of acknowledging it as failed; the guarded base task bounds how often that may repeat.
task_reject_on_worker_lost = True
# A task that raised or timed out is finished: acknowledge it rather than redeliver it forever.
task_acks_on_failure = True
task_acks_on_timeout = True
