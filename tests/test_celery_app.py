"""The Celery app: real workers (in-process and `celery -A easyrag worker`) on the real Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from easyrag.celery import app
from tests.support import tasks
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def test_worker_subprocess_answers_ping_and_runs_a_task(worker_process):
    worker = worker_process("w1", concurrency=1)
    assert worker.ping()
    result = tasks.add.delay(2, 3)
    assert result.get(timeout=20) == 5
    assert app.backend.get_task_meta(result.id)["status"] == "SUCCESS"


def test_celery_cli_inspect_ping_reaches_the_worker(worker_process):
    worker = worker_process("w1")
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "easyrag", "inspect", "ping", "-d", worker.nodename,
         "-t", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"{worker.nodename}: OK" in result.stdout
    assert "pong" in result.stdout


def test_in_process_worker_runs_a_task(live_worker):
    assert tasks.add.delay(20, 22).get(timeout=10) == 42


def test_pickle_message_is_refused_and_json_is_run(live_worker, redis_client):
    # JSON only: a pickled message must never reach a task body.
    tasks.record_start.apply_async(args=["pickled"], serializer="pickle")
    tasks.record_start.apply_async(args=["json"])
    wait_until(lambda: "json" in redis_client.lrange(tasks.STARTS_KEY, 0, -1), message="the JSON task")
    assert redis_client.lrange(tasks.STARTS_KEY, 0, -1) == ["json"]


def test_worker_imports_handler_modules_from_the_setting(worker_process):
    worker = worker_process("w1")
    registered = app.control.inspect(destination=[worker.nodename], timeout=5).registered()
    assert "tests.record_start" in registered[worker.nodename]
