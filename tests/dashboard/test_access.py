"""Who gets the dashboard, and its JSON and actions over HTTP (Django's test client, no browser)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from easyrag.legacy.dead_letters import letter_id
from easyrag.legacy.items import dead_letter
from easyrag.task_app.async_task_framework import get_task_status, submit_task

pytestmark = pytest.mark.django_db

PAGES = ("/dashboard/", "/dashboard/tasks/some-id/")
JSON = ("/dashboard/data.json", "/dashboard/tasks/some-id/data.json",
        "/dashboard/dead-letters/data.json?key=k")
ACTIONS = ("/dashboard/tasks/some-id/cancel/", "/dashboard/dead-letters/requeue/",
           "/dashboard/dead-letters/delete/")


@pytest.fixture
def staff(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user("ops", password="pw", is_staff=True))
    return client


@pytest.fixture
def member(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user("member", password="pw"))
    return client


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_visitors_are_sent_to_the_admin_login_page(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={url}"


@pytest.mark.parametrize("url", PAGES)
def test_signed_in_users_who_are_not_staff_get_403(member, url):
    assert member.get(url).status_code == 403


@pytest.mark.parametrize("url", JSON)
def test_the_json_answers_401_to_anonymous_and_403_to_non_staff_in_json(member, url):
    anonymous = Client().get(url)
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "not signed in")
    assert member.get(url).status_code == 403 and "staff" in member.get(url).json()["error"]


@pytest.mark.parametrize("url", ACTIONS)
def test_actions_refuse_non_staff_and_write_nothing(member, redis_client, url):
    redis_client.lpush("k:dead", dead_letter(b"{}", "boom"))
    assert Client().post(url, {"key": "k", "id": "x"}).status_code == 401
    assert member.post(url, {"key": "k", "id": "x"}).status_code == 403
    assert redis_client.llen("k:dead") == 1 and not redis_client.exists("k")


def test_a_staff_user_gets_the_page_with_its_assets_served_by_the_app(staff):
    page = staff.get("/dashboard/")
    assert page.status_code == 200
    html = page.content.decode()
    for name, content_type in (("dashboard.js", "javascript"), ("dashboard.css", "text/css"),
                               ("favicon.svg", "image/svg+xml")):
        src = html.split(f'/dashboard/assets/{name}?v=', 1)[1].split('"', 1)[0]
        asset = Client().get(f"/dashboard/assets/{name}?v={src}")  # no data in them: no login needed
        assert asset.status_code == 200 and content_type in asset["Content-Type"]
        assert asset["Cache-Control"] == "public, max-age=86400"
    assert Client().get("/dashboard/assets/views.py").status_code == 404
    assert Client().get("/dashboard/assets/..%2Fviews.py").status_code == 404


def test_overview_json_is_the_overview(staff):
    task_id = submit_task("EchoTaskHandler", {"n": 1}, user_id=5)  # no worker: stays PENDING
    data = staff.get("/dashboard/data.json").json()
    assert data["stats"]["pending_tasks"] >= 1
    assert data["recent"][0]["task_id"] == task_id and data["recent"][0]["user_id"] == 5
    assert {queue["priority"] for queue in data["queues"]} == {"URGENT", "HIGH", "NORMAL", "LOW"}


def test_task_page_and_json_and_404_for_an_unknown_id(staff):
    task_id = submit_task("EchoTaskHandler", {"n": 2})
    assert staff.get(f"/dashboard/tasks/{task_id}/").status_code == 200
    record = staff.get(f"/dashboard/tasks/{task_id}/data.json").json()
    assert (record["task_id"], record["status"], record["task_data"]) == (task_id, "PENDING", {"n": 2})
    assert staff.get("/dashboard/tasks/nope/").status_code == 404
    missing = staff.get("/dashboard/tasks/nope/data.json")
    assert missing.status_code == 404 and missing.json() == {"error": "no task nope"}


def test_cancel_needs_the_csrf_token_then_cancels(django_user_model):
    user = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    task_id = submit_task("EchoTaskHandler", {})
    assert client.post(f"/dashboard/tasks/{task_id}/cancel/").status_code == 403  # no token
    assert get_task_status(task_id).status == "PENDING"
    client.get("/dashboard/")  # sets the csrftoken cookie; the page carries the token too
    token = client.cookies["csrftoken"].value
    reply = client.post(f"/dashboard/tasks/{task_id}/cancel/", HTTP_X_CSRFTOKEN=token)
    assert reply.status_code == 200 and reply.json()["cancelled"] is True
    assert reply.json()["task"]["status"] == "CANCELLED" == get_task_status(task_id).status
    again = client.post(f"/dashboard/tasks/{task_id}/cancel/", HTTP_X_CSRFTOKEN=token)
    assert again.json()["cancelled"] is False
    assert client.post("/dashboard/tasks/nope/cancel/", HTTP_X_CSRFTOKEN=token).status_code == 404


def test_dead_letter_json_lists_and_the_actions_answer_counts(staff, redis_client):
    letters = [dead_letter(json.dumps({"type": "t", "data": {"n": n}}).encode(), f"error {n}")
               for n in range(2)]
    redis_client.lpush("jobs:dead", *letters)
    listed = staff.get("/dashboard/dead-letters/data.json", {"key": " jobs "}).json()
    assert (listed["key"], listed["count"]) == ("jobs", 2)
    assert [letter["id"] for letter in listed["letters"]] == [letter_id(b) for b in reversed(letters)]
    assert listed["letters"][0]["error"] == "error 1" and listed["letters"][0]["requeueable"] is True

    first, second = listed["letters"]

    def act(action: str, letter: dict) -> dict:
        return staff.post(f"/dashboard/dead-letters/{action}/", {"key": "jobs", "id": letter["id"]}).json()

    assert act("requeue", first) == {"requeued": 1}
    assert act("requeue", first) == {"requeued": 0}
    assert act("delete", second) == {"deleted": 1}
    assert act("delete", second) == {"deleted": 0}
    assert redis_client.lrange("jobs", 0, -1) == [json.loads(letters[1])["raw"]]
    assert redis_client.exists("jobs:dead") == 0


def test_dead_letter_errors_are_json(staff, redis_client):
    assert staff.get("/dashboard/dead-letters/data.json").status_code == 400
    redis_client.set("str:dead", "x")
    wrong = staff.get("/dashboard/dead-letters/data.json", {"key": "str"})
    assert wrong.status_code == 400 and "cannot be read as a list" in wrong.json()["error"]
    assert staff.post("/dashboard/dead-letters/requeue/", {"key": "jobs"}).status_code == 400
    redis_client.lpush("big:dead", dead_letter(b"x" * (1024 * 1024 + 1), "too big"))
    (letter,) = staff.get("/dashboard/dead-letters/data.json", {"key": "big"}).json()["letters"]
    refused = staff.post("/dashboard/dead-letters/requeue/", {"key": "big", "id": letter["id"]})
    assert refused.status_code == 409 and "cannot be requeued" in refused.json()["error"]
    assert redis_client.llen("big:dead") == 1 and not redis_client.exists("big")
