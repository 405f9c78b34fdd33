"""python manage.py start_async_task_framework: real worker instances side by side."""

from __future__ import annotations

from easyrag.task_app.async_task_framework import TaskStatus, get_task_status, submit_task
from tests.support.waiting import wait_final, wait_until


def test_two_instances_share_one_burst(worker_process):
    first = worker_process("inst-a", via_manage=True)
    second = worker_process("inst-b", via_manage=True)
    ids = [submit_task("SleepyTaskHandler", {"seconds": 0.3}) for _ in range(8)]
    tasks = [wait_final(task_id, timeout=60) for task_id in ids]
    assert {task.status for task in tasks} == {TaskStatus.COMPLETED}
    assert {task.worker for task in tasks} == {first.nodename, second.nodename}


def test_sigterm_lets_the_running_task_finish(worker_process):
    worker = worker_process("inst-term", via_manage=True)
    task_id = submit_task("SleepyTaskHandler", {"seconds": 2})
    wait_until(lambda: get_task_status(task_id).status is TaskStatus.RUNNING, timeout=30,
               message="the task to start")
    assert worker.stop(timeout=30) == 0, worker.log_tail()
    task = get_task_status(task_id)
    assert (task.status, task.worker) == (TaskStatus.COMPLETED, worker.nodename), task.error
