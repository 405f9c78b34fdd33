"""DataProcessTaskHandler: streams a CSV file, counting rows and profiling each column."""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, BinaryIO

from easyrag.task_app.async_task_framework import (
    Progress,
    Task,
    TaskDataError,
    TaskHandler,
    open_confined,
    register_task_handler,
    run_step,
)

#: Rows parsed per step off the event loop; between steps progress is written and a cancel lands.
BATCH_ROWS = 5000
INTEGER = re.compile(r"[+-]?\d+")
FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
BOOLEANS = frozenset({"true", "false", "yes", "no"})
#: Candidate types, most specific first; a column's type is the first that fits all its values.
TYPES = ("integer", "float", "boolean", "date", "datetime")


def _is_date(text: str) -> bool:
    try:
        return len(text) == 10 and date.fromisoformat(text) is not None
    except ValueError:
        return False


def _is_datetime(text: str) -> bool:
    try:
        return len(text) > 10 and datetime.fromisoformat(text) is not None
    except ValueError:
        return False


@dataclass
class ColumnProfile:
    """Running figures of one column: constant memory, whatever the file's size."""

    candidates: list[str] = field(default_factory=lambda: list(TYPES))
    count: int = 0
    total: float = 0
    minimum: float | None = None
    maximum: float | None = None

    def add(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        self.count += 1
        if not self.candidates:
            return
        number: float | None = None
        if "integer" in self.candidates and INTEGER.fullmatch(text):
            try:
                number = int(text)
            except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits())
                number = None
        if number is None:
            self._drop("integer")
            number = float(text) if FLOAT.fullmatch(text) else math.nan
            if not math.isfinite(number):  # a word, or a number past float range (1e999)
                self._drop("float")
        if "float" in self.candidates:
            self.total += number
            self.minimum = number if self.minimum is None else min(self.minimum, number)
            self.maximum = number if self.maximum is None else max(self.maximum, number)
        if "boolean" in self.candidates and text.lower() not in BOOLEANS:
            self._drop("boolean")
        if "date" in self.candidates and not _is_date(text):
            self._drop("date")
        if "datetime" in self.candidates and not _is_datetime(text):
            self._drop("datetime")

    def _drop(self, kind: str) -> None:
        if kind in self.candidates:
            self.candidates.remove(kind)

    def summary(self) -> dict[str, Any]:
        kind = "empty" if not self.count else (self.candidates[0] if self.candidates else "string")
        result: dict[str, Any] = {"type": kind, "count": self.count}
        if kind == "integer":
            result.update(min=self.minimum, max=self.maximum, mean=self._mean())
        elif kind == "float":
            result.update(min=float(self.minimum), max=float(self.maximum), mean=self._mean())
        return result

    def _mean(self) -> float | None:
        """The mean, or None when no float can hold it (integers beyond 1.8e308; the record is
        strict JSON, where an infinite float is stored as null too)."""
        try:
            return self.total / self.count
        except OverflowError:
            return None


class CsvProfile:
    """Reads one CSV file in steps of BATCH_ROWS rows; ``bytes_read`` follows the binary stream."""

    def __init__(self, binary: BinaryIO, source: str) -> None:
        self.binary, self.source = binary, source
        self.reader = csv.reader(io.TextIOWrapper(binary, encoding="utf-8-sig", newline=""))
        self.columns: dict[str, ColumnProfile] | None = None  # None until the header is read
        self.rows = 0
        self.done = False

    @property
    def bytes_read(self) -> int:
        return self.binary.tell()

    def step(self) -> None:
        """Parse up to BATCH_ROWS rows (the header first); sets ``done`` at the end of the file."""
        try:
            if self.columns is None:
                self._read_header()
            profiles = list(self.columns.values())
            for _ in range(BATCH_ROWS):
                row = next(self.reader, None)
                if row is None:
                    self.done = True
                    return
                if not row:  # a blank line
                    continue
                if len(row) > len(profiles):
                    raise self._error(f"line {self.reader.line_num} has {len(row)} fields; "
                                      f"the header has {len(profiles)}")
                for profile, value in zip(profiles, row, strict=False):
                    profile.add(value)
                self.rows += 1
        except UnicodeDecodeError as error:
            raise self._error(f"is not UTF-8 text ({error.reason} near line {self.reader.line_num + 1})") \
                from None
        except csv.Error as error:
            raise self._error(f"is not valid CSV at line {self.reader.line_num}: {error}") from None

    def _read_header(self) -> None:
        header = next(self.reader, None) or []
        self.columns = {}
        for position, name in enumerate(header, 1):
            name = name.strip() or f"column_{position}"
            if name in self.columns:
                raise self._error(f"has the column name {name!r} twice in its header")
            self.columns[name] = ColumnProfile()

    def _error(self, problem: str) -> TaskDataError:
        return TaskDataError(f"data_source {self.source!r} {problem}", "data_source")


class DataProcessTaskHandler(TaskHandler):
    """``data_source``: a CSV file inside the file roots (header row first, UTF-8).

    Result ``rows`` and ``columns: {name: {type, count, min, max, mean}}``: ``type`` is integer,
    float, boolean, date, datetime, string or empty (no values); ``count`` the non-empty values;
    ``min, max, mean`` only for integer and float columns.
    """

    fields = ("data_source",)

    async def handle_task(self, task: Task) -> dict[str, Any]:
        source = task.task_data.get("data_source")
        # Opened beneath the roots without following links, then measured on the open file.
        with await run_step(open_confined, source, "data_source") as binary:
            size = os.fstat(binary.fileno()).st_size
            progress = Progress(task, 0, 99)
            profile = CsvProfile(binary, source)
            while not profile.done:
                await run_step(profile.step)
                await progress.report(profile.bytes_read, size, f"{profile.rows} rows read")
        await task.update_progress(100, f"{profile.rows} rows, {len(profile.columns)} columns")
        return {"rows": profile.rows,
                "columns": {name: column.summary() for name, column in profile.columns.items()}}


register_task_handler(DataProcessTaskHandler)
