"""Real worker subprocesses (``celery -A easyrag worker`` or the management command): start, wait
until ready, SIGKILL, warm stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from celery import Celery

from easyrag.celery import app
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One worker process group (the main process and its pool children)."""

    def __init__(self, name: str, log_path: Path, concurrency: int = 1, pool: str = "prefork",
                 env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
                 via_manage: bool = False) -> None:
        self.name = name
        self.nodename = f"{name}@{socket.gethostname()}"
        self.log_path = log_path
        if via_manage:  # the seed's way: python manage.py start_async_task_framework
            self.command = [
                sys.executable, "manage.py", "start_async_task_framework", "--workers", str(concurrency),
                "--pool", pool, "--instance-id", name, "--loglevel", "INFO", *extra_args,
            ]
        else:
            self.command = [
                sys.executable, "-m", "celery", "-A", "easyrag", "worker",
                "-c", str(concurrency), "-P", pool, "-n", f"{name}@%h", "-l", "info", *extra_args,
            ]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self._private_app: Celery | None = None

    def start(self, ready_timeout: float = 45.0, wait: bool = True) -> WorkerProcess:
        """Start the worker and return once it answers a ping (at once with ``wait=False``)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so kill() reaches the children
            )
        if not wait:
            return self
        wait_until(self._ready_or_dead, timeout=ready_timeout, interval=0.2,
                   message=f"worker {self.nodename} to answer ping")
        if not self.alive:
            raise AssertionError(f"worker {self.nodename} exited:\n{self.log_tail()}")
        return self

    def _ready_or_dead(self) -> bool:
        return not self.alive or self.ping()

    def ping(self, timeout: float = 0.5) -> bool:
        """Ask the worker over its own broker (a test may give it a private Redis)."""
        replies = self._control_app().control.ping(destination=[self.nodename], timeout=timeout)
        return any(self.nodename in reply for reply in replies)

    def _control_app(self) -> Celery:
        # Celery's control API publishes through the app's producer pool, whatever connection it
        # is given: a worker on another broker needs an app of its own.
        url = self.env.get("REDIS_URL")
        if url == app.conf.broker_url:
            return app
        if self._private_app is None:
            self._private_app = Celery("control", broker=url, set_as_current=False)
            self._private_app.config_from_object("celeryconfig")  # same transport options
        return self._private_app

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, nothing acknowledged."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown (SIGTERM to the main process); SIGKILL the group if it overstays."""
        if self.process is None or not self.alive:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
