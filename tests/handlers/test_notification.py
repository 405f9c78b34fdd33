"""NotificationTaskHandler: webhooks to a local http.server (allow-list, redirects), Redis pub/sub."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from easyrag.config import get_config
from easyrag.task_app.async_task_framework import TaskStatus, submit_task
from tests.handlers.conftest import assert_each_fails_at_once, assert_failed_at_once, wait_final
from tests.support.waiting import wait_until


@dataclass
class WebhookServer:
    """A local HTTP server that records every request and answers from ``routes``."""

    server: ThreadingHTTPServer
    #: path -> (status, extra headers); unknown paths answer 200.
    routes: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def start_server() -> WebhookServer:
    recorder: WebhookServer

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            recorder.requests.append((self.command, self.path, body))
            status, headers = recorder.routes.get(self.path, (200, {}))
            self.send_response(status)
            for name, value in {**headers, "Content-Length": "0"}.items():
                self.send_header(name, value)
            self.end_headers()

        do_POST = do_GET = _answer

        def log_message(self, *args: object) -> None:
            pass

    recorder = WebhookServer(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    threading.Thread(target=recorder.server.serve_forever, daemon=True).start()
    return recorder


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = start_server()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def other_server() -> Iterator[WebhookServer]:
    server = start_server()
    yield server
    server.server.shutdown()
    server.server.server_close()


def notify(task_data: dict, max_retries: int = 3):
    return wait_final(submit_task("NotificationTaskHandler", task_data, max_retries=max_retries))


def test_webhook_posts_the_payload_as_json(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="example.org,127.0.0.1")
    payload = {"event": "parsed", "document_id": "d-1", "chunks": [1, 2]}
    task = notify({"channel": "webhook", "url": webhook.url("/hook"), "payload": payload})
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.result == {"channel": "webhook", "delivered": True, "status_code": 200}
    [(method, path, body)] = webhook.requests
    assert (method, path, json.loads(body)) == ("POST", "/hook", payload)


def test_allowed_host_names_match_in_any_case(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="LocalHost")
    task = notify({"channel": "webhook", "url": webhook.url("/h", host="LOCALHOST"), "payload": [1]})
    assert task.result == {"channel": "webhook", "delivered": True, "status_code": 200}, task.error
    assert [(m, p) for m, p, _ in webhook.requests] == [("POST", "/h")]


def test_a_host_not_allowed_fails_at_once_without_a_request(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="hooks.example.org,localhost")
    task = notify({"channel": "webhook", "url": webhook.url("/hook"), "payload": {}})
    assert_failed_at_once(task, "url", "'127.0.0.1' is not in ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS")
    assert webhook.requests == []


def test_a_redirect_to_an_allowed_host_is_followed_with_the_body(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    webhook.routes["/old"] = (307, {"Location": "/new"})
    task = notify({"channel": "webhook", "url": webhook.url("/old"), "payload": {"n": 1}})
    assert task.result == {"channel": "webhook", "delivered": True, "status_code": 200}, task.error
    assert webhook.requests == [("POST", "/old", b'{"n":1}'), ("POST", "/new", b'{"n":1}')]


def test_a_redirect_to_a_host_not_allowed_is_refused_before_any_request(live_worker, env, webhook,
                                                                       other_server):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    webhook.routes["/hook"] = (302, {"Location": other_server.url("/steal", host="localhost")})
    task = notify({"channel": "webhook", "url": webhook.url("/hook"), "payload": {"secret": 1}})
    assert_failed_at_once(task, "url", "redirect 1", "'localhost' is not in ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS")
    assert [path for _, path, _ in webhook.requests] == ["/hook"]
    assert other_server.requests == []


def test_an_error_status_is_retried_by_the_task_policy(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    webhook.routes["/down"] = (503, {})
    task = notify({"channel": "webhook", "url": webhook.url("/down"), "payload": {}}, max_retries=1)
    assert (task.status, task.retries) == (TaskStatus.FAILED, 1)
    assert "503" in task.error
    assert [path for _, path, _ in webhook.requests] == ["/down", "/down"]


def test_an_unreachable_webhook_is_retried_then_fails(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    url = webhook.url("/hook")
    webhook.server.shutdown()
    webhook.server.server_close()  # nothing listens on the port any more
    task = notify({"channel": "webhook", "url": url, "payload": {}}, max_retries=1)
    assert (task.status, task.retries) == (TaskStatus.FAILED, 1)
    assert "ConnectError" in task.error


def test_redis_channel_publishes_the_payload_to_subscribers(live_worker, redis_client):
    channel = f"easyrag-test:notify:{uuid.uuid4()}"
    subscriber = redis_client.pubsub()
    subscriber.subscribe(channel)
    wait_until(lambda: (m := subscriber.get_message(timeout=0.1)) and m["type"] == "subscribe",
               message="the subscription")
    payload = {"event": "done", "ids": [1, 2]}
    task = notify({"channel": "redis", "redis_channel": channel, "payload": payload})
    assert task.result == {"channel": "redis", "delivered": True, "receivers": 1}, task.error
    message = wait_until(lambda: subscriber.get_message(timeout=0.1), message="the published message")
    assert (message["channel"], json.loads(message["data"])) == (channel, payload)
    subscriber.close()


def test_redis_channel_without_subscribers_is_not_delivered(live_worker):
    task = notify({"channel": "redis", "redis_channel": f"easyrag-test:{uuid.uuid4()}", "payload": "hi"})
    assert task.result == {"channel": "redis", "delivered": False, "receivers": 0}, task.error


def test_bad_task_data_fails_at_once_naming_the_field(live_worker, env):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    assert_each_fails_at_once("NotificationTaskHandler", [(task_data, [field]) for task_data, field in [
        ({"payload": {}}, "channel"),
        ({"channel": "sms", "payload": {}}, "channel"),
        ({"channel": "webhook", "payload": {}}, "url"),
        ({"channel": "webhook", "url": "ftp://127.0.0.1/x", "payload": {}}, "url"),
        ({"channel": "webhook", "url": 5, "payload": {}}, "url"),
        ({"channel": "webhook", "url": "http://127.0.0.1/x"}, "payload"),
        ({"channel": "redis", "payload": {}}, "redis_channel"),
        ({"channel": "redis", "redis_channel": "", "payload": {}}, "redis_channel"),
    ]])


def refused_channels(redis_test_url: str) -> list[tuple[str, str]]:
    """(channel, why) for names Celery, kombu or this task layer use; ``/<db>.celery.pidbox`` first."""
    db = redis.connection.parse_url(redis_test_url).get("db", 0)
    prefix = get_config().redis_prefix
    return [
        (f"/{db}.celery.pidbox", "contains 'pidbox'"),  # kombu's fanout: Celery's remote control
        ("celery.pidbox", "contains 'pidbox'"),  # the same without the fanout prefix
        ("Celery.PIDBOX", "contains 'pidbox'"),
        ("reply.celery.pidbox", "contains 'pidbox'"),
        (f"/{db}.celeryev/worker.heartbeat", "contains 'celeryev'"),
        ("app.celeryev", "contains 'celeryev'"),
        ("/app/updates", "starts with '/'"),
        ("_kombu.binding.celery", "starts with '_kombu'"),
        (f"celery-task-meta-{uuid.uuid4()}", "starts with 'celery-task-meta'"),
        ("unacked_index", "starts with 'unacked'"),
        (f"{prefix}:task:{uuid.uuid4()}", f"starts with '{prefix}:'"),
        (f"{prefix.upper()}:counters", f"starts with '{prefix}:'"),
    ]


def messages_until(subscriber: redis.client.PubSub, channel: str) -> list[dict]:
    """Every message ``subscriber`` gets, up to and including the first one on ``channel``."""
    received: list[dict] = []

    def got_channel() -> bool:
        message = subscriber.get_message(timeout=0.1)
        if message is not None:
            received.append(message)
        return message is not None and message["channel"] == channel

    wait_until(got_channel, message=f"a message on {channel}")
    return received


def test_reserved_redis_channels_are_refused_and_nothing_is_published(live_worker, redis_client,
                                                                      redis_test_url):
    cases = refused_channels(redis_test_url)
    allowed = f"easyrag-test:notify:{uuid.uuid4()}"
    subscriber = redis_client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(*(channel for channel, _ in cases), allowed)
    # One SUBSCRIBE for all: once the last channel counts its subscriber, every channel does.
    wait_until(lambda: redis_client.pubsub_numsub(allowed) == [(allowed, 1)], message="the subscriptions")
    marker = f"must-not-arrive-{uuid.uuid4()}"
    assert_each_fails_at_once("NotificationTaskHandler", [
        ({"channel": "redis", "redis_channel": channel, "payload": {"marker": marker, "shutdown": True}},
         ["redis_channel", repr(channel), why, "reserved for Celery, kombu or this task layer"])
        for channel, why in cases])
    # Then a publish on an allowed channel of the same subscriber: Redis delivers in order, so once it
    # is here, anything published on the refused channels before it would be here too.
    task = notify({"channel": "redis", "redis_channel": allowed, "payload": {"last": marker}})
    assert task.result == {"channel": "redis", "delivered": True, "receivers": 1}, task.error
    received = messages_until(subscriber, allowed)
    assert [(m["channel"], json.loads(m["data"])) for m in received] == [(allowed, {"last": marker})]
    subscriber.close()


@pytest.mark.parametrize("name", ["app:notifications", "user/42/events", "celery-results", "unpacked",
                                  "async_tasks:feed"])
def test_ordinary_redis_channels_near_the_reserved_names_still_work(live_worker, redis_client, name):
    assert not name.startswith(get_config().redis_prefix + ":")
    channel = f"{name}-{uuid.uuid4()}"
    subscriber = redis_client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(channel)
    wait_until(lambda: redis_client.pubsub_numsub(channel) == [(channel, 1)], message="the subscription")
    task = notify({"channel": "redis", "redis_channel": channel, "payload": {"n": 1}})
    assert task.result == {"channel": "redis", "delivered": True, "receivers": 1}, task.error
    message = wait_until(lambda: subscriber.get_message(timeout=0.1), message="the published message")
    assert (message["channel"], json.loads(message["data"])) == (channel, {"n": 1})
    subscriber.close()
