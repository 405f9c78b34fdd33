"""The REST API of the task layer (spec section 5): DRF views over the facade.

Every endpoint needs a session or a token.  A record keeps its owner (the submitting user's pk in
``user_id``); someone else's task answers 404 exactly like an unknown id, so ids cannot be probed.
A non-staff caller is limited (spec 5): the task types of ASYNC_TASK_API_TASK_TYPES, no URGENT, a
timeout up to ASYNC_TASK_DEFAULT_TIMEOUT (serializers.py), ASYNC_TASK_API_USER_LIMIT live tasks
(throttling.py).  A body the parsers cannot take answers DRF's JSON 400, never a 500 or HTML page.
``GET /metrics`` (MetricsView) serves Prometheus, which has no user: staff, or the metrics token.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import parsers, status
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    TokenAuthentication,
    get_authorization_header,
)
from rest_framework.exceptions import AuthenticationFailed, ParseError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from easyrag.config import get_config
from easyrag.task_app import metrics
from easyrag.task_app.async_task_framework import (
    IdempotencyConflictError,
    QueueFullError,
    TaskPriority,
    TaskValidationError,
    cancel_task,
    get_task_stats,
    get_task_status,
    submit_or_find,
)
from easyrag.task_app.owners import OwnerTasks, owns
from easyrag.task_app.records import Task
from easyrag.task_app.serializers import (
    CancelledSerializer,
    DocumentParseSerializer,
    DocumentParseSubmittedSerializer,
    StatsSerializer,
    SubmitTaskSerializer,
    SubmittedSerializer,
    TaskStatusSerializer,
)
from easyrag.task_app.submission import first_task_of_key
from easyrag.task_app.throttling import reserve_place
from easyrag.task_app.validation import fingerprint

#: Seconds a client is asked to wait after a 503 (queue full).
RETRY_AFTER_S = 5
NOT_FOUND = {"error": "task not found"}
DOCUMENT_NOT_FOUND = {"error": "document not found"}
#: JSON nested deeper than this is refused: far beyond any handler's task_data, and well inside
#: the recursion limit of every JSON encoder and decoder the task then meets (Celery, records).
MAX_JSON_DEPTH = 100


def _depth_within(value: Any, limit: int) -> bool:
    """True when ``value`` nests no deeper than ``limit`` lists and objects (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return True


class JSONBodyParser(parsers.JSONParser):
    """DRF's JSONParser; JSON nested too deep is a ParseError (DRF's 400), never a RecursionError (500)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        too_deep = ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:  # json's C decoder gives up on deep nesting with this, not ValueError
            raise too_deep from None
        if not _depth_within(data, MAX_JSON_DEPTH):
            raise too_deep
        return data


class TaskAPIView(APIView):
    """The task API's base view: every body it cannot take answers DRF's JSON 400."""

    parser_classes = [JSONBodyParser, parsers.FormParser, parsers.MultiPartParser]

    def handle_exception(self, exc: Exception) -> Response:
        """Django's body limits (over DATA_UPLOAD_MAX_MEMORY_SIZE, too many fields or files) raise
        SuspiciousOperation while DRF reads the body; answer them as DRF's 400, not Django's HTML."""
        if isinstance(exc, RequestDataTooBig):
            exc = ParseError(f"request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")
        elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
            exc = ParseError(str(exc))
        return super().handle_exception(exc)


#: The request header of an idempotent submission (spec 5).
IDEMPOTENCY_HEADER = "Idempotency-Key"


def _status_body(task: Task) -> dict[str, Any]:
    return TaskStatusSerializer(task.to_dict()).data


def _submit(request: Request, task_type: str, task_data: dict, owner: Any = None, **options: Any
            ) -> Response | tuple[str, bool]:
    """submit_or_find owned by ``owner`` (default: the caller): the task id and whether it is new;
    a refused submission becomes its answer.

    A non-staff caller first takes a place of ASYNC_TASK_API_USER_LIMIT (429 when none is left).
    """
    key = options.get("idempotency_key")
    if key and isinstance(key, str):  # a repeat creates nothing: it needs no place of the limit
        first = first_task_of_key(task_type, owner or request.user.pk, key, fingerprint(
            task_data, options.get("priority", TaskPriority.NORMAL), options.get("timeout"),
            options.get("max_retries")))
        if first is not None:
            return first, False
    place = reserve_place(request.user)
    try:
        task_id, created = submit_or_find(task_type, task_data, user_id=owner or request.user.pk, **options)
    except IdempotencyConflictError as error:
        place.release()
        return Response({"idempotency_key": [str(error)], "task_id": error.task_id},
                        status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    except TaskValidationError as error:
        place.release()
        return Response({error.field or "non_field_errors": [str(error)]}, status=status.HTTP_400_BAD_REQUEST)
    except QueueFullError as error:
        place.release()
        return Response({"error": str(error)}, status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(RETRY_AFTER_S)})
    except BaseException:
        place.release()
        raise
    place.confirm(task_id)  # a repeat's first task holds its place already: the set keeps one
    return task_id, created


def _parsable_document(request: Request, document_id: Any) -> Any:
    """The document the caller may have parsed (their own; staff: any), or None."""
    from easyrag.documents.models import Document

    if isinstance(document_id, bool) or not isinstance(document_id, str | int):
        return None
    documents = Document.objects.all() if request.user.is_staff else Document.objects.filter(
        owner=request.user)
    return documents.filter(pk=str(document_id)).first()


def _own_task(request: Request, task_id: str) -> Task | None:
    task = get_task_status(task_id)
    return task if task is not None and owns(task, request.user) else None


class TaskListView(TaskAPIView):
    """POST: submit a task. GET: the caller's recent tasks, newest first (paginated)."""

    @extend_schema(request=SubmitTaskSerializer, responses={
        201: SubmittedSerializer, 400: OpenApiResponse(description="{field: [messages]}"),
        404: OpenApiResponse(description="a parse of a document that is not the caller's"),
        429: OpenApiResponse(description="ASYNC_TASK_API_USER_LIMIT live tasks already; see Retry-After"),
        200: OpenApiResponse(SubmittedSerializer, description="a repeated Idempotency-Key: the first task"),
        422: OpenApiResponse(description="the Idempotency-Key was used for another request"),
        503: OpenApiResponse(description="queue full; see Retry-After")},
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER, description=(
            "submit at most once: a repeat by the same user for the same task_type answers 200 with "
            "the first task"))])
    def post(self, request: Request) -> Response:
        """Submit a task: 201 with its id (200 with the first task for a repeated Idempotency-Key),
        400 naming the bad field, 422 for a key used for another request, 503 when the queue is full."""
        serializer = SubmitTaskSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if (data["task_type"] == "DocumentParseTaskHandler" and not request.user.is_staff
                and _parsable_document(request, data["task_data"].get("document_id")) is None):
            # As POST /api/documents/parse/ answers: an unowned or someone else's document is unknown.
            return Response(DOCUMENT_NOT_FOUND, status=status.HTTP_404_NOT_FOUND)
        options = {name: data[name] for name in ("timeout", "max_retries") if name in data}
        key = request.headers.get(IDEMPOTENCY_HEADER)
        outcome = _submit(request, data["task_type"], data["task_data"], priority=data["priority"],
                          idempotency_key=key, **options)
        if isinstance(outcome, Response):
            return outcome
        task_id, created = outcome
        if created:
            return Response({"task_id": task_id, "status": "PENDING"}, status=status.HTTP_201_CREATED)
        task = get_task_status(task_id)
        return Response({"task_id": task_id, "status": task.status.value if task else "PENDING"},
                        status=status.HTTP_200_OK)

    @extend_schema(responses=TaskStatusSerializer(many=True))
    def get(self, request: Request) -> Response:
        """The caller's recent tasks, newest first, a page at a time."""
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(OwnerTasks(request.user.pk), request, view=self)
        return paginator.get_paginated_response([_status_body(task) for task in page])


class TaskStatusView(TaskAPIView):
    """The seed's TaskStatusView: task_id, status, progress, message, error (+ result and times)."""

    @extend_schema(responses={200: TaskStatusSerializer, 404: OpenApiResponse(description="unknown task")})
    def get(self, request: Request, task_id: str) -> Response:
        """One of the caller's tasks (staff: any task); 404 for an unknown id or someone else's."""
        task = _own_task(request, task_id)
        if task is None:
            return Response(NOT_FOUND, status=status.HTTP_404_NOT_FOUND)
        return Response(_status_body(task))


class TaskCancelView(TaskAPIView):
    """Cancel a pending or running task: ``{"cancelled": false}`` when it had finished already."""

    @extend_schema(request=None, responses={200: CancelledSerializer,
                                            404: OpenApiResponse(description="unknown task")})
    def post(self, request: Request, task_id: str) -> Response:
        """Cancel one of the caller's tasks (staff: any task); 404 for an unknown id or someone else's."""
        if _own_task(request, task_id) is None:
            return Response(NOT_FOUND, status=status.HTTP_404_NOT_FOUND)
        return Response({"cancelled": cancel_task(task_id)})


class TaskStatsView(TaskAPIView):
    """get_task_stats(): cluster-wide counts, queue lengths per priority, per-worker figures; staff only.

    Others get 403: the figures name workers and hosts.
    """

    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: StatsSerializer, 403: OpenApiResponse(description="not staff")})
    def get(self, request: Request) -> Response:
        """Cluster-wide counts, queue lengths per priority and per-worker figures (staff only)."""
        return Response(get_task_stats())


class DocumentParseView(TaskAPIView):
    """The seed's DocumentParseView: parse one of the caller's documents (staff: any document)."""

    @extend_schema(request=DocumentParseSerializer, responses={
        202: DocumentParseSubmittedSerializer, 404: OpenApiResponse(description="unknown document"),
        429: OpenApiResponse(description="ASYNC_TASK_API_USER_LIMIT live tasks already; see Retry-After")})
    def post(self, request: Request) -> Response:
        """Submit a HIGH-priority parse of one of the caller's documents: 202 with the task id."""
        serializer = DocumentParseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = _parsable_document(request, serializer.validated_data["document_id"])
        if document is None:
            return Response(DOCUMENT_NOT_FOUND, status=status.HTTP_404_NOT_FOUND)
        # The task belongs to the document's owner (the handler parses only its owner's documents);
        # staff parsing someone's document still see the task, as staff see every task.
        owner = document.owner_id or request.user.pk
        task_data = {"document_id": document.pk, "user_id": owner,
                     "resume_from": serializer.validated_data["resume_from"]}
        outcome = _submit(request, "DocumentParseTaskHandler", task_data, owner=owner,
                          priority=TaskPriority.HIGH.value)
        if isinstance(outcome, Response):
            return outcome
        return Response({"task_id": outcome[0], "message": "document parse task submitted"},
                        status=status.HTTP_202_ACCEPTED)


#: ``request.auth`` of a scrape that presented the metrics token.
METRICS_SCRAPER = "metrics-token"


class MetricsTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <ASYNC_TASK_METRICS_TOKEN>``: a scraper, with no user of its own.

    First of the view's authenticators, so a request without credentials gets 401 with
    ``WWW-Authenticate: Bearer``; a wrong token is 401 too, never a fall-through to other schemes.
    """

    def authenticate(self, request: Request) -> tuple[AnonymousUser, str] | None:
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != b"bearer":
            return None
        token = get_config().metrics_token.strip().encode()  # a secrets file's newline is not part of it
        if len(words) != 2 or not token or not hmac.compare_digest(words[1], token):
            raise AuthenticationFailed("invalid metrics token")
        return AnonymousUser(), METRICS_SCRAPER

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="metrics"'


class StaffOrScraper(BasePermission):
    """A staff user (session or API token), or the metrics token."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.auth == METRICS_SCRAPER or bool(request.user and request.user.is_staff)


class AnyAccept(BaseContentNegotiation):
    """The view's one format whatever the client accepts (a scraper's ``text/plain`` or OpenMetrics
    request gets the 0.0.4 text format; errors stay DRF's JSON), instead of DRF's 406."""

    def select_parser(self, request: Request, parsers: list) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return renderers[0], renderers[0].media_type


class MetricsView(APIView):
    """``GET /metrics``: Prometheus' text format (spec 11; easyrag/task_app/metrics.py)."""

    content_negotiation_class = AnyAccept
    authentication_classes = [MetricsTokenAuthentication, TokenAuthentication, SessionAuthentication]
    permission_classes = [StaffOrScraper]

    @extend_schema(exclude=True)  # Prometheus' exposition, not the JSON API
    def get(self, request: Request) -> HttpResponse:
        """One scrape: two Redis round trips, whatever the number of tasks."""
        return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
