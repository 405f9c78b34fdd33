"""--forward: hand each legacy item to the Celery task layer (``submit_task``) instead of running it.

For users moving from the list to Celery: producers keep pushing the same JSON, and each item
becomes a Celery task with a record, retries and status.  The item leaves the processing list
only after ``submit_task`` returned its id; a submission the facade refuses (unknown handler,
data that is not an object, bad priority) dead-letters the item with the facade's error.

=============================  ==========================  ====================================
legacy ``type``                Celery handler              ``task_data``
=============================  ==========================  ====================================
``email``                      ``EmailSendTaskHandler``    ``data`` with ``to`` renamed ``to_email``
``file_process``               ``DataProcessTaskHandler``  ``data`` with ``file_path`` renamed ``data_source``
a registered handler's name    that handler                ``data`` as is
anything else                  ``LegacyTaskHandler``       the whole item ``{"type", "data"}``
=============================  ==========================  ====================================

``LegacyTaskHandler`` (celery_handler.py) runs the item on a worker with the same handler the
command would have used (``ASYNC_COMMAND_HANDLER`` there, else the seed's ``async_handle``).  It
is not a built-in: add ``easyrag.legacy.celery_handler`` to ASYNC_TASK_HANDLER_MODULES of
the workers and of this consumer; without it such items are dead-lettered with a message saying so.
An item's optional ``"priority"`` (0-3) is passed on.

Which task types may be submitted is an allow-list, as the REST API's ASYNC_TASK_API_TASK_TYPES
is for non-staff users: ``--forward-types`` (or ASYNC_COMMAND_FORWARD_TYPES), the Celery task
types (handler names) items may become; an item mapped to any other is dead-lettered with a
``TaskTypeNotAllowedError`` naming its legacy type and the handler.  The default is
``LegacyTaskHandler`` alone: it runs an item with the handler the command itself would have run,
so forwarding gives whoever can push to the list no handler that running the list did not
(without it, ``{"type": "FileUploadTaskHandler", ...}`` would have run that handler, with the
rights of the service).  ``email`` -> EmailSendTaskHandler and the others are opt-in by name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from easyrag.legacy.errors import ForwardTypesError, TaskTypeNotAllowedError
from easyrag.legacy.handlers import Handler
from easyrag.legacy.items import Brief, shorten

logger = logging.getLogger(__name__)

#: legacy type -> (Celery handler, renamed fields of ``data``)
FORWARD_MAP: dict[str, tuple[str, dict[str, str]]] = {
    "email": ("EmailSendTaskHandler", {"to": "to_email"}),
    "file_process": ("DataProcessTaskHandler", {"file_path": "data_source"}),
}
#: Handler of every other type that is not a registered handler's name.
FALLBACK_HANDLER = "LegacyTaskHandler"
FALLBACK_MODULE = "easyrag.legacy.celery_handler"
#: Task types forwarded when --forward-types / ASYNC_COMMAND_FORWARD_TYPES is not given.
DEFAULT_FORWARD_TYPES = (FALLBACK_HANDLER,)
#: Seconds between submissions refused because the broker queue is full (QueueFullError).
QUEUE_FULL_BACKOFF = (0.1, 5.0)


def map_item(payload: dict[str, Any], registered: set[str] | frozenset[str]) -> tuple[str, Any]:
    """(Celery handler name, task_data) for one legacy item, by the table above."""
    legacy_type = payload.get("type")
    data = payload.get("data", {})
    if isinstance(legacy_type, str) and legacy_type in FORWARD_MAP:
        name, renames = FORWARD_MAP[legacy_type]
        if isinstance(data, dict):
            data = {renames.get(key, key): value for key, value in data.items()}
        return name, data
    if isinstance(legacy_type, str) and legacy_type in registered:
        return legacy_type, data
    return FALLBACK_HANDLER, {"type": legacy_type, "data": data}


def check_forward_types(allowed: Iterable[str], registered: set[str] | frozenset[str]) -> frozenset[str]:
    """The allow-list as a set; ``ForwardTypesError`` when it is empty or names an unknown type.

    LegacyTaskHandler may be listed unregistered: the items it would take are dead-lettered with a
    message saying how to register it, as without an allow-list.
    """
    allowed = frozenset(allowed)
    if not allowed:
        raise ForwardTypesError("--forward-types names no task type")
    for name in sorted(allowed - registered - {FALLBACK_HANDLER}):
        hint = f" (a legacy type: name its handler, {FORWARD_MAP[name][0]})" if name in FORWARD_MAP else ""
        raise ForwardTypesError(f"--forward-types: {shorten(name, 100)!r} is not a registered task type"
                                f"{hint}")
    return allowed


def make_forwarder(allowed: Iterable[str] = DEFAULT_FORWARD_TYPES) -> Handler:
    """An item handler that submits to the facade the items mapped to a task type in ``allowed``.

    Loads the handler modules first (once); raises ``ForwardTypesError`` for a bad allow-list.
    """
    from easyrag.task_app.async_task_framework import (
        QueueFullError,
        TaskPriority,
        UnknownTaskTypeError,
        submit_task,
    )
    from easyrag.task_app.task_handlers import load_handler_modules, registered_handlers

    load_handler_modules()
    registered = frozenset(registered_handlers())
    allowed = check_forward_types(allowed, registered)
    allowed_text = ",".join(sorted(allowed))

    async def forward(payload: dict[str, Any]) -> str:
        name, task_data = map_item(payload, registered)
        shown = shorten(repr(payload.get("type")), 200)  # the producer's text: shown shortened
        if name not in allowed:
            raise TaskTypeNotAllowedError(
                f"legacy type {shown} is forwarded as {name}, which --forward-types does not allow "
                f"(allowed: {allowed_text})")
        if name == FALLBACK_HANDLER and name not in registered:
            raise UnknownTaskTypeError(
                f"legacy type {shown} has no Celery handler: register a handler of that "
                f"name, or add {FALLBACK_MODULE} to ASYNC_TASK_HANDLER_MODULES (workers and this "
                f"consumer) to run it with {FALLBACK_HANDLER}", field="type")
        priority = payload.get("priority", TaskPriority.NORMAL)
        delay, cap = QUEUE_FULL_BACKOFF
        while True:
            try:
                task_id = await asyncio.to_thread(submit_task, name, task_data, priority)
                break
            except QueueFullError as error:  # back-pressure, not a failure: keep the item and wait
                logger.warning("Broker queue full (%s); retrying the submission in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(cap, delay * 2)
        logger.info("Forwarded %s task as Celery task %s (%s)", Brief(payload.get("type")), task_id, name)
        return task_id

    return forward
