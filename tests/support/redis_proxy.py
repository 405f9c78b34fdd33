"""RedisProxy: a TCP proxy in front of a Redis server that loses replies or requests on purpose.

A client (redis-py, kombu, a worker subprocess) connects to ``proxy.url`` instead of the server.
Each client connection gets an upstream connection of its own; two threads copy bytes both ways.
The proxy parses the RESP stream just enough to recognise commands (arrays of bulk strings,
pipelined or split across packets) and to map each reply to its request, so it can be armed:

- ``drop_reply(match, times=1)``: the matching command reaches the server and runs; its reply is
  swallowed and the client connection closed.  redis-py sees a ConnectionError and, with a retry
  policy, re-sends the command on a new connection: it runs twice.  A ``-NOSCRIPT`` reply (redis-py's
  EVALSHA before it loads a script) passes through and leaves the rule armed.
- ``drop_request(match, duration_s)``: for ``duration_s`` seconds every matching command closes the
  client connection without being forwarded; the server never sees it.

A ``match`` is a predicate on a command's arguments (``list[bytes]``, the name as sent);
``evalsha_of(source)`` and ``command(name, *args)`` build the usual ones.  Every drop is counted on
its rule and in ``proxy.drops``; ``proxy.sent(match)`` counts the matching commands forwarded.

Not modelled: once a connection subscribes (SUBSCRIBE and friends, MONITOR) it is copied as is,
with no rule applied, because its replies no longer map one to one; RESP3 push frames (``>``) pass
through on any connection; ``CLIENT REPLY OFF|SKIP`` is not understood.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Match = Callable[[list[bytes]], bool]

#: Commands after which a connection's replies stop mapping one to one to its requests.
_SUBSCRIBING = {b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE", b"MONITOR"}


def script_sha(source: str) -> str:
    """The SHA1 that redis-py's ``Script`` sends with EVALSHA for ``source``."""
    return hashlib.sha1(source.encode()).hexdigest()


def evalsha_of(source: str) -> Match:
    """Matches ``EVALSHA <sha of source> ...``."""
    sha = script_sha(source).encode()
    return lambda args: len(args) > 1 and args[0].upper() == b"EVALSHA" and args[1].lower() == sha


def command(name: str, *first_args: str | bytes) -> Match:
    """Matches command ``name`` (any case) whose first arguments equal ``first_args``."""
    wanted = [arg.encode() if isinstance(arg, str) else arg for arg in first_args]
    return lambda args: (len(args) > len(wanted) and args[0].upper() == name.upper().encode()
                         and args[1:1 + len(wanted)] == wanted)


# --- RESP framing ---------------------------------------------------------------------------------

class _Incomplete(Exception):
    pass


def _line(buf: bytes, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    return buf[pos:end], end + 2


def _value(buf: bytes, pos: int) -> tuple[object, int]:
    """One RESP2/RESP3 value starting at ``pos``: (value, end); bulk strings as bytes, aggregates as
    lists, everything else as its line.  Raises _Incomplete when ``buf`` ends first."""
    if pos >= len(buf):
        raise _Incomplete
    kind = buf[pos:pos + 1]
    line, pos = _line(buf, pos + 1)
    if kind in b"$!=":  # bulk string, blob error, verbatim string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return buf[pos:pos + size], pos + size + 2
    if kind in b"*~>%|":  # array, set, push, map, attribute
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count * 2 if kind in b"%|" else count):
            item, pos = _value(buf, pos)
            items.append(item)
        if kind == b"|":  # an attribute annotates the value that follows it
            return _value(buf, pos)
        return items, pos
    return line, pos  # + - : _ , # ( : one line


class _Frames:
    """Splits a byte stream into complete RESP frames (``requests=True``: also inline commands)."""

    def __init__(self, requests: bool = False) -> None:
        self.buf = b""
        self.requests = requests

    def feed(self, data: bytes) -> Iterator[tuple[bytes, object]]:
        """Yield (raw bytes, value) of each frame completed by ``data``; keep the rest buffered."""
        self.buf += data
        pos = 0
        try:
            while pos < len(self.buf):
                if self.requests and self.buf[pos:pos + 1] != b"*":  # inline: PING\r\n
                    line, end = _line(self.buf, pos)
                    value: object = line.split()
                else:
                    value, end = _value(self.buf, pos)
                raw, pos = self.buf[pos:end], end
                yield raw, value
        except _Incomplete:
            pass
        finally:
            self.buf = self.buf[pos:]

    def rest(self) -> bytes:
        rest, self.buf = self.buf, b""
        return rest


# --- rules --------------------------------------------------------------------------------------

@dataclass
class Rule:
    """One armed failure: ``kind`` "reply" (``times`` left) or "request" (active until ``until``)."""

    kind: str
    match: Match
    times: int = 0
    until: float = 0.0  # time.monotonic()
    dropped: int = 0

    @property
    def armed(self) -> bool:
        return self.times > 0 if self.kind == "reply" else time.monotonic() < self.until

    def disarm(self) -> None:
        self.times, self.until = 0, 0.0


@dataclass(frozen=True)
class Drop:
    """What the proxy dropped: ``kind`` "reply" or "request", the command's arguments, the reply."""

    kind: str
    args: tuple[bytes, ...]
    reply: bytes = b""
    at: float = field(default_factory=time.monotonic)


# --- the proxy ------------------------------------------------------------------------------------

class RedisProxy:
    """A proxy on 127.0.0.1 (a free port) in front of the Redis server of ``upstream_url``."""

    def __init__(self, upstream_url: str, log_size: int = 20_000) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._url_parts = parts
        self.rules: list[Rule] = []
        self.drops: list[Drop] = []
        self._sent: collections.deque[tuple[bytes, ...]] = collections.deque(maxlen=log_size)
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []  # the connections' threads
        self._acceptor: threading.Thread | None = None
        self._stopping = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/<db>``: the upstream URL's credentials and database, our port."""
        parts = self._url_parts
        auth = parts.netloc.rpartition("@")[0]
        return f"redis://{auth + '@' if auth else ''}127.0.0.1:{self.port}{parts.path or '/0'}"

    def start(self) -> RedisProxy:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.2)  # accept() polls, so stop() needs no wake-up trick
        self._listener, self.port = listener, listener.getsockname()[1]
        self._stopping.clear()
        self._threads = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="redis-proxy-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection (clients see a ConnectionError); join the threads."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)  # no connection opens after this
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        self._threads = []

    def __enter__(self) -> RedisProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_reply(self, match: Match, times: int = 1) -> Rule:
        """Forward the next ``times`` matching commands, swallow each one's reply (unless -NOSCRIPT)
        and close that client connection."""
        return self._arm(Rule("reply", match, times=times))

    def drop_request(self, match: Match, duration_s: float) -> Rule:
        """For ``duration_s`` seconds, close the client connection on each matching command instead of
        forwarding it."""
        return self._arm(Rule("request", match, until=time.monotonic() + duration_s))

    def disarm(self) -> None:
        """Remove every rule."""
        with self._lock:
            for rule in self.rules:
                rule.disarm()
            self.rules.clear()

    def dropped(self, kind: str | None = None) -> int:
        """How many replies and requests (or only ``kind``) were dropped so far."""
        with self._lock:
            return sum(1 for drop in self.drops if kind in (None, drop.kind))

    def sent(self, match: Match) -> int:
        """How many matching commands were forwarded to the server (the last ``log_size`` commands)."""
        with self._lock:
            log = list(self._sent)
        return sum(1 for args in log if match(list(args)))

    @property
    def connections(self) -> int:
        """Client connections open now."""
        with self._lock:
            return len(self._links)

    # --- internals ------------------------------------------------------------------------------

    def _arm(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            link = _Link(self, client, upstream)
            with self._lock:
                self._links.add(link)
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            self._spawn(link.requests, "redis-proxy-requests")
            self._spawn(link.replies, "redis-proxy-replies")

    def _on_request(self, args: list[bytes]) -> tuple[str, Rule | None]:
        """("drop", rule) to drop this request, ("tag", rule) to watch its reply, ("send", None)."""
        with self._lock:
            for rule in self.rules:
                if rule.armed and rule.kind == "request" and rule.match(args):
                    rule.dropped += 1
                    self.drops.append(Drop("request", tuple(args)))
                    return "drop", rule
            self._sent.append(tuple(args))
            for rule in self.rules:
                if rule.armed and rule.kind == "reply" and rule.match(args):
                    return "tag", rule
        return "send", None

    def _on_reply(self, rule: Rule, args: tuple[bytes, ...], reply: bytes) -> bool:
        """True when this reply is to be dropped (the rule is still armed; it is counted here)."""
        if reply.startswith(b"-NOSCRIPT"):
            return False
        with self._lock:
            if not rule.armed:  # another connection's reply used the last drop up
                return False
            rule.times -= 1
            rule.dropped += 1
            self.drops.append(Drop("reply", args, reply))
            return True

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)


class _Link:
    """One client connection and its upstream connection; ``pending`` maps replies to requests."""

    def __init__(self, proxy: RedisProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy, self.client, self.upstream = proxy, client, upstream
        for sock in (client, upstream):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # (args, rule watching the reply or None), in request order: Redis replies in that order
        self.pending: collections.deque[tuple[tuple[bytes, ...], Rule | None]] = collections.deque()
        self.passthrough = False
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the other thread's recv()
            sock.close()
        self.proxy._forget(self)

    def requests(self) -> None:
        """Client → server: forward each complete command, unless a rule drops it."""
        frames = _Frames(requests=True)
        try:
            while data := self.client.recv(65536):
                if self.passthrough:
                    self.upstream.sendall(frames.rest() + data)
                    continue
                out = bytearray()
                for raw, value in frames.feed(data):
                    if self.passthrough:
                        out += raw
                        continue
                    args = [bytes(arg) for arg in value or []]
                    verdict, rule = self.proxy._on_request(args)
                    if verdict == "drop":
                        self.upstream.sendall(out)  # what came before it in the packet still goes
                        return
                    if args and args[0].upper() in _SUBSCRIBING:
                        with self._lock:
                            self.passthrough = True
                            self.pending.clear()
                    else:
                        with self._lock:
                            self.pending.append((tuple(args), rule))
                    out += raw
                if self.passthrough:
                    out += frames.rest()
                self.upstream.sendall(out)
        except (OSError, ValueError):  # closed, or bytes that are not RESP: drop the connection
            pass
        finally:
            self.close()

    def replies(self) -> None:
        """Server → client: forward each reply in order, unless its request's rule drops it."""
        frames = _Frames()
        try:
            while data := self.upstream.recv(65536):
                if self.passthrough:
                    self.client.sendall(frames.rest() + data)
                    continue
                out = bytearray()
                for raw, _ in frames.feed(data):
                    if self.passthrough or raw[:1] == b">":  # push frames answer no request
                        out += raw
                        continue
                    with self._lock:
                        args, rule = self.pending.popleft() if self.pending else ((), None)
                    if rule is not None and self.proxy._on_reply(rule, args, raw):
                        self.client.sendall(out)  # earlier replies of a pipeline still arrive
                        return
                    out += raw
                if self.passthrough:
                    out += frames.rest()
                self.client.sendall(out)
        except (OSError, ValueError):  # closed, or bytes that are not RESP: drop the connection
            pass
        finally:
            self.close()
