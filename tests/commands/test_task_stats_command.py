"""python manage.py task_stats: JSON for scripts, tables for people."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys

from django.core.management import call_command

from easyrag.task_app.async_task_framework import submit_task
from tests.support.waiting import wait_until
from tests.support.workers import ROOT

SPEC_KEYS = {"total_tasks", "pending_tasks", "running_tasks", "completed_tasks", "failed_tasks",
             "cancelled_tasks", "queue_size", "queue_sizes", "workers", "instance_id"}


def test_json_prints_the_spec_keys(live_worker):
    out = io.StringIO()
    call_command("task_stats", "--json", stdout=out)
    stats = json.loads(out.getvalue())
    assert stats.keys() >= SPEC_KEYS
    assert live_worker.nodename in stats["workers"]


def test_table_shows_the_counts_and_queue_lengths():
    for priority in (3, 3, 0):  # no worker: all three wait
        submit_task("EchoTaskHandler", {}, priority=priority)
    out = io.StringIO()
    call_command("task_stats", stdout=out)
    rows = [[int(n) for n in re.findall(r"\d+", line)] for line in out.getvalue().splitlines()
            if line.startswith("│")]
    # total, pending, running, completed, failed, cancelled, timeout, scheduled; then URGENT, HIGH,
    # NORMAL, LOW
    assert rows == [[3, 3, 0, 0, 0, 0, 0, 0], [1, 0, 0, 2]], out.getvalue()


def test_watch_refreshes_in_place_until_ctrl_c(tmp_path):
    output = tmp_path / "watch.out"
    with open(output, "wb") as sink:
        watcher = subprocess.Popen(
            [sys.executable, "manage.py", "task_stats", "--watch", "0.1"], cwd=ROOT, stdout=sink,
            stderr=subprocess.STDOUT, env={**os.environ, "FORCE_COLOR": "1"},  # a terminal, for rich
        )
    try:
        wait_until(lambda: output.read_text(errors="replace").count("tasks (instance") >= 3, timeout=30,
                   message="three refreshes")
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=10) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
    text = output.read_text(errors="replace")
    assert re.search(r"\x1b\[\d*A", text)  # cursor up: the tables are redrawn in place, not appended
    assert "Traceback" not in text
