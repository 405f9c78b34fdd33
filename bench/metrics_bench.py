"""What a /metrics scrape and the dashboard's data cost as finished records pile up.

    python3 scripts/dev.py run -- python bench/metrics_bench.py [--records 1000,10000,100000]

A private redis-server, three ``celery -A easyrag worker -c 1`` processes (live nodes with
heartbeats, as a scrape reads them).  Finished records are made by the real Lua steps, in this
process and without a broker: SUBMIT, CLAIM and FINISH per task (COMPLETED, every tenth FAILED),
spread over four task types, so the metrics hash, the recent indexes and the counters are exactly
what workers would have left.  At each record count: ``--requests`` GETs of ``/metrics`` and of
``/dashboard/data.json`` through Django's test client (a staff session; the view and its Redis
reads, no socket), their p50/p95 latency, and the Redis round trips each costs (counted on
redis-py's connections).  The ratio is against one bare Redis PING in the same run.

Prints the figures and writes bench/results/metrics_bench.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "easyrag.settings")

from tests.support.redis_server import RedisServer  # noqa: E402

TASK_TYPES = ("EchoTaskHandler", "DocumentParseTaskHandler", "EmbeddingTaskHandler",
              "NotificationTaskHandler")


def populate(client, start: int, stop: int) -> None:
    """Finish tasks ``start`` .. ``stop - 1`` through SUBMIT, CLAIM and FINISH."""
    from easyrag.task_app import scripts
    from easyrag.task_app.records import TaskRecord, TaskStatus, now_iso

    for number in range(start, stop):
        task_id, task_type = str(uuid.uuid4()), TASK_TYPES[number % len(TASK_TYPES)]
        record = TaskRecord(task_id=task_id, task_type=task_type, task_data={"n": number},
                            created_at=now_iso(), user_id=number % 50)
        scripts.submit(client, scripts.Submission(task_id, record.to_json(), record.user_id, time.time(),
                                                  task_type=task_type),
                       "bench:nowhere", ["bench:nowhere"], "{}", 86400)
        running = record.replace(status=TaskStatus.RUNNING, started_at=now_iso(), worker="bench@host")
        claim = scripts.claim(client, task_id, f"bench:{number}", 30_000, running.to_json(), "", "x", 60_000,
                              0, True, time.time(), record_ttl=86400, task_type=task_type)
        state = TaskStatus.FAILED if number % 10 == 9 else TaskStatus.COMPLETED
        final = running.replace(status=state, finished_at=now_iso(), progress=100,
                                error="bench failure" if state is TaskStatus.FAILED else None)
        scripts.finish(client, task_id, claim.lock_value, state.value, final.to_json(), 86400,
                       task_type=task_type, runtime=0.001 * (number % 2000))
        if number % 10_000 == 0:
            client.delete("bench:nowhere")
    client.delete("bench:nowhere")


class RoundTrips:
    """Counts the commands and pipelines redis-py sends (each is one round trip)."""

    def __init__(self) -> None:
        import redis.connection

        self.count = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            self.count += 1
            return original(connection, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted


def timed(call: Callable[[], object], requests: int, trips: RoundTrips) -> dict[str, float]:
    call()  # warm: scripts, connections, templates
    before = trips.count
    call()
    per_request = trips.count - before
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return {"p50_ms": 1000 * statistics.median(seconds),
            "p95_ms": 1000 * seconds[int(0.95 * (len(seconds) - 1))],
            "round_trips": per_request}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default="1000,10000,100000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "metrics_bench.json")
    options = parser.parse_args()
    steps = [int(n) for n in options.records.split(",")]
    with tempfile.TemporaryDirectory() as data_dir:
        server = RedisServer(Path(data_dir)).start()
        env = {**os.environ, "REDIS_URL": server.url, "ASYNC_TASK_LOG_LEVEL": "WARNING"}
        # A database of its own, for the staff user of the session.
        os.environ.update(REDIS_URL=server.url, ASYNC_TASK_LOG_LEVEL="WARNING",
                          DATABASE_URL=f"sqlite:///{data_dir}/bench.sqlite3",
                          DJANGO_SECRET_KEY=uuid.uuid4().hex)
        workers = [subprocess.Popen([sys.executable, "-m", "celery", "-A", "easyrag", "worker", "-c", "1",
                                     "-n", f"bench{n}@%h", "-l", "warning"], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in range(3)]
        try:
            import django

            django.setup()
            from django.contrib.auth import get_user_model
            from django.core.management import call_command
            from django.test import Client
            from django.test.utils import setup_test_environment

            from easyrag.common.redis_utils import get_redis_instance
            from easyrag.task_app.nodes import live_nodes

            setup_test_environment()  # the test client's host name
            call_command("migrate", verbosity=0)
            client = get_redis_instance()
            deadline = time.monotonic() + 60
            while len(live_nodes()) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(live_nodes()) == 3, "the three workers did not register"
            staff, _ = get_user_model().objects.get_or_create(username="bench-staff",
                                                               defaults={"is_staff": True})
            browser = Client()
            browser.force_login(staff)
            trips = RoundTrips()

            def get(url: str) -> Callable[[], object]:
                def call() -> object:
                    answer = browser.get(url)
                    assert answer.status_code == 200, (url, answer.status_code)
                    return answer
                return call

            ping = timed(client.ping, options.requests, trips)
            results, made = [], 0
            for records in steps:
                started = time.perf_counter()
                populate(client, made, records)
                print(f"{records} finished records ({records - made} made in "
                      f"{time.perf_counter() - started:.0f} s)", flush=True)
                made = records
                row = {"records": records, "metrics": timed(get("/metrics"), options.requests, trips),
                       "dashboard_data": timed(get("/dashboard/data.json"), options.requests, trips)}
                for name in ("metrics", "dashboard_data"):
                    row[name]["p50_vs_ping"] = row[name]["p50_ms"] / ping["p50_ms"]
                    figures = row[name]
                    print(f"  {name:15} p50 {figures['p50_ms']:6.2f} ms  p95 {figures['p95_ms']:6.2f} ms  "
                          f"{figures['round_trips']} round trips  ({figures['p50_vs_ping']:.0f} x a PING)")
                results.append(row)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
            server.stop()
    print(f"PING p50 {ping['p50_ms']:.3f} ms")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps({"ping": ping, "steps": results}, indent=2) + "\n")
    print(f"written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
