"""FileUploadTaskHandler: copies a file from the file roots into Django's default storage."""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import posixpath
from typing import Any, BinaryIO

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.utils import validate_file_name

from easyrag.config import get_config
from easyrag.documents.pipeline import STAGE_FOLDER, in_stage_folder
from easyrag.task_app.async_task_framework import (
    Progress,
    Task,
    TaskDataError,
    TaskHandler,
    confined_path,
    get_text,
    open_confined,
    register_task_handler,
    run_step,
)

logger = logging.getLogger(__name__)

#: Bytes read per step off the event loop.
CHUNK_BYTES = 1024 * 1024


#: Extensions a stored file may have (compared in lower case): documents, data, images and archives
#: that a web server serving MEDIA_ROOT neither runs (.php, .cgi) nor renders as a page of this
#: site with scripts (.html, .svg, .js, .xml).
SAFE_EXTENSIONS = frozenset({
    ".txt", ".md", ".csv", ".tsv", ".json", ".jsonl", ".log", ".pdf",
    ".png", ".jpg", ".jpeg", ".gif", ".webp",
    ".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".bin",
})


def storage_name(value: str) -> str:
    """``dest_name`` as a storage name: relative, forward slashes, no ``..``, a SAFE_EXTENSIONS suffix."""
    try:
        name = validate_file_name(value.strip().replace("\\", "/"), allow_relative_path=True)
    except SuspiciousFileOperation as error:
        raise TaskDataError(f"dest_name {value!r} is not a safe storage name: {error}", "dest_name") from None
    if in_stage_folder(name):  # a document's parse stage outputs: only its own parse writes there
        raise TaskDataError(f"dest_name {value!r} lies in {STAGE_FOLDER}/, which is reserved for "
                            f"document parsing", "dest_name")
    extension = posixpath.splitext(name)[1].lower()
    if extension not in SAFE_EXTENSIONS:
        raise TaskDataError(f"dest_name {value!r} has the extension {extension or '(none)'!r}, not one of "
                            f"{', '.join(sorted(SAFE_EXTENSIONS))}", "dest_name")
    return name


def _too_large(source: str, how: str, limit: int) -> TaskDataError:
    limit_text = f"the limit ASYNC_TASK_MAX_UPLOAD_BYTES = {limit} bytes"
    return TaskDataError(f"source_path {source!r} {how} {limit_text}", "source_path")


class FileUploadTaskHandler(TaskHandler):
    """``source_path`` (a file inside the file roots), optional ``dest_name`` (default: its file name).

    The bytes go to a temporary file first, hashed and counted on the way, and reach storage only
    whole and within the limit, the way Django stores an upload: a file over the limit leaves
    nothing in storage.  Result ``name`` (the storage name, suffixed by storage when taken),
    ``size``, ``sha256``.
    """

    fields = ("source_path", "dest_name")

    async def handle_task(self, task: Task) -> dict[str, Any]:
        source = task.task_data.get("source_path")
        limit = get_config().max_upload_bytes
        # Opened beneath the roots without following links, then measured on the open file.
        reader = await run_step(open_confined, source, "source_path")
        with reader:
            default_name = confined_path(source, "source_path").name
            dest_name = storage_name(get_text(task.task_data, "dest_name", default=default_name))
            size = os.fstat(reader.fileno()).st_size
            if size > limit:
                raise _too_large(source, f"is {size} bytes, over", limit)
            name, copied, digest = await self._store(task, reader, source, dest_name, size, limit)
        logger.info("task %s (%s): stored %s (%s bytes)", task.task_id, task.task_type, name, copied)
        await task.update_progress(100, f"stored {name}")
        return {"name": name, "size": copied, "sha256": digest.hexdigest()}

    async def _store(self, task: Task, reader: BinaryIO, source: str, dest_name: str, size: int,
                     limit: int) -> tuple[str, int, Any]:
        content_type = mimetypes.guess_type(dest_name)[0] or "application/octet-stream"
        upload = TemporaryUploadedFile(dest_name, content_type, size, None)
        try:
            digest, copied = hashlib.sha256(), 0
            progress = Progress(task, 0, 90)
            while chunk := await run_step(self._copy_chunk, reader, upload, digest):
                copied += chunk
                if copied > limit:  # the file grew after the size check
                    raise _too_large(source, "grew past", limit)
                await progress.report(copied, size, f"copied {copied} of {size} bytes")
            upload.size = copied
            upload.seek(0)
            await task.update_progress(95, "saving into storage")
            name = await run_step(default_storage.save, dest_name, upload)
        finally:
            upload.close()  # deletes the temporary file unless storage moved it
        return name, copied, digest

    @staticmethod
    def _copy_chunk(reader: BinaryIO, upload: TemporaryUploadedFile, digest: Any) -> int:
        chunk = reader.read(CHUNK_BYTES)
        upload.write(chunk)
        digest.update(chunk)
        return len(chunk)


register_task_handler(FileUploadTaskHandler)
