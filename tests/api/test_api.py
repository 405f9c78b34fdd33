"""The REST API on a real Redis and a real in-process worker, through DRF's test client."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from rest_framework.test import APIClient

from easyrag.documents.models import Document
from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import submit_task
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)  # worker threads have their own connections

STATUS_KEYS = {"task_id", "status", "progress", "message", "error", "result"}


def poll_until_final(client: APIClient, task_id: str) -> dict:
    def final() -> dict | None:
        body = client.get(f"/api/tasks/{task_id}/").json()
        return body if body["status"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") else None

    return wait_until(final, timeout=20, message=f"task {task_id} to finish")


def test_submit_then_poll_until_completed_with_progress_100(live_worker, alice):
    answer = alice.post("/api/tasks/", {"task_type": "StepsTaskHandler", "task_data": {"pause": 0.05},
                                        "priority": 1}, format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["status"] == "PENDING"
    body = poll_until_final(alice, answer.json()["task_id"])
    assert body.keys() >= STATUS_KEYS
    assert (body["status"], body["progress"], body["result"]) == ("COMPLETED", 100, {"steps": 6})
    assert body["worker"] == live_worker.nodename


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/api/tasks/"), ("get", "/api/tasks/"), ("get", "/api/tasks/stats/"),
    ("get", "/api/tasks/some-id/"), ("post", "/api/tasks/some-id/cancel/"),
    ("post", "/api/documents/parse/"), ("get", "/api/schema/"),
])
def test_no_credentials_answer_401(method, path):
    answer = getattr(APIClient(), method)(path, {}, format="json")
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"] == "Token"


def test_session_authentication_works_too(people):
    client = APIClient()
    assert client.login(username="alice", password="alice-pw")
    assert client.get("/api/tasks/").status_code == 200


def test_someone_elses_task_answers_404_like_an_unknown_id(alice, bob, staff):
    task_id = alice.post("/api/tasks/", {"task_type": "EchoTaskHandler", "task_data": {}},
                         format="json").json()["task_id"]
    unknown_status = bob.get("/api/tasks/no-such-task/")
    unknown_cancel = bob.post("/api/tasks/no-such-task/cancel/")
    for answer, unknown in ((bob.get(f"/api/tasks/{task_id}/"), unknown_status),
                            (bob.post(f"/api/tasks/{task_id}/cancel/"), unknown_cancel)):
        assert answer.status_code == unknown.status_code == 404
        assert answer.json() == unknown.json()
    assert alice.get(f"/api/tasks/{task_id}/").json()["status"] == "PENDING"  # bob's cancel did nothing
    assert staff.get(f"/api/tasks/{task_id}/").status_code == 200
    assert staff.post(f"/api/tasks/{task_id}/cancel/").json() == {"cancelled": True}
    assert alice.get(f"/api/tasks/{task_id}/").json()["status"] == "CANCELLED"
    assert alice.post(f"/api/tasks/{task_id}/cancel/").json() == {"cancelled": False}


@pytest.mark.parametrize(("body", "field"), [
    ({"task_type": "EchoTaskHandler", "task_data": {}, "priority": 7}, "priority"),
    ({"task_type": "EchoTaskHandler", "task_data": {}, "priority": "high"}, "priority"),
    ({"task_type": "NoSuchTaskHandler", "task_data": {}}, "task_type"),
    ({"task_data": {}}, "task_type"),
    ({"task_type": "EchoTaskHandler"}, "task_data"),
    ({"task_type": "EchoTaskHandler", "task_data": [1, 2]}, "task_data"),
    ({"task_type": "EchoTaskHandler", "task_data": {}, "timeout": -1}, "timeout"),
    ({"task_type": "EchoTaskHandler", "task_data": {"x": "y" * (1024 * 1024)}}, "task_data"),
    ({"task_type": "EchoTaskHandler", "task_data": {"x": "y" * (3 * 1024 * 1024)}}, "task_data"),
])
def test_bad_input_answers_400_naming_the_field_and_queues_nothing(alice, redis_client, body, field):
    before = redis_client.dbsize()
    answer = alice.post("/api/tasks/", body, format="json")
    assert answer.status_code == 400
    assert list(answer.json()) == [field] and answer.json()[field]
    assert redis_client.dbsize() == before


def test_a_full_queue_answers_503_with_retry_after(env, alice):
    env(ASYNC_TASK_QUEUE_SIZE="2")
    for _ in range(2):
        assert alice.post("/api/tasks/", {"task_type": "EchoTaskHandler", "task_data": {}},
                          format="json").status_code == 201
    answer = alice.post("/api/tasks/", {"task_type": "EchoTaskHandler", "task_data": {}}, format="json")
    assert answer.status_code == 503
    assert int(answer["Retry-After"]) > 0


def test_the_list_holds_only_the_callers_tasks_newest_first_in_pages(people, alice, bob):
    mine = [alice.post("/api/tasks/", {"task_type": "EchoTaskHandler", "task_data": {"n": n}},
                       format="json").json()["task_id"] for n in range(25)]
    submit_task("EchoTaskHandler", {"bob": True}, user_id=people.bob.pk)
    first = alice.get("/api/tasks/").json()
    assert first["count"] == 25 and first["previous"] is None and first["next"]
    second = alice.get(first["next"]).json()
    listed = [task["task_id"] for task in first["results"] + second["results"]]
    assert listed == mine[::-1]
    assert second["next"] is None
    assert [task["task_data"] for task in bob.get("/api/tasks/").json()["results"]] == [{"bob": True}]


def test_stats_answer_the_spec_keys(live_worker, staff):
    stats = staff.get("/api/tasks/stats/").json()
    assert {"total_tasks", "pending_tasks", "running_tasks", "completed_tasks", "failed_tasks",
            "cancelled_tasks", "queue_size", "queue_sizes", "workers", "instance_id"} <= stats.keys()
    assert set(stats["queue_sizes"]) == {"URGENT", "HIGH", "NORMAL", "LOW"}
    assert live_worker.nodename in stats["workers"]


@pytest.fixture
def documents(people, settings, tmp_path, env):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    env(ASYNC_TASK_FILE_ROOTS=str(tmp_path / "media"))
    text = b"Retrieval augmented generation splits documents into chunks. " * 40

    def make(owner) -> Document:
        return Document.objects.create(owner=owner, file=ContentFile(text, name="notes.txt"))

    return {"alice": make(people.alice), "bob": make(people.bob)}


def test_document_parse_of_the_callers_own_document(live_worker, alice, documents):
    answer = alice.post("/api/documents/parse/", {"document_id": documents["alice"].pk}, format="json")
    assert answer.status_code == 202, answer.content
    assert answer.json()["message"]
    body = poll_until_final(alice, answer.json()["task_id"])
    assert body["status"] == "COMPLETED", body["error"]
    assert body["result"]["document_id"] == documents["alice"].pk and body["result"]["chunks"] >= 1
    documents["alice"].refresh_from_db()
    assert documents["alice"].status == "parsed"


def test_document_parse_of_someone_elses_document_answers_404(alice, redis_client, documents):
    before = redis_client.dbsize()
    answer = alice.post("/api/documents/parse/", {"document_id": documents["bob"].pk}, format="json")
    unknown = alice.post("/api/documents/parse/", {"document_id": "doc_nope"}, format="json")
    assert answer.status_code == unknown.status_code == 404
    assert answer.json() == unknown.json()
    assert redis_client.dbsize() == before


def test_document_parse_rejects_a_bad_stage(alice, documents):
    answer = alice.post("/api/documents/parse/", {"document_id": documents["alice"].pk,
                                                  "resume_from": "LATER"}, format="json")
    assert answer.status_code == 400 and list(answer.json()) == ["resume_from"]


@pytest.mark.parametrize("task_type", ["EmailSendTaskHandler", "NotificationTaskHandler", "BackupTaskHandler",
                                       "DataProcessTaskHandler"])
def test_non_staff_may_submit_only_the_opened_task_types(alice, staff, redis_client, task_type):
    before = redis_client.dbsize()
    answer = alice.post("/api/tasks/", {"task_type": task_type, "task_data": {}}, format="json")
    assert answer.status_code == 400
    assert answer.json() == {"task_type": [f'"{task_type}" is not a task type you may submit.']}
    assert redis_client.dbsize() == before
    staffs = staff.post("/api/tasks/", {"task_type": task_type, "task_data": {}}, format="json")
    assert staffs.status_code == 201


def test_every_task_is_listed_even_when_a_worker_claims_it_before_the_submit_is_recorded(live_worker, alice):
    ids = [alice.post("/api/tasks/", {"task_type": "EchoTaskHandler", "task_data": {"n": n}},
                      format="json").json()["task_id"] for n in range(40)]
    for task_id in ids:
        poll_until_final(alice, task_id)
    pages = [alice.get(f"/api/tasks/?page={page}").json() for page in (1, 2)]
    listed = [task["task_id"] for page in pages for task in page["results"]]
    assert sorted(listed) == sorted(ids)


def test_expired_records_are_skipped_without_shifting_the_pages(people, alice, redis_client):
    ids = [submit_task("EchoTaskHandler", {"n": n}, user_id=people.alice.pk) for n in range(40)]
    expired = {ids[5], ids[22], ids[23]}
    redis_client.delete(*(keys.record_key(task_id) for task_id in expired))
    pages = [alice.get(f"/api/tasks/?page={page}").json() for page in (1, 2)]
    listed = [task["task_id"] for page in pages for task in page["results"]]
    assert listed == [task_id for task_id in reversed(ids) if task_id not in expired]


def test_staff_may_parse_someone_elses_document_and_the_task_stays_its_owners(live_worker, alice, staff,
                                                                             documents):
    answer = staff.post("/api/documents/parse/", {"document_id": documents["alice"].pk}, format="json")
    assert answer.status_code == 202, answer.content
    body = poll_until_final(staff, answer.json()["task_id"])
    assert body["status"] == "COMPLETED", body["error"]
    assert alice.get(f"/api/tasks/{answer.json()['task_id']}/").status_code == 200  # alice owns it
