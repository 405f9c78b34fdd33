"""DRF serializers of the task API (spec section 5)."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from easyrag.config import get_config
from easyrag.task_app.records import TaskPriority, TaskStatus
from easyrag.task_app.task_handlers import ensure_handlers_loaded, registered_handlers


@extend_schema_field({"type": "object", "additionalProperties": True})
class TaskDataField(serializers.JSONField):
    """task_data: any JSON on the wire (a non-object answers 400 naming it); an object in the schema."""


class SubmitTaskSerializer(serializers.Serializer):
    """A task submission: task_type (one the caller may submit), task_data and options."""

    task_type = serializers.ChoiceField(
        choices=[], help_text="a registered handler's name (non-staff: one of ASYNC_TASK_API_TASK_TYPES)",
        error_messages={"invalid_choice": '"{input}" is not a task type you may submit.'})
    task_data = TaskDataField(help_text="a JSON object: the handler's input")
    priority = serializers.ChoiceField(choices=[p.value for p in TaskPriority], default=TaskPriority.NORMAL,
                                       help_text="0 URGENT (staff only), 1 HIGH, 2 NORMAL, 3 LOW")
    timeout = serializers.FloatField(required=False, min_value=0.001,
                                     help_text="seconds (non-staff: at most ASYNC_TASK_DEFAULT_TIMEOUT)")
    max_retries = serializers.IntegerField(required=False, min_value=0, max_value=100)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The handlers registered in this process (all of them once Django is ready); for a
        # non-staff caller, and in the published schema, only those the operator opened to
        # everyone (handlers read files, send mail, publish...).
        ensure_handlers_loaded()
        types = set(registered_handlers())
        request = self.context.get("request")
        self.staff = request is not None and request.user.is_staff
        if not self.staff:
            types &= set(get_config().api_task_types)
            self._limit_for_non_staff()
        self.fields["task_type"].choices = sorted(types)

    def _limit_for_non_staff(self) -> None:
        """No URGENT, and a timeout up to the operator's default: the schema's enum and maximum say so."""
        priority = self.fields["priority"]
        priority.choices = [p.value for p in TaskPriority if p is not TaskPriority.URGENT]
        priority.error_messages["invalid_choice"] = (
            '"{input}" is not a priority you may use: 1 (HIGH), 2 (NORMAL) or 3 (LOW); URGENT (0) is '
            "for staff.")
        limit = get_config().default_timeout
        self.fields["timeout"] = serializers.FloatField(
            required=False, min_value=0.001, max_value=limit, help_text=self.fields["timeout"].help_text,
            error_messages={"max_value": f"timeout may be at most ASYNC_TASK_DEFAULT_TIMEOUT = {limit:g} "
                                         "seconds."})

    def validate_task_data(self, value: object) -> object:
        """Refuse task_data that is not a JSON object, or over the API's cap (staff too)."""
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        config = get_config()
        try:
            size = len(json.dumps(value, allow_nan=False).encode())
        except (TypeError, ValueError):
            return value  # submit_task's own check names the problem
        if size > min(config.api_max_data_bytes, config.max_data_bytes):
            name, limit = (("ASYNC_TASK_API_MAX_DATA_BYTES", config.api_max_data_bytes)
                           if config.api_max_data_bytes <= config.max_data_bytes
                           else ("ASYNC_TASK_MAX_DATA_BYTES", config.max_data_bytes))
            raise serializers.ValidationError(
                f"task_data is {size} bytes; the limit for API submissions is {name} = {limit} bytes")
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
    scheduled_tasks = serializers.IntegerField(help_text="delayed tasks waiting in Redis for their time")
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
