"""NotificationTaskHandler: webhooks to a local http.server (allow-list, redirects), Redis pub/sub."""

from __future__ import annotations

import json
import socket
import threading
import time
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
    #: the Host header of each request, in order
    hosts: list[str] = field(default_factory=list)

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
            recorder.hosts.append(self.headers.get("Host", ""))
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
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="example.org,127.0.0.1:*")
    payload = {"event": "parsed", "document_id": "d-1", "chunks": [1, 2]}
    task = notify({"channel": "webhook", "url": webhook.url("/hook"), "payload": payload})
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.result == {"channel": "webhook", "delivered": True, "status_code": 200}
    [(method, path, body)] = webhook.requests
    assert (method, path, json.loads(body)) == ("POST", "/hook", payload)


def test_allowed_host_names_match_in_any_case(live_worker, env, webhook):
    # 127.0.0.1 listed too: a name may lead to a non-public address only when that address is allowed.
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="LocalHost:*,127.0.0.1:*")
    task = notify({"channel": "webhook", "url": webhook.url("/h", host="LOCALHOST"), "payload": [1]})
    assert task.result == {"channel": "webhook", "delivered": True, "status_code": 200}, task.error
    assert [(m, p) for m, p, _ in webhook.requests] == [("POST", "/h")]


def test_a_host_not_allowed_fails_at_once_without_a_request(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="hooks.example.org:*,localhost:*")
    task = notify({"channel": "webhook", "url": webhook.url("/hook"), "payload": {}})
    assert_failed_at_once(task, "url", "'127.0.0.1' is not in ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS")
    assert webhook.requests == []


def test_a_redirect_to_an_allowed_host_is_followed_with_the_body(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*")
    webhook.routes["/old"] = (307, {"Location": "/new"})
    task = notify({"channel": "webhook", "url": webhook.url("/old"), "payload": {"n": 1}})
    assert task.result == {"channel": "webhook", "delivered": True, "status_code": 200}, task.error
    assert webhook.requests == [("POST", "/old", b'{"n":1}'), ("POST", "/new", b'{"n":1}')]


def test_a_redirect_to_a_host_not_allowed_is_refused_before_any_request(live_worker, env, webhook,
                                                                       other_server):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*")
    webhook.routes["/hook"] = (302, {"Location": other_server.url("/steal", host="localhost")})
    task = notify({"channel": "webhook", "url": webhook.url("/hook"), "payload": {"secret": 1}})
    assert_failed_at_once(task, "url", "redirect 1", "'localhost' is not in ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS")
    assert [path for _, path, _ in webhook.requests] == ["/hook"]
    assert other_server.requests == []


def test_an_error_status_is_retried_by_the_task_policy(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*")
    webhook.routes["/down"] = (503, {})
    task = notify({"channel": "webhook", "url": webhook.url("/down"), "payload": {}}, max_retries=1)
    assert (task.status, task.retries) == (TaskStatus.FAILED, 1)
    assert "503" in task.error
    assert [path for _, path, _ in webhook.requests] == ["/down", "/down"]


def test_an_unreachable_webhook_is_retried_then_fails(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*")
    url = webhook.url("/hook")
    webhook.server.shutdown()
    webhook.server.server_close()  # nothing listens on the port any more
    task = notify({"channel": "webhook", "url": url, "payload": {}}, max_retries=1)
    assert (task.status, task.retries) == (TaskStatus.FAILED, 1)
    assert "was not delivered: no connection, or no complete answer within" in task.error
    assert "ConnectError" not in task.error and "refused" not in task.error


def test_redis_channel_publishes_the_payload_to_subscribers(live_worker, redis_client):
    name = f"easyrag-test:{uuid.uuid4()}"
    channel = f"easyrag:notify:{name}"  # the application's prefix, then the task's redis_channel
    subscriber = redis_client.pubsub()
    subscriber.subscribe(channel)
    wait_until(lambda: (m := subscriber.get_message(timeout=0.1)) and m["type"] == "subscribe",
               message="the subscription")
    payload = {"event": "done", "ids": [1, 2]}
    task = notify({"channel": "redis", "redis_channel": name, "payload": payload})
    assert task.result == {"channel": "redis", "delivered": True, "receivers": 1}, task.error
    message = wait_until(lambda: subscriber.get_message(timeout=0.1), message="the published message")
    assert (message["channel"], json.loads(message["data"])) == (channel, payload)
    subscriber.close()


def test_redis_channel_without_subscribers_is_not_delivered(live_worker):
    task = notify({"channel": "redis", "redis_channel": f"easyrag-test:{uuid.uuid4()}", "payload": "hi"})
    assert task.result == {"channel": "redis", "delivered": False, "receivers": 0}, task.error


def test_bad_task_data_fails_at_once_naming_the_field(live_worker, env):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*")
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


def test_every_redis_channel_is_published_under_the_application_prefix(live_worker, redis_client,
                                                                        redis_test_url):
    # Names of Celery's remote control and events among them: task data can no longer reach those.
    db = redis.connection.parse_url(redis_test_url).get("db", 0)
    names = [f"/{db}.celery.pidbox", "celery.pidbox", f"/{db}.celeryev/worker.heartbeat",
             f"{get_config().redis_prefix}:counters", f"app:{uuid.uuid4()}"]
    subscriber = redis_client.pubsub(ignore_subscribe_messages=True)
    prefixed = [f"easyrag:notify:{name}" for name in names]
    subscriber.subscribe(*names, *prefixed)
    wait_until(lambda: redis_client.pubsub_numsub(prefixed[-1]) == [(prefixed[-1], 1)],
               message="the subscriptions")
    marker = str(uuid.uuid4())
    task_ids = [submit_task("NotificationTaskHandler", {"channel": "redis", "redis_channel": name,
                                                        "payload": {"marker": marker}}) for name in names]
    for task_id in task_ids:
        task = wait_final(task_id)
        assert task.result == {"channel": "redis", "delivered": True, "receivers": 1}, task.error
    received = []
    wait_until(lambda: (m := subscriber.get_message(timeout=0.1)) is not None and received.append(m) is None
               and len(received) == len(names), message="the published messages")
    assert sorted(m["channel"] for m in received) == sorted(prefixed)  # nothing on the names themselves
    assert all(json.loads(m["data"]) == {"marker": marker} for m in received)
    subscriber.close()


# --- the allow-list's ports --------------------------------------------------------------------

def test_a_bare_host_allows_ports_80_and_443_only(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    task = notify({"channel": "webhook", "url": webhook.url("/hook"), "payload": {}})
    assert_failed_at_once(task, "url", f"port {webhook.port} of host '127.0.0.1' is not allowed")
    assert webhook.requests == []


def test_host_port_allows_that_port_and_host_star_any(live_worker, env, webhook, other_server):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS=f"127.0.0.1:{webhook.port}")
    task = notify({"channel": "webhook", "url": webhook.url("/one"), "payload": {}})
    assert task.result == {"channel": "webhook", "delivered": True, "status_code": 200}, task.error
    task = notify({"channel": "webhook", "url": other_server.url("/two"), "payload": {}})
    assert_failed_at_once(task, "url", f"port {other_server.port} of host '127.0.0.1' is not allowed")
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*")
    task = notify({"channel": "webhook", "url": other_server.url("/three"), "payload": {}})
    assert task.result == {"channel": "webhook", "delivered": True, "status_code": 200}, task.error
    assert [path for _, path, _ in webhook.requests + other_server.requests] == ["/one", "/three"]


def test_a_redirect_to_another_port_of_an_allowed_host_is_refused(live_worker, env, webhook, other_server):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS=f"127.0.0.1:{webhook.port}")
    webhook.routes["/hook"] = (307, {"Location": other_server.url("/redis-like")})
    task = notify({"channel": "webhook", "url": webhook.url("/hook"), "payload": {}})
    assert_failed_at_once(task, "url", "redirect 1", f"port {other_server.port}")
    assert other_server.requests == []


# --- the resolved address -------------------------------------------------------------------------

def test_a_host_name_leading_to_a_loopback_address_not_listed_is_refused(live_worker, env, webhook):
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="localhost:*")
    task = notify({"channel": "webhook", "url": webhook.url("/hook", host="localhost"), "payload": {}})
    assert_failed_at_once(task, "url", "'localhost' resolves to a non-public address")
    assert webhook.requests == []


def test_the_request_goes_to_the_address_that_was_checked(live_worker, env, webhook, monkeypatch):
    """A name is resolved once, checked, and the connection made to that address (Host header kept):
    a second resolution that would answer otherwise (DNS rebinding) never happens."""
    from tasks import notification

    calls: list[str] = []

    async def resolve_once(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["10.66.66.66"]

    monkeypatch.setattr(notification, "resolve", resolve_once, raising=False)
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="rebind.invalid:*,127.0.0.1:*")
    task = notify({"channel": "webhook", "url": webhook.url("/hook", host="rebind.invalid"), "payload": [1]},
                  max_retries=0)
    assert task.result == {"channel": "webhook", "delivered": True, "status_code": 200}, task.error
    assert calls == ["rebind.invalid"]
    assert webhook.hosts == [f"rebind.invalid:{webhook.port}"]


# --- one deadline, generic errors ---------------------------------------------------------------

@pytest.fixture
def trickle_server() -> Iterator[int]:
    """A port whose server answers a status line, then one header byte every 0.2 s, for ever."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not stop.wait(0.2):
                    connection.sendall(b"a")
            except OSError:
                pass  # the client gave up

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


def test_a_trickling_server_is_cut_off_at_the_overall_deadline(live_worker, env, trickle_server,
                                                               monkeypatch):
    from tasks import notification

    monkeypatch.setattr(notification, "WEBHOOK_DEADLINE", 1.0, raising=False)
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*")
    started = time.monotonic()
    task = wait_final(submit_task("NotificationTaskHandler", {
        "channel": "webhook", "url": f"http://127.0.0.1:{trickle_server}/hook", "payload": {}},
        timeout=6, max_retries=0), timeout=20)
    assert (task.status, task.retries) == (TaskStatus.FAILED, 0), (task.status, task.error)
    assert "no complete answer within 1 s" in task.error
    assert time.monotonic() - started < 5


def test_a_closed_port_and_a_silent_server_fail_with_the_same_error(live_worker, env, trickle_server,
                                                                    monkeypatch):
    from tasks import notification

    monkeypatch.setattr(notification, "WEBHOOK_DEADLINE", 1.0, raising=False)
    env(ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*")
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens: connection refused
    errors = []
    for port in (closed_port, trickle_server):
        url = f"http://127.0.0.1:{port}/hook"
        task = wait_final(submit_task("NotificationTaskHandler", {"channel": "webhook", "url": url,
                                                                  "payload": {}}, timeout=6, max_retries=0),
                          timeout=20)
        assert task.status is TaskStatus.FAILED, task.error
        errors.append(task.error.replace(url, "<url>"))
    assert errors[0] == errors[1]
    assert not any(word in errors[0].lower() for word in ("refused", "timeout", "connecterror", "errno"))
