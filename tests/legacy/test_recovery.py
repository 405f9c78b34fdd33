"""async_command loses nothing: SIGKILL and restart, SIGTERM, the grace period, Redis down or restarting."""

from __future__ import annotations

import json
import signal

from tests.legacy.conftest import KEY, RECORD, ends, item, push, starts, waiting_ids
from tests.support.redis_server import free_port
from tests.support.waiting import wait_until

PROCESSING = f"{KEY}:processing:c1"
ARGS = ("--redis-key", KEY, "--max-concurrent", "5", "--consumer-name", "c1", "--handler", RECORD)


def test_sigkill_mid_batch_then_restart_finishes_every_item_and_reruns_only_the_held_ones(async_command,
                                                                                          redis_client):
    push(redis_client, [item(n, seconds=0.3) for n in range(20)])
    first = async_command(*ARGS)
    wait_until(lambda: len(ends(redis_client)) >= 6, timeout=30, message="6 items done")
    first.process.kill()
    first.wait()
    held = [json.loads(raw)["data"]["id"] for raw in redis_client.lrange(PROCESSING, 0, -1)]
    started_before_kill = set(starts(redis_client))
    assert 1 <= len(held) <= 5
    # Held = taken and not finished. Most were running; one taken a moment before the kill may not
    # have started yet: it was not running, so it must run once, not again.
    running_at_kill = {str(item_id) for item_id in held} & started_before_kill
    remaining = redis_client.llen(KEY) + len(held)

    second = async_command(*ARGS, "--max-tasks", str(remaining))
    assert second.wait() == 0, second.stderr()

    assert set(ends(redis_client)) == {str(n) for n in range(20)}
    assert {item_id for item_id, count in starts(redis_client).items() if count > 1} == running_at_kill
    assert max(starts(redis_client).values()) <= 2
    assert f"Took back {len(held)} unfinished tasks left by a previous run of consumer c1" in second.stderr()
    assert redis_client.exists(KEY, PROCESSING) == 0


def test_sigterm_mid_batch_lets_running_items_finish_exits_0_and_leaves_the_rest(async_command,
                                                                                 redis_client):
    push(redis_client, [item(n, seconds=1.0) for n in range(20)])
    command = async_command(*ARGS)
    wait_until(lambda: len(starts(redis_client)) == 5, message="the first 5 items started")
    command.send(signal.SIGTERM)
    assert command.wait() == 0, command.stderr()

    begun = starts(redis_client)
    assert 5 <= len(begun) < 20
    assert ends(redis_client) == dict.fromkeys(begun, 1)
    assert waiting_ids(redis_client) == [str(n) for n in range(len(begun), 20)]
    assert redis_client.exists(PROCESSING) == 0
    assert "Stop requested: taking no new tasks" in command.stderr()


def test_grace_period_over_puts_running_items_back_first_in_line(async_command, redis_client):
    push(redis_client, [item(n, seconds=60) for n in range(8)])
    command = async_command(*ARGS, "--grace-period", "0.5")
    wait_until(lambda: len(starts(redis_client)) == 5, message="5 items started")
    command.send(signal.SIGTERM)
    assert command.wait() == 0, command.stderr()
    assert ends(redis_client) == {}
    assert waiting_ids(redis_client) == [str(n) for n in range(8)]
    assert redis_client.exists(PROCESSING) == 0
    assert "Grace period over: put 5 unfinished tasks back on jobs" in command.stderr()


def test_second_sigint_ends_the_grace_period_at_once(async_command, redis_client):
    push(redis_client, [item(n, seconds=60) for n in range(3)])
    command = async_command(*ARGS)  # grace period 30 s
    wait_until(lambda: len(starts(redis_client)) == 3, message="3 items started")
    command.send(signal.SIGINT)
    wait_until(lambda: "Stop requested" in command.stderr(), message="the first SIGINT handled")
    command.send(signal.SIGINT)
    assert command.wait(timeout=20) == 0, command.stderr()
    assert waiting_ids(redis_client) == ["0", "1", "2"]
    assert redis_client.exists(PROCESSING) == 0


def test_redis_unreachable_at_start_exits_1_with_one_clear_line(async_command):
    port = free_port()
    command = async_command("--redis-key", KEY, redis_url=f"redis://127.0.0.1:{port}/0")
    assert command.wait() == 1
    lines = command.stderr().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"CommandError: cannot connect to Redis at 127.0.0.1:{port}/0: ")
    assert "Error 111 connecting" in lines[0]  # ECONNREFUSED
    assert command.stdout() == ""


def test_redis_lost_longer_than_the_retry_window_exits_1_with_a_clear_last_line(async_command, redis_server):
    server = redis_server()
    client = server.client()
    push(client, [item(n, seconds=60) for n in range(2)])
    command = async_command(*ARGS, "--retry-window", "1", redis_url=server.url)
    wait_until(lambda: len(starts(client)) == 2, message="2 items started")
    server.kill()
    assert command.wait(timeout=30) == 1
    output = command.stderr()
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1].startswith(
        f"CommandError: lost the connection to Redis at 127.0.0.1:{server.port}/0 for more than 1 s")


def test_redis_restart_within_the_retry_window_loses_nothing(async_command, redis_server):
    server = redis_server(appendonly=True)
    client = server.client()
    push(client, [item(n, seconds=0.1) for n in range(40)])
    command = async_command(*ARGS, redis_url=server.url)
    wait_until(lambda: len(ends(client)) >= 5, message="5 items done")
    server.restart()
    client = server.client()
    wait_until(lambda: len(ends(client)) == 40, timeout=60, message="all 40 items done")
    wait_until(lambda: client.exists(KEY, PROCESSING) == 0, message="source and processing lists empty")
    command.send(signal.SIGTERM)
    assert command.wait() == 0, command.stderr()
    assert "Redis reachable again" in command.stderr()
    assert client.llen(f"{KEY}:dead") == 0
