"""GET /metrics (spec 11): who may read it, and that its figures are exactly what happened.

Real HTTP through Django's test client, real tasks on the in-process worker; the text is parsed by
prometheus_client's own parser, as Prometheus would read it.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from easyrag.celery import app
from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import (
    TaskPriority,
    TaskStatus,
    cancel_task,
    get_task_stats,
    get_task_status,
    submit_task,
)
from easyrag.task_app.scripts import RUNTIME_BUCKETS
from tests.support.handlers import mark_key
from tests.support.scrape import by_name, samples
from tests.support.waiting import wait_final, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

METRICS_TOKEN = "scrape-me-7f3a"


def scrape(client) -> dict:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.content
    return samples(answer.content.decode())


# --- who may read it ---

def test_anonymous_gets_401_naming_bearer_and_a_non_staff_user_403(client, alice):
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert alice.get("/metrics").status_code == 403


def test_staff_by_token_or_session_read_prometheus_text(staff, people, client):
    answer = staff.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE celery_task_sent_total counter" in answer.content.decode()
    client.force_login(people.staff)
    assert client.get("/metrics").status_code == 200


def test_any_accept_header_gets_the_text_format(staff):
    for accept in ("text/plain", "application/openmetrics-text; version=1.0.0", "application/json", "*/*"):
        answer = staff.get("/metrics", HTTP_ACCEPT=accept)
        assert answer.status_code == 200, accept
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_the_metrics_token_is_a_bearer_token_and_a_wrong_or_unset_one_is_401(env, db):
    scraper = APIClient()
    scraper.credentials(HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert scraper.get("/metrics").status_code == 401  # no token configured: nobody is a scraper
    env(ASYNC_TASK_METRICS_TOKEN=METRICS_TOKEN)
    assert scraper.get("/metrics").status_code == 200
    scraper.credentials(HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}x")
    answer = scraper.get("/metrics")
    assert answer.status_code == 401 and "invalid metrics token" in answer.json()["detail"]


# --- what it says ---

def test_after_a_mixed_run_the_per_name_counters_and_histogram_are_exact(live_worker, staff, redis_client):
    echoes = [submit_task("EchoTaskHandler", {"n": n}) for n in range(3)]
    flaky = submit_task("FlakyTaskHandler", {"failures": 1}, max_retries=2)
    refused = submit_task("RefusingTaskHandler", {})
    timed_out = submit_task("SleepyTaskHandler", {"seconds": 30}, timeout=1)
    cancelled = submit_task("SleepyTaskHandler", {"seconds": 30})
    wait_until(lambda: redis_client.get(mark_key(cancelled, "starts")) == "1", timeout=15,
               message="the task to be cancelled to start")
    assert cancel_task(cancelled)
    for task_id in (*echoes, flaky, refused, timed_out, cancelled):
        wait_final(task_id, timeout=30)
    # A copy of a finished task: the guard drops it, and counts a duplicate delivery.
    app.tasks["EchoTaskHandler"].apply_async(kwargs={"n": 0}, task_id=echoes[0])
    wait_until(lambda: redis_client.hget(keys.metrics_key(), "duplicate_deliveries") == "1", timeout=15,
               message="the copy to be dropped")

    assert [get_task_status(t).status for t in (flaky, refused, timed_out, cancelled)] == [
        TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.CANCELLED]
    found = scrape(staff)
    assert by_name(found, "celery_task_sent_total") == {
        "EchoTaskHandler": 3, "FlakyTaskHandler": 1, "RefusingTaskHandler": 1, "SleepyTaskHandler": 2}
    assert by_name(found, "celery_task_started_total") == {
        "EchoTaskHandler": 3, "FlakyTaskHandler": 2, "RefusingTaskHandler": 1, "SleepyTaskHandler": 2}
    assert by_name(found, "celery_task_succeeded_total") == {"EchoTaskHandler": 3, "FlakyTaskHandler": 1}
    assert by_name(found, "celery_task_retried_total") == {"FlakyTaskHandler": 1}
    assert by_name(found, "celery_task_failed_total") == {"RefusingTaskHandler": 1, "SleepyTaskHandler": 1}
    assert by_name(found, "easyrag_task_timeouts_total") == {"SleepyTaskHandler": 1}
    assert by_name(found, "celery_task_revoked_total") == {"SleepyTaskHandler": 1}
    assert by_name(found, "easyrag_task_crashes_total") == {}
    assert found[("easyrag_duplicate_deliveries_total", ())] == 1
    # The histogram counts completions, whose runs took some time; +Inf holds them all.
    completions = {"EchoTaskHandler": 3, "FlakyTaskHandler": 1}
    assert by_name(found, "celery_task_runtime_seconds_count") == completions
    inf = {dict(labels)["name"]: value for (name, labels), value in found.items()
           if name == "celery_task_runtime_seconds_bucket" and dict(labels)["le"] == "+Inf"}
    assert inf == completions
    assert 0 < by_name(found, "celery_task_runtime_seconds_sum")["EchoTaskHandler"] < 30
    for task_type, count in completions.items():  # cumulative: never decreasing, ending at the count
        series = [value for (name, labels), value in found.items()
                  if name == "celery_task_runtime_seconds_bucket" and dict(labels)["name"] == task_type]
        assert len(series) == len(RUNTIME_BUCKETS) and series == sorted(series) and series[-1] == count
    # The totals agree with get_task_stats().
    stats = get_task_stats()
    assert sum(by_name(found, "celery_task_sent_total").values()) == stats["total_tasks"] == 7
    assert found[("easyrag_tasks_pending", ())] == stats["pending_tasks"] == 0
    assert found[("easyrag_tasks_running", ())] == stats["running_tasks"] == 0
    assert found[("celery_worker_up", (("hostname", live_worker.nodename),))] == 1


def test_queue_lengths_and_delayed_tasks_equal_get_task_stats(staff):
    for priority, count in ((TaskPriority.URGENT, 1), (TaskPriority.HIGH, 2), (TaskPriority.LOW, 3)):
        for _ in range(count):
            submit_task("EchoTaskHandler", {}, priority=priority)
    app.tasks["EchoTaskHandler"].apply_async(kwargs={}, countdown=3600)
    found = scrape(staff)
    queues = {dict(labels)["priority"]: value for (name, labels), value in found.items()
              if name == "celery_queue_length"}
    stats = get_task_stats()
    assert queues == stats["queue_sizes"] == {"URGENT": 1, "HIGH": 2, "NORMAL": 0, "LOW": 3}
    names = {dict(labels)["queue_name"] for (name, labels) in found if name == "celery_queue_length"}
    assert names == {"celery"}
    assert found[("easyrag_tasks_scheduled", ())] == stats["scheduled_tasks"] == 1
    assert found[("easyrag_tasks_pending", ())] == stats["pending_tasks"] == 7

