"""scripts/test_async_command.py and scripts/test_concurrent_tasks.py, run as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.legacy.conftest import KEY, RECORD, ROOT, item, push


def run_script(redis_url: str, name: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], cwd=ROOT,
                          env={**os.environ, "REDIS_URL": redis_url}, capture_output=True, text=True,
                          timeout=timeout)


def assert_lists_empty(client) -> None:
    keys = [key for key in client.scan_iter(f"{KEY}*")]
    assert keys == [], keys  # no waiting, processing, dead-letter list or lease left


def test_add_pushes_the_sample_tasks_and_the_default_handler_logs_the_seed_lines(redis_test_url,
                                                                                 redis_client, async_command):
    result = run_script(redis_test_url, "test_async_command.py", "--action", "add", "--redis-key", KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"added 6 tasks to '{KEY}' (6 waiting)"
    types = [json.loads(raw)["type"] for raw in reversed(redis_client.lrange(KEY, 0, -1))]
    assert types == ["email", "file_process", "fast_task", "medium_task", "slow_task", "unknown_type"]

    command = async_command("--redis-key", KEY, "--max-tasks", "6", "--max-concurrent", "6")
    assert command.wait() == 0, command.stderr()
    log = command.stderr()
    # The seed's lines, verbatim (spec 6: operators' log searches match them), then one of ours.
    email = "{'to': 'user@example.com', 'subject': 'Welcome', 'body': 'Hello from EasyRAG'}"
    for line in (
        "INFO easyrag.legacy.consumer: 启动异步任务处理器\n",
        f"INFO easyrag.legacy.consumer: Redis键: {KEY}\n",
        "INFO easyrag.legacy.consumer: 轮询间隔: 1秒\n",
        "INFO easyrag.legacy.consumer: 启动并发任务 #1，当前运行任务数: 1\n",
        "INFO easyrag.legacy.consumer: 启动并发任务 #6，当前运行任务数: 6\n",
        f"INFO easyrag.legacy.handlers: 开始处理任务: {{'type': 'email', 'data': {email}}}\n",
        f"INFO easyrag.legacy.handlers: 处理邮件任务: {email}\n",
        "INFO easyrag.legacy.handlers: 处理文件任务: "
        "{'file_path': 'data/report.csv', 'operation': 'analyze'}\n",
        "INFO easyrag.legacy.handlers: 处理快速任务: {'task_id': 1}\n",
        "INFO easyrag.legacy.handlers: 处理中等任务: {'task_id': 2}\n",
        "INFO easyrag.legacy.handlers: 处理慢任务: {'task_id': 3}\n",
        "INFO easyrag.legacy.handlers: 处理未知类型任务: "
        "{'message': 'handled by the default branch'}\n",
        f"INFO easyrag.legacy.handlers: 任务处理完成: {{'type': 'email', 'data': {email}}}\n",
        "INFO easyrag.legacy.consumer: 成功处理任务 #1\n",
        "INFO easyrag.legacy.consumer: 成功处理任务 #6\n",
        "Stopped: took 6 tasks: 6 succeeded, 0 dead-lettered, 0 put back\n",
    ):
        assert line in log, line
    assert_lists_empty(redis_client)


def test_clear_empties_the_list(redis_test_url, redis_client):
    push(redis_client, [item(1), item(2), item(3)])
    result = run_script(redis_test_url, "test_async_command.py", "--action", "clear", "--redis-key", KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"cleared '{KEY}': removed 3 waiting tasks\n"
    assert redis_client.exists(KEY) == 0


def test_test_mode_runs_the_seven_seed_tasks_and_prints_the_total(redis_test_url, redis_client):
    result = run_script(redis_test_url, "test_concurrent_tasks.py", "--mode", "test", "--redis-key", KEY)
    assert result.returncode == 0, result.stderr
    total = re.fullmatch(r"total: (\d+\.\d\d) s", result.stdout.strip())
    assert total and float(total.group(1)) >= 2.0  # the slow tasks' 2 s is a floor, not a speed check
    assert result.stderr.count("成功处理任务 #") == 7
    assert result.stderr.count("处理慢任务: ") == 2
    assert_lists_empty(redis_client)


def test_compare_mode_prints_serial_and_concurrent_seconds(redis_test_url, redis_client):
    result = run_script(redis_test_url, "test_concurrent_tasks.py", "--mode", "compare", "--redis-key", KEY)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    serial = re.fullmatch(r"serial: (\d+\.\d\d) s", lines[0])
    concurrent = re.fullmatch(r"concurrent: (\d+\.\d\d) s", lines[1])
    assert serial and concurrent, lines
    assert float(serial.group(1)) >= 7.5  # floors: the sum of the seven tasks, and the slowest one
    assert float(concurrent.group(1)) >= 2.0
    assert_lists_empty(redis_client)


def test_test_mode_refuses_a_list_that_is_not_empty(redis_test_url, redis_client):
    push(redis_client, [item(1)])
    result = run_script(redis_test_url, "test_concurrent_tasks.py", "--mode", "test", "--redis-key", KEY)
    assert result.returncode == 1
    assert result.stderr.startswith(f"'{KEY}' already holds 1 items; clear it")
    assert redis_client.lrange(KEY, 0, -1) == [item(1)]


def test_monitor_shows_processed_and_remaining_until_the_list_is_empty(redis_test_url, redis_client,
                                                                       async_command):
    push(redis_client, [item(n, seconds=0.05) for n in range(30)] + ["not json", "[]"])
    monitor = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "test_concurrent_tasks.py"), "--mode", "monitor",
         "--redis-key", KEY, "--consumer-name", "c1"],
        cwd=ROOT, env={**os.environ, "REDIS_URL": redis_test_url}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    command = async_command("--redis-key", KEY, "--consumer-name", "c1", "--handler", RECORD,
                            "--max-tasks", "32")
    out, err = monitor.communicate(timeout=60)
    assert monitor.returncode == 0, err
    assert "32/32" in out
    assert out.splitlines()[-1] == f"processed 32 items, 2 dead-lettered; '{KEY}' is empty"
    assert command.wait() == 0
