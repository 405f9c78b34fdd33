"""TaskHandler, register_task_handler and the handler modules workers import.

``register_task_handler(MyHandler)`` makes a Celery task named ``"MyHandler"`` with the guarded
base (HandlerTask), so ``submit_task("MyHandler", {...})``, ``app.tasks["MyHandler"].delay(...)``,
chains and groups all run it under the same guard, record and status.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import random
import threading
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from easyrag.config import get_config
from easyrag.task_app.base_task import GuardedTask, Run
from easyrag.task_app.exceptions import (
    PermanentTaskError,
    TaskCancelledError,
    TaskReleasedError,
    TaskTimeoutError,
)
from easyrag.task_app.records import Task, TaskStatus
from easyrag.task_app.runner import run_coroutine

logger = logging.getLogger("EasyRAG.task_app.task_handlers")

#: The task_data key under which a handler in a chain receives the previous task's result.
PREVIOUS_RESULT = "previous_result"
#: Message headers the facade sets for one task.
TIMEOUT_HEADER = "easyrag_timeout"
MAX_RETRIES_HEADER = "easyrag_max_retries"


class TaskHandler:
    """Subclass and implement ``handle_task``; the task type is the class name.

    Register the subclass with ``register_task_handler(MyHandler)`` in a module that workers import
    (a built-in one, or one of ASYNC_TASK_HANDLER_MODULES).  A new instance runs each task.
    """

    #: The task_data keys this handler reads.  A submission carrying any other key is refused
    #: (InvalidTaskDataError naming it), so nothing a handler ignores is stored for days in Redis.
    #: None (the default, for handlers that do not declare): any key is accepted.
    fields: tuple[str, ...] | None = None

    def can_handle(self, task_type: str) -> bool:
        """Whether this handler runs tasks of ``task_type``: by default, its own class name.

        Called before every run; a handler answering False fails the task at once
        (PermanentTaskError).  Override only to refuse a type the class is registered under.
        """
        return task_type == type(self).__name__

    async def handle_task(self, task: Task) -> dict[str, Any]:
        """Run one task and return its result: a JSON object (a dict of JSON values), kept in the record.

        ``task`` is the task's record: ``task.task_data`` (the submitted JSON object, plus
        ``previous_result`` in a chain), ``task.task_id``, ``task.user_id``, ``task.retries``.
        Report progress with ``await task.update_progress(percent, message)`` (0-100; one round
        trip).  A result JSON cannot hold fails the task (ResultNotJSONError).

        Raising ends the attempt: PermanentTaskError (and its subclasses, e.g. TaskDataError)
        fails the task at once; any other exception is retried by the task's policy (max_retries,
        exponential back-off), then fails.  The task's timeout and cancel_task() arrive as
        ``asyncio.CancelledError`` at an ``await``: it must propagate (clean up in ``finally``);
        a handler that swallows it runs on past its timeout or cancel.  Blocking work belongs in
        ``await run_step(function, ...)``, off the shared event loop.  A synchronous
        ``handle_task`` is allowed but cannot be interrupted.
        """
        raise NotImplementedError


_handlers: dict[str, type[TaskHandler]] = {}


def registered_handlers() -> dict[str, type[TaskHandler]]:
    """task_type → handler class, for every handler registered in this process."""
    return dict(_handlers)


def retry_countdown(retry: int) -> float:
    """Seconds before the ``retry``-th retry: min(60, 2^(retry-1)) times a random factor in [0.5, 1]."""
    return min(60.0, 2.0 ** (retry - 1)) * random.uniform(0.5, 1.0)


class HandlerTask(GuardedTask):
    """The Celery task of one TaskHandler: runs its coroutine with timeout, progress and retries."""

    #: The TaskHandler subclass this task runs (set by register_task_handler).
    handler_class: type[TaskHandler]
    #: Any JSON object is task data, even {"self": ...}: Celery's argument check would refuse
    #: keys that clash with its generated header's parameter names.
    typing = False

    def task_data_of(self, args: Any, kwargs: dict) -> dict[str, Any]:
        """The handler's task_data: the keyword arguments, plus ``previous_result`` in a chain.

        ``chain(a.s(...), b.s(...))`` calls ``b`` with ``a``'s result as its one positional
        argument; a handler receives it as ``task.task_data["previous_result"]`` beside its own data.
        """
        if len(args) == 1:
            return {**kwargs, PREVIOUS_RESULT: args[0]}
        return super().task_data_of(args, kwargs)  # none, or too many: run() refuses the latter

    def execute(self, run: Run, args: tuple, kwargs: dict) -> Any:
        """GuardedTask's hook: run the handler under this claim."""
        return self.run_handler(self.task_data_of(handler_arguments(self.name, args), kwargs), run)

    def run_handler(self, task_data: dict[str, Any], run: Run | None = None) -> Any:
        """Run the handler on ``task_data`` within its timeout; retry, fail or return its result.

        ``run`` is the claimed execution (None for a direct call or eager mode: nothing to record).
        PermanentTaskError, timeout, cancel and release end the attempt as they are; any other
        exception is retried (``self.retry``) until max_retries, then re-raised.
        """
        request = self.request
        config = get_config()
        timeout = float(self._header(TIMEOUT_HEADER) or config.default_timeout)
        max_retries = self._header(MAX_RETRIES_HEADER)
        max_retries = config.default_retries if max_retries is None else int(max_retries)
        if run is None:
            return self._run_unguarded(task_data, timeout)
        record = run.record
        task = Task(**{name: getattr(record, name) for name in record.__dataclass_fields__},
                    _report=run.report_progress)
        handler = self.handler_class()
        if not handler.can_handle(self.name):
            raise PermanentTaskError(f"{self.handler_class.__name__} cannot handle task type {self.name!r}")
        logger.info("task %s (%s): started on %s (attempt %s)", request.id, self.name, record.worker,
                    request.retries + 1)
        try:
            if inspect.iscoroutinefunction(handler.handle_task):
                result = run_coroutine(lambda: handler.handle_task(task), timeout, run.renewal)
            else:  # a synchronous handle_task is allowed; it cannot be interrupted
                result = handler.handle_task(task)
        except (PermanentTaskError, TaskTimeoutError, TaskCancelledError, TaskReleasedError,
                SoftTimeLimitExceeded) as error:
            logger.info("task %s (%s): %s", request.id, self.name, error)
            raise
        except Exception as error:
            if request.retries < max_retries:
                countdown = retry_countdown(request.retries + 1)
                logger.warning("task %s (%s): %s: %s; retry %s of %s in %.1f s", request.id, self.name,
                               type(error).__name__, error, request.retries + 1, max_retries, countdown)
                raise self.retry(exc=error, countdown=countdown, max_retries=max_retries) from error
            logger.error("task %s (%s): failed after %s attempt(s): %s", request.id, self.name,
                         request.retries + 1, error)
            raise
        logger.info("task %s (%s): finished", request.id, self.name)
        return result

    def _run_unguarded(self, task_data: dict[str, Any], timeout: float) -> Any:
        """``task(**data)``, ``.apply()`` and ``task_always_eager``: Celery runs the body in this
        process without a broker delivery, so there is nothing to claim or record."""

        async def ignore_progress(percent: int, message: str) -> None:
            return None

        task = Task(task_id=self.request.id or "", task_type=self.name, task_data=task_data,
                    status=TaskStatus.RUNNING, _report=ignore_progress)
        handler = self.handler_class()
        if inspect.iscoroutinefunction(handler.handle_task):
            return run_coroutine(lambda: handler.handle_task(task), timeout)
        return handler.handle_task(task)


def handler_arguments(name: str, args: tuple) -> tuple:
    """A handler task's positional arguments: none, or in a chain the previous task's result."""
    if len(args) > 1:
        raise PermanentTaskError(
            f"{name} takes its task_data as keyword arguments (and, in a chain, the previous "
            f"task's result as one positional argument); got {len(args)} positional arguments")
    return args


def register_task_handler(handler_class: type[TaskHandler]) -> Any:
    """Register ``handler_class`` under its class name and return its Celery task."""
    if not (inspect.isclass(handler_class) and issubclass(handler_class, TaskHandler)):
        raise TypeError(f"register_task_handler() needs a TaskHandler subclass, got {handler_class!r}")
    name = handler_class.__name__

    def run(task: HandlerTask, /, *args: Any, **task_data: Any) -> Any:  # "self" may be a data key
        """A direct call or eager mode (a claimed delivery goes through HandlerTask.execute)."""
        return task.run_handler(task.task_data_of(handler_arguments(name, args), task_data))

    run.__name__ = run.__qualname__ = name
    run.__module__ = handler_class.__module__
    task = shared_task(name=name, bind=True, base=HandlerTask, handler_class=handler_class)(run)
    _handlers[name] = handler_class
    return task


def load_handler_modules() -> None:
    """Import the built-in handler modules and those of ASYNC_TASK_HANDLER_MODULES (idempotent).

    The list is the configuration's (``get_config().all_handler_modules``, as celeryconfig's
    ``imports``): modules are imported by name, so nothing here imports ``tasks``.

    Handlers may use Django models, so a plain script that submits tasks gets Django set up here
    (workers have it from Celery's Django fix-up, manage.py and pytest-django from Django).
    """
    import django
    from django.apps import apps

    if not apps.apps_ready:  # (inside Django's own set-up, e.g. from AppConfig.ready(), it is)
        django.setup()

    for module in get_config().all_handler_modules:
        importlib.import_module(module)


_loaded = threading.Event()


def ensure_handlers_loaded() -> None:
    """load_handler_modules() once per process, for code that needs the registry complete."""
    if not _loaded.is_set():
        load_handler_modules()
        _loaded.set()
