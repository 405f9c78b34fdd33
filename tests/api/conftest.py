"""Users, tokens and API clients for the REST API tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@dataclass
class People:
    alice: object
    bob: object
    staff: object


#: The task types these tests let non-staff users submit (ASYNC_TASK_API_TASK_TYPES).
API_TASK_TYPES = "DocumentParseTaskHandler,EchoTaskHandler,StepsTaskHandler"


@pytest.fixture(autouse=True)
def api_task_types(env) -> None:
    env(ASYNC_TASK_API_TASK_TYPES=API_TASK_TYPES)


@pytest.fixture
def people(django_user_model) -> People:
    return People(
        alice=django_user_model.objects.create_user("alice", password="alice-pw"),
        bob=django_user_model.objects.create_user("bob", password="bob-pw"),
        staff=django_user_model.objects.create_user("root", password="root-pw", is_staff=True),
    )


def token_client(user) -> APIClient:
    """An API client that authenticates with the user's token, as curl would."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def alice(people: People) -> APIClient:
    return token_client(people.alice)


@pytest.fixture
def bob(people: People) -> APIClient:
    return token_client(people.bob)


@pytest.fixture
def staff(people: People) -> APIClient:
    return token_client(people.staff)
