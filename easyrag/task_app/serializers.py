"""DRF serializers of the task API (spec section 5)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from easyrag.config import get_config
from easyrag.task_app.records import TaskPriority, TaskStatus
from easyrag.task_app.task_handlers import ensure_handlers_loaded, registered_handlers


class SubmitTaskSerializer(serializers.Serializer):
    """A task submission: task_type (one the caller may submit), task_data and options."""

    task_type = serializers.ChoiceField(
        choices=[], help_text="a registered handler's name (non-staff: one of ASYNC_TASK_API_TASK_TYPES)",
        error_messages={"invalid_choice": '"{input}" is not a task type you may submit.'})
    task_data = serializers.JSONField(help_text="a JSON object: the handler's input")
    priority = serializers.ChoiceField(choices=[p.value for p in TaskPriority], default=TaskPriority.NORMAL,
                                       help_text="0 URGENT, 1 HIGH, 2 NORMAL, 3 LOW")
    timeout = serializers.FloatField(required=False, min_value=0.001, help_text="seconds")
    max_retries = serializers.IntegerField(required=False, min_value=0, max_value=100)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The handlers registered in this process (all of them once Django is ready); for a
        # non-staff caller, and in the published schema, only those the operator opened to
        # everyone (handlers read files, send mail, publish...).
        ensure_handlers_loaded()
        types = set(registered_handlers())
        request = self.context.get("request")
        if request is None or not request.user.is_staff:
            types &= set(get_config().api_task_types)
        self.fields["task_type"].choices = sorted(types)

    def validate_task_data(self, value: object) -> object:
        """Refuse task_data that is not a JSON object."""
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        return value


class SubmittedSerializer(serializers.Serializer):
    """The answer to a submission: the new task's id and status."""

    task_id = serializers.CharField()
    status = serializers.ChoiceField(choices=[s.value for s in TaskStatus])


class TaskStatusSerializer(serializers.Serializer):
    """The seed's TaskStatusView answer (task_id, status, progress, message, error) plus the rest."""

    task_id = serializers.CharField()
    task_type = serializers.CharField()
    task_data = serializers.JSONField()
    status = serializers.ChoiceField(choices=[s.value for s in TaskStatus])
    progress = serializers.IntegerField()
    message = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_null=True)
    result = serializers.JSONField(allow_null=True)
    priority = serializers.IntegerField()
    retries = serializers.IntegerField()
    created_at = serializers.CharField(allow_null=True)
    started_at = serializers.CharField(allow_null=True)
    finished_at = serializers.CharField(allow_null=True)
    worker = serializers.CharField(allow_null=True)


class CancelledSerializer(serializers.Serializer):
    """The answer to a cancel: whether the task was pending or running and is now cancelled."""

    cancelled = serializers.BooleanField()


class WorkerStatsSerializer(serializers.Serializer):
    """One worker's figures: tasks running now and tasks processed."""

    active = serializers.IntegerField()
    processed = serializers.IntegerField()


class StatsSerializer(serializers.Serializer):
    """get_task_stats(): counts by status, queue lengths, per-worker figures."""

    total_tasks = serializers.IntegerField()
    pending_tasks = serializers.IntegerField()
    running_tasks = serializers.IntegerField()
    completed_tasks = serializers.IntegerField()
    failed_tasks = serializers.IntegerField()
    cancelled_tasks = serializers.IntegerField()
    timeout_tasks = serializers.IntegerField()
    queue_size = serializers.IntegerField()
    queue_sizes = serializers.DictField(child=serializers.IntegerField())
    workers = serializers.DictField(child=WorkerStatsSerializer())
    instance_id = serializers.CharField()


class DocumentParseSerializer(serializers.Serializer):
    """A parse request: the document's id and the stage to resume from."""

    document_id = serializers.CharField(max_length=64)
    resume_from = serializers.ChoiceField(choices=["INIT", "EXTRACT", "CHUNK", "STORE"], default="INIT")


class DocumentParseSubmittedSerializer(serializers.Serializer):
    """The answer to a parse request: the parse task's id."""

    task_id = serializers.CharField()
    message = serializers.CharField()
