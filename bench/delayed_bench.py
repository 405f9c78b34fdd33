"""Django Tasks and delayed tasks, on a private redis-server and a real worker.

    python3 scripts/dev.py run -- python bench/delayed_bench.py [--tasks 1000] [--delayed 200]

1. Enqueue rate: ``--tasks`` no-op Django Tasks (``.enqueue()``, GuardedTaskBackend) against the
   same number of ``submit_task`` calls, in one process, no worker (so only the submit is timed).
   Then each batch is drained by a fresh ``-c 2`` worker: tasks per second from the first start to
   the last finish (the records' times).
2. Promotion: ``--burst`` tasks all due in the same second, promoted by a worker that consumes
   another queue (so it only promotes): seconds from the due time until all are on the broker list.
3. Lateness: ``--delayed`` tasks due 1 s to ``--spread`` s from their submit, one ``-c 2`` worker;
   for each, its start (the record's ``started_at``) minus its due time (``eta``).

Prints the figures and writes bench/results/delayed_bench.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "easyrag.settings")

from tests.support.redis_server import RedisServer  # noqa: E402

ENQUEUE = """
import json, time, django
django.setup()
from easyrag.task_app.async_task_framework import submit_task
from tests.support import dj_tasks
n = {tasks}
started = time.perf_counter()
for _ in range(n):
    dj_tasks.add.enqueue(1, 2)
django_s = time.perf_counter() - started
started = time.perf_counter()
for _ in range(n):
    submit_task("EchoTaskHandler", {{"x": 1}})
facade_s = time.perf_counter() - started
print(json.dumps({{"enqueue_per_s": n / django_s, "submit_task_per_s": n / facade_s}}))
"""

DRAIN = """
import json, time, django
django.setup()
from datetime import datetime
import redis
from easyrag.task_app import keys
from easyrag.task_app.records import TaskRecord
client = redis.Redis.from_url("{url}", decode_responses=True)
ids = client.lrange("bench:ids", 0, -1)
deadline = time.time() + 600
while int(client.hget(keys.counters_key(), "completed") or 0) < len(ids) and time.time() < deadline:
    time.sleep(0.2)
records = [TaskRecord.from_json(text) for text in client.mget([keys.record_key(i) for i in ids])]
first = min(datetime.fromisoformat(r.started_at).timestamp() for r in records)
last = max(datetime.fromisoformat(r.finished_at).timestamp() for r in records)
print(json.dumps((len(ids) - 1) / (last - first)))
"""

SUBMIT_ONLY = """
import django
django.setup()
import redis
from easyrag.task_app.async_task_framework import submit_task
from tests.support import dj_tasks
client = redis.Redis.from_url("{url}")
for _ in range({tasks}):
    task_id = dj_tasks.add.enqueue(1, 2).id if "{kind}" == "django" else submit_task("EchoTaskHandler", {{}})
    client.rpush("bench:ids", task_id)
"""

BURST = """
import json, time, django
django.setup()
import redis
from easyrag.celery import app
from easyrag.task_app import keys
n = {burst}
echo = app.tasks["EchoTaskHandler"]
due = time.time() + 5 + n / 400  # after the last submit
ids = [echo.apply_async(kwargs={{}}, countdown=due - time.time()).id for _ in range(n)]
client = redis.Redis.from_url("{url}")
while time.time() < due:
    time.sleep(0.01)
while client.zcard(keys.scheduled_key()) or client.llen("celery:2") < n:
    time.sleep(0.005)
print(json.dumps({{"tasks": n, "seconds_to_publish_all": time.time() - due}}))
"""

DELAYED = """
import json, time, django
django.setup()
from datetime import datetime
from easyrag.celery import app
from easyrag.task_app.async_task_framework import get_task_status
n = {delayed}
spread = {spread}
ids = [app.tasks["EchoTaskHandler"].apply_async(kwargs={{}}, countdown=1 + (spread - 1) * i / n).id
       for i in range(n)]
deadline = time.time() + spread + 60
while time.time() < deadline:
    tasks = [get_task_status(task_id) for task_id in ids]
    if all(t.status.value == "COMPLETED" for t in tasks):
        break
    time.sleep(0.2)
late = [datetime.fromisoformat(t.started_at).timestamp() - datetime.fromisoformat(t.eta).timestamp()
        for t in tasks if t.started_at]
print(json.dumps(late))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--delayed", type=int, default=2000)
    parser.add_argument("--spread", type=float, default=60.0)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "delayed_bench.json")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        server = RedisServer(Path(data_dir)).start()
        try:
            env = {**os.environ, "REDIS_URL": server.url, "ASYNC_TASK_QUEUE_SIZE": "0",
                   "ASYNC_TASK_HANDLER_MODULES": "tests.support.handlers", "ASYNC_TASK_LOG_LEVEL": "WARNING"}
            out = subprocess.run([sys.executable, "-c", ENQUEUE.format(tasks=options.tasks)], cwd=ROOT,
                                 env=env, check=True, capture_output=True, text=True)
            rates = json.loads(out.stdout.splitlines()[-1])
            for kind in ("django", "submit_task"):
                server.client().flushdb()
                subprocess.run([sys.executable, "-c", SUBMIT_ONLY.format(url=server.url, tasks=options.tasks,
                                                                         kind=kind)],
                               cwd=ROOT, env=env, check=True, capture_output=True, text=True)
                drainer = subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "easyrag", "worker", "-c", "2", "-l", "warning"],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    out = subprocess.run([sys.executable, "-c", DRAIN.format(url=server.url)], cwd=ROOT,
                                         env=env, check=True, capture_output=True, text=True)
                finally:
                    drainer.terminate()
                    drainer.wait(timeout=60)
                rates[f"drain_{kind}_per_s"] = json.loads(out.stdout.splitlines()[-1])
            server.client().flushdb()
            promoter = subprocess.Popen(  # promotes due messages, consumes another queue
                [sys.executable, "-m", "celery", "-A", "easyrag", "worker", "-c", "1", "-Q", "bench-nothing",
                 "-l", "warning"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                code = BURST.format(burst=options.burst, url=server.url)
                out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                                     capture_output=True, text=True)
            finally:
                promoter.terminate()
                promoter.wait(timeout=60)
            burst = json.loads(out.stdout.splitlines()[-1])
            server.client().flushdb()
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "easyrag", "worker", "-c", "2", "-l", "warning"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                out = subprocess.run([sys.executable, "-c", DELAYED.format(delayed=options.delayed,
                                                                           spread=options.spread)],
                                     cwd=ROOT, env=env, check=True, capture_output=True, text=True)
            finally:
                worker.terminate()
                worker.wait(timeout=60)
            late = sorted(json.loads(out.stdout.splitlines()[-1]))
        finally:
            server.stop()
    lateness = {"tasks": len(late), "spread_s": options.spread, "p50_ms": 1000 * statistics.median(late),
                "p99_ms": 1000 * late[int(0.99 * (len(late) - 1))], "max_ms": 1000 * late[-1],
                "min_ms": 1000 * late[0]}
    ratio = rates["enqueue_per_s"] / rates["submit_task_per_s"]
    print(f"enqueue (Django Tasks): {rates['enqueue_per_s']:.0f}/s; submit_task: "
          f"{rates['submit_task_per_s']:.0f}/s; ratio {ratio:.2f}")
    print(f"drain (-c 2): Django Tasks {rates['drain_django_per_s']:.0f}/s; submit_task's "
          f"{rates['drain_submit_task_per_s']:.0f}/s; ratio "
          f"{rates['drain_django_per_s'] / rates['drain_submit_task_per_s']:.2f}")
    print(f"{burst['tasks']} tasks due in the same second: all on the broker list "
          f"{burst['seconds_to_publish_all']:.2f} s after their due time")
    print(f"delayed tasks started after their due time: p50 {lateness['p50_ms']:.0f} ms, p99 "
          f"{lateness['p99_ms']:.0f} ms, max {lateness['max_ms']:.0f} ms, min {lateness['min_ms']:.0f} ms "
          f"({lateness['tasks']} tasks spread over {options.spread:.0f} s)")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps({"rates": rates, "burst": burst, "lateness": lateness},
                                         indent=2) + "\n")
    print(f"written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
