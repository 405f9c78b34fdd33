"""The seed document's examples, run as written (``EasyRAG.`` spelled ``easyrag.``)."""

from __future__ import annotations

import logging

import pytest

from easyrag.task_app.async_task_framework import TaskStatus
from tests.support.waiting import wait_until


def test_custom_handler_example_runs_through_submit_task(live_worker):
    from easyrag.task_app.async_task_framework import get_task_status, submit_task

    task_id = submit_task(task_type="CustomTaskHandler", task_data={"a": 1})
    task = wait_until(lambda: (t := get_task_status(task_id)) and t.status.is_final and t, timeout=15)
    assert task.status is TaskStatus.COMPLETED
    assert task.result == {"success": True, "result": None, "message": "自定义任务完成"}


def test_lock_example_both_ways(redis_client):
    from easyrag.common.redis_utils import get_redis_instance
    from easyrag.task_app.async_task_framework import DistributedLock

    performed = []

    def perform_critical_operation():
        performed.append(redis_client.get("lock:async_task:custom_operation:123"))

    redis_client_ = get_redis_instance()
    lock = DistributedLock(redis_client_, "custom_operation:123", timeout=300)

    # 方法一: 使用上下文管理器
    with lock:
        perform_critical_operation()

    # 方法二: 手动获取和释放
    if lock.acquire(timeout=10):
        try:
            perform_critical_operation()
        finally:
            lock.release()

    assert len(performed) == 2 and all(performed)  # the lock was held during both
    assert not redis_client.exists("lock:async_task:custom_operation:123")


def test_stats_example(live_worker, capsys):
    from easyrag.task_app.async_task_framework import get_task_stats

    stats = get_task_stats()
    print(f"总任务数: {stats['total_tasks']}")
    print(f"已完成: {stats['completed_tasks']}")
    print(f"失败: {stats['failed_tasks']}")
    print(f"队列大小: {stats['queue_size']}")
    print(f"实例ID: {stats['instance_id']}")
    out = capsys.readouterr().out
    assert "总任务数: 0" in out and "实例ID: " in out
    assert live_worker.nodename in stats["workers"]


@pytest.fixture
def seed_logger_levels():
    """The seed's example sets its loggers to DEBUG; put the levels back afterwards."""
    names = ("EasyRAG.task_app.async_task_framework", "EasyRAG.task_app.task_handlers")
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_logging_example_reaches_the_named_loggers(live_worker, caplog, seed_logger_levels):
    logging.getLogger('EasyRAG.task_app.async_task_framework').setLevel(logging.DEBUG)
    logging.getLogger('EasyRAG.task_app.task_handlers').setLevel(logging.DEBUG)
    from easyrag.task_app.async_task_framework import get_task_status, submit_task

    with caplog.at_level(logging.DEBUG):
        task_id = submit_task("EchoTaskHandler", {})
        wait_until(lambda: get_task_status(task_id).status is TaskStatus.COMPLETED, timeout=15)
    names = {(record.name, record.getMessage()) for record in caplog.records
             if task_id in record.getMessage()}
    assert ("EasyRAG.task_app.async_task_framework",
            f"task {task_id} (EchoTaskHandler): submitted with priority NORMAL") in names
    assert ("EasyRAG.task_app.task_handlers", f"task {task_id} (EchoTaskHandler): finished") in names


def test_debug_snippet(redis_client):
    from easyrag.common.redis_utils import get_redis_instance
    from easyrag.task_app.async_task_framework import get_task_framework, submit_task

    redis_client_ = get_redis_instance()
    assert redis_client_.health_check() is True
    submit_task("EchoTaskHandler", {})  # no worker: it waits in the broker
    framework = get_task_framework()
    assert framework.task_queue.qsize() == 1


def test_start_task_framework_from_code_runs_tasks_until_stopped(redis_client):
    import socket

    from easyrag.task_app.async_task_framework import get_task_status, start_task_framework, submit_task

    framework = start_task_framework(max_workers=2, queue_size=100, instance_id="from-code")
    try:
        task_id = submit_task("EchoTaskHandler", {"via": "framework"})
        task = wait_until(lambda: (t := get_task_status(task_id)) and t.status.is_final and t, timeout=45)
        assert task.status is TaskStatus.COMPLETED
        assert task.worker == f"from-code@{socket.gethostname()}"
    finally:
        framework.stop()
    assert not framework.running


def test_quick_start_steps_2_to_4_as_written(redis_client, capsys):
    # Step 2: submit (no worker runs here, so the task waits in the broker).
    from easyrag.task_app.async_task_framework import TaskPriority, submit_task

    task_id = submit_task(
        task_type="DocumentParseTaskHandler",
        task_data={
            'document_id': 'doc_123',
            'user_id': 'user_456',
            'resume_from': 'INIT'
        },
        priority=TaskPriority.HIGH.value,
        timeout=300
    )
    print(f"任务已提交，ID: {task_id}")

    # Step 3: status.
    from easyrag.task_app.async_task_framework import get_task_status

    task = get_task_status(task_id)
    if task:
        print(f"任务状态: {task.status.value}")
        print(f"进度: {task.progress}%")
        print(f"消息: {task.message}")

    # Step 4: cancel.
    from easyrag.task_app.async_task_framework import cancel_task

    success = cancel_task(task_id)
    if success:
        print("任务已取消")

    out = capsys.readouterr().out
    assert f"任务已提交，ID: {task_id}" in out
    assert "任务状态: PENDING" in out and "进度: 0%" in out
    assert "任务已取消" in out
    assert get_task_status(task_id).status is TaskStatus.CANCELLED
    assert get_task_status(task_id).priority == 1


def test_priority_example_as_written(redis_client):
    from easyrag.task_app.async_task_framework import TaskPriority, get_task_status, submit_task

    # 提交高优先级任务
    high_priority_task = submit_task(
        task_type="EmailSendTaskHandler",
        task_data={'to_email': 'urgent@example.com', 'subject': '紧急通知'},
        priority=TaskPriority.HIGH.value
    )

    # 提交低优先级任务
    low_priority_task = submit_task(
        task_type="DataProcessTaskHandler",
        task_data={'data_source': 'logs.csv'},
        priority=TaskPriority.LOW.value
    )
    assert get_task_status(high_priority_task).priority == TaskPriority.HIGH
    assert get_task_status(low_priority_task).priority == TaskPriority.LOW
    assert (redis_client.llen("celery:1"), redis_client.llen("celery:3")) == (1, 1)
