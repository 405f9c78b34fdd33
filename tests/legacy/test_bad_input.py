"""async_command on hostile input (issue 14, item 5): deep nesting, huge items, huge log payloads.

Every item that cannot be parsed is dead-lettered, never held for ever; a dead letter stays small
enough for Redis whatever the item; log lines show a bounded prefix of a payload.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import redis.asyncio as aioredis

from easyrag.legacy import consumer as consumer_module
from easyrag.legacy.errors import InvalidItemError
from easyrag.legacy.items import LOG_LIMIT, MAX_DEPTH, RAW_LIMIT, dead_letter, parse_item, shorten
from easyrag.legacy.options import ConsumerOptions
from tests.legacy.conftest import KEY, RECORD, ends, item, push

PROCESSING = f"{KEY}:processing:c1"
MIB = 1024 * 1024


def nested(depth: int) -> str:
    """A valid item whose data holds ``depth`` levels of arrays in all."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return '{"type": "ok", "data": {"id": "deep", "x": ' + inner + "}}"


def letters(client) -> dict[str, dict]:
    return {(letter := json.loads(raw))["raw"]: letter for raw in client.lrange(f"{KEY}:dead", 0, -1)}


def test_deeply_nested_items_are_dead_lettered_not_held_and_the_others_run(async_command, redis_client):
    too_deep = nested(MAX_DEPTH + 1)
    reproduction = "[" * 100_000  # the review's: a RecursionError escaped the parser
    push(redis_client, [item(1), reproduction, item(2), too_deep, nested(MAX_DEPTH), item(3)])
    command = async_command("--redis-key", KEY, "--max-tasks", "6", "--consumer-name", "c1",
                            "--handler", RECORD)
    assert command.wait(timeout=30) == 0, command.stderr()

    assert ends(redis_client) == {"1": 1, "2": 1, "3": 1, "deep": 1}
    dead = letters(redis_client)
    assert dead.keys() == {reproduction, too_deep}
    for letter in dead.values():
        assert letter["error"] == f"JSON nested deeper than {MAX_DEPTH} levels", letter
    assert redis_client.exists(KEY, PROCESSING) == 0
    assert "Stopped: took 6 tasks: 4 succeeded, 2 dead-lettered, 0 put back" in command.stderr()


def test_dead_letter_beyond_redis_bulk_limit_does_not_stall_the_consumer(async_command, redis_server):
    """Scaled down: a 4 MiB bulk limit (Redis's default is 512 MiB) and a 3 MiB item.

    The item fits, its whole dead letter (3 MiB of quotes, escaped: 6 MiB) would not: Redis refused
    the step that wrote it, good items finishing in the same step were held, and every restart
    took the item back.
    """
    server = redis_server()
    client = server.client()
    client.config_set("proto-max-bulk-len", 4 * MIB)
    huge = '"' * (3 * MIB)
    client.lpush(KEY, *[item(n) for n in range(4)], huge, *[item(n) for n in range(4, 8)])
    command = async_command("--redis-key", KEY, "--max-tasks", "9", "--consumer-name", "c1",
                            "--handler", RECORD, "--retry-window", "2", redis_url=server.url)
    assert command.wait(timeout=30) == 0, command.stderr()

    assert ends(client) == {str(n): 1 for n in range(8)}
    [letter] = [json.loads(raw) for raw in client.lrange(f"{KEY}:dead", 0, -1)]
    assert letter["raw"] == huge[:RAW_LIMIT]
    assert letter["raw_length"] == 3 * MIB
    assert letter["raw_sha256"] == hashlib.sha256(huge.encode()).hexdigest()
    assert letter["error"].startswith("invalid JSON: ")
    assert client.exists(KEY, PROCESSING) == 0


def test_default_handler_logs_a_bounded_prefix_of_a_long_payload(async_command, redis_client):
    body = "x" * 200_000
    push(redis_client, [json.dumps({"type": "email", "data": {"to": "a@b.c", "body": body}})])
    command = async_command("--redis-key", KEY, "--max-tasks", "1", "--consumer-name", "c1")
    assert command.wait(timeout=30) == 0, command.stderr()

    lines = [line for line in command.stderr().splitlines()
             if any(words in line for words in ("开始处理任务", "处理邮件任务", "任务处理完成"))]
    assert len(lines) == 3, lines  # 开始处理任务 / 处理邮件任务 / 任务处理完成
    for line in lines:
        assert len(line) < LOG_LIMIT + 200, len(line)
        assert "… (" in line and " chars)" in line, line[-80:]
    assert "开始处理任务: {'type': 'email', 'data': {'to': 'a@b.c', 'body': 'xxx" in lines[0]


def test_failure_log_line_and_dead_letter_error_are_bounded(async_command, redis_client):
    push(redis_client, [item("big" * 100_000, kind="fail")])
    command = async_command("--redis-key", KEY, "--max-tasks", "1", "--consumer-name", "c1",
                            "--handler", RECORD)
    assert command.wait(timeout=30) == 0, command.stderr()
    [failed] = [line for line in command.stderr().splitlines() if "Task #1 failed" in line]
    assert len(failed) < LOG_LIMIT + 200
    [letter] = letters(redis_client).values()
    assert letter["error"].startswith("RuntimeError: failing on purpose: item bigbig")
    assert letter["error"].endswith(" chars)") and len(letter["error"]) < 10_000


# --- the rules themselves ---

@pytest.mark.parametrize("size", [0, 100, RAW_LIMIT])
def test_dead_letter_keeps_raw_whole_up_to_the_limit(size):
    raw = b"a" * size
    letter = json.loads(dead_letter(raw, "boom"))
    assert set(letter) == {"raw", "error", "failed_at"}
    assert letter["raw"] == raw.decode()


def test_dead_letter_beyond_the_limit_keeps_a_prefix_its_length_and_hash():
    raw = b"a" * RAW_LIMIT + b"tail"
    letter = json.loads(dead_letter(raw, "boom"))
    assert letter == {"raw": "a" * RAW_LIMIT, "raw_length": RAW_LIMIT + 4,
                      "raw_sha256": hashlib.sha256(raw).hexdigest(), "error": "boom",
                      "failed_at": letter["failed_at"]}


def test_dead_letter_prefix_ends_on_a_character_boundary():
    raw = b"a" * (RAW_LIMIT - 1) + "é".encode() * 10  # the limit falls inside the first é
    letter = json.loads(dead_letter(raw, "boom"))
    assert letter["raw"] == "a" * (RAW_LIMIT - 1)
    assert letter["raw_length"] == len(raw)


def test_dead_letter_of_a_huge_non_utf8_item_keeps_its_prefix_bytes():
    raw = b"\xff" * (RAW_LIMIT + 1)
    letter = json.loads(dead_letter(raw, "boom"))
    assert letter["raw"].encode("utf-8", "surrogateescape") == raw[:RAW_LIMIT]
    assert letter["raw_sha256"] == hashlib.sha256(raw).hexdigest()


def test_parse_refuses_nesting_past_the_limit_whatever_the_parser_does():
    assert parse_item(nested(MAX_DEPTH).encode())["data"]["id"] == "deep"
    for raw in (nested(MAX_DEPTH + 1), "[" * 100_000, '{"a":' * 50_000):
        with pytest.raises(InvalidItemError, match=f"^JSON nested deeper than {MAX_DEPTH} levels$"):
            parse_item(raw.encode())


def test_shorten_cuts_long_text_with_an_ellipsis_and_the_length():
    assert shorten("short", 10) == "short"
    assert shorten("x" * 25, 10) == "xxxxxxxxxx… (25 chars)"


def test_one_step_writes_at_most_step_bytes_of_finished_items_unless_one_alone_is_larger(monkeypatch):
    """Redis drops a client whose command passes its query buffer limit (1 GiB by default)."""
    monkeypatch.setattr(consumer_module, "STEP_BYTES", 10)
    consumer = consumer_module.Consumer(aioredis.Redis(), parse_item, ConsumerOptions(consumer_name="c1"))
    a, b, c, d = (b"a" * 6, b""), (b"b" * 3, b"x"), (b"c" * 20, b""), (b"d", b"")
    consumer._finished = [a, b, c, d]
    assert consumer._take_finished() == [a, b]
    assert consumer._take_finished() == [c]
    assert consumer._take_finished() == [d]
    assert consumer._take_finished() == []
