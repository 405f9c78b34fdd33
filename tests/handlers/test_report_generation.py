"""ReportGenerationTaskHandler: reports of given rows and of live task statistics, in storage."""

from __future__ import annotations

import csv
import io
import json

from easyrag.task_app.async_task_framework import TaskStatus, submit_task
from tests.handlers.conftest import assert_each_fails_at_once, assert_failed_at_once, wait_final

ROWS = [{"name": "ann", "score": 1.5}, {"name": "bob", "tags": ["x", "y"], "score": 2}]


def test_given_rows_as_csv(live_worker, folders):
    task = wait_final(submit_task("ReportGenerationTaskHandler",
                                  {"report_type": "rows", "format": "csv", "rows": ROWS}))
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.result["rows"] == 2 and task.progress == 100
    name = task.result["file"]
    assert name.startswith("reports/rows-") and name.endswith(f"-{task.task_id}.csv")
    lines = list(csv.DictReader(io.StringIO((folders.media / name).read_text())))
    assert lines == [{"name": "ann", "score": "1.5", "tags": ""},
                     {"name": "bob", "score": "2", "tags": '["x", "y"]'}]


def test_given_rows_as_json(live_worker, folders):
    task = wait_final(submit_task("ReportGenerationTaskHandler",
                                  {"report_type": "rows", "format": "json", "rows": ROWS}))
    report = json.loads((folders.media / task.result["file"]).read_text())
    assert (report["report_type"], report["rows"]) == ("rows", ROWS)
    assert task.result["file"].endswith(".json") and task.result["rows"] == 2


def test_task_stats_report_holds_the_live_counters(live_worker, folders):
    echo = wait_final(submit_task("EchoTaskHandler", {}))
    assert echo.status is TaskStatus.COMPLETED
    task = wait_final(submit_task("ReportGenerationTaskHandler",
                                  {"report_type": "task_stats", "format": "csv"}))
    assert task.status is TaskStatus.COMPLETED, task.error
    metrics = {row["metric"]: row["value"]
               for row in csv.DictReader(io.StringIO((folders.media / task.result["file"]).read_text()))}
    assert task.result["rows"] == len(metrics)
    # Counted while the report itself ran: the echo task done, the report task running.
    assert (metrics["total_tasks"], metrics["completed_tasks"], metrics["running_tasks"]) == ("2", "1", "1")
    assert {"queue_sizes.URGENT", "queue_sizes.LOW", "instance_id"} <= set(metrics)
    assert metrics[f"workers.{live_worker.nodename}.active"] == "1"


def test_bad_task_data_fails_at_once_naming_the_field(live_worker, folders):
    assert_each_fails_at_once("ReportGenerationTaskHandler", [(task_data, [field]) for task_data, field in [
        ({"format": "csv"}, "report_type"),
        ({"report_type": "sales", "format": "csv"}, "report_type"),
        ({"report_type": "rows", "format": "xml", "rows": []}, "format"),
        ({"report_type": "rows", "format": "csv"}, "rows"),
        ({"report_type": "rows", "format": "csv", "rows": {"a": 1}}, "rows"),
        ({"report_type": "rows", "format": "csv", "rows": [1, 2]}, "rows"),
        ({"report_type": "task_stats", "format": "json", "rows": [{"a": 1}]}, "rows"),
    ]])
    assert not (folders.media / "reports").exists()


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_written_as_text(live_worker, folders):
    rows = [{"name": '=HYPERLINK("http://evil.example","x")', "note": "+1", "at": "@SUM(A1)", "n": -5}]
    task = wait_final(submit_task("ReportGenerationTaskHandler",
                                  {"report_type": "rows", "format": "csv", "rows": rows}))
    assert task.status is TaskStatus.COMPLETED, task.error
    [line] = list(csv.DictReader(io.StringIO((folders.media / task.result["file"]).read_text())))
    assert line == {"name": '\'=HYPERLINK("http://evil.example","x")', "note": "'+1", "at": "'@SUM(A1)",
                    "n": "-5"}


def test_a_csv_past_the_cell_limit_fails_at_once_naming_rows_and_writes_nothing(live_worker, folders):
    # 1,500 rows with a key each: 1,501 lines x 1,500 columns, 2.25 million cells from ~30 KB of data.
    rows = [{f"k{i}": 1} for i in range(1500)]
    task = wait_final(submit_task("ReportGenerationTaskHandler",
                                  {"report_type": "rows", "format": "csv", "rows": rows}, max_retries=3))
    assert_failed_at_once(task, "rows", "cells; the limit is 1000000")
    assert not (folders.media / "reports").exists()


def test_the_report_is_rendered_off_the_event_loop(live_worker, folders, monkeypatch):
    import asyncio

    from tasks import report_generation

    seen: list[bool] = []
    render = report_generation.render_csv

    def spy(rows):
        try:
            asyncio.get_running_loop()
            seen.append(True)  # called on the handler's event loop
        except RuntimeError:
            seen.append(False)
        return render(rows)

    monkeypatch.setattr(report_generation, "render_csv", spy)
    task = wait_final(submit_task("ReportGenerationTaskHandler",
                                  {"report_type": "rows", "format": "csv", "rows": ROWS}))
    assert task.status is TaskStatus.COMPLETED, task.error
    assert seen == [False]
