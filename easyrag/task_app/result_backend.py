"""RecordBackend: Celery's Redis result backend, reading a guarded task's record as its result.

A guarded task's record (``P:task:{id}``) is its one state.  This backend (``result_backend`` in
celeryconfig.py) makes Celery's result API read it:

- **writes**: for a guarded task the worker's result writes (STARTED, SUCCESS, FAILURE, RETRY,
  REVOKED) are dropped: the guard's Lua steps already wrote the record, so no
  ``celery-task-meta-{id}`` exists for it.  Chord bookkeeping (``on_chord_part_return``) runs as
  usual.  Tasks without the guarded base are stored exactly as Celery's Redis backend stores them.
- **reads**: every read of a task's result key also reads the task's record, in the same MGET; a
  record, when there is one, wins and is translated into Celery's result meta (``meta_of_record``).
- **waking**: the guard's final steps (FINISH, CANCEL, an expiry in CLAIM) publish the final record
  on the channel Celery's result consumer subscribes to (the result key's name), so
  ``AsyncResult.get()`` wakes through pub/sub as with Celery's own backend; ``decode_result``
  tells a record from Celery's meta.

State mapping (spec 8): PENDING → PENDING, RUNNING → STARTED (``.info`` is ``{"progress",
"message"}``), RETRYING → RETRY, COMPLETED → SUCCESS (``.result`` is the handler's result), FAILED
and TIMEOUT → FAILURE, CANCELLED → REVOKED (``.get()`` raises with the record's error).
"""

from __future__ import annotations

import json
from typing import Any

from celery import states
from celery.backends.redis import RedisBackend, ResultConsumer
from celery.exceptions import TaskRevokedError

from easyrag.task_app import keys
from easyrag.task_app.exceptions import TaskFailedError, TaskTimeoutError
from easyrag.task_app.records import TaskStatus

#: Celery's state for each record status.
CELERY_STATE = {
    TaskStatus.PENDING: states.PENDING, TaskStatus.RUNNING: states.STARTED,
    TaskStatus.RETRYING: states.RETRY, TaskStatus.COMPLETED: states.SUCCESS,
    TaskStatus.FAILED: states.FAILURE, TaskStatus.TIMEOUT: states.FAILURE,
    TaskStatus.CANCELLED: states.REVOKED,
}


def meta_of_record(record: dict[str, Any]) -> dict[str, Any]:
    """Celery's result meta for a task record (a decoded ``P:task:{id}``)."""
    status = TaskStatus(record["status"])
    error = record.get("error") or ""
    if status is TaskStatus.COMPLETED:
        result: Any = record.get("result")
    elif status is TaskStatus.RUNNING:
        result = {"progress": record.get("progress", 0), "message": record.get("message", "")}
    elif status is TaskStatus.FAILED:
        result = TaskFailedError(error or "failed")
    elif status is TaskStatus.TIMEOUT:
        result = TaskTimeoutError(error or "timed out")
    elif status is TaskStatus.CANCELLED:
        result = TaskRevokedError(error or record.get("message") or "cancelled")
    elif status is TaskStatus.RETRYING:
        result = TaskFailedError(error or "retrying")
    else:
        result = None
    return {
        "task_id": record["task_id"], "status": CELERY_STATE[status], "result": result,
        "traceback": None, "children": [], "date_done": record.get("finished_at"),
        "name": record.get("task_type"), "retries": record.get("retries", 0),
        "worker": record.get("worker"),
    }


def _is_record(payload: Any) -> bool:
    # A record's JSON starts with its task_id (records.py); Celery's meta never does.
    head = payload[:12] if isinstance(payload, bytes | str) else b""
    return head in (b'{"task_id":"', '{"task_id":"')


class RecordResultConsumer(ResultConsumer):
    """Celery's pub/sub result consumer; after a reconnect it also re-reads the records of the
    tasks it waits on (Celery's own re-read looks only at result keys), so a final state
    published while the connection was down is not missed."""

    def _reconnect_pubsub(self) -> None:
        super()._reconnect_pubsub()
        with self._locked():
            waiting = list(self.subscribed_to)
            for value in self.backend.mget(waiting) if waiting else ():
                if value:
                    self.on_state_change(self.backend.decode_result(value), None)


class RecordBackend(RedisBackend):
    """Celery's Redis result backend over the task records (see the module docstring)."""

    ResultConsumer = RecordResultConsumer

    # --- writes ---------------------------------------------------------------------------------

    def store_result(self, task_id: str, result: Any, state: str, traceback: Any = None,
                     request: Any = None, **kwargs: Any) -> Any:
        if self._keeps_a_record(request):
            return result  # the guard's Lua steps wrote the record: no second copy
        return super().store_result(task_id, result, state, traceback, request=request, **kwargs)

    def on_task_call(self, producer: Any, task_id: str) -> None:
        from easyrag.task_app import submission  # the submit path imports this app's backend

        pending = submission.current()
        if pending is not None and not pending.waiter:
            return  # submit_task: nobody waits on this result object, so no subscription
        super().on_task_call(producer, task_id)

    def _keeps_a_record(self, request: Any) -> bool:
        task = self.app.tasks.get(getattr(request, "task", None) or "")
        return bool(getattr(task, "keeps_a_record", False))

    # --- reads ----------------------------------------------------------------------------------

    def get(self, key: bytes | str) -> Any:
        return self.mget([key])[0]

    def mget(self, keys_: list[bytes | str]) -> list[Any]:
        """Celery's values for ``keys_``, where a task result key reads the task's record first
        (one MGET for both)."""
        records = [self._record_key(key) for key in keys_]
        asked = [record for record in records if record is not None]
        values = self.client.mget([*asked, *keys_]) if asked else self.client.mget(keys_)
        found = iter(values[:len(asked)])
        return [
            (next(found) or value) if record is not None else value
            for record, value in zip(records, values[len(asked):], strict=True)
        ]

    def _record_key(self, key: bytes | str) -> str | None:
        name = key.decode() if isinstance(key, bytes) else key
        prefix = self.task_keyprefix
        prefix = prefix.decode() if isinstance(prefix, bytes) else prefix
        return keys.record_key(name[len(prefix):]) if name.startswith(prefix) else None

    def decode_result(self, payload: Any) -> dict[str, Any]:
        if _is_record(payload):
            return meta_of_record(json.loads(payload))
        return super().decode_result(payload)
