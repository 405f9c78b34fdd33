"""A Redis restart (private server, AOF on) loses no accepted task; work in flight recovers."""

from __future__ import annotations

from collections import Counter

from easyrag.celery import app
from easyrag.task_app import keys
from easyrag.task_app.records import TaskRecord, TaskStatus
from tests.support import tasks
from tests.support.broker import FAST_RECOVERY
from tests.support.waiting import wait_until

TASKS = 30


def test_tasks_in_flight_and_queued_all_complete_once_across_a_redis_restart(worker_process, redis_server,
                                                                           env):
    server = redis_server(appendonly=True)
    client = server.client()
    settings = {**FAST_RECOVERY, "REDIS_URL": server.url}
    env(**settings)  # this process's records and guards go to the private server too
    workers = [worker_process("a", concurrency=2, env=settings),
               worker_process("b", concurrency=2, env=settings)]
    with app.connection_for_write(server.url) as connection:
        ids = [tasks.traced.apply_async(kwargs={"seconds": 1.0}, connection=connection).id
               for _ in range(TASKS)]

    def statuses() -> list[TaskStatus | None]:
        texts = client.mget([keys.record_key(task_id) for task_id in ids])
        return [TaskRecord.from_json(text).status if text else None for text in texts]

    wait_until(lambda: statuses().count(TaskStatus.COMPLETED) >= 4 and TaskStatus.RUNNING in statuses(),
               timeout=30, message="some tasks done and some running")
    server.restart()  # SIGTERM (AOF flushed), then the same port and data directory
    try:
        wait_until(lambda: statuses().count(TaskStatus.COMPLETED) == TASKS, timeout=120, interval=0.2,
                   message="every task to complete after the restart")
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}\n{diagnose(client, ids, statuses(), workers)}") from None
    counts = [tasks.traces(task_id, client) for task_id in ids]
    assert all(count["overlaps"] == 0 for count in counts)
    assert all(count["starts"] >= 1 and count["ends"] >= 1 for count in counts)
    # "Completes once" is about the record: a body whose outcome could not be recorded while Redis
    # was down ran again, and only those.
    reruns = sum(count["ends"] - 1 for count in counts)
    print(f"redis restart: {TASKS} tasks completed; {reruns} bodies ran again")


def diagnose(client, ids: list[str], statuses: list[TaskStatus | None], workers) -> str:
    """What an unfinished run looked like: each unfinished task's record, guard and lock, the
    broker's lists, and the workers' logs."""
    lines = [f"statuses: {Counter(str(status) for status in statuses)}"]
    for task_id, status in zip(ids, statuses, strict=True):
        if status is not TaskStatus.COMPLETED:
            lines.append(f"{task_id}: record={client.get(keys.record_key(task_id))} "
                         f"guard={client.hgetall(keys.guard_key(task_id))} "
                         f"lock ttl={client.pttl(keys.task_lock_key(task_id))} "
                         f"traces={tasks.traces(task_id, client)}")
    waiting = [client.llen(name) for name in ("celery", "celery:1", "celery:2", "celery:3")]
    lines.append(f"broker lists: {waiting}, unacked: {client.hlen('unacked')}, "
                 f"unacked_index: {client.zcard('unacked_index')}")
    for worker in workers:
        lines.append(f"--- {worker.nodename} (alive={worker.alive})\n{worker.log_tail(60)}")
    return "\n".join(lines)
