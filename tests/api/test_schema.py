"""Property-based run of every operation of /api/schema/ with a token: no answer is a 500."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token

from tests.api.conftest import People

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 40


def test_no_operation_answers_500(people: People, env):
    env(ASYNC_TASK_QUEUE_SIZE="0")  # let every generated submission be accepted or refused on its merits
    headers = {"Authorization": f"Token {Token.objects.create(user=people.alice).key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application(),
                                            headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("POST", "/api/tasks/"), ("GET", "/api/tasks/"), ("GET", "/api/tasks/{task_id}/"),
        ("POST", "/api/tasks/{task_id}/cancel/"), ("GET", "/api/tasks/stats/"),
        ("POST", "/api/documents/parse/"),
    }
    calls: list[tuple[str, int]] = []
    for operation in operations:
        exercise(operation, headers, calls)
    answered = {status for _, status in calls}
    assert len(calls) >= len(operations) and {200, 201} <= answered


def exercise(operation, headers: dict[str, str], calls: list[tuple[str, int]]) -> None:
    """Call one operation with generated inputs; fail on the first 5xx answer."""

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def call(case) -> None:
        response = case.call(headers=headers)
        calls.append((operation.path, response.status_code))
        assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text)

    call()
