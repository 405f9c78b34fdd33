"""Chaos: 200 tasks on 3 workers while a random worker is SIGKILLed every few seconds and replaced.

At the end every task completed exactly once and no two executions of one task overlapped,
counted through side effects the task bodies write to Redis (tests.support.tasks.traced).
"""

from __future__ import annotations

import random
import time

from easyrag.task_app.records import TaskStatus
from tests.support import tasks
from tests.support.broker import FAST_RECOVERY, broker_idle, record, status, where_is
from tests.support.waiting import wait_until

TASKS = 200
KILL_EVERY_S = 3.0
# Kills here are random, not the task's fault: a task unlucky enough to be running in three killed
# workers would rightly end FAILED under the default crash budget (tested on its own in
# test_crash_recovery).  This test is about exactly-once completion, so the budget is raised.
CHAOS_SETTINGS = {**FAST_RECOVERY, "ASYNC_TASK_MAX_CRASHES": "20"}


def test_every_task_completes_exactly_once_while_workers_are_killed(worker_process, redis_client):
    rng = random.Random(20261123)
    spawned = 0

    def spawn(wait: bool = False):
        nonlocal spawned
        spawned += 1
        return worker_process(f"chaos{spawned}", concurrency=2, env=CHAOS_SETTINGS, wait=wait)

    workers = [spawn(wait=True) for _ in range(3)]
    started = time.monotonic()
    ids = [tasks.traced.apply_async(kwargs={"seconds": rng.uniform(0.1, 0.6)},
                                    priority=rng.randint(0, 3)).id for _ in range(TASKS)]

    def unfinished() -> list[str]:
        return [task_id for task_id in ids if status(redis_client, task_id) is not TaskStatus.COMPLETED]

    kills, deadline = 0, time.monotonic() + 240
    while unfinished() and time.monotonic() < deadline:
        next_kill = time.monotonic() + KILL_EVERY_S
        wait_until(lambda at=next_kill: time.monotonic() >= at or not unfinished(),
                   timeout=KILL_EVERY_S + 5, interval=0.2, message="the next kill")
        if not unfinished():
            break
        victim = workers.pop(rng.randrange(len(workers)))
        victim.kill()
        kills += 1
        workers.append(spawn())

    left = unfinished()
    assert not left, f"{len(left)} tasks never completed after {kills} kills: " + "; ".join(
        f"{task_id}: record {status(redis_client, task_id)}, guard "
        f"{redis_client.hgetall('async_task:guard:' + task_id)}, traces {tasks.traces(task_id)}, "
        f"lock pttl {redis_client.pttl('lock:async_task:task:' + task_id)}, "
        f"error {(record(redis_client, task_id) or object).__dict__.get('error')}, "
        f"its messages: {where_is(redis_client, task_id)}"
        for task_id in left)
    elapsed = time.monotonic() - started
    wait_until(lambda: broker_idle(redis_client), timeout=60, message="the broker to drain")
    counts = {task_id: tasks.traces(task_id) for task_id in ids}
    assert kills >= 3

    def described(task_ids: list[str]) -> str:
        return "; ".join(f"{task_id}: traces {counts[task_id]}, record {record(redis_client, task_id)}"
                         for task_id in task_ids)

    overlapped = [t for t, c in counts.items() if c["overlaps"]]
    assert overlapped == [], described(overlapped)
    not_once = [t for t, c in counts.items() if c["ends"] != 1]
    assert not_once == [], described(not_once)
    assert all(c["starts"] >= 1 for c in counts.values())
    restarted = sum(1 for c in counts.values() if c["starts"] > 1)
    print(f"chaos: {TASKS} tasks, {kills} kills, {restarted} tasks restarted after a kill, "
          f"{elapsed:.1f} s")
