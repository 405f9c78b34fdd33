"""DocumentParseTaskHandler: RAG ingestion of a Document, in stages INIT -> EXTRACT -> CHUNK -> STORE -> DONE.

task_data: ``document_id``; ``user_id`` (optional, see below); ``resume_from`` (``INIT``,
``EXTRACT``, ``CHUNK`` or ``STORE``; default ``INIT``).  Result: ``{document_id, chunks, characters}``.

Whose parse it is: the record's ``user_id`` (the submitting user, set by the API) when it has one; a
task_data ``user_id`` that differs from it (compared as text) fails the task naming ``user_id``.
Only a record without an owner (submitted from Python without ``user_id``) takes task_data's
``user_id``, or parses as nobody.  A document with an owner may be parsed only as that owner; an
unowned document by anyone.  Staff have no special power here.  Someone else's document fails with
the same text as a missing one (``document 'X' does not exist (or is not yours)``), so ids cannot
be probed, and is left untouched.

INIT always runs (load the document, check its owner, mark it ``parsing``); the stages before
``resume_from`` are skipped and what they saved is reused (see easyrag.documents.pipeline).  Every
progress message starts with its stage's name.  A document problem (missing, someone else's,
unsupported type, corrupt file, nothing saved to resume from) fails the task at once, without
retries (PermanentTaskError); the document then says ``failed`` and why, unless it is missing or
someone else's, which leaves it untouched.

The stages run in threads, off the handler's event loop, so a cancel or a timeout stops the task at
once; the stage still running then stops at its next block (64 KiB of text, 16 KiB of HTML markup,
a PDF page, a batch of stored chunks): each checks the task's stop event per block.

Stage outputs are kept under ``parse/<document id>/`` in storage, a folder only that document's
parse writes (easyrag.documents.pipeline.stage_folder), never beside the source file.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from easyrag.config import get_config
from easyrag.documents.errors import ParseStoppedError
from easyrag.task_app.async_task_framework import (
    PermanentTaskError,
    Task,
    TaskDataError,
    TaskHandler,
    get_choice,
    get_field,
    register_task_handler,
)

logger = logging.getLogger(__name__)

STAGES = ("INIT", "EXTRACT", "CHUNK", "STORE")


@functools.cache
def _parse_executor() -> ThreadPoolExecutor:
    # Not the loop's default executor: an extraction thread waits for its progress writes, which
    # run there, so sharing one pool could deadlock once every thread of it held an extraction.
    return ThreadPoolExecutor(max(4, get_config().max_workers), thread_name_prefix="document-parse")


async def _in_parse_thread(function: Any, *args: Any) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_parse_executor(), functools.partial(function, *args))


def _in_db_thread(function: Any) -> Any:
    """``function`` made awaitable, run in the thread Django's async adapter keeps for the ORM."""
    def call(*args: Any) -> Any:
        close_old_connections()  # as a request would: drop connections that broke or aged out
        try:
            return function(*args)
        finally:
            close_old_connections()

    return sync_to_async(call, thread_sensitive=True)


def _task_data(task: Task) -> tuple[str, Any, str]:
    """(document_id, user_id, resume_from); a bad field fails the task naming it."""
    data = task.task_data
    document_id = str(get_field(data, "document_id", (str, int), "a document id"))
    if not document_id.strip():
        raise TaskDataError("document_id must be a document id, got ''", "document_id")
    return document_id, _parsing_user(task), get_choice(data, "resume_from", STAGES, default="INIT")


def _parsing_user(task: Task) -> Any:
    """The user the parse runs as: the record's owner; task_data's ``user_id`` only without one."""
    given = get_field(task.task_data, "user_id", (str, int), "a user id", default=None)
    if task.user_id is None:
        return given
    if given is not None and str(given) != str(task.user_id):
        raise TaskDataError(f"user_id {given!r} is not the user who submitted this task; a parse runs "
                            "as its submitter and may not name another user", "user_id")
    return task.user_id


def _not_found(document_id: str) -> PermanentTaskError:
    """One text for a missing document and someone else's, so ids cannot be probed."""
    return PermanentTaskError(f"document {document_id!r} does not exist (or is not yours)")


class DocumentParseTaskHandler(TaskHandler):
    """Extract, chunk and store a Document's text; see the module docstring."""

    fields = ("document_id", "user_id", "resume_from")

    async def handle_task(self, task: Task) -> dict[str, Any]:
        from easyrag.documents import errors, pipeline  # needs Django's app registry: import late

        document_id, user_id, resume_from = _task_data(task)
        await task.update_progress(0, f"INIT: loading document {document_id}")
        try:
            document = await _in_db_thread(pipeline.load)(document_id, user_id)
        except (errors.DocumentNotFoundError, errors.DocumentAccessDeniedError):
            raise _not_found(document_id) from None  # missing or not theirs: leave it alone
        except errors.DocumentError as error:
            raise PermanentTaskError(str(error)) from None
        stop = threading.Event()
        try:
            return await self._run(task, document, resume_from, stop)
        except errors.DocumentError as error:
            await _in_db_thread(pipeline.mark_failed)(document_id, str(error))
            raise PermanentTaskError(str(error)) from None
        except asyncio.CancelledError:
            stop.set()  # the stage's thread stops at its next block
            await _in_db_thread(pipeline.mark_failed)(document_id, "parse cancelled or timed out")
            raise
        except Exception as error:  # retried by the task's policy; the document says why meanwhile
            await _in_db_thread(pipeline.mark_failed)(document_id, f"{type(error).__name__}: {error}")
            raise

    async def _run(self, task: Task, document: Any, resume_from: str, stop: threading.Event) -> dict:
        from easyrag.documents import pipeline

        config = get_config()
        start = STAGES.index(resume_from)
        await _in_db_thread(pipeline.mark_parsing)(document.id)
        resuming = f", resuming from {resume_from}" if start else ""
        await task.update_progress(5, f"INIT: document {document.id} ({document.file.name}){resuming}")

        if start <= STAGES.index("EXTRACT"):
            await task.update_progress(10, f"EXTRACT: reading {document.file.name}")
            on_page = _page_reporter(task, asyncio.get_running_loop(), stop)
            characters = await _in_parse_thread(pipeline.extract, document, on_page, stop.is_set)
            await task.update_progress(50, f"EXTRACT: {characters} characters of text saved")
        if start <= STAGES.index("CHUNK"):
            await task.update_progress(55, f"CHUNK: splitting into chunks of up to {config.chunk_size} "
                                           f"characters, overlap {config.chunk_overlap}")
            chunks, characters = await _in_parse_thread(pipeline.chunk, document, config.chunk_size,
                                                        config.chunk_overlap, stop.is_set)
            await task.update_progress(75, f"CHUNK: {chunks} chunks of {characters} characters saved")
        await task.update_progress(80, "STORE: replacing the document's chunks")
        outcome = await _in_db_thread(pipeline.store)(document, stop.is_set)
        await task.update_progress(95, f"STORE: {outcome.chunks} chunks stored")
        await task.update_progress(100, f"DONE: {outcome.chunks} chunks, {outcome.characters} characters")
        logger.info("document %s parsed: %s chunks, %s characters", document.id, outcome.chunks,
                    outcome.characters)
        return outcome.as_result()


def _page_reporter(task: Task, loop: asyncio.AbstractEventLoop, stop: threading.Event):
    """A callback for the extraction thread: records PDF page progress (10-50 %), in order."""
    last = {"percent": -1}

    def on_page(done: int, total: int) -> None:
        if stop.is_set():
            raise ParseStoppedError("parse stopped")
        percent = 10 + 40 * done // total
        if percent != last["percent"]:
            last["percent"] = percent
            report = task.update_progress(percent, f"EXTRACT: page {done} of {total}")
            asyncio.run_coroutine_threadsafe(report, loop).result()  # waits: progress stays in order

    return on_page


register_task_handler(DocumentParseTaskHandler)
