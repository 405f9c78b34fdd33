"""The REST API of the task layer (spec section 5): DRF views over the facade.

Every endpoint needs a session or a token.  A record keeps its owner (the submitting user's pk in
``user_id``); someone else's task answers 404 exactly like an unknown id, so ids cannot be probed.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from easyrag.task_app.async_task_framework import (
    QueueFullError,
    TaskPriority,
    TaskValidationError,
    cancel_task,
    get_task_stats,
    get_task_status,
    submit_task,
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

#: Seconds a client is asked to wait after a 503 (queue full).
RETRY_AFTER_S = 5
NOT_FOUND = {"error": "task not found"}


def _status_body(task: Task) -> dict[str, Any]:
    return TaskStatusSerializer(task.to_dict()).data


def _submit(request: Request, task_type: str, task_data: dict, owner: Any = None, **options: Any
            ) -> Response | str:
    """submit_task owned by ``owner`` (default: the caller); a refused submission becomes its answer."""
    try:
        return submit_task(task_type, task_data, user_id=owner or request.user.pk, **options)
    except TaskValidationError as error:
        return Response({error.field or "non_field_errors": [str(error)]}, status=status.HTTP_400_BAD_REQUEST)
    except QueueFullError as error:
        return Response({"error": str(error)}, status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(RETRY_AFTER_S)})


def _own_task(request: Request, task_id: str) -> Task | None:
    task = get_task_status(task_id)
    return task if task is not None and owns(task, request.user) else None


class TaskListView(APIView):
    """POST: submit a task. GET: the caller's recent tasks, newest first (paginated)."""

    @extend_schema(request=SubmitTaskSerializer, responses={
        201: SubmittedSerializer, 400: OpenApiResponse(description="{field: [messages]}"),
        503: OpenApiResponse(description="queue full; see Retry-After")})
    def post(self, request: Request) -> Response:
        """Submit a task: 201 with its id, 400 naming the bad field, 503 when the queue is full."""
        serializer = SubmitTaskSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        options = {name: data[name] for name in ("timeout", "max_retries") if name in data}
        outcome = _submit(request, data["task_type"], data["task_data"], priority=data["priority"], **options)
        if isinstance(outcome, Response):
            return outcome
        return Response({"task_id": outcome, "status": "PENDING"}, status=status.HTTP_201_CREATED)

    @extend_schema(responses=TaskStatusSerializer(many=True))
    def get(self, request: Request) -> Response:
        """The caller's recent tasks, newest first, a page at a time."""
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(OwnerTasks(request.user.pk), request, view=self)
        return paginator.get_paginated_response([_status_body(task) for task in page])


class TaskStatusView(APIView):
    """The seed's TaskStatusView: task_id, status, progress, message, error (+ result and times)."""

    @extend_schema(responses={200: TaskStatusSerializer, 404: OpenApiResponse(description="unknown task")})
    def get(self, request: Request, task_id: str) -> Response:
        """One of the caller's tasks (staff: any task); 404 for an unknown id or someone else's."""
        task = _own_task(request, task_id)
        if task is None:
            return Response(NOT_FOUND, status=status.HTTP_404_NOT_FOUND)
        return Response(_status_body(task))


class TaskCancelView(APIView):
    """Cancel a pending or running task: ``{"cancelled": false}`` when it had finished already."""

    @extend_schema(request=None, responses={200: CancelledSerializer,
                                            404: OpenApiResponse(description="unknown task")})
    def post(self, request: Request, task_id: str) -> Response:
        """Cancel one of the caller's tasks (staff: any task); 404 for an unknown id or someone else's."""
        if _own_task(request, task_id) is None:
            return Response(NOT_FOUND, status=status.HTTP_404_NOT_FOUND)
        return Response({"cancelled": cancel_task(task_id)})


class TaskStatsView(APIView):
    """get_task_stats(): cluster-wide counts, queue lengths per priority, per-worker figures."""

    @extend_schema(responses=StatsSerializer)
    def get(self, request: Request) -> Response:
        """Cluster-wide counts, queue lengths per priority and per-worker figures."""
        return Response(get_task_stats())


class DocumentParseView(APIView):
    """The seed's DocumentParseView: parse one of the caller's documents (staff: any document)."""

    @extend_schema(request=DocumentParseSerializer, responses={
        202: DocumentParseSubmittedSerializer, 404: OpenApiResponse(description="unknown document")})
    def post(self, request: Request) -> Response:
        """Submit a HIGH-priority parse of one of the caller's documents: 202 with the task id."""
        from easyrag.documents.models import Document

        serializer = DocumentParseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        documents = Document.objects.all() if request.user.is_staff else Document.objects.filter(
            owner=request.user)
        document = documents.filter(pk=serializer.validated_data["document_id"]).first()
        if document is None:
            return Response({"error": "document not found"}, status=status.HTTP_404_NOT_FOUND)
        # The task belongs to the document's owner (the handler parses only its owner's documents);
        # staff parsing someone's document still see the task, as staff see every task.
        owner = document.owner_id or request.user.pk
        task_data = {"document_id": document.pk, "user_id": owner,
                     "resume_from": serializer.validated_data["resume_from"]}
        outcome = _submit(request, "DocumentParseTaskHandler", task_data, owner=owner,
                          priority=TaskPriority.HIGH.value)
        if isinstance(outcome, Response):
            return outcome
        return Response({"task_id": outcome, "message": "document parse task submitted"},
                        status=status.HTTP_202_ACCEPTED)
