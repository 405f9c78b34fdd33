"""Run the real ``manage.py async_command`` as a subprocess against the test Redis, and read its traces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.legacy_handlers import ENDS_KEY, EVENTS_KEY, STARTS_KEY

ROOT = Path(__file__).resolve().parents[2]
RECORD = "tests.support.legacy_handlers.record"
KEY = "jobs"


def item(item_id: object, kind: str = "ok", seconds: float | None = None) -> str:
    data: dict = {"id": item_id}
    if seconds is not None:
        data["seconds"] = seconds
    return json.dumps({"type": kind, "data": data})


def push(client: redis.Redis, items: list[str], key: str = KEY) -> None:
    """Push so that ``items[0]`` is taken first (LPUSH, taken from the right)."""
    client.lpush(key, *items)


def counts(client: redis.Redis, key: str) -> dict[str, int]:
    return {item_id: int(n) for item_id, n in client.hgetall(key).items()}


def starts(client: redis.Redis) -> dict[str, int]:
    return counts(client, STARTS_KEY)


def ends(client: redis.Redis) -> dict[str, int]:
    return counts(client, ENDS_KEY)


def max_overlap(client: redis.Redis) -> int:
    """The most items running at once, replayed from the start/end marks in Redis order."""
    running = peak = 0
    for event in client.lrange(EVENTS_KEY, 0, -1):
        running += 1 if event.startswith("start ") else -1
        peak = max(peak, running)
    return peak


def waiting_ids(client: redis.Redis, key: str = KEY) -> list[str]:
    """Ids of the items on the list, in the order they will be taken."""
    return [str(json.loads(raw)["data"]["id"]) for raw in reversed(client.lrange(key, 0, -1))]


class CommandProcess:
    """One ``manage.py async_command`` subprocess; stdout and stderr go to files."""

    def __init__(self, args: list[str], env: dict[str, str], directory: Path) -> None:
        self.stdout_path = directory / "stdout.log"
        self.stderr_path = directory / "stderr.log"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen([sys.executable, "manage.py", "async_command", *args],
                                            cwd=ROOT, env=env, stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def send(self, number: signal.Signals) -> None:
        self.process.send_signal(number)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stdout(self) -> str:
        return self.stdout_path.read_text()


@pytest.fixture
def async_command(tmp_path: Path, redis_test_url: str) -> Iterator[Callable[..., CommandProcess]]:
    """Factory: start the command with these flags (REDIS_URL = the test database unless given)."""
    started: list[CommandProcess] = []

    def start(*args: str, redis_url: str | None = None, env: dict[str, str] | None = None) -> CommandProcess:
        environment = {**os.environ, "REDIS_URL": redis_url or redis_test_url, "PYTHONUNBUFFERED": "1"}
        environment.pop("ASYNC_COMMAND_HANDLER", None)
        environment.update(env or {})
        directory = tmp_path / f"command-{len(started)}"
        directory.mkdir()
        command = CommandProcess(list(args), environment, directory)
        started.append(command)
        return command

    yield start
    for command in started:
        command.kill()

