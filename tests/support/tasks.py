"""Test-only tasks that workers import through ASYNC_TASK_HANDLER_MODULES.

They leave their traces in Redis (the test database) so tests can assert on what ran, where,
and in which order.
"""

from celery import shared_task

from easyrag.common.redis_utils import get_redis_instance

STARTS_KEY = "easyrag-test:starts"


@shared_task(name="tests.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="tests.record_start")
def record_start(label: str) -> str:
    """Append ``label`` to the start-order list."""
    get_redis_instance().rpush(STARTS_KEY, label)
    return label


@shared_task(name="tests.block")
def block(release_key: str, started_key: str, timeout: float = 30.0) -> bool:
    """Say it started, then hold the worker until the test pushes to ``release_key``."""
    client = get_redis_instance()
    client.rpush(started_key, "1")
    return client.blpop([release_key], timeout=timeout) is not None
