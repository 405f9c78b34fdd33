"""NotificationTaskHandler: a JSON webhook to an allowed host, or a Redis PUBLISH on a channel of the
application's own (never one of Celery's, kombu's or this task layer's: see check_redis_channel)."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app.async_task_framework import (
    REQUIRED,
    Task,
    TaskDataError,
    TaskHandler,
    get_choice,
    get_field,
    get_text,
    register_task_handler,
    run_step,
)
from easyrag.task_app.exceptions import WebhookError

logger = logging.getLogger(__name__)

#: Seconds to connect, and between bytes of the answer.
WEBHOOK_TIMEOUT = 10.0
#: Redirects followed (each hop checked against the allow-list) before giving up.
MAX_REDIRECTS = 5


def check_host(url: httpx.URL, what: str) -> None:
    """Refuse ``url`` unless http(s) to a host of the allow-list (as written, any case, any port).

    Raises TaskDataError (a PermanentTaskError: no retry) naming the field ``url``; ``what`` says
    which URL (the given one or a redirect hop).
    """
    if url.scheme not in ("http", "https"):
        raise TaskDataError(f"{what} scheme {url.scheme!r} is not http or https", "url")
    allowed = {host.strip().strip("[]").lower() for host in get_config().webhook_allowed_hosts}
    if url.host.lower() not in allowed:
        raise TaskDataError(f"{what} host {url.host!r} is not in ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS "
                            f"({', '.join(sorted(allowed)) or 'empty'}); no request was made to it", "url")


async def post_webhook(url_text: str, payload: Any) -> int:
    """POST ``payload`` as JSON, following redirects hop by hop; returns the final status code."""
    try:
        url = httpx.URL(url_text)
    except httpx.InvalidURL as error:
        raise TaskDataError(f"url {url_text!r} is not a URL: {error}", "url") from None
    check_host(url, f"url {url_text!r}:")
    async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT, follow_redirects=False) as client:
        request = client.build_request("POST", url, json=payload)
        for hop in range(MAX_REDIRECTS + 1):
            try:
                # stream=True: the answer's body is never read, whatever its size.
                response = await client.send(request, stream=True)
                await response.aclose()
            except httpx.HTTPError as error:
                raise WebhookError(f"webhook POST to {request.url} failed: {error!r}") from error
            if response.next_request is None:
                break
            request = response.next_request  # httpx applies the 301/302/303 → GET rules
            check_host(request.url, f"url {url_text!r}: redirect {hop + 1} to {str(request.url)!r}:")
        else:
            raise WebhookError(f"webhook {url_text!r} redirected more than {MAX_REDIRECTS} times")
    if not response.is_success:
        raise WebhookError(f"webhook {request.url} answered {response.status_code} "
                           f"{response.reason_phrase}")
    return response.status_code


#: Substrings of Celery's and kombu's pub/sub channels: ``/<db>.celery.pidbox`` (remote control:
#: cancel consumers, shut workers down) and ``/<db>.celeryev/...`` (events), whatever the prefixes.
RESERVED_PARTS = ("pidbox", "celeryev")
#: Beginnings of names kombu and Celery use: fanout channels, bindings, results, unacked messages.
RESERVED_STARTS = ("/", "_kombu", "celery-task-meta", "unacked")


def check_redis_channel(name: str) -> None:
    """Refuse a channel name that Celery, kombu or this project use (compared case-insensitively).

    Refused: a name containing ``pidbox`` or ``celeryev``, or starting with ``/``, ``_kombu``,
    ``celery-task-meta``, ``unacked`` or the project's key prefix and a colon
    (``ASYNC_TASK_REDIS_PREFIX``, ``async_task:``).  A message published on Celery's control
    channel can make every worker cancel its consumers or shut down, so task data may not reach
    them.  Raises TaskDataError (a PermanentTaskError: no retry, nothing published) naming the
    field ``redis_channel``.
    """
    folded = name.casefold()
    starts = (*RESERVED_STARTS, get_config().redis_prefix + ":")
    reason = next((f"contains {part!r}" for part in RESERVED_PARTS if part in folded), None) or next(
        (f"starts with {start!r}" for start in starts if folded.startswith(start.casefold())), None)
    if reason is not None:
        raise TaskDataError(f"redis_channel {name!r} is refused: it {reason}, a name reserved for Celery, "
                            "kombu or this task layer (their control and event channels and keys); "
                            "nothing was published", "redis_channel")


class NotificationTaskHandler(TaskHandler):
    """``channel`` webhook (``url``) or redis (``redis_channel``), and ``payload`` (any JSON value).

    Result ``channel``, ``delivered`` and ``status_code`` (webhook) or ``receivers`` (redis:
    subscribers that got it; delivered means at least one).  ``redis_channel`` may not be a name
    Celery, kombu or this project uses (``check_redis_channel``).
    """

    async def handle_task(self, task: Task) -> dict[str, Any]:
        data = task.task_data
        channel = get_choice(data, "channel", ("webhook", "redis"))
        if "payload" not in data:
            raise TaskDataError("payload is required (any JSON value)", "payload")
        payload = data["payload"]
        await task.update_progress(10, f"sending by {channel}")
        if channel == "webhook":
            url = get_field(data, "url", str, "an http(s) URL", REQUIRED)
            status_code = await post_webhook(url, payload)
            result: dict[str, Any] = {"channel": channel, "delivered": True, "status_code": status_code}
        else:
            redis_channel = get_text(data, "redis_channel")
            check_redis_channel(redis_channel)
            message = json.dumps(payload)
            receivers = await run_step(get_redis_instance().publish, redis_channel, message)
            result = {"channel": channel, "delivered": receivers > 0, "receivers": receivers}
        logger.info("task %s (%s): %s", task.task_id, task.task_type, result)
        await task.update_progress(100, "delivered" if result["delivered"] else "published, nobody listening")
        return result


register_task_handler(NotificationTaskHandler)
