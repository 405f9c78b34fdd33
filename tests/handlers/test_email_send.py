"""EmailSendTaskHandler: Django's mail API with the backend from settings; addresses validated."""

from __future__ import annotations

import socket

import pytest

from easyrag.task_app.async_task_framework import TaskStatus, submit_task
from tests.handlers.conftest import assert_each_fails_at_once, assert_failed_at_once, wait_final

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def outbox(settings, mailoutbox):
    """The locmem backend's outbox; the in-process worker's threads append to the same list."""
    settings.EMAIL_BACKEND = LOCMEM
    return mailoutbox


def test_each_recipient_gets_one_message_with_text_and_html(live_worker, outbox, settings):
    task_id = submit_task("EmailSendTaskHandler", {
        "to_email": ["ann@example.com", "bob@example.org", "ANN@example.com"],
        "subject": "Report ready", "body": "See attached.", "html_body": "<p>See attached.</p>",
    })
    task = wait_final(task_id)
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.result == {"sent": 2, "recipients": ["ann@example.com", "bob@example.org"]}
    assert task.progress == 100
    assert sorted(message.to[0] for message in outbox) == ["ann@example.com", "bob@example.org"]
    for message in outbox:
        assert len(message.to) == 1 and not message.cc and not message.bcc
        assert (message.subject, message.body) == ("Report ready", "See attached.")
        assert message.alternatives[0][:2] == ("<p>See attached.</p>", "text/html")
        assert message.from_email == settings.DEFAULT_FROM_EMAIL


def test_one_address_and_no_body_sends_an_empty_text_message(live_worker, outbox):
    task_id = submit_task("EmailSendTaskHandler", {"to_email": "urgent@example.com", "subject": "Urgent"})
    task = wait_final(task_id)
    assert task.result == {"sent": 1, "recipients": ["urgent@example.com"]}
    assert [(m.to, m.subject, m.body, m.alternatives) for m in outbox] == [
        (["urgent@example.com"], "Urgent", "", [])]


def test_file_backend_from_settings_writes_the_message(live_worker, settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    task = wait_final(submit_task("EmailSendTaskHandler", {"to_email": "ops@example.com",
                                                          "subject": "Nightly", "body": "all good"}))
    assert task.status is TaskStatus.COMPLETED, task.error
    written = "".join(path.read_text() for path in (tmp_path / "mail").iterdir())
    assert "To: ops@example.com" in written and "Subject: Nightly" in written and "all good" in written


def test_an_invalid_address_fails_at_once_and_sends_nothing(live_worker, outbox):
    task_id = submit_task("EmailSendTaskHandler", {"to_email": ["ok@example.com", "not-an-address"],
                                                   "subject": "x"}, max_retries=3)
    assert_failed_at_once(wait_final(task_id), "to_email", "not-an-address")
    assert outbox == []


def test_bad_task_data_fails_at_once_naming_the_field(live_worker, outbox):
    assert_each_fails_at_once("EmailSendTaskHandler", [(task_data, [field]) for task_data, field in [
        ({"subject": "no recipient"}, "to_email"),
        ({"to_email": [], "subject": "s"}, "to_email"),
        ({"to_email": 42, "subject": "s"}, "to_email"),
        ({"to_email": ["a@example.com", 7], "subject": "s"}, "to_email"),
        ({"to_email": "a@example.com"}, "subject"),
        ({"to_email": "a@example.com", "subject": ["s"]}, "subject"),
        ({"to_email": "a@example.com", "subject": "two\nlines"}, "subject"),
        ({"to_email": "a@example.com", "subject": "s", "body": 3}, "body"),
        ({"to_email": "a@example.com", "subject": "s", "html_body": {"p": 1}}, "html_body"),
    ]])
    assert outbox == []


def test_an_smtp_server_that_refuses_is_retried_then_fails(live_worker, settings):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 2
    task = wait_final(submit_task("EmailSendTaskHandler", {"to_email": "a@example.com", "subject": "s"},
                                  max_retries=1))
    assert (task.status, task.retries) == (TaskStatus.FAILED, 1)
    assert "refused" in task.error.lower()
