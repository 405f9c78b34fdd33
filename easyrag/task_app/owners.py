"""A user's recent tasks: the owner index SUBMIT keeps, read a page at a time (no key scans)."""

from __future__ import annotations

from typing import Any

from easyrag.common.redis_utils import get_redis_instance
from easyrag.task_app import keys
from easyrag.task_app.records import Task


def owns(task: Task, user: Any) -> bool:
    """True when ``user`` may see and cancel ``task``: its owner, or staff."""
    return bool(user.is_staff) or (task.user_id is not None and str(task.user_id) == str(user.pk))


class OwnerTasks:
    """The tasks submitted with ``user_id``, newest first, sliceable like a queryset.

    Django's Paginator calls ``count()`` and slices: each page costs two round trips (ZREVRANGE,
    MGET).  An entry whose record expired is skipped on its page but stays in the index (and in
    ``count()``) until SUBMIT trims it, so that reading a page never shifts the next one.
    """

    def __init__(self, user_id: Any) -> None:
        self.index = keys.owner_index_key(user_id)
        self.client = get_redis_instance()

    def count(self) -> int:
        """How many tasks the index lists (one round trip; may include expired records)."""
        return self.client.zcard(self.index)

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, window: slice) -> list[Task]:
        if not isinstance(window, slice):
            raise TypeError("OwnerTasks supports slices only")
        start, stop = window.start or 0, window.stop
        ids = self.client.zrevrange(self.index, start, -1 if stop is None else stop - 1)
        if not ids:
            return []
        texts = self.client.mget([keys.record_key(task_id) for task_id in ids])
        return [Task.from_json(text) for text in texts if text is not None]
