"""EmailSendTaskHandler: sends mail through Django's mail API and the configured EMAIL_BACKEND."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.validators import validate_email

from easyrag.task_app.async_task_framework import (
    Task,
    TaskDataError,
    TaskHandler,
    get_field,
    register_task_handler,
    run_step,
)

logger = logging.getLogger(__name__)


def recipients_of(value: Any) -> list[str]:
    """The validated addresses of ``to_email`` (one address or a list), duplicates dropped."""
    addresses = [value] if isinstance(value, str) else value
    if not addresses:
        raise TaskDataError("to_email must not be an empty list", "to_email")
    seen: dict[str, str] = {}
    for address in addresses:
        if not isinstance(address, str):
            raise TaskDataError(f"to_email must hold strings, got {address!r}", "to_email")
        address = address.strip()
        try:
            validate_email(address)
        except ValidationError:
            raise TaskDataError(f"to_email {address!r} is not a valid email address", "to_email") from None
        seen.setdefault(address.lower(), address)
    return list(seen.values())


class EmailSendTaskHandler(TaskHandler):
    """``to_email`` (one or a list), ``subject``, optional ``body`` and ``html_body``.

    Each recipient gets a message of their own, so no one sees the other addresses; all go
    through one backend connection.  A backend error (SMTP down) is retried by the task's policy;
    a retry sends again to every recipient.
    """

    fields = ("to_email", "subject", "body", "html_body")

    async def handle_task(self, task: Task) -> dict[str, Any]:
        data = task.task_data
        to_email = get_field(data, "to_email", (str, list), "an email address or a list of them")
        recipients = recipients_of(to_email)
        subject = get_field(data, "subject", str, "a string")
        if "\n" in subject or "\r" in subject:
            raise TaskDataError("subject must be one line (no line breaks)", "subject")
        body = get_field(data, "body", str, "a string", default="")
        html_body = get_field(data, "html_body", str, "a string", default=None)
        messages = []
        for address in recipients:
            message = EmailMultiAlternatives(subject, body, to=[address])
            if html_body is not None:
                message.attach_alternative(html_body, "text/html")
            messages.append(message)
        await task.update_progress(10, f"sending {len(messages)} message(s)")
        sent = await run_step(self.send, messages)
        logger.info("task %s (%s): sent %s message(s)", task.task_id, task.task_type, sent)
        await task.update_progress(100, f"sent {sent} message(s)")
        return {"sent": sent, "recipients": recipients}

    @staticmethod
    def send(messages: list[EmailMultiAlternatives]) -> int:
        """Send over one connection of the configured backend; returns the number sent."""
        with get_connection(fail_silently=False) as connection:
            return connection.send_messages(messages) or 0


register_task_handler(EmailSendTaskHandler)
