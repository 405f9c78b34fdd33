"""The dead letters of a legacy list ``K:dead``: list them, put one's item back on ``K``, delete one.

Synchronous, for the staff dashboard (easyrag.dashboard) and the shell; the consumer itself never
reads its dead letters.  A letter is named by the SHA-256 (hex) of its exact stored bytes, so the
page can point at one without an index that shifts as new letters arrive on the left.

Requeue and delete each take the letter off ``K:dead`` with ``LREM`` of those exact bytes; requeue
pushes the item in the same Lua step, only when that ``LREM`` removed one.  So an item is never in
both lists nor in neither, and a second requeue of the same letter finds nothing and does nothing::

    page A: LRANGE finds letter L           page B: LRANGE finds letter L
    page A: REQUEUE L -> LREM 1, LPUSH item
                                            page B: REQUEUE L -> LREM 0: nothing pushed, answers 0

The item goes where a producer's new item goes (LPUSH on the left; consumers take from the right),
so it is taken like a fresh item, after those already waiting.  A letter of an item longer than
items.RAW_LIMIT keeps only the item's first bytes (``raw_length``, ``raw_sha256``): it cannot be
requeued, only deleted.

Replies are read as bytes (redis-py's ``NEVER_DECODE``) on the project's pooled client, whose
replies are otherwise decoded: a letter must be matched and removed byte for byte, and a value
someone else pushed onto ``K:dead`` need not even be UTF-8.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import NEVER_DECODE
from redis.commands.core import Script

from easyrag.common.redis_utils import get_redis_instance
from easyrag.legacy.errors import DeadLetterNotRequeueableError
from easyrag.legacy.items import shorten
from easyrag.legacy.lists import dead_key

#: Letters listed at most, newest first.
LIST_LIMIT = 100
#: Letters read per round trip while looking for one by its id.
SEARCH_PAGE = 100
#: Characters of an item's raw text and of an error shown in a listing (a raw item keeps up to 1 MiB).
PREVIEW_LIMIT = 4096

REQUEUE_LETTER = """
-- requeue_letter: take one dead letter off the dead-letter list and push its item back onto the list
-- KEYS[1] source list K     KEYS[2] dead-letter list K:dead
-- ARGV[1] the letter, its exact stored bytes     ARGV[2] the item, its exact bytes
-- returns 1 requeued · 0 no such letter (requeued or deleted already): nothing written
--         · -1 K holds something other than a list: nothing written
-- (checked first: a Lua error after the LREM would keep the LREM, and the item would be lost)
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'list' and kind ~= 'none' then
  return -1
end
if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_requeue: Script | None = None


@dataclass(frozen=True)
class DeadLetter:
    """One stored letter as the dashboard shows it; ``reason`` says why it cannot be requeued."""

    id: str
    raw: str
    error: str | None
    failed_at: str | None
    requeueable: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "raw": self.raw, "error": self.error, "failed_at": self.failed_at,
                "requeueable": self.requeueable, "reason": self.reason}


def letter_id(letter: bytes) -> str:
    """A letter's id: the SHA-256 (hex) of its exact stored bytes."""
    return hashlib.sha256(letter).hexdigest()


def item_of(letter: bytes) -> bytes:
    """The item a letter holds, byte for byte; DeadLetterNotRequeueableError says why when it cannot.

    The inverse of items.dead_letter: ``raw`` is the item decoded with ``surrogateescape``, so
    encoding it back the same way restores bytes that were not UTF-8.
    """
    try:
        record = json.loads(letter)
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError alike
        raise DeadLetterNotRequeueableError(f"not a dead letter of async_command: {error}") from None
    if not isinstance(record, dict) or not isinstance(record.get("raw"), str):
        raise DeadLetterNotRequeueableError('not a dead letter of async_command: no "raw" text')
    if "raw_length" in record or "raw_sha256" in record:
        raise DeadLetterNotRequeueableError(
            f"the item was {record.get('raw_length', 'over 1 MiB')} bytes long and its letter keeps only "
            "the first 1 MiB: it cannot be requeued, only deleted")
    try:
        return record["raw"].encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as error:
        raise DeadLetterNotRequeueableError(f'"raw" holds text no item could have: {error}') from None


def describe(letter: bytes) -> DeadLetter:
    """A stored letter as listed: its id, raw text and error shortened to PREVIEW_LIMIT characters."""
    try:
        record = json.loads(letter)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        record = {"raw": letter.decode("utf-8", "replace")}
    try:
        item_of(letter)
        requeueable, reason = True, ""
    except DeadLetterNotRequeueableError as error:
        requeueable, reason = False, str(error)
    error = record.get("error")
    return DeadLetter(id=letter_id(letter), raw=shorten(str(record.get("raw", "")), PREVIEW_LIMIT),
                      error=None if error is None else shorten(str(error), PREVIEW_LIMIT),
                      failed_at=record.get("failed_at"), requeueable=requeueable, reason=reason)


def list_dead_letters(redis_key: str, limit: int = LIST_LIMIT,
                      client: redis.Redis | None = None) -> tuple[int, list[DeadLetter]]:
    """(how many letters ``K:dead`` holds, the newest ``limit`` of them, newest first).

    One round trip (LLEN and LRANGE pipelined).  Raises redis-py's ResponseError when ``K:dead``
    holds something other than a list.
    """
    client = client or get_redis_instance()
    pipe = client.pipeline(transaction=False)  # a MULTI's EXEC reply would be decoded whole
    pipe.llen(dead_key(redis_key))
    pipe.execute_command("LRANGE", dead_key(redis_key), 0, limit - 1, **{NEVER_DECODE: True})
    count, letters = pipe.execute()
    return count, [describe(letter) for letter in letters]


def find_letter(redis_key: str, wanted_id: str, client: redis.Redis | None = None) -> bytes | None:
    """The stored bytes of the letter whose id is ``wanted_id``, or None when ``K:dead`` has none.

    One round trip per SEARCH_PAGE letters, newest first.  Letters arrive on the left, so the
    pages shift right while they are read: a letter can be seen twice, never missed.
    """
    client = client or get_redis_instance()
    start = 0
    while True:
        page = client.execute_command("LRANGE", dead_key(redis_key), start, start + SEARCH_PAGE - 1,
                                      **{NEVER_DECODE: True})
        for letter in page:
            if letter_id(letter) == wanted_id:
                return letter
        if len(page) < SEARCH_PAGE:
            return None
        start += SEARCH_PAGE


def requeue_dead_letter(redis_key: str, wanted_id: str, client: redis.Redis | None = None) -> int:
    """Move a letter's item back onto ``K`` (LPUSH, taken like a new item): 1, or 0 when no such letter.

    Atomic (one Lua step after the search): the letter leaves ``K:dead`` exactly when its item
    enters ``K``.  Raises DeadLetterNotRequeueableError (nothing written) when the letter keeps
    only part of its item or is not a letter, or when ``K`` is not a list.
    """
    client = client or get_redis_instance()
    letter = find_letter(redis_key, wanted_id, client)
    if letter is None:
        return 0
    item = item_of(letter)
    reply = _requeue_script(client)(keys=[redis_key, dead_key(redis_key)], args=[letter, item],
                                    client=client)
    if reply == -1:
        raise DeadLetterNotRequeueableError(f"{redis_key!r} holds a {client.type(redis_key)}, not a list")
    return int(reply)


def _requeue_script(client: redis.Redis) -> Script:
    """REQUEUE_LETTER, registered once per process (the Script runs on whichever client it is given)."""
    global _requeue
    if _requeue is None:
        _requeue = client.register_script(REQUEUE_LETTER)
    return _requeue


def delete_dead_letter(redis_key: str, wanted_id: str, client: redis.Redis | None = None) -> int:
    """Remove one letter from ``K:dead``: 1, or 0 when no such letter (deleted or requeued already)."""
    client = client or get_redis_instance()
    letter = find_letter(redis_key, wanted_id, client)
    if letter is None:
        return 0
    return int(client.lrem(dead_key(redis_key), 1, letter))
