"""GuardedTaskBackend: Django's Tasks API (``@task``, ``.enqueue()``) on the guarded Celery workers.

Django 6 ships the Tasks API as ``django.tasks``; on Django 5.2 the ``django-tasks`` backport
brings the same API as ``django_tasks``.  This backend is the project's default
(``TASKS`` in settings.py)::

    from django_tasks import task            # django.tasks on Django 6

    @task(priority=10)
    def send_digest(user_id: int) -> int: ...

    result = send_digest.enqueue(42)          # one atomic submit step, like submit_task
    result.refresh(); result.status           # READY, RUNNING, SUCCESSFUL, FAILED

``enqueue`` publishes the Celery task ``easyrag.django_task`` (a GuardedTask) with the function's
module path and its JSON arguments, through the same atomic submit step as ``submit_task`` (record,
counters, owner index, queue bound; ``run_after`` waits in Redis like any delayed task).  The
record's ``task_type`` is the function's module path, so the REST API, the stats and
``cancel_task(result.id)`` treat it like any other task.  On the worker the function runs under
the guard: a plain function in the pool process, an ``async def`` one on the process's long-lived
event loop with the default timeout and cooperative cancel, as handlers run.  ``get_result`` reads
the record.
"""

from __future__ import annotations

import inspect
import logging
from datetime import datetime
from typing import Any

from celery import shared_task
from django.utils.module_loading import import_string

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import keys
from easyrag.task_app.base_task import CREATED_AT_HEADER, GuardedTask, Run
from easyrag.task_app.exceptions import (
    PermanentTaskError,
    TaskCancelledError,
    TaskReleasedError,
    TaskTimeoutError,
)
from easyrag.task_app.records import TaskPriority, TaskRecord, TaskStatus, now_iso
from easyrag.task_app.runner import run_coroutine

try:  # Django >= 6.0
    from django.tasks import DEFAULT_TASK_QUEUE_NAME, TaskContext, TaskResult, TaskResultStatus, task
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import DEFAULT_TASK_QUEUE_NAME, TaskContext, TaskResult, TaskResultStatus, task
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import TaskError
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started

__all__ = ("GuardedTaskBackend", "TaskContext", "TaskResult", "TaskResultDoesNotExist", "TaskResultStatus",
           "broker_priority", "task", "task_enqueued", "task_finished", "task_started")

logger = logging.getLogger("EasyRAG.task_app.django_tasks")

#: The Celery task that runs Django Tasks on the workers.
RUNNER_NAME = "easyrag.django_task"

#: Django's record status for each of ours.
DJANGO_STATUS = {
    TaskStatus.PENDING: TaskResultStatus.READY, TaskStatus.RUNNING: TaskResultStatus.RUNNING,
    TaskStatus.RETRYING: TaskResultStatus.RUNNING, TaskStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    TaskStatus.FAILED: TaskResultStatus.FAILED, TaskStatus.TIMEOUT: TaskResultStatus.FAILED,
    TaskStatus.CANCELLED: TaskResultStatus.FAILED,
}
#: The exception class a record's final state names when its error text does not.
ENDING_EXCEPTION = {TaskStatus.TIMEOUT: "easyrag.task_app.exceptions.TaskTimeoutError",
                    TaskStatus.CANCELLED: "easyrag.task_app.exceptions.TaskCancelledError"}


def broker_priority(priority: int) -> TaskPriority:
    """Django's -100..100 onto the broker's four: >= 50 URGENT, 1..49 HIGH, 0 NORMAL, < 0 LOW."""
    if priority >= 50:
        return TaskPriority.URGENT
    if priority > 0:
        return TaskPriority.HIGH
    return TaskPriority.NORMAL if priority == 0 else TaskPriority.LOW


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _errors(record: TaskRecord) -> list[TaskError]:
    """The record's error as Django's TaskError: ``"module.Class: text"`` names the class."""
    if DJANGO_STATUS[record.status] != TaskResultStatus.FAILED:
        return []
    text = record.error or record.message or record.status.value
    head, _, _ = text.partition(":")
    if record.status in ENDING_EXCEPTION:
        path = ENDING_EXCEPTION[record.status]
    elif head and " " not in head.strip():
        path = head.strip() if "." in head else f"builtins.{head.strip()}"
    else:
        path = "easyrag.task_app.exceptions.TaskFailedError"
    return [TaskError(exception_class_path=path, traceback=text)]


def task_result_of(task: Any, record: TaskRecord, backend_alias: str) -> TaskResult:
    """Django's TaskResult for ``task`` from the task's record."""
    data = record.task_data or {}
    result = TaskResult(
        task=task, id=record.task_id, status=DJANGO_STATUS[record.status],
        enqueued_at=_when(record.created_at), started_at=_when(record.started_at),
        finished_at=_when(record.finished_at), last_attempted_at=_when(record.started_at),
        args=data.get("args", []), kwargs=data.get("kwargs", {}), backend=backend_alias,
        errors=_errors(record),
        worker_ids=[record.worker] * (record.retries + 1) if record.worker else [],
    )
    if record.status is TaskStatus.COMPLETED:
        object.__setattr__(result, "_return_value", record.result)
    return result


class GuardedTaskBackend(BaseTaskBackend):
    """Django's Tasks API on the guarded workers (module docstring; spec 9)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        self.max_retries = int(self.options.get("max_retries", 0))
        if "QUEUES" not in params:  # any queue name is a Celery queue (default: the project's)
            self.queues = set()

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> TaskResult:
        """Queue ``task`` in one atomic submit step; QueueFullError when the queue is full."""
        self.validate_task(task)
        from celery import current_app

        runner = current_app.tasks[RUNNER_NAME]
        options: dict[str, Any] = {"priority": int(broker_priority(task.priority)),
                                   "queue_bound": get_config().queue_size, "waiter": False}
        if task.queue_name != DEFAULT_TASK_QUEUE_NAME:
            options["queue"] = task.queue_name
        if task.run_after is not None:
            options["eta"] = task.run_after
        call = {"module_path": task.module_path, "args": list(args), "kwargs": dict(kwargs),
                "takes_context": task.takes_context, "backend": self.alias, "max_retries": self.max_retries}
        created = now_iso()
        published = runner.apply_async(kwargs=call, headers={CREATED_AT_HEADER: created}, **options)
        # The READY result as SUBMIT recorded it, built here: reading the record back would cost a
        # round trip, and could find a worker already running the task.
        pending = TaskRecord(task_id=published.id, task_type=task.module_path, task_data=call,
                             created_at=created)
        result = task_result_of(task, pending, self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str, task: Any = None) -> TaskResult:
        """The TaskResult of ``result_id``, from its record (TaskResultDoesNotExist if none)."""
        text = get_redis_instance().get(keys.record_key(result_id))
        record = TaskRecord.from_json(text) if text else None
        if record is None or (task is None and record.task_type == RUNNER_NAME):
            raise TaskResultDoesNotExist(result_id)
        if task is None:
            try:
                task = import_string(record.task_type)
            except ImportError:
                raise TaskResultDoesNotExist(result_id) from None
        return task_result_of(task, record, self.alias)


class DjangoTaskRunner(GuardedTask):
    """The Celery task that runs a Django Task's function under the guard."""

    def task_type_of(self, args: Any, kwargs: dict) -> str:
        """The record's task_type: the function's module path."""
        return kwargs.get("module_path") or self.name

    def execute(self, run: Run, args: tuple, kwargs: dict) -> Any:
        task = import_string(kwargs["module_path"])
        backend = kwargs.get("backend") or "default"
        result = task_result_of(task, run.record, backend)
        call_args = list(kwargs.get("args") or [])
        if kwargs.get("takes_context"):
            call_args.insert(0, TaskContext(task_result=result))
        task_started.send(GuardedTaskBackend, task_result=result)
        try:
            value = self._call(task.func, call_args, kwargs.get("kwargs") or {}, run)
        except (PermanentTaskError, TaskTimeoutError, TaskCancelledError, TaskReleasedError):
            raise
        except Exception as error:
            retries, max_retries = self.request.retries or 0, int(kwargs.get("max_retries") or 0)
            if retries < max_retries:
                from easyrag.task_app.task_handlers import retry_countdown

                raise self.retry(exc=error, countdown=retry_countdown(retries + 1),
                                 max_retries=max_retries) from error
            self._finished(task, run, backend, TaskResultStatus.FAILED, error)
            raise
        self._finished(task, run, backend, TaskResultStatus.SUCCESSFUL, None, value)
        return value

    @staticmethod
    def _call(func: Any, args: list, kwargs: dict, run: Run) -> Any:
        if inspect.iscoroutinefunction(func):
            return run_coroutine(lambda: func(*args, **kwargs), get_config().default_timeout, run.renewal)
        return func(*args, **kwargs)

    @staticmethod
    def _finished(task: Any, run: Run, backend: str, status: Any, error: BaseException | None,
                  value: Any = None) -> None:
        """Django's task_finished, with the outcome about to be recorded."""
        result = task_result_of(task, run.record, backend)
        object.__setattr__(result, "status", status)
        if error is not None:
            path = f"{type(error).__module__}.{type(error).__qualname__}"
            result.errors.append(TaskError(exception_class_path=path, traceback=str(error)))
        else:
            object.__setattr__(result, "_return_value", value)
        task_finished.send(GuardedTaskBackend, task_result=result)


@shared_task(name=RUNNER_NAME, bind=True, base=DjangoTaskRunner)
def run_django_task(self: DjangoTaskRunner, module_path: str, args: list, kwargs: dict,
                    takes_context: bool = False, backend: str = "default", max_retries: int = 0) -> Any:
    """A direct call (no claim): run the function as it is."""
    task = import_string(module_path)
    return task.func(*args, **kwargs)
