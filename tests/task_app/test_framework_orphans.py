"""start_task_framework's worker never outlives the process that started it (real processes).

A child Python process starts a framework worker and blocks; the test ends the child without
``atexit`` (SIGKILL, SIGTERM's default action, ``os._exit``) while the worker runs a task and
another waits in the broker.  Within 15 s no process of that worker is left, and the waiting task
runs on the next worker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from easyrag.celery import app
from easyrag.task_app.async_task_framework import TaskStatus, get_task_status, submit_task
from tests.support.waiting import wait_final, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import os, sys
from easyrag.task_app.async_task_framework import start_task_framework
start_task_framework(max_workers=1, instance_id=sys.argv[1])
for line in sys.stdin:  # blocks; "exit" ends the process the way a forked server's child may
    if line.strip() == "exit":
        os._exit(0)
"""


def _worker_processes(instance_id: str) -> list[int]:
    """Live processes of that instance's worker: its command line names it, and its pool children
    (forked, so in the same session as the main process) share its session."""
    mains, sessions = [], {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:  # ended while we looked
            continue
        state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
        if state == "Z":  # ended, only not reaped yet (its new parent may not reap at all)
            continue
        pid = int(entry.name)
        sessions[pid] = int(session)
        if f"-n {instance_id}@" in cmdline and "worker" in cmdline:
            mains.append(pid)
    return sorted({pid for pid, session in sessions.items() if session in mains or pid in mains})


def _ping(nodename: str) -> bool:
    return any(nodename in reply for reply in app.control.ping(destination=[nodename], timeout=0.5))


@pytest.mark.parametrize("ending", ["SIGKILL", "SIGTERM", "os._exit"])
def test_worker_stops_when_its_starting_process_dies_and_its_waiting_task_runs_on_the_next(
        ending, tmp_path, worker_process):
    instance_id = f"orphan-{uuid.uuid4().hex[:12]}"
    nodename = f"{instance_id}@{socket.gethostname()}"
    log_path = tmp_path / "child.log"
    with open(log_path, "wb") as log:  # the worker writes here too: it inherits the child's stdout
        child = subprocess.Popen([sys.executable, "-c", CHILD, instance_id], cwd=ROOT, stdin=subprocess.PIPE,
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: child.poll() is not None or _ping(nodename), timeout=60, interval=0.2,
                   message=f"framework worker {nodename} to answer ping")
        assert child.poll() is None, log_path.read_text(errors="replace")
        assert _worker_processes(instance_id)

        running = submit_task("SleepyTaskHandler", {"seconds": 2})
        wait_until(lambda: get_task_status(running).status is TaskStatus.RUNNING, timeout=15,
                   message=f"{running} to run on {nodename}")
        waiting = submit_task("EchoTaskHandler", {"left": "behind"})  # its one process is busy

        if ending == "os._exit":
            child.stdin.write(b"exit\n")
            child.stdin.flush()
        else:
            child.send_signal(getattr(signal, ending))
        child.wait(timeout=10)

        wait_until(lambda: not _worker_processes(instance_id), timeout=15,
                   message=f"every process of {nodename} to end after its starting process")
        assert "has ended: warm shutdown" in log_path.read_text(errors="replace")
        assert get_task_status(waiting).status is TaskStatus.PENDING  # the dead worker never took it

        following = worker_process("next")
        task = wait_final(waiting, timeout=30)
        assert (task.status, task.worker, task.result["echo"]) == (
            TaskStatus.COMPLETED, following.nodename, {"left": "behind"})
        assert wait_final(running, timeout=30).status is TaskStatus.COMPLETED
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pid in _worker_processes(instance_id):  # the test failed: leave nothing for later tests
            os.kill(pid, signal.SIGKILL)
