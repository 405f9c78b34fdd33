"""NotificationTaskHandler: a JSON webhook to an allowed host and port, or a Redis PUBLISH on a
channel under the application's prefix ``easyrag:notify:``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from dataclasses import dataclass
from typing import Any

import httpx

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app.async_task_framework import (
    REQUIRED,
    PermanentTaskError,
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

#: Seconds to connect, and between bytes of the answer (each operation).
WEBHOOK_TIMEOUT = 10.0
#: Seconds for the whole delivery: resolving, connecting, sending and the answer's headers, every
#: redirect hop included.  A server trickling a byte every few seconds never trips WEBHOOK_TIMEOUT.
WEBHOOK_DEADLINE = 30.0
#: Redirects followed (each hop checked against the allow-list) before giving up.
MAX_REDIRECTS = 5
#: Every ``redis_channel`` is published under this prefix, so task data can reach no channel of
#: Celery's, kombu's or anyone else's (``/0.celery.pidbox`` becomes ``easyrag:notify:/0.celery.pidbox``).
CHANNEL_PREFIX = "easyrag:notify:"
#: Ports a bare ``host`` entry of ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS allows.
DEFAULT_PORTS = frozenset({80, 443})
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


def notify_channel(name: str) -> str:
    """The Redis channel a ``redis_channel`` of task data is published on."""
    return CHANNEL_PREFIX + name


@dataclass(frozen=True)
class AllowedEntry:
    """One entry of ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS: a host (lower case, no brackets) and its ports."""

    host: str
    ports: frozenset[int] | None  # None: any port

    @classmethod
    def parse(cls, text: str) -> AllowedEntry:
        """``host`` (ports 80, 443), ``host:port`` or ``host:*``; IPv6 as ``[::1]:port`` or bare ``::1``."""
        text = text.strip().lower()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        elif text.count(":") == 1:
            host, port = text.split(":")
        else:  # a name, an IPv4 address or a bare IPv6 address: the default ports
            host, port = text, None
        if port is None:
            return cls(host, DEFAULT_PORTS)
        if port == "*":
            return cls(host, None)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise PermanentTaskError(f"ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS entry {text!r} is not host, "
                                     "host:port or host:*")
        return cls(host, frozenset({int(port)}))

    def allows(self, host: str, port: int) -> bool:
        return host == self.host and (self.ports is None or port in self.ports)


def allowed_entries() -> list[AllowedEntry]:
    return [AllowedEntry.parse(text) for text in get_config().webhook_allowed_hosts if text.strip()]


def target_of(url: httpx.URL) -> tuple[str, int]:
    """The host (lower case, no brackets) and port a URL connects to."""
    return url.host.lower(), url.port or (443 if url.scheme == "https" else 80)


def check_url(url: httpx.URL, what: str) -> None:
    """Refuse ``url`` unless http(s) to a host and port the allow-list allows.

    Raises TaskDataError (a PermanentTaskError: no retry) naming the field ``url``; ``what`` says
    which URL (the given one or a redirect hop).  The allow-list itself is not echoed.
    """
    if url.scheme not in ("http", "https"):
        raise TaskDataError(f"{what} scheme {url.scheme!r} is not http or https", "url")
    host, port = target_of(url)
    entries = allowed_entries()
    if any(entry.allows(host, port) for entry in entries):
        return
    if any(entry.host == host for entry in entries):
        raise TaskDataError(f"{what} port {port} of host {url.host!r} is not allowed by "
                            "ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS (a bare host allows 80 and 443 only; "
                            "host:port or host:* allow others); no request was made to it", "url")
    raise TaskDataError(f"{what} host {url.host!r} is not in ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS; "
                        "no request was made to it", "url")


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (one getaddrinfo; an IP literal is its own address)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


async def checked_address(url: httpx.URL, what: str) -> str:
    """The address to connect to for ``url``: resolved once, here, and checked.

    A host name may lead to a public address, or to a non-public one (loopback, private,
    link-local, ...) only when that address is itself allowed for the port: otherwise a name on the
    list whose DNS changes (rebinding) would reach internal services.  The request then goes to this
    very address, so nothing resolves the name again between the check and the connection.
    """
    host, port = target_of(url)
    addresses = await resolve(host, port)
    entries = allowed_entries()
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if str(ip) == host or ip.is_global or any(entry.allows(str(ip), port) for entry in entries):
            return address
    raise TaskDataError(f"{what} host {url.host!r} resolves to a non-public address that "
                        "ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS does not list itself; no request was made to it",
                        "url")


def pinned_request(client: httpx.AsyncClient, method: str, url: httpx.URL, address: str,
                   body: bytes | None) -> httpx.Request:
    """A request for ``url`` sent to ``address``, with the Host header and TLS SNI of the name."""
    headers = {"Host": url.netloc.decode("ascii")}
    if body is not None:
        headers["Content-Type"] = "application/json"
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return client.build_request(method, url.copy_with(host=address), content=body, headers=headers,
                                extensions=extensions)


def redirected(response: httpx.Response, url: httpx.URL, method: str,
               body: bytes | None) -> tuple[httpx.URL, str, bytes | None] | None:
    """The next hop of a redirect (httpx's rules: 303, and 301/302 after POST, become a GET), or None."""
    location = response.headers.get("Location")
    if response.status_code not in REDIRECT_CODES or location is None:
        return None
    if (response.status_code == 303 and method != "HEAD") or (response.status_code in (301, 302)
                                                              and method == "POST"):
        method, body = "GET", None
    return url.join(location), method, body


async def post_webhook(url_text: str, payload: Any, label: str = "webhook") -> int:
    """POST ``payload`` as JSON within WEBHOOK_DEADLINE, following redirects hop by hop; returns the status.

    A refused URL raises TaskDataError (no retry).  Any failure to deliver (no connection, a reset,
    the deadline) raises one and the same WebhookError, retried by the task's policy: the record does
    not tell a closed port from a silent one.  The detail goes to the worker's log under ``label``.
    """
    try:
        url = httpx.URL(url_text)
    except httpx.InvalidURL as error:
        raise TaskDataError(f"url {url_text!r} is not a URL: {error}", "url") from None
    what = f"url {url_text!r}:"
    method = "POST"
    body: bytes | None = json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                                    allow_nan=False).encode("utf-8")
    try:
        async with asyncio.timeout(WEBHOOK_DEADLINE), httpx.AsyncClient(
                timeout=WEBHOOK_TIMEOUT, follow_redirects=False, trust_env=False) as client:
            for hop in range(MAX_REDIRECTS + 1):
                check_url(url, what)
                address = await checked_address(url, what)
                # stream=True: the answer's body is never read, whatever its size.
                response = await client.send(pinned_request(client, method, url, address, body), stream=True)
                await response.aclose()
                next_hop = redirected(response, url, method, body)
                if next_hop is None:
                    break
                url, method, body = next_hop
                what = f"url {url_text!r}: redirect {hop + 1} to {str(url)!r}:"
            else:
                raise WebhookError(f"webhook {url_text!r} redirected more than {MAX_REDIRECTS} times")
    except (httpx.HTTPError, OSError, TimeoutError) as error:
        logger.warning("%s: delivery to %s failed: %r", label, url, error)
        raise WebhookError(f"webhook {url_text!r} was not delivered: no connection, or no complete "
                           f"answer within {WEBHOOK_DEADLINE:g} s") from None
    if not response.is_success:
        raise WebhookError(f"webhook {str(url)!r} answered {response.status_code} {response.reason_phrase}")
    return response.status_code


class NotificationTaskHandler(TaskHandler):
    """``channel`` webhook (``url``) or redis (``redis_channel``), and ``payload`` (any JSON value).

    Result ``channel``, ``delivered`` and ``status_code`` (webhook) or ``receivers`` (redis:
    subscribers of ``easyrag:notify:<redis_channel>`` that got it; delivered means at least one).
    """

    fields = ("channel", "url", "redis_channel", "payload")

    async def handle_task(self, task: Task) -> dict[str, Any]:
        data = task.task_data
        channel = get_choice(data, "channel", ("webhook", "redis"))
        if "payload" not in data:
            raise TaskDataError("payload is required (any JSON value)", "payload")
        payload = data["payload"]
        await task.update_progress(10, f"sending by {channel}")
        if channel == "webhook":
            url = get_field(data, "url", str, "an http(s) URL", REQUIRED)
            status_code = await post_webhook(url, payload, f"task {task.task_id} ({task.task_type})")
            result: dict[str, Any] = {"channel": channel, "delivered": True, "status_code": status_code}
        else:
            redis_channel = notify_channel(get_text(data, "redis_channel"))
            message = json.dumps(payload)
            receivers = await run_step(get_redis_instance().publish, redis_channel, message)
            result = {"channel": channel, "delivered": receivers > 0, "receivers": receivers}
        logger.info("task %s (%s): %s", task.task_id, task.task_type, result)
        await task.update_progress(100, "delivered" if result["delivered"] else "published, nobody listening")
        return result


register_task_handler(NotificationTaskHandler)
