"""--forward: each item becomes a Celery task through submit_task; refused submissions are dead-lettered."""

from __future__ import annotations

import json
import re
import signal

import easyrag.legacy.celery_handler  # noqa: F401 - LegacyTaskHandler, for the in-process worker
from easyrag.legacy.forward import FALLBACK_MODULE, map_item
from easyrag.task_app.async_task_framework import TaskStatus, get_task_status
from tests.conftest import TEST_HANDLER_MODULES
from tests.legacy.conftest import KEY, push
from tests.support.waiting import wait_until

PROCESSING = f"{KEY}:processing:c1"
ARGS = ("--redis-key", KEY, "--consumer-name", "c1", "--forward")
ECHO = ("--forward-types", "EchoTaskHandler")
WITH_FALLBACK = {"ASYNC_TASK_HANDLER_MODULES": f"{TEST_HANDLER_MODULES},{FALLBACK_MODULE}"}
FORWARDED = re.compile(r"Forwarded (\S+) task as Celery task (\S+) \((\w+)\)")


def forwarded(output: str) -> dict[str, tuple[str, str]]:
    """legacy type -> (task id, Celery handler), from the command's log."""
    return {legacy: (task_id, handler) for legacy, task_id, handler in FORWARDED.findall(output)}


def completed(task_id: str):
    return wait_until(lambda: (task := get_task_status(task_id)) and task.status is TaskStatus.COMPLETED
                      and task, timeout=20, message=f"task {task_id} COMPLETED")


def test_forwarded_items_run_on_a_celery_worker_and_refusals_are_dead_lettered(live_worker, async_command,
                                                                               redis_client):
    refused = {
        json.dumps({"type": "EchoTaskHandler", "data": [1, 2]}):
            "InvalidTaskDataError: task_data must be a JSON object",
        json.dumps({"type": "EchoTaskHandler", "data": {}, "priority": 9}):
            "InvalidPriorityError: priority must be an int from 0 (URGENT) to 3 (LOW), got 9",
    }
    push(redis_client, [
        json.dumps({"type": "EchoTaskHandler", "data": {"x": 1}}),
        json.dumps({"type": "email", "data": {"to": "user@example.com", "subject": "Hi", "body": "hello"}}),
        json.dumps({"type": "fast_task", "data": {"n": 1}, "priority": 0}),
        *refused,
    ])
    command = async_command(*ARGS, "--max-tasks", "5", "--forward-types",
                            "EchoTaskHandler, EmailSendTaskHandler,LegacyTaskHandler", env=WITH_FALLBACK)
    assert command.wait() == 0, command.stderr()

    submitted = forwarded(command.stderr())
    assert {legacy: handler for legacy, (_, handler) in submitted.items()} == {
        "EchoTaskHandler": "EchoTaskHandler", "email": "EmailSendTaskHandler",
        "fast_task": "LegacyTaskHandler"}
    assert completed(submitted["EchoTaskHandler"][0]).result == {"echo": {"x": 1}, "user_id": None}
    email = completed(submitted["email"][0])
    assert email.result == {"sent": 1, "recipients": ["user@example.com"]}
    assert email.task_data == {"to_email": "user@example.com", "subject": "Hi", "body": "hello"}
    fallback = completed(submitted["fast_task"][0])
    assert (fallback.result, fallback.priority) == ({"type": "fast_task", "handled": True}, 0)
    assert fallback.task_data == {"type": "fast_task", "data": {"n": 1}}

    letters = {(letter := json.loads(raw))["raw"]: letter["error"]
               for raw in redis_client.lrange(f"{KEY}:dead", 0, -1)}
    assert letters.keys() == refused.keys()
    for raw, error in letters.items():
        assert error.startswith(refused[raw]), error
    assert redis_client.exists(KEY, PROCESSING) == 0


def test_unmapped_type_without_the_fallback_handler_is_dead_lettered_naming_the_fix(async_command,
                                                                                     redis_client):
    push(redis_client, [json.dumps({"type": "slow_task", "data": {}})])
    command = async_command(*ARGS, "--max-tasks", "1")
    assert command.wait() == 0, command.stderr()
    letter = json.loads(redis_client.lindex(f"{KEY}:dead", 0))
    assert letter["error"] == (
        f"UnknownTaskTypeError: legacy type 'slow_task' has no Celery handler: register a handler of that "
        f"name, or add {FALLBACK_MODULE} to ASYNC_TASK_HANDLER_MODULES (workers and this consumer) to run "
        f"it with LegacyTaskHandler")


def test_item_stays_held_while_the_broker_queue_is_full_and_goes_back_on_stop(async_command, redis_client):
    first = json.dumps({"type": "EchoTaskHandler", "data": {"n": 1}})
    second = json.dumps({"type": "EchoTaskHandler", "data": {"n": 2}})
    push(redis_client, [first, second])
    # No worker, room for one message; one at a time (the facade's bound is check-then-publish).
    command = async_command(*ARGS, *ECHO, "--grace-period", "0.5", "--max-concurrent", "1",
                            env={"ASYNC_TASK_QUEUE_SIZE": "1"})
    wait_until(lambda: "Broker queue full" in command.stderr(), message="the second submission refused")
    assert redis_client.lrange(PROCESSING, 0, -1) == [second]
    command.send(signal.SIGTERM)
    assert command.wait() == 0, command.stderr()
    assert redis_client.lrange(KEY, 0, -1) == [second]
    assert redis_client.exists(f"{KEY}:dead", PROCESSING) == 0
    assert len(forwarded(command.stderr())) == 1


def letters(redis_client) -> dict[str, str]:
    """raw -> error of every dead letter."""
    return {(letter := json.loads(raw))["raw"]: letter["error"]
            for raw in redis_client.lrange(f"{KEY}:dead", 0, -1)}


def not_allowed(legacy_type: str, handler: str, allowed: str = "LegacyTaskHandler") -> str:
    return (f"TaskTypeNotAllowedError: legacy type {legacy_type!r} is forwarded as {handler}, which "
            f"--forward-types does not allow (allowed: {allowed})")


def test_by_default_only_items_run_as_the_command_would_are_forwarded(async_command, redis_client):
    """Default --forward-types LegacyTaskHandler: forwarding gives a producer no handler the list did not."""
    refused = {
        json.dumps({"type": "EchoTaskHandler", "data": {"x": 1}}):
            not_allowed("EchoTaskHandler", "EchoTaskHandler"),
        json.dumps({"type": "email", "data": {"to": "a@b.c", "subject": "s", "body": "b"}}):
            not_allowed("email", "EmailSendTaskHandler"),
        json.dumps({"type": "file_process", "data": {"file_path": "x.csv"}}):
            not_allowed("file_process", "DataProcessTaskHandler"),
        json.dumps({"type": "FileUploadTaskHandler", "data": {}}):
            not_allowed("FileUploadTaskHandler", "FileUploadTaskHandler"),
    }
    push(redis_client, [*refused, json.dumps({"type": "fast_task", "data": {"n": 1}})])
    command = async_command(*ARGS, "--max-tasks", "5", env=WITH_FALLBACK)
    assert command.wait() == 0, command.stderr()
    assert letters(redis_client) == refused
    assert {legacy: handler for legacy, (_, handler) in forwarded(command.stderr()).items()} == {
        "fast_task": "LegacyTaskHandler"}
    assert redis_client.exists(KEY, PROCESSING) == 0


def test_forward_types_from_the_environment(async_command, redis_client):
    legacy = json.dumps({"type": "fast_task", "data": {}})
    push(redis_client, [json.dumps({"type": "EchoTaskHandler", "data": {"x": 1}}), legacy])
    command = async_command(*ARGS, "--max-tasks", "2",
                            env={**WITH_FALLBACK, "ASYNC_COMMAND_FORWARD_TYPES": "EchoTaskHandler"})
    assert command.wait() == 0, command.stderr()
    assert letters(redis_client) == {legacy: not_allowed("fast_task", "LegacyTaskHandler", "EchoTaskHandler")}
    assert list(forwarded(command.stderr())) == ["EchoTaskHandler"]


def test_bad_forward_types_stop_the_command_with_one_line_and_take_nothing(async_command, redis_client):
    push(redis_client, [json.dumps({"type": "EchoTaskHandler", "data": {}})])
    for flags, line in (
        (("--forward", "--forward-types", "EchoTaskHandler,NoSuchTaskHandler"),
         "CommandError: --forward-types: 'NoSuchTaskHandler' is not a registered task type"),
        (("--forward", "--forward-types", "email"),
         "CommandError: --forward-types: 'email' is not a registered task type (a legacy type: "
         "name its handler, EmailSendTaskHandler)"),
        (("--forward", "--forward-types", " , "), "CommandError: --forward-types names no task type"),
        (("--forward-types", "EchoTaskHandler"), "CommandError: --forward-types applies to --forward only"),
    ):
        command = async_command("--redis-key", KEY, *flags)
        assert command.wait() == 1
        assert command.stderr().strip().splitlines() == [line]
    assert redis_client.lrange(KEY, 0, -1) == [json.dumps({"type": "EchoTaskHandler", "data": {}})]


def test_mapping_table():
    registered = {"EchoTaskHandler", "EmailSendTaskHandler"}
    assert map_item({"type": "email", "data": {"to": "a@b.c", "subject": "s"}}, registered) == (
        "EmailSendTaskHandler", {"to_email": "a@b.c", "subject": "s"})
    assert map_item({"type": "file_process", "data": {"file_path": "x.csv"}}, registered) == (
        "DataProcessTaskHandler", {"data_source": "x.csv"})
    assert map_item({"type": "EchoTaskHandler", "data": {"to": 1}}, registered) == (
        "EchoTaskHandler", {"to": 1})
    assert map_item({"type": "medium_task", "data": {"a": 1}}, registered) == (
        "LegacyTaskHandler", {"type": "medium_task", "data": {"a": 1}})
    assert map_item({"data": {}}, registered) == ("LegacyTaskHandler", {"type": None, "data": {}})
