"""async_command end to end: every item processed once or dead-lettered, bounded concurrency, --max-tasks."""

from __future__ import annotations

import json
import signal
from datetime import datetime

import pytest
import redis

from tests.legacy.conftest import KEY, RECORD, ends, item, max_overlap, push, starts, waiting_ids
from tests.support.waiting import wait_until

LEASE = f"{KEY}:consumer:c1"


def test_fifty_items_valid_ones_processed_once_bad_ones_dead_lettered_lists_empty(async_command,
                                                                                  redis_client):
    valid = [item(n) for n in range(35)]
    bad = {
        "not json": "invalid JSON: Expecting value",
        "{'type': 'ok'}": "invalid JSON: Expecting property name enclosed in double quotes",
        '{"type": "ok", "data": ': "invalid JSON: Expecting value",
        "[1, 2, 3]": "payload is an array",
        '[{"type": "ok", "data": {"id": "x"}}]': "payload is an array",
        '"a string"': "payload is a string",
        "42": "payload is a number",
        "null": "payload is null",
    }
    failing = {item(f"f{n}", kind="fail"): f"RuntimeError: failing on purpose: item f{n}" for n in range(7)}
    items = valid + list(bad) + list(failing)
    assert len(items) == 50
    push(redis_client, [items[(n * 7) % 50] for n in range(50)])  # bad ones spread through the list

    command = async_command("--redis-key", KEY, "--max-tasks", "50", "--max-concurrent", "5",
                            "--consumer-name", "c1", "--handler", RECORD, "--interval", "0.2")
    assert command.wait() == 0, command.stderr()

    assert ends(redis_client) == {str(n): 1 for n in range(35)}
    assert starts(redis_client) == {**{str(n): 1 for n in range(35)}, **{f"f{n}": 1 for n in range(7)}}
    letters = [json.loads(raw) for raw in redis_client.lrange(f"{KEY}:dead", 0, -1)]
    assert sorted(letter["raw"] for letter in letters) == sorted([*bad, *failing])
    expected = {**bad, **failing}
    for letter in letters:
        assert set(letter) == {"raw", "error", "failed_at"}
        assert letter["error"].startswith(expected[letter["raw"]]), letter
        assert datetime.fromisoformat(letter["failed_at"]).tzinfo is not None
    assert redis_client.exists(KEY, f"{KEY}:processing:c1", LEASE) == 0
    assert "Stopped: took 50 tasks: 35 succeeded, 15 dead-lettered, 0 put back" in command.stderr()


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_no_more_than_max_concurrent_run_at_once_and_that_many_overlap(async_command, redis_client,
                                                                       event_loop):
    push(redis_client, [item(n, seconds=0.3) for n in range(15)])
    command = async_command("--redis-key", KEY, "--max-tasks", "15", "--max-concurrent", "5",
                            "--consumer-name", "c1", "--handler", RECORD, "--event-loop", event_loop)
    assert command.wait() == 0, command.stderr()
    assert ends(redis_client) == {str(n): 1 for n in range(15)}
    assert max_overlap(redis_client) == 5


def test_max_tasks_stops_after_n_items_and_leaves_the_rest_in_order(async_command, redis_client):
    push(redis_client, [item(n) for n in range(12)])
    command = async_command("--redis-key", KEY, "--max-tasks", "5", "--consumer-name", "c1",
                            "--handler", RECORD)
    assert command.wait() == 0, command.stderr()
    assert ends(redis_client) == {str(n): 1 for n in range(5)}
    assert waiting_ids(redis_client) == [str(n) for n in range(5, 12)]
    assert redis_client.exists(f"{KEY}:processing:c1") == 0


def test_max_tasks_counts_dead_lettered_items(async_command, redis_client):
    push(redis_client, ["not json", "[1]", item(1), item(2), item(3)])
    command = async_command("--redis-key", KEY, "--max-tasks", "3", "--consumer-name", "c1",
                            "--handler", RECORD)
    assert command.wait() == 0, command.stderr()
    assert redis_client.llen(f"{KEY}:dead") == 2
    assert ends(redis_client) == {"1": 1}
    assert waiting_ids(redis_client) == ["2", "3"]


def test_handler_from_environment_variable_replaces_the_default(async_command, redis_client):
    push(redis_client, [item(1), item(2)])
    command = async_command("--redis-key", KEY, "--max-tasks", "2", "--consumer-name", "c1",
                            env={"ASYNC_COMMAND_HANDLER": RECORD})
    assert command.wait() == 0, command.stderr()
    assert ends(redis_client) == {"1": 1, "2": 1}


def test_bad_handler_path_exits_1_with_one_line_and_takes_nothing(async_command, redis_client):
    push(redis_client, [item(1)])
    for path, message in (
        ("nosuchmodule.handler", "cannot import 'nosuchmodule'"),
        ("tests.support.legacy_handlers.missing", "has no 'missing'"),
        ("tests.support.legacy_handlers.not_async", "must be an async def function"),
        ("handler", "must be a dotted path"),
    ):
        command = async_command("--redis-key", KEY, "--handler", path)
        assert command.wait() == 1
        lines = command.stderr().strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("CommandError: handler ") and message in lines[0], lines
    assert waiting_ids(redis_client) == ["1"]


def test_second_consumer_under_a_live_consumers_name_is_refused(async_command, redis_client):
    first = async_command("--redis-key", KEY, "--consumer-name", "c1", "--handler", RECORD)
    wait_until(lambda: redis_client.exists(LEASE), message="the first consumer's lease")
    second = async_command("--redis-key", KEY, "--consumer-name", "c1", "--handler", RECORD)
    assert second.wait() == 1
    lines = second.stderr().strip().splitlines()
    assert lines == [f"CommandError: consumer name 'c1' is in use by pid {first.pid} on this host; "
                     f"give each consumer its own --consumer-name"]
    push(redis_client, [item(1)])  # the first one still works
    wait_until(lambda: ends(redis_client) == {"1": 1}, message="item 1 done by the first consumer")
    first.send(signal.SIGTERM)
    assert first.wait() == 0


def test_key_holding_another_type_is_refused(async_command, redis_client):
    redis_client.set(KEY, "a string")
    command = async_command("--redis-key", KEY)
    assert command.wait() == 1
    assert command.stderr().strip().splitlines() == [
        f"CommandError: Redis key '{KEY}' holds a string, not a list"]
    assert redis_client.get(KEY) == "a string"


def test_bad_flag_values_are_refused_by_name(async_command):
    for flags, message in ((("--max-concurrent", "0"), "invalid positive integer value: '0'"),
                           (("--interval", "0"), "--interval must be a positive number of seconds"),
                           (("--max-tasks", "x"), "invalid positive integer value: 'x'")):
        command = async_command(*flags)
        assert command.wait() in (1, 2)
        assert message in command.stderr(), command.stderr()


def test_items_that_are_not_utf8_are_dead_lettered_without_loss(async_command, redis_test_url):
    raw = redis.Redis.from_url(redis_test_url)  # bytes in, bytes out
    raw.lpush(KEY, b'{"type": "ok", "data": {"id": "\xff"}}')
    command = async_command("--redis-key", KEY, "--max-tasks", "1", "--handler", RECORD)
    assert command.wait() == 0, command.stderr()
    letter = json.loads(raw.lindex(f"{KEY}:dead", 0))
    assert letter["error"].startswith("item is not UTF-8 text")
    assert letter["raw"].encode("utf-8", "surrogateescape") == b'{"type": "ok", "data": {"id": "\xff"}}'


def test_finished_item_leaves_processing_list_during_a_blocking_take_and_sigterm_ends_the_take(
        async_command, redis_client):
    command = async_command("--redis-key", KEY, "--consumer-name", "c1", "--handler", RECORD,
                            "--interval", "60")
    wait_until(lambda: redis_client.exists(LEASE), message="the consumer started")
    push(redis_client, [item(1, seconds=0.2)])
    wait_until(lambda: ends(redis_client) == {"1": 1}, message="item 1 done")
    # well before the 60 s block timeout: the removal is written while BLMOVE waits
    wait_until(lambda: redis_client.exists(f"{KEY}:processing:c1") == 0, timeout=10,
               message="item 1 removed from the processing list")
    command.send(signal.SIGTERM)  # ends the blocking take at once (CLIENT UNBLOCK), not after 60 s
    assert command.wait(timeout=20) == 0
    assert redis_client.exists(KEY, f"{KEY}:processing:c1", LEASE) == 0
