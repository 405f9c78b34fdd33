"""Progress of a handler's measured work, written to the record only when the percent changes."""

from __future__ import annotations

from easyrag.task_app.records import Task


class Progress:
    """Maps ``done / total`` units of work onto ``start``..``end`` percent of the task."""

    def __init__(self, task: Task, start: int = 0, end: int = 100) -> None:
        self.task, self.start, self.end = task, start, end
        self.last: int | None = None

    async def report(self, done: int, total: int, message: str) -> None:
        """Record the percent for ``done`` of ``total`` (one round trip, skipped when unchanged)."""
        fraction = 1.0 if total <= 0 else min(1.0, done / total)
        percent = self.start + int((self.end - self.start) * fraction)
        if percent != self.last:
            self.last = percent
            await self.task.update_progress(percent, message)
