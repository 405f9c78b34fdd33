"""``GET /metrics``: the task layer in Prometheus' text format, under celery-exporter's names.

Nothing here counts: the Lua steps that change a task's state (scripts.py) add to the cumulative
``P:metrics`` hash in the same step, so the figures are exact, shared by every worker, and survive
worker restarts.  A scrape reads them in two round trips, however many tasks exist: one pipeline
(the metrics and counters hashes, the queue lists' lengths, the delayed tasks, the node registry),
then the live nodes' heartbeats (nodes.py).

=========================================  =========  ===============================================
family                                     type       what
=========================================  =========  ===============================================
``celery_task_sent_total{name}``           counter    tasks submitted (or first seen, published the
                                                      plain Celery way)
``celery_task_started_total{name}``        counter    claims that started an execution (a retry or
                                                      a re-run after a crash starts again; so does
                                                      the claim that ends a task at the crash limit
                                                      or for a cancel asked meanwhile)
``celery_task_succeeded_total{name}``      counter    tasks COMPLETED
``celery_task_failed_total{name}``         counter    tasks FAILED or TIMEOUT (Celery's FAILURE)
``celery_task_retried_total{name}``        counter    retries scheduled
``celery_task_revoked_total{name}``        counter    tasks CANCELLED (cancel_task, revoke, expiry)
``celery_task_runtime_seconds{name}``      histogram  run time of succeeded tasks (RUNTIME_BUCKETS)
``celery_queue_length{queue_name,          gauge      messages waiting per priority list
priority}``
``celery_worker_up{hostname}``             gauge      1 per live worker node; 0 for an hour once it
                                                      died (10 s without a heartbeat); gone at once
                                                      after a warm stop
``celery_worker_tasks_active{hostname}``   gauge      tasks the node runs (at most 1 s old)
``easyrag_task_crashes_total{name}``       counter    executions whose worker died (CLAIM found them)
``easyrag_task_timeouts_total{name}``      counter    tasks ended TIMEOUT (also in failed_total)
``easyrag_duplicate_deliveries_total``     counter    copies the guard dropped or deferred (each
                                                      once, however often it is deferred)
``easyrag_tasks_scheduled``                gauge      delayed tasks waiting for their time
``easyrag_tasks_pending`` / ``_running``   gauge      live tasks, as get_task_stats() counts them
=========================================  =========  ===============================================
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app import keys, queues
from easyrag.task_app.nodes import LOST_KEPT_S, live_workers
from easyrag.task_app.records import TaskPriority
from easyrag.task_app.scripts import RUNTIME_BUCKETS, runtime_bucket

#: The exposition's content type: Prometheus' classic text format.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

#: The per-name counter families: (field in P:metrics, family name, help).
COUNTERS = (
    ("sent", "celery_task_sent", "Tasks sent (submitted), by task type."),
    ("started", "celery_task_started", "Task executions started, by task type."),
    ("succeeded", "celery_task_succeeded", "Tasks that completed, by task type."),
    ("failed", "celery_task_failed", "Tasks that failed or timed out, by task type."),
    ("retried", "celery_task_retried", "Task retries scheduled, by task type."),
    ("revoked", "celery_task_revoked", "Tasks cancelled (cancel, revoke, expiry), by task type."),
    ("crashes", "easyrag_task_crashes", "Task executions whose worker died, by task type."),
    ("timeouts", "easyrag_task_timeouts", "Tasks that ended TIMEOUT, by task type."),
)


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reads from Redis."""

    metrics: dict[str, str]  # P:metrics
    counters: dict[str, str]  # P:counters
    queue_sizes: dict[str, int]  # by priority name
    scheduled: int
    workers: dict[str, dict[str, int]]  # live node name -> {"active", "processed"}
    lost: list[str]  # nodes that died within nodes.LOST_KEPT_S (and did not start again)


def read_snapshot(client: redis.Redis | None = None) -> Snapshot:
    """The figures of one scrape, in two round trips."""
    client = client or get_redis_instance()
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.metrics_key())
        pipe.hgetall(keys.counters_key())
        for priority in TaskPriority:
            pipe.llen(queues.priority_list(priority))
        pipe.zcard(keys.scheduled_key())
        pipe.smembers(keys.nodes_key())
        pipe.zremrangebyscore(keys.lost_nodes_key(), "-inf", time.time() - LOST_KEPT_S)
        pipe.zrange(keys.lost_nodes_key(), 0, -1)
        metrics, counters, *lengths, scheduled, names, _, lost = pipe.execute()
    workers = live_workers(names)
    lost = sorted({*lost, *(name for name in names if name not in workers)} - workers.keys())
    return Snapshot(metrics, counters,
                    {priority.name: length for priority, length in zip(TaskPriority, lengths, strict=True)},
                    int(scheduled), workers, lost)


def _per_name(metrics: dict[str, str]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """The hash's fields by metric and task type, and the runtime buckets by task type and bound."""
    counts: dict[str, dict[str, float]] = {}
    buckets: dict[str, dict[str, int]] = {}
    for field, value in metrics.items():
        metric, per_name, rest = field.partition("|")
        if metric == "runtime":
            bound, _, name = rest.partition("|")
            buckets.setdefault(name, {})[bound] = int(value)
        elif per_name:  # not duplicate_deliveries, which has no name
            counts.setdefault(metric, {})[rest] = float(value)
    return counts, buckets


#: The histogram's bounds as its fields and its exposition name them, in order.
_BOUNDS = [(runtime_bucket(bound), "+Inf" if bound == float("inf") else str(bound))
           for bound in RUNTIME_BUCKETS]


def families(snapshot: Snapshot) -> Iterator[Any]:
    """The metric families of one snapshot."""
    counts, buckets = _per_name(snapshot.metrics)
    for field, name, documentation in COUNTERS:
        family = CounterMetricFamily(name, documentation, labels=["name"])
        for task_type, value in sorted(counts.get(field, {}).items()):
            family.add_metric([task_type], value)
        yield family
    runtime = HistogramMetricFamily("celery_task_runtime_seconds",
                                    "Run time of succeeded tasks, by task type.", labels=["name"])
    for task_type, by_bound in sorted(buckets.items()):
        cumulative, series = 0, []
        for field_bound, exposed_bound in _BOUNDS:
            cumulative += by_bound.get(field_bound, 0)
            series.append((exposed_bound, cumulative))
        runtime.add_metric([task_type], series, counts.get("runtime_sum", {}).get(task_type, 0.0))
    yield runtime
    duplicates = CounterMetricFamily("easyrag_duplicate_deliveries",
                                     "Deliveries the guard dropped or deferred (a copy of a task that "
                                     "runs, ran, or was cancelled).")
    duplicates.add_metric([], float(snapshot.metrics.get("duplicate_deliveries", 0)))
    yield duplicates
    queue_length = GaugeMetricFamily("celery_queue_length", "Messages waiting in the broker, per priority.",
                                     labels=["queue_name", "priority"])
    for priority, length in snapshot.queue_sizes.items():
        queue_length.add_metric([queues.QUEUE, priority], length)
    yield queue_length
    up = GaugeMetricFamily("celery_worker_up", "1 for each live worker node.", labels=["hostname"])
    active = GaugeMetricFamily("celery_worker_tasks_active", "Tasks each live worker node runs now.",
                               labels=["hostname"])
    for hostname, figures in sorted(snapshot.workers.items()):
        up.add_metric([hostname], 1)
        active.add_metric([hostname], figures.get("active", 0))
    for hostname in snapshot.lost:  # died: down, so that an alert on celery_worker_up == 0 fires
        up.add_metric([hostname], 0)
    yield up
    yield active
    scheduled = GaugeMetricFamily("easyrag_tasks_scheduled", "Delayed tasks waiting for their time.")
    scheduled.add_metric([], snapshot.scheduled)
    yield scheduled
    for state in ("pending", "running"):
        live = GaugeMetricFamily(f"easyrag_tasks_{state}", f"Tasks {state} now (get_task_stats()).")
        live.add_metric([], int(snapshot.counters.get(state, 0)))
        yield live


class TaskLayerCollector(Collector):
    """prometheus_client's custom collector over one Redis snapshot per scrape."""

    def collect(self) -> Iterator[Any]:
        yield from families(read_snapshot())


def exposition() -> bytes:
    """One scrape's body, in Prometheus' text format (CONTENT_TYPE)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskLayerCollector())
    return generate_latest(registry)
