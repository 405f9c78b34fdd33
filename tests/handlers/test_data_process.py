"""DataProcessTaskHandler: a real CSV streamed from the file roots, with known aggregates."""

from __future__ import annotations

import csv
import os

import pytest

from easyrag.task_app.async_task_framework import TaskStatus, get_task_status, submit_task
from tests.handlers.conftest import assert_each_fails_at_once, assert_failed_at_once, wait_final
from tests.support.waiting import wait_until


def test_profile_of_a_csv_with_known_aggregates(live_worker, folders):
    (folders.root / "people.csv").write_text(
        "\ufeffname,age,score,active,joined,note,blank\n"  # a BOM, as Excel writes it
        "ann,34,1.5,true,2024-01-02,,\n"
        "bob,28,2,no,2023-12-31,hi,\n"
        "\n"
        "cy,,-0.5,yes,2024-02-29,\"x, y\",\n"
        "dee,40,10,false,2022-06-01,z\n",  # a short row: the missing field is empty
        encoding="utf-8",
    )
    task = wait_final(submit_task("DataProcessTaskHandler", {"data_source": "people.csv"}))
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.progress == 100
    assert task.result == {"rows": 4, "columns": {
        "name": {"type": "string", "count": 4},
        "age": {"type": "integer", "count": 3, "min": 28, "max": 40, "mean": 34.0},
        "score": {"type": "float", "count": 4, "min": -0.5, "max": 10.0, "mean": 3.25},
        "active": {"type": "boolean", "count": 4},
        "joined": {"type": "date", "count": 4},
        "note": {"type": "string", "count": 3},
        "blank": {"type": "empty", "count": 0},
    }}


def test_a_large_file_is_streamed_with_progress_by_bytes(live_worker, folders):
    path = folders.root / "big.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "value", "label"])
        for number in range(1, 60_001):
            writer.writerow([number, number % 100, f"row-{number}"])
    task_id = submit_task("DataProcessTaskHandler", {"data_source": str(path)})
    seen: set[int] = set()

    def finished():
        task = get_task_status(task_id)
        seen.add(task.progress)
        return task.status.is_final and task

    task = wait_until(finished, timeout=30, interval=0.01, message="the big CSV")
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.result["rows"] == 60_000
    assert task.result["columns"]["id"] == {"type": "integer", "count": 60_000, "min": 1, "max": 60_000,
                                           "mean": 30_000.5}
    assert task.result["columns"]["value"]["mean"] == pytest.approx(49.5)
    assert task.result["columns"]["label"] == {"type": "string", "count": 60_000}
    assert "60000 rows" in task.message
    assert any(0 < percent < 100 for percent in seen), seen  # progress between start and end


def test_a_header_only_file_has_no_rows_and_empty_columns(live_worker, folders):
    (folders.root / "header.csv").write_text("a,b\n")
    task = wait_final(submit_task("DataProcessTaskHandler", {"data_source": "header.csv"}))
    assert task.result == {"rows": 0, "columns": {"a": {"type": "empty", "count": 0},
                                                  "b": {"type": "empty", "count": 0}}}


def test_a_malformed_file_fails_at_once_naming_data_source(live_worker, folders):
    files = {"long-row.csv": b"a,b\n1,2,3\n", "twice.csv": b"a,a\n1,2\n", "latin1.csv": b"a,b\n\xff\xfe,1\n"}
    for name, content in files.items():
        (folders.root / name).write_bytes(content)
    assert_each_fails_at_once("DataProcessTaskHandler", [
        ({"data_source": "long-row.csv"}, ["data_source", "line 2 has 3 fields; the header has 2"]),
        ({"data_source": "twice.csv"}, ["data_source", "column name 'a' twice"]),
        ({"data_source": "latin1.csv"}, ["data_source", "not UTF-8"]),
    ])


def test_bad_data_source_fails_at_once(live_worker, folders):
    assert_each_fails_at_once("DataProcessTaskHandler", [
        ({}, ["data_source"]),
        ({"data_source": 5}, ["data_source"]),
        ({"data_source": "missing.csv"}, ["data_source", "missing.csv", "does not exist"]),
        ({"data_source": "."}, ["data_source", "not a file"]),
    ])


def test_paths_out_of_the_roots_are_refused(live_worker, folders):
    secret = folders.outside / "secret.csv"
    secret.write_text("password\nhunter2\n")
    (folders.root / "link.csv").symlink_to(secret)
    for source, words in (("../outside/secret.csv", ["resolves outside"]),
                          (str(secret), ["resolves outside"]), ("link.csv", ["symlink"])):
        task = wait_final(submit_task("DataProcessTaskHandler", {"data_source": source}, max_retries=3))
        assert_failed_at_once(task, "data_source", source, "outside ASYNC_TASK_FILE_ROOTS", *words)
        shown = task.error.replace(source, "")
        assert str(folders.root) not in shown and str(folders.outside) not in shown  # no paths, no roots
        assert task.result is None


def test_an_integer_too_long_to_convert_is_profiled_as_text_not_a_raw_value_error(live_worker, folders):
    (folders.root / "long.csv").write_text("n,m\n" + "9" * 5000 + ",1\n2,2\n")
    task = wait_final(submit_task("DataProcessTaskHandler", {"data_source": "long.csv"}, max_retries=0))
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.result["columns"]["n"] == {"type": "string", "count": 2}
    assert task.result["columns"]["m"]["type"] == "integer"


def test_a_fifo_or_directory_fails_at_once_without_blocking(live_worker, folders):
    os.mkfifo(folders.root / "pipe.csv")
    (folders.root / "dir.csv").mkdir()
    assert_each_fails_at_once("DataProcessTaskHandler", [
        ({"data_source": "pipe.csv"}, ["data_source", "'pipe.csv' is not a file"]),
        ({"data_source": "dir.csv"}, ["data_source", "'dir.csv' is not a file"]),
    ])


def test_an_integer_column_whose_mean_no_float_can_hold_has_a_null_mean(live_worker, folders):
    (folders.root / "big.csv").write_text("n\n" + "\n".join([str(10 ** 400)] * 2) + "\n")
    task = wait_final(submit_task("DataProcessTaskHandler", {"data_source": "big.csv"}, max_retries=0))
    assert task.status.value == "COMPLETED", task.error
    assert task.result["columns"]["n"]["mean"] is None
