"""/metrics over real ``celery -A easyrag worker`` processes: the counters are the cluster's and
outlive every worker; a worker stopped is gone, a worker killed is down until it comes back."""

from __future__ import annotations

import pytest

from easyrag.task_app.records import TaskStatus
from tests.support import tasks
from tests.support.broker import FAST_RECOVERY, status
from tests.support.scrape import by_name, samples
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(admin_client) -> dict:
    answer = admin_client.get("/metrics")
    assert answer.status_code == 200
    return samples(answer.content.decode())


def workers_up(admin_client) -> dict[str, float]:
    return by_name(scrape(admin_client), "celery_worker_up", label="hostname")


def test_counters_are_cumulative_across_crashes_and_worker_restarts(worker_process, redis_client,
                                                                    admin_client):
    env = {**FAST_RECOVERY, "ASYNC_TASK_MAX_CRASHES": "3"}
    first = worker_process("a", concurrency=2, env=env)
    poison = tasks.kills_its_worker.delay()
    wait_until(lambda: status(redis_client, poison.id) is TaskStatus.FAILED, timeout=60, interval=0.2,
               message="the poison task to end FAILED")
    assert {tasks.traced.delay().get(timeout=20) for _ in range(3)} == {first.nodename}
    first.stop()
    second = worker_process("b", env=env)
    assert {tasks.traced.delay().get(timeout=20) for _ in range(2)} == {second.nodename}
    second.kill()
    third = worker_process("c", env=env)
    assert tasks.traced.delay().get(timeout=20) == third.nodename

    found = scrape(admin_client)
    assert by_name(found, "celery_task_sent_total") == {"tests.traced": 6, "tests.kills_its_worker": 1}
    assert by_name(found, "celery_task_succeeded_total") == {"tests.traced": 6}
    # Three runs killed their worker; the fourth claim found three crashes and ended it FAILED.
    assert by_name(found, "celery_task_started_total") == {"tests.traced": 6, "tests.kills_its_worker": 4}
    assert by_name(found, "easyrag_task_crashes_total") == {"tests.kills_its_worker": 3}
    assert by_name(found, "celery_task_failed_total") == {"tests.kills_its_worker": 1}
    assert by_name(found, "celery_task_runtime_seconds_count") == {"tests.traced": 6}
    assert by_name(found, "celery_worker_up", label="hostname")[third.nodename] == 1
    # the warm-stopped worker is gone; the killed one is down once its heartbeat expired
    wait_until(lambda: workers_up(admin_client) == {second.nodename: 0, third.nodename: 1}, timeout=20,
               interval=0.5, message="the killed worker to be reported down")


def test_a_stopped_worker_is_gone_and_a_killed_one_down_until_it_starts_again(worker_process, admin_client):
    calm, doomed = worker_process("calm"), worker_process("doomed")
    wait_until(lambda: workers_up(admin_client) == {calm.nodename: 1, doomed.nodename: 1}, timeout=10,
               message="both workers to be up")
    calm.stop()  # a warm stop takes the node out of the registry at once
    wait_until(lambda: workers_up(admin_client) == {doomed.nodename: 1}, timeout=5,
               message="the stopped worker's series to go")
    doomed.kill()  # SIGKILL: its heartbeat expires (nodes.NODE_TTL_S), then it is reported down
    wait_until(lambda: workers_up(admin_client) == {doomed.nodename: 0}, timeout=20, interval=0.5,
               message="the killed worker to be reported down")
    worker_process("doomed")
    wait_until(lambda: workers_up(admin_client) == {doomed.nodename: 1}, timeout=10,
               message="the worker of that name to be up again")


def test_active_tasks_per_worker_follow_what_it_runs(worker_process, admin_client, redis_client):
    worker = worker_process("busy", concurrency=2)
    release, started = "easyrag-test:metrics:release", "easyrag-test:metrics:started"
    blocked = [tasks.block.delay(release, f"{started}:{n}") for n in range(2)]

    def active() -> float | None:
        active = by_name(scrape(admin_client), "celery_worker_tasks_active", label="hostname")
        return active.get(worker.nodename)

    wait_until(lambda: active() == 2, timeout=20, message="two active tasks on the worker")
    redis_client.rpush(release, "go", "go")  # one for each blocked task
    assert [result.get(timeout=20) for result in blocked] == [True, True]
    wait_until(lambda: active() == 0, timeout=10, message="no active task")
