"""Test harness: a dedicated Redis database, in-process and subprocess Celery workers, private servers.

Everything runs against a real Redis and real Celery workers.  The suite claims an empty database
of the Redis that ``REDIS_URL`` (default: localhost:6379) names, points ``REDIS_URL`` at it for
this process and every worker it starts, and deletes only what was written there.  Tests that
must stop or break Redis start a private server (``redis_server`` fixture: ``redis-server``, else
the bundled ``valkey-server``); they are marked ``private_redis``, so ``-m private_redis`` selects them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from easyrag.celery import app as celery_app
from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import nodes
from tests.support.redis_db import CLAIM_KEY, claim_empty_database, delete_keys
from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Keys that survive the per-test clean-up: our claim, and kombu's exchange bindings.
KEPT_PREFIXES = (CLAIM_KEY, "_kombu.binding.")
TEST_HANDLER_MODULES = ("tests.support.tasks,tests.support.handlers,tests.support.seed_custom_handler,"
                        "tests.support.result_handlers")


_session: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Before collection imports any task module: claim an empty database, point the project at it."""
    assert not celery_app.configured, "the Celery app read its settings before the test database was set"
    url, client = claim_empty_database(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    saved = {name: os.environ.get(name) for name in ("REDIS_URL", "ASYNC_TASK_HANDLER_MODULES")}
    _session.update(url=url, client=client, saved=saved)
    os.environ["REDIS_URL"] = url
    os.environ["ASYNC_TASK_HANDLER_MODULES"] = TEST_HANDLER_MODULES
    get_config.cache_clear()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that start a private server, for the set-up's leg without redis-server."""
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.private_redis)


#: Seconds the interpreter may take to exit once pytest is done (a framework worker's warm stop
#: at exit takes up to 60 s).
EXIT_GRACE_S = 180


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _session["exitstatus"] = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    _watch_the_exit(_session.get("exitstatus", 1))
    if "client" not in _session:
        return
    delete_keys(_session["client"])  # the database was empty and claimed: everything in it is ours
    _restore_environment(_session["saved"])


def _watch_the_exit(exitstatus: int) -> None:
    """Once the run is over, the process must end: if something (a thread left running, an
    ``atexit`` hook) holds it past EXIT_GRACE_S, print every thread's stack and the children still
    alive, then end it with the run's own status.  A CI run was once held here for its whole
    time limit after every test had passed, with nothing on its output to say why."""
    import faulthandler
    import sys
    import threading

    def watch() -> None:
        threading.Event().wait(EXIT_GRACE_S)
        print(f"\n[conftest] the tests are done but this process has not exited after {EXIT_GRACE_S} s; "
              "its threads and children follow, then it exits with the run's status", file=sys.stderr,
              flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os.system(f"ps -o pid,ppid,etime,args --ppid {os.getpid()} >&2")
        sys.stderr.flush()
        os._exit(exitstatus)

    threading.Thread(target=watch, name="exit-watchdog", daemon=True).start()


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_config.cache_clear()


@pytest.fixture(scope="session")
def redis_test_url() -> str:
    """The URL of the Redis database claimed for this test session."""
    return _session["url"]


@pytest.fixture(autouse=True)
def clean_redis(redis_test_url: str) -> Iterator[None]:
    """After each test, delete what it wrote to the test database."""
    yield
    delete_keys(redis.Redis.from_url(redis_test_url, decode_responses=True), keep=KEPT_PREFIXES)


@pytest.fixture
def redis_client(redis_test_url: str) -> redis.Redis:
    """The project's pooled client, on the test database."""
    return get_redis_instance()


@pytest.fixture
def env() -> Iterator[Callable[..., None]]:
    """Set (or, with None, remove) environment variables for one test; the config cache follows."""
    saved: dict[str, str | None] = {}

    def set_env(**values: str | None) -> None:
        for name, value in values.items():
            saved.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_config.cache_clear()

    yield set_env
    _restore_environment(saved)


@pytest.fixture
def live_worker(redis_test_url: str) -> Iterator[object]:
    """An in-process Celery worker (thread pool) bound to the project's app."""
    from celery.contrib.testing import tasks as _ping_task  # noqa: F401 - registers celery.ping
    from celery.contrib.testing.worker import start_worker

    nodename = f"live-{os.getpid()}@{socket.gethostname()}"
    with start_worker(celery_app, pool="threads", concurrency=4, shutdown_timeout=30,
                      hostname=nodename) as worker:
        worker.nodename = nodename
        yield worker
    # The embedded worker stops without sending worker_shutdown: take it out of the node registry.
    nodes.forget_node(nodename)


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory of real ``celery -A easyrag worker`` subprocesses; every one is reaped at the end."""
    started: list[WorkerProcess] = []

    def start(name: str = "w1", concurrency: int = 1, wait: bool = True, **options: object) -> WorkerProcess:
        worker = WorkerProcess(name, tmp_path / f"{name}-{len(started)}.log", concurrency, **options)
        started.append(worker)
        return worker.start(wait=wait)

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory of private servers on free ports; the test (marked private_redis) may flush or stop them."""
    servers: list[RedisServer] = []

    def start(appendonly: bool = False, binary: str | None = None) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", appendonly=appendonly, binary=binary)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()
