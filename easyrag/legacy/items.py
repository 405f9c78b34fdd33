"""The item format: a JSON object ``{"type": ..., "data": {...}}``, and the dead-letter record."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from easyrag.legacy.errors import InvalidItemError

JSON_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
              type(None): "null"}


def decode(raw: bytes) -> str:
    """The item as text.  Bytes that are not UTF-8 survive as surrogate escapes (lossless in Python)."""
    return raw.decode("utf-8", "surrogateescape")


def parse_item(raw: bytes) -> dict[str, Any]:
    """The item's payload; ``InvalidItemError`` names what is wrong when it is not a JSON object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidItemError(f"item is not UTF-8 text: {error}") from None
    try:
        payload = json.loads(text)
    except ValueError as error:
        raise InvalidItemError(f"invalid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidItemError(f'payload is {JSON_NAMES.get(type(payload), "not an object")}; '
                               f'expected a JSON object {{"type": ..., "data": {{...}}}}')
    return payload


def dead_letter(raw: bytes, error: str) -> bytes:
    """``{"raw": <the item string as taken>, "error": ..., "failed_at": <ISO 8601, UTC>}``."""
    record = {"raw": decode(raw), "error": error, "failed_at": datetime.now(UTC).isoformat()}
    try:
        return json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # the item was not UTF-8: JSON's \udcXX escapes keep its bytes
        return json.dumps(record).encode("ascii")
