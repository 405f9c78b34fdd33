"""The item format: a JSON object ``{"type": ..., "data": {...}}``, its dead letter, its log form.

Items come from any producer, so each rule here is bounded whatever the item: parsing refuses
nesting past MAX_DEPTH (Python's parser would raise RecursionError, not a ValueError), a dead
letter keeps at most RAW_LIMIT bytes of the item (Redis refuses an argument past its
``proto-max-bulk-len``, 512 MiB by default, and the item and its letter travel in one command),
and a log line shows at most LOG_LIMIT characters of a payload.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from easyrag.legacy.errors import InvalidItemError

JSON_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
              type(None): "null"}

#: Deepest nesting of arrays and objects an item may have; the item itself is level 1.
MAX_DEPTH = 100
#: Bytes of an item a dead letter keeps whole; beyond, this prefix plus raw_length and raw_sha256.
RAW_LIMIT = 1024 * 1024
#: Characters of a dead letter's error kept (a handler's message may quote the whole item).
ERROR_LIMIT = 8192
#: Characters of a payload or an error shown in a log line.
LOG_LIMIT = 1000


def decode(raw: bytes) -> str:
    """The item as text.  Bytes that are not UTF-8 survive as surrogate escapes (lossless in Python)."""
    return raw.decode("utf-8", "surrogateescape")


def parse_item(raw: bytes) -> dict[str, Any]:
    """The item's payload; ``InvalidItemError`` names what is wrong when it is not a JSON object.

    Whatever makes parsing fail is an ``InvalidItemError``: the item is dead-lettered, never held.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidItemError(f"item is not UTF-8 text: {error}") from None
    too_deep = InvalidItemError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        payload = json.loads(text)
    except RecursionError:  # json's C scanner recurses once per level, up to ~1,000 levels
        raise too_deep from None
    except ValueError as error:
        raise InvalidItemError(f"invalid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidItemError(f'payload is {JSON_NAMES.get(type(payload), "not an object")}; '
                               f'expected a JSON object {{"type": ..., "data": {{...}}}}')
    # No item can nest deeper than it has brackets: count them (in C) before walking.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and depth(payload) > MAX_DEPTH:
        raise too_deep
    return payload


def depth(value: Any) -> int:
    """Levels of nested lists and dicts in ``value`` (a scalar: 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def dead_letter(raw: bytes, error: str) -> bytes:
    """``{"raw": <the item string as taken>, "error": ..., "failed_at": <ISO 8601, UTC>}``.

    An item longer than RAW_LIMIT bytes keeps its first RAW_LIMIT bytes (cut back to a UTF-8
    character boundary) in ``raw``, with ``raw_length`` (bytes) and ``raw_sha256`` (hex) of the
    whole item; the error keeps ERROR_LIMIT characters.
    """
    if len(raw) <= RAW_LIMIT:
        record: dict[str, Any] = {"raw": decode(raw)}
    else:
        cut = RAW_LIMIT
        while cut > RAW_LIMIT - 3 and raw[cut] & 0xC0 == 0x80:  # raw[cut] continues a character
            cut -= 1
        record = {"raw": decode(raw[:cut]), "raw_length": len(raw),
                  "raw_sha256": hashlib.sha256(raw).hexdigest()}
    record |= {"error": shorten(error, ERROR_LIMIT), "failed_at": datetime.now(UTC).isoformat()}
    try:
        return json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # the item was not UTF-8: JSON's \udcXX escapes keep its bytes
        return json.dumps(record).encode("ascii")


def shorten(text: str, limit: int = LOG_LIMIT) -> str:
    """``text``, or its first ``limit`` characters, an ellipsis and its length: ``abc… (52311 chars)``."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


class Brief:
    """A value as it appears in a log line: ``str(value)`` shortened; built only if the line is emitted."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        try:
            return shorten(str(self.value))
        except RecursionError:  # a handler's own object may nest past what repr() can walk
            return f"<{type(self.value).__name__} nested too deeply to print>"
