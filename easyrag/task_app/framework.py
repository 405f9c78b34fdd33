"""start_task_framework / get_task_framework: a Celery worker started from code, and its queue.

The seed starts its framework from code (``start_task_framework(max_workers=4, queue_size=100)``).
Here that starts a real ``celery -A easyrag worker`` in a child process (prefork pools need a main
thread of their own), named ``instance_id@<host>`` as the management command names its workers.
The worker lives no longer than this process, however it ends: ``atexit`` stops it warmly on a
normal exit, and its lifeline (``lifeline.py``) stops it a moment after a SIGKILL or ``os._exit``.

The worker writes its log to this process's stdout and stderr, as the seed's in-process framework
did (a terminal, a container's or systemd's log).  A caller reading those through a pipe sees EOF
once the worker has also ended, which the lifeline bounds to the worker's shutdown.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import lifeline, queues

logger = logging.getLogger("EasyRAG.task_app.async_task_framework")
ROOT = Path(__file__).resolve().parents[2]


class BrokerQueue:
    """What the seed's ``framework.task_queue`` was: here, the tasks waiting in the broker."""

    def qsize(self) -> int:
        """Messages waiting in the broker's priority lists (cancelled ones until a worker drops them)."""
        return sum(queues.queue_sizes(get_redis_instance()).values())


class TaskFramework:
    """One process's view of the task layer, and the worker it started, if any."""

    def __init__(self, max_workers: int, queue_size: int, instance_id: str | None = None) -> None:
        self.max_workers = max_workers
        self.queue_size = queue_size
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.nodename = f"{self.instance_id}@{socket.gethostname()}"
        self.task_queue = BrokerQueue()
        self.process: subprocess.Popen | None = None
        self._lifeline: int | None = None  # write end of the worker's lifeline, held while we live

    @property
    def running(self) -> bool:
        """Whether the worker this framework started is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> TaskFramework:
        """Start the worker in the background (returns at once)."""
        if self.running:
            return self
        self._close_lifeline()  # a previous worker's, if it died on its own
        read_fd, self._lifeline = lifeline.open_lifeline()
        env = {**os.environ, "ASYNC_TASK_WORKERS": str(self.max_workers),
               "ASYNC_TASK_QUEUE_SIZE": str(self.queue_size), **lifeline.worker_env(read_fd)}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "easyrag", "worker", "-c", str(self.max_workers),
                 "-n", f"{self.instance_id}@%h", "-l", "info"], cwd=ROOT, env=env,
                start_new_session=True,  # its own process group: stop() can reach the pool children
                pass_fds=(read_fd,),
            )
        finally:
            os.close(read_fd)  # the worker has its copy; this process keeps only the write end
        atexit.register(self.stop)  # a normal exit: warm shutdown, waited for
        logger.info("started worker %s (concurrency %s, pid %s)", self.nodename, self.max_workers,
                    self.process.pid)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Warm shutdown: running tasks finish, then the worker exits."""
        if not self.running:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # overstayed its warm shutdown: the whole group goes
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._close_lifeline()  # after the worker ended: closing it first would signal it twice
        logger.info("stopped worker %s", self.nodename)

    def _close_lifeline(self) -> None:
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None


_framework: TaskFramework | None = None
_lock = threading.Lock()


def get_task_framework() -> TaskFramework:
    """This process's framework, started or not (configured from the settings when not started)."""
    global _framework
    with _lock:
        if _framework is None:
            config = get_config()
            _framework = TaskFramework(config.max_workers, config.queue_size)
        return _framework


def start_task_framework(max_workers: int = 4, queue_size: int = 100,
                         instance_id: str | None = None) -> TaskFramework:
    """Start a worker from code in the background and return the framework (``.stop()`` stops it)."""
    global _framework
    with _lock:  # held while starting: two callers at once must not start two workers
        if _framework is not None and _framework.running:
            return _framework
        _framework = TaskFramework(max_workers, queue_size, instance_id)
        return _framework.start()
