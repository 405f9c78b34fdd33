"""What a non-staff caller of the REST API may not do (spec 5, issue 14), through DRF's test client."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.files.base import ContentFile

from easyrag.documents.models import Document
from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import cancel_task, get_task_status, submit_task
from tests.api.conftest import token_client

pytestmark = pytest.mark.django_db(transaction=True)

ECHO = {"task_type": "EchoTaskHandler", "task_data": {}}


def live_ids(redis_client, user_id) -> list[str]:
    """The user's tasks that are PENDING or RUNNING, from the owner index and the records."""
    ids = redis_client.zrange(keys.owner_index_key(user_id), 0, -1)
    return [task_id for task_id in ids
            if get_task_status(task_id) and get_task_status(task_id).status in ("PENDING", "RUNNING")]


# --- priority and timeout ---

def test_non_staff_may_not_submit_urgent_work(alice, staff, redis_client):
    before = redis_client.dbsize()
    answer = alice.post("/api/tasks/", {**ECHO, "priority": 0}, format="json")
    assert answer.status_code == 400
    assert list(answer.json()) == ["priority"] and "URGENT" in answer.json()["priority"][0]
    assert redis_client.dbsize() == before
    assert alice.post("/api/tasks/", {**ECHO, "priority": 1}, format="json").status_code == 201
    assert staff.post("/api/tasks/", {**ECHO, "priority": 0}, format="json").status_code == 201


@pytest.mark.parametrize("timeout", [1e300, 301, 300.5])
def test_non_staff_timeout_above_the_default_timeout_answers_400(env, alice, redis_client, timeout):
    env(ASYNC_TASK_DEFAULT_TIMEOUT="300")
    before = redis_client.dbsize()
    answer = alice.post("/api/tasks/", {**ECHO, "timeout": timeout}, format="json")
    assert answer.status_code == 400
    assert list(answer.json()) == ["timeout"] and "ASYNC_TASK_DEFAULT_TIMEOUT" in answer.json()["timeout"][0]
    assert redis_client.dbsize() == before


def test_non_staff_timeout_up_to_the_default_and_any_staff_timeout_are_accepted(env, alice, staff):
    env(ASYNC_TASK_DEFAULT_TIMEOUT="300")
    assert alice.post("/api/tasks/", {**ECHO, "timeout": 300}, format="json").status_code == 201
    answer = staff.post("/api/tasks/", {**ECHO, "timeout": 3600}, format="json")
    assert answer.status_code == 201
    assert get_task_status(answer.json()["task_id"]).task_id  # recorded


# --- live tasks per user ---

def test_one_user_at_the_live_task_limit_gets_429_with_retry_after(env, people, alice, bob, staff,
                                                                    redis_client):
    env(ASYNC_TASK_API_USER_LIMIT="3")
    ids = [alice.post("/api/tasks/", ECHO, format="json").json()["task_id"] for _ in range(3)]
    before = redis_client.dbsize()
    answer = alice.post("/api/tasks/", ECHO, format="json")
    assert answer.status_code == 429
    assert int(answer["Retry-After"]) > 0
    assert "detail" in answer.json()
    assert redis_client.dbsize() == before  # nothing queued or recorded
    assert len(live_ids(redis_client, people.alice.pk)) == 3
    # Others are not held up by alice, staff have no limit, and a finished task frees a place.
    assert bob.post("/api/tasks/", ECHO, format="json").status_code == 201
    assert all(staff.post("/api/tasks/", ECHO, format="json").status_code == 201 for _ in range(4))
    assert cancel_task(ids[0])
    assert alice.post("/api/tasks/", ECHO, format="json").status_code == 201
    assert alice.post("/api/tasks/", ECHO, format="json").status_code == 429


def test_document_parse_counts_against_the_live_task_limit(env, people, alice, documents):
    env(ASYNC_TASK_API_USER_LIMIT="2")
    for _ in range(2):
        assert alice.post("/api/tasks/", ECHO, format="json").status_code == 201
    answer = alice.post("/api/documents/parse/", {"document_id": documents["alice"].pk}, format="json")
    assert answer.status_code == 429 and int(answer["Retry-After"]) > 0


def test_tasks_submitted_from_python_do_not_use_the_api_places(env, people, alice):
    env(ASYNC_TASK_API_USER_LIMIT="2")
    for _ in range(5):
        submit_task("EchoTaskHandler", {}, user_id=people.alice.pk)
    assert alice.post("/api/tasks/", ECHO, format="json").status_code == 201


def test_a_limit_of_zero_means_no_limit(env, alice):
    env(ASYNC_TASK_API_USER_LIMIT="0")
    assert all(alice.post("/api/tasks/", ECHO, format="json").status_code == 201 for _ in range(8))


def test_concurrent_submissions_never_exceed_the_live_task_limit(env, people, redis_client):
    env(ASYNC_TASK_API_USER_LIMIT="4")
    clients = [token_client(people.alice) for _ in range(16)]

    def post(client) -> int:
        return client.post("/api/tasks/", ECHO, format="json").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(post, clients))
    assert set(codes) <= {201, 429}
    assert 1 <= codes.count(201) <= 4
    assert len(live_ids(redis_client, people.alice.pk)) == codes.count(201) <= 4


# --- a lower data cap for API submissions ---

def test_api_submissions_have_a_lower_data_cap_than_python(env, people, alice, staff, redis_client):
    env(ASYNC_TASK_API_MAX_DATA_BYTES="1024", ASYNC_TASK_MAX_DATA_BYTES="65536")
    body = {"task_type": "EchoTaskHandler", "task_data": {"x": "y" * 2000}}
    before = redis_client.dbsize()
    for client in (alice, staff):
        answer = client.post("/api/tasks/", body, format="json")
        assert answer.status_code == 400
        assert list(answer.json()) == ["task_data"]
        assert "ASYNC_TASK_API_MAX_DATA_BYTES" in answer.json()["task_data"][0]
    assert redis_client.dbsize() == before
    assert submit_task("EchoTaskHandler", {"x": "y" * 2000}, user_id=people.alice.pk)  # Python: 64 KiB


def test_the_default_api_data_cap_is_64_kib(env, alice):
    env(ASYNC_TASK_API_MAX_DATA_BYTES=None)
    small = alice.post("/api/tasks/", {"task_type": "EchoTaskHandler", "task_data": {"x": "y" * 60000}},
                       format="json")
    assert small.status_code == 201, small.content
    large = alice.post("/api/tasks/", {"task_type": "EchoTaskHandler", "task_data": {"x": "y" * 70000}},
                       format="json")
    assert large.status_code == 400 and list(large.json()) == ["task_data"]


# --- bodies the parser cannot take ---

@pytest.mark.parametrize("path", ["/api/tasks/", "/api/documents/parse/"])
def test_a_body_nested_5000_deep_answers_400_json(alice, redis_client, path):
    deep = '{"task_type": "EchoTaskHandler", "task_data": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    before = redis_client.dbsize()
    answer = alice.generic("POST", path, deep, content_type="application/json")
    assert answer.status_code == 400, answer.content[:200]
    assert answer["Content-Type"].startswith("application/json")
    assert "detail" in answer.json()
    assert redis_client.dbsize() == before


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_a_body_over_16_mib_answers_400_json_not_an_html_page(alice, redis_client, content_type):
    if content_type == "application/json":
        big = json.dumps({"task_type": "EchoTaskHandler", "task_data": {"x": "y" * (17 * 1024 * 1024)}})
    else:
        big = "task_type=EchoTaskHandler&task_data=" + "y" * (17 * 1024 * 1024)
    before = redis_client.dbsize()
    answer = alice.generic("POST", "/api/tasks/", big, content_type=content_type)
    assert answer.status_code == 400, answer.content[:200]
    assert answer["Content-Type"].startswith("application/json")
    assert "detail" in answer.json()
    assert redis_client.dbsize() == before


def test_a_body_that_is_not_json_still_answers_drfs_400(alice):
    answer = alice.generic("POST", "/api/tasks/", "{not json", content_type="application/json")
    assert answer.status_code == 400 and "detail" in answer.json()


# --- stats and documents ---

def test_stats_are_for_staff_only(alice, staff):
    answer = alice.get("/api/tasks/stats/")
    assert answer.status_code == 403 and "detail" in answer.json()
    assert staff.get("/api/tasks/stats/").status_code == 200


@pytest.fixture
def documents(people, settings, tmp_path, env):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    env(ASYNC_TASK_FILE_ROOTS=str(tmp_path / "media"))

    def make(owner) -> Document:
        return Document.objects.create(owner=owner, file=ContentFile(b"Some text. " * 50, name="notes.txt"))

    return {"alice": make(people.alice), "bob": make(people.bob), "nobody": make(None)}


@pytest.mark.parametrize("whose", ["nobody", "bob", "unknown"])
def test_non_staff_parse_through_tasks_answers_like_documents_parse(alice, redis_client, documents, whose):
    document_id = "doc_nope" if whose == "unknown" else documents[whose].pk
    before = redis_client.dbsize()
    through_tasks = alice.post("/api/tasks/", {"task_type": "DocumentParseTaskHandler",
                                               "task_data": {"document_id": document_id}}, format="json")
    through_documents = alice.post("/api/documents/parse/", {"document_id": document_id}, format="json")
    assert through_tasks.status_code == through_documents.status_code == 404
    assert through_tasks.json() == through_documents.json()
    assert redis_client.dbsize() == before
    if whose != "unknown":
        documents[whose].refresh_from_db()
        assert documents[whose].status == "uploaded"


def test_non_staff_parse_of_their_own_document_through_tasks_is_accepted(alice, documents):
    answer = alice.post("/api/tasks/", {"task_type": "DocumentParseTaskHandler",
                                        "task_data": {"document_id": documents["alice"].pk}}, format="json")
    assert answer.status_code == 201, answer.content


def test_json_nested_past_the_api_depth_but_within_pythons_answers_400_and_shallow_passes(alice):
    def nested(depth: int) -> str:
        return '{"task_type": "EchoTaskHandler", "task_data": {"x": ' + "[" * depth + "]" * depth + "}}"

    deep = alice.generic("POST", "/api/tasks/", nested(150), content_type="application/json")
    assert deep.status_code == 400 and "detail" in deep.json()
    shallow = alice.generic("POST", "/api/tasks/", nested(20), content_type="application/json")
    assert shallow.status_code == 201, shallow.content
