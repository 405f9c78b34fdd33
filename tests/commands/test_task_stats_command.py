"""python manage.py task_stats: JSON for scripts, tables for people."""

from __future__ import annotations

import io
import json

from django.core.management import call_command

from easyrag.task_app.async_task_framework import submit_task

SPEC_KEYS = {"total_tasks", "pending_tasks", "running_tasks", "completed_tasks", "failed_tasks",
             "cancelled_tasks", "queue_size", "queue_sizes", "workers", "instance_id"}


def test_json_prints_the_spec_keys(live_worker):
    out = io.StringIO()
    call_command("task_stats", "--json", stdout=out)
    stats = json.loads(out.getvalue())
    assert stats.keys() >= SPEC_KEYS
    assert live_worker.nodename in stats["workers"]


def test_table_shows_counts_queues_and_workers(live_worker):
    submit_task("EchoTaskHandler", {}, priority=3)
    out = io.StringIO()
    call_command("task_stats", stdout=out)
    text = out.getvalue()
    for word in ("total", "pending", "URGENT", "LOW", live_worker.nodename.split("@")[0]):
        assert word in text, text
