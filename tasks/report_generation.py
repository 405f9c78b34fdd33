"""ReportGenerationTaskHandler: a CSV or JSON report of task statistics or of given rows, in storage."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from easyrag.task_app.async_task_framework import (
    Task,
    TaskDataError,
    TaskHandler,
    get_choice,
    get_field,
    get_task_stats,
    register_task_handler,
    run_step,
)

logger = logging.getLogger(__name__)

REPORT_TYPES = ("task_stats", "rows")
FORMATS = ("csv", "json")


def stats_rows() -> list[dict[str, Any]]:
    """get_task_stats() flattened into ``{"metric", "value"}`` rows (``queue_sizes.URGENT``, ...)."""
    rows: list[dict[str, Any]] = []

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                flatten(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            rows.append({"metric": prefix, "value": value})

    flatten("", get_task_stats())
    return rows


def given_rows(value: Any) -> list[dict[str, Any]]:
    """``rows`` of task data: a list of JSON objects."""
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise TaskDataError(f"rows must be a list of objects, got {str(value)[:80]!r}", "rows")
    return value


#: A text cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: nested values as JSON; text that a spreadsheet would run as a formula
    gets a leading apostrophe, so it is shown as text (numbers are left as they are)."""
    if isinstance(value, dict | list):
        value = json.dumps(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


#: Most cells (rows x columns) a CSV report may have: rows with many different keys multiply.
MAX_REPORT_CELLS = 1_000_000
#: Most characters a report may have once written.
MAX_REPORT_CHARS = 16 * 1024 * 1024


def render_csv(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV: columns in order of first appearance; nested values as JSON (blocking: run_step).

    Raises TaskDataError naming ``rows`` past MAX_REPORT_CELLS cells or MAX_REPORT_CHARS characters.
    """
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = (len(rows) + 1) * len(columns)
    if cells > MAX_REPORT_CELLS:
        raise TaskDataError(f"rows make a CSV of {len(rows) + 1} lines x {len(columns)} columns = {cells} "
                            f"cells; the limit is {MAX_REPORT_CELLS}", "rows")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([csv_cell(column) for column in columns])
    for row in rows:
        writer.writerow([csv_cell(row.get(column, "")) for column in columns])
        if buffer.tell() > MAX_REPORT_CHARS:
            raise TaskDataError(f"rows make a CSV over the limit of {MAX_REPORT_CHARS} characters", "rows")
    return buffer.getvalue()


def render_json(report_type: str, generated: datetime, rows: list[dict[str, Any]]) -> str:
    """The JSON report (blocking: run_step); TaskDataError naming ``rows`` past MAX_REPORT_CHARS."""
    text = json.dumps({"report_type": report_type, "generated_at": generated.isoformat(), "rows": rows},
                      indent=2, default=str)
    if len(text) > MAX_REPORT_CHARS:
        raise TaskDataError(f"rows make a JSON report over the limit of {MAX_REPORT_CHARS} characters",
                            "rows")
    return text


class ReportGenerationTaskHandler(TaskHandler):
    """``report_type`` (task_stats or rows), ``format`` (csv or json), ``rows`` for report_type rows.

    Writes ``reports/<report_type>-<UTC time>-<task id>.<format>`` to default storage; result
    ``file`` (the storage name) and ``rows`` (rows written).
    """

    fields = ("report_type", "format", "rows")

    async def handle_task(self, task: Task) -> dict[str, Any]:
        data = task.task_data
        report_type = get_choice(data, "report_type", REPORT_TYPES)
        file_format = get_choice(data, "format", FORMATS)
        if report_type == "rows":
            rows = given_rows(get_field(data, "rows", list, "a list of objects"))
        elif data.get("rows") is not None:
            raise TaskDataError("rows is only for report_type 'rows'", "rows")
        else:
            await task.update_progress(10, "collecting task statistics")
            rows = await run_step(stats_rows)
        await task.update_progress(50, f"writing {len(rows)} rows as {file_format}")
        generated = datetime.now(UTC)
        # Rendered in a thread: a large report must not hold the event loop other tasks share.
        if file_format == "csv":
            text = await run_step(render_csv, rows)
        else:
            text = await run_step(render_json, report_type, generated, rows)
        name = f"reports/{report_type}-{generated:%Y%m%dT%H%M%SZ}-{task.task_id}.{file_format}"
        name = await run_step(default_storage.save, name, ContentFile(text.encode("utf-8")))
        logger.info("task %s (%s): wrote %s", task.task_id, task.task_type, name)
        await task.update_progress(100, f"wrote {name}")
        return {"file": name, "rows": len(rows)}


register_task_handler(ReportGenerationTaskHandler)
