"""A result with a number JSON cannot hold (a CSV mean that overflows) is stored as strict JSON, so
the status endpoint and the list pages keep answering (issue 14, item 6)."""

from __future__ import annotations

import json

from easyrag.task_app import keys
from easyrag.task_app.async_task_framework import TaskStatus, submit_task
from tests.support.waiting import wait_final


def test_an_overflowing_csv_mean_is_stored_as_null_and_the_api_still_answers(
        live_worker, env, tmp_path, people, staff, redis_client):
    env(ASYNC_TASK_FILE_ROOTS=str(tmp_path))
    (tmp_path / "huge.csv").write_text("x\n1e308\n1e308\n")  # the sum, and so the mean, overflow
    task = wait_final(submit_task("DataProcessTaskHandler", {"data_source": "huge.csv"},
                                  user_id=people.staff.pk))
    assert task.status is TaskStatus.COMPLETED
    assert task.result["columns"]["x"]["mean"] is None
    assert task.result["columns"]["x"]["max"] == 1e308
    json.loads(redis_client.get(keys.record_key(task.task_id)),  # strict: no Infinity or NaN
               parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    detail = staff.get(f"/api/tasks/{task.task_id}/")
    assert detail.status_code == 200 and detail.json()["result"]["columns"]["x"]["mean"] is None
    listing = staff.get("/api/tasks/")
    assert listing.status_code == 200
    assert task.task_id in {row["task_id"] for row in listing.json()["results"]}
