"""FileUploadTaskHandler: copies a file from the file roots into Django's default storage."""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from pathlib import Path
from typing import Any, BinaryIO

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.utils import validate_file_name

from easyrag.config import get_config
from easyrag.task_app.async_task_framework import (
    Progress,
    Task,
    TaskDataError,
    TaskHandler,
    confined_path,
    get_text,
    register_task_handler,
    run_step,
)

logger = logging.getLogger(__name__)

#: Bytes read per step off the event loop.
CHUNK_BYTES = 1024 * 1024


def storage_name(value: str) -> str:
    """``dest_name`` as a storage name: relative, forward slashes, no ``..``."""
    try:
        return validate_file_name(value.strip().replace("\\", "/"), allow_relative_path=True)
    except SuspiciousFileOperation as error:
        raise TaskDataError(f"dest_name {value!r} is not a safe storage name: {error}", "dest_name") from None


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

    async def handle_task(self, task: Task) -> dict[str, Any]:
        source = task.task_data.get("source_path")
        path = confined_path(source, "source_path")
        dest_name = storage_name(get_text(task.task_data, "dest_name", default=path.name))
        if not path.is_file():
            raise TaskDataError(f"source_path {source!r} is not a file ({path})", "source_path")
        limit = get_config().max_upload_bytes
        size = path.stat().st_size
        if size > limit:
            raise _too_large(source, f"is {size} bytes, over", limit)
        content_type = mimetypes.guess_type(dest_name)[0] or "application/octet-stream"
        upload = TemporaryUploadedFile(dest_name, content_type, size, None)
        try:
            digest, copied = hashlib.sha256(), 0
            progress = Progress(task, 0, 90)
            with await run_step(Path.open, path, "rb") as reader:
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
        logger.info("task %s (%s): stored %s (%s bytes)", task.task_id, task.task_type, name, copied)
        await task.update_progress(100, f"stored {name}")
        return {"name": name, "size": copied, "sha256": digest.hexdigest()}

    @staticmethod
    def _copy_chunk(reader: BinaryIO, upload: TemporaryUploadedFile, digest: Any) -> int:
        chunk = reader.read(CHUNK_BYTES)
        upload.write(chunk)
        digest.update(chunk)
        return len(chunk)


register_task_handler(FileUploadTaskHandler)
