"""Dead letters (easyrag.legacy.dead_letters): listed by id, requeued once and atomically, deleted."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
import redis

from easyrag.legacy.dead_letters import (
    LIST_LIMIT,
    PREVIEW_LIMIT,
    delete_dead_letter,
    letter_id,
    list_dead_letters,
    requeue_dead_letter,
)
from easyrag.legacy.errors import DeadLetterNotRequeueableError
from easyrag.legacy.items import RAW_LIMIT, dead_letter
from tests.legacy.conftest import KEY, RECORD, item, push

DEAD = f"{KEY}:dead"


@pytest.fixture
def raw(redis_test_url: str) -> redis.Redis:
    """A client that reads bytes, to compare the lists byte for byte."""
    return redis.Redis.from_url(redis_test_url)


def bury(raw: redis.Redis, item_bytes: bytes, error: str = "boom") -> bytes:
    """Push the dead letter async_command writes for ``item_bytes``; its stored bytes."""
    letter = dead_letter(item_bytes, error)
    raw.lpush(DEAD, letter)
    return letter


def test_listing_is_newest_first_with_the_count_and_an_id_of_the_exact_bytes(raw):
    letters = [bury(raw, item(n).encode(), f"error {n}") for n in range(3)]
    count, listed = list_dead_letters(KEY)
    assert count == 3
    assert [letter.id for letter in listed] == [hashlib.sha256(b).hexdigest() for b in reversed(letters)]
    newest = listed[0].to_dict()
    assert newest["raw"] == item(2) and newest["error"] == "error 2"
    assert newest["failed_at"] == json.loads(letters[2])["failed_at"]
    assert newest["requeueable"] is True and newest["reason"] == ""


def test_listing_keeps_the_newest_hundred_and_shortens_long_texts(raw):
    raw.lpush(DEAD, *[dead_letter(item(n).encode(), "x") for n in range(LIST_LIMIT + 5)])
    bury(raw, b"y" * (PREVIEW_LIMIT + 10), "e" * (PREVIEW_LIMIT + 10))
    count, listed = list_dead_letters(KEY)
    assert count == LIST_LIMIT + 6 and len(listed) == LIST_LIMIT
    assert listed[0].raw.endswith(f"… ({PREVIEW_LIMIT + 10} chars)") and listed[0].requeueable
    assert listed[0].error.endswith(f"… ({PREVIEW_LIMIT + 10} chars)")


def test_an_unknown_key_has_no_letters():
    assert list_dead_letters("never-used") == (0, [])


def test_requeue_moves_the_item_back_once_where_a_new_item_goes(raw):
    push(raw, [item("waiting-1"), item("waiting-2")])
    letter = bury(raw, item("dead").encode())
    assert requeue_dead_letter(KEY, letter_id(letter)) == 1
    # LPUSH, like a producer: taken (from the right) after the items already waiting
    assert raw.lrange(KEY, 0, -1) == [item("dead").encode(), item("waiting-2").encode(),
                                      item("waiting-1").encode()]
    assert raw.llen(DEAD) == 0
    assert requeue_dead_letter(KEY, letter_id(letter)) == 0  # the same letter again: nothing
    assert raw.lrange(KEY, 0, -1).count(item("dead").encode()) == 1


def test_requeue_restores_bytes_that_are_not_utf8(raw):
    original = b'\xff\xfe{"type": "ok", "data": {"id": "\xc3"}}'
    letter = bury(raw, original, "item is not UTF-8 text")
    assert json.loads(letter)["raw"].startswith("\udcff\udcfe")  # as items.py stores it
    assert requeue_dead_letter(KEY, letter_id(letter)) == 1
    assert raw.lrange(KEY, 0, -1) == [original]


def test_a_real_consumers_dead_letter_is_requeued_and_taken_again(async_command, raw):
    push(raw, ["not json"])
    command = async_command("--redis-key", KEY, "--max-tasks", "1", "--consumer-name", "c1",
                            "--handler", RECORD)
    assert command.wait(timeout=30) == 0, command.stderr()
    (letter,) = raw.lrange(DEAD, 0, -1)
    assert json.loads(letter)["raw"] == "not json"
    assert requeue_dead_letter(KEY, letter_id(letter)) == 1
    assert raw.lrange(KEY, 0, -1) == [b"not json"] and raw.llen(DEAD) == 0


def test_concurrent_requeues_of_one_letter_push_its_item_exactly_once(raw):
    letter = bury(raw, item("once").encode())
    for n in range(50):  # other letters to search through
        bury(raw, item(n).encode())
    replies: list[int] = []
    start = threading.Barrier(8)

    def requeue() -> None:
        start.wait()
        replies.append(requeue_dead_letter(KEY, letter_id(letter)))

    threads = [threading.Thread(target=requeue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(replies) == [0] * 7 + [1]
    assert raw.lrange(KEY, 0, -1) == [item("once").encode()]
    assert letter not in raw.lrange(DEAD, 0, -1) and raw.llen(DEAD) == 50


def test_a_letter_beyond_the_first_search_page_is_found(raw):
    letter = bury(raw, item("old").encode())
    raw.lpush(DEAD, *[dead_letter(item(n).encode(), "x") for n in range(250)])
    assert requeue_dead_letter(KEY, letter_id(letter)) == 1
    assert raw.lrange(KEY, 0, -1) == [item("old").encode()] and raw.llen(DEAD) == 250


def test_a_truncated_letter_is_not_requeueable_and_nothing_is_written(raw):
    letter = bury(raw, b'"' * (RAW_LIMIT + 1))
    (listed,) = list_dead_letters(KEY)[1]
    assert listed.requeueable is False and "cannot be requeued" in listed.reason
    with pytest.raises(DeadLetterNotRequeueableError, match=f"{RAW_LIMIT + 1} bytes long"):
        requeue_dead_letter(KEY, letter_id(letter))
    assert raw.exists(KEY) == 0 and raw.lrange(DEAD, 0, -1) == [letter]


def test_something_that_is_no_letter_is_listed_deletable_not_requeueable(raw):
    raw.lpush(DEAD, b"\xff junk")
    (listed,) = list_dead_letters(KEY)[1]
    assert listed.requeueable is False and "not a dead letter" in listed.reason
    with pytest.raises(DeadLetterNotRequeueableError):
        requeue_dead_letter(KEY, listed.id)
    assert delete_dead_letter(KEY, listed.id) == 1 and raw.exists(DEAD) == 0


def test_requeue_onto_a_key_that_is_not_a_list_refuses_and_keeps_the_letter(raw):
    raw.set(KEY, "a string")
    letter = bury(raw, item(1).encode())
    with pytest.raises(DeadLetterNotRequeueableError, match="not a list"):
        requeue_dead_letter(KEY, letter_id(letter))
    assert raw.lrange(DEAD, 0, -1) == [letter] and raw.get(KEY) == b"a string"


def test_delete_removes_one_letter_once(raw):
    kept = bury(raw, item("kept").encode())
    gone = bury(raw, item("gone").encode())
    assert delete_dead_letter(KEY, letter_id(gone)) == 1
    assert delete_dead_letter(KEY, letter_id(gone)) == 0
    assert raw.lrange(DEAD, 0, -1) == [kept] and raw.exists(KEY) == 0
