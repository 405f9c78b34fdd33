"""POST /api/tasks/ with an Idempotency-Key header: 201 first, 200 with the first task, 422 (spec 5)."""

from __future__ import annotations

import pytest

from easyrag.task_app import queues

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"task_type": "EchoTaskHandler", "task_data": {"order": 7}}


def _post(client, body=BODY, key="order-7"):
    return client.post("/api/tasks/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_first_201_then_200_with_the_first_task_and_one_message(alice, redis_client):
    first = _post(alice)
    assert first.status_code == 201, first.content
    again = _post(alice)
    assert again.status_code == 200, again.content
    assert again.json() == {"task_id": first.json()["task_id"], "status": "PENDING"}
    assert sum(queues.queue_sizes(redis_client).values()) == 1


def test_the_same_key_with_another_body_answers_422_and_queues_nothing(alice, redis_client):
    first = _post(alice).json()["task_id"]
    conflict = _post(alice, {**BODY, "task_data": {"order": 8}})
    assert conflict.status_code == 422
    assert "idempotency_key" in conflict.json() and conflict.json()["task_id"] == first
    assert sum(queues.queue_sizes(redis_client).values()) == 1


def test_keys_are_per_user(alice, bob, redis_client):
    assert _post(alice).json()["task_id"] != _post(bob).json()["task_id"]
    assert _post(bob).status_code == 200


def test_a_key_over_200_characters_answers_400_naming_it(alice, redis_client):
    answer = _post(alice, key="k" * 201)
    assert answer.status_code == 400 and "idempotency_key" in answer.json()
    assert sum(queues.queue_sizes(redis_client).values()) == 0


def test_a_repeat_takes_no_second_place_under_the_user_limit(env, alice, redis_client):
    env(ASYNC_TASK_API_USER_LIMIT="1")
    assert _post(alice).status_code == 201
    assert _post(alice).status_code == 200  # the same task: no new place needed
    assert _post(alice, key="another").status_code == 429
