"""The parse stages of a Document, on Django storage and the database (synchronous).

Each stage saves what the next one needs in the document's storage, under a folder that only that
document owns (``parse/<document id>/``, see stage_folder), so a parse can resume from any stage:

    EXTRACT  parse/<id>/extracted.txt   the normalised text (UTF-8)
    CHUNK    parse/<id>/chunks.jsonl    one JSON string per chunk, then a summary line
                                        {"chunks", "characters", "size", "overlap"}
    STORE    Chunk rows                 replaced in one transaction, with the status ``parsed``

A parse writes and deletes only names in its own document's folder, never a name derived from the
file's name (issue 14: ``<file>.extracted.txt`` could be another user's document).  A document
whose file lies inside ``parse/`` is refused.  Deleting a Document deletes its folder's files.

Files stream through temporary files: no stage holds a whole document's text in memory.  Every
stage takes ``should_stop`` (a callable, true once the task was cancelled or timed out) and checks
it per block of work; it then raises extract.ParseStoppedError.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import posixpath
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from django.core.files import File
from django.core.files.storage import Storage
from django.db import transaction
from django.utils import timezone

from easyrag.documents.chunking import iter_chunks, normalize
from easyrag.documents.errors import (
    CorruptDocumentError,
    DocumentAccessDeniedError,
    DocumentNotFoundError,
    MissingStageOutputError,
)
from easyrag.documents.extract import (
    PageCallback,
    StopCheck,
    checked,
    document_kind,
    iter_text,
    never,
    stop_if,
)
from easyrag.documents.models import Chunk, Document

#: The storage folder of stage outputs: ``parse/<document id>/``.  Uploads (upload_to) never go there.
STAGE_FOLDER = "parse"
TEXT_FILE = "extracted.txt"
CHUNKS_FILE = "chunks.jsonl"
BATCH = 500
#: Ids used as they are in a folder name; any other id is hashed (no "/", "..", case clashes).
_PLAIN_ID = re.compile(r"[a-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Outcome:
    """What the STORE stage leaves: the task's result."""

    document_id: str
    chunks: int
    characters: int

    def as_result(self) -> dict[str, object]:
        return {"document_id": self.document_id, "chunks": self.chunks, "characters": self.characters}


def stage_folder(document_id: str) -> str:
    """The storage folder only this document's parse writes: ``parse/<id>``, or ``parse/~<sha256 of
    id>`` for an id that is not plain lower-case letters, digits, ``_`` and ``-``."""
    document_id = str(document_id)
    if _PLAIN_ID.fullmatch(document_id):
        return f"{STAGE_FOLDER}/{document_id}"
    return f"{STAGE_FOLDER}/~{hashlib.sha256(document_id.encode()).hexdigest()}"


def text_name(document: Document) -> str:
    return f"{stage_folder(document.id)}/{TEXT_FILE}"


def chunks_name(document: Document) -> str:
    return f"{stage_folder(document.id)}/{CHUNKS_FILE}"


def in_stage_folder(name: str) -> bool:
    """Whether the storage name ``name`` lies inside the stage-output folder."""
    normal = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
    return normal == STAGE_FOLDER or normal.startswith(STAGE_FOLDER + "/")


def delete_stage_outputs(document: Document) -> None:
    """Delete the stage outputs of ``document`` (its own names only)."""
    storage = document.file.storage
    for name in (text_name(document), chunks_name(document)):
        if storage.exists(name):
            storage.delete(name)


# --- INIT ---

def load(document_id: str, user_id: object = None) -> Document:
    """The document, if it exists and ``user_id`` (when given) may parse it."""
    try:
        document = Document.objects.get(pk=document_id)
    except Document.DoesNotExist:
        raise DocumentNotFoundError(f"document {document_id!r} does not exist") from None
    if user_id is not None and document.owner_id is not None and str(document.owner_id) != str(user_id):
        raise DocumentAccessDeniedError(f"document {document_id!r} does not belong to user {user_id!r}")
    if not document.file.name:
        raise CorruptDocumentError(f"document {document_id!r} has no file")
    if in_stage_folder(document.file.name):
        raise CorruptDocumentError(f"the file {document.file.name!r} of document {document_id!r} is inside "
                                   f"{STAGE_FOLDER}/, where parse stage outputs are kept: refused")
    return document


def mark_parsing(document_id: str) -> None:
    _set_status(document_id, Document.Status.PARSING)


def mark_failed(document_id: str, error: str) -> None:
    _set_status(document_id, Document.Status.FAILED, error)


def _set_status(document_id: str, status: str, error: str = "") -> None:
    Document.objects.filter(pk=document_id).update(status=status, error=error, updated_at=timezone.now())


# --- EXTRACT ---

def extract(document: Document, on_page: PageCallback | None = None, should_stop: StopCheck = never) -> int:
    """Save the document's normalised text in storage; return its length in characters."""
    kind = document_kind(document.file.name)
    storage = document.file.storage
    if not storage.exists(document.file.name):
        raise CorruptDocumentError(f"the file {document.file.name!r} of document {document.id!r} is missing "
                              "from storage")
    with storage.open(document.file.name, "rb") as source, tempfile.TemporaryFile() as spool:
        characters = _write_text(normalize(checked(iter_text(kind, source, on_page, should_stop),
                                                         should_stop)), spool)
        if not characters:
            raise CorruptDocumentError(f"no text found in {document.file.name!r}"
                                  + (" (a scanned PDF needs OCR, which is not supported)" if kind == "pdf"
                                     else ""))
        spool.seek(0)
        _replace(storage, text_name(document), spool)
    return characters


def _write_text(pieces: Iterator[str], binary: IO[bytes]) -> int:
    characters = 0
    for piece in pieces:
        binary.write(piece.encode("utf-8"))
        characters += len(piece)
    return characters


# --- CHUNK ---

def chunk(document: Document, size: int, overlap: int, should_stop: StopCheck = never) -> tuple[int, int]:
    """Split the saved text into chunks and save them; return (chunks, characters)."""
    storage = document.file.storage
    name = text_name(document)
    if not storage.exists(name):
        raise MissingStageOutputError(f"no extracted text saved for document {document.id!r} ({name}): "
                                 "resume from INIT or EXTRACT")
    counted = {"characters": 0}

    def pieces(source: IO[bytes]) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        while block := source.read(64 * 1024):
            text = decoder.decode(block)
            counted["characters"] += len(text)
            yield text

    count = 0
    with storage.open(name, "rb") as source, tempfile.TemporaryFile() as spool:
        for text in iter_chunks(checked(pieces(source), should_stop), size, overlap):
            spool.write(json.dumps(text, ensure_ascii=False).encode("utf-8") + b"\n")
            count += 1
        summary = {"chunks": count, "characters": counted["characters"], "size": size, "overlap": overlap}
        spool.write(json.dumps(summary).encode() + b"\n")
        spool.seek(0)
        _replace(storage, chunks_name(document), spool)
    return count, counted["characters"]


# --- STORE ---

def store(document: Document, should_stop: StopCheck = never) -> Outcome:
    """Replace the document's Chunk rows with the saved chunks and mark it parsed, in one transaction."""
    storage = document.file.storage
    name = chunks_name(document)
    if not storage.exists(name):
        raise MissingStageOutputError(f"no chunks saved for document {document.id!r} ({name}): "
                                 "resume from INIT, EXTRACT or CHUNK")
    with storage.open(name, "rb") as source, transaction.atomic():
        Chunk.objects.filter(document_id=document.id).delete()
        summary: dict | None = None
        batch: list[Chunk] = []
        count = 0
        for number, line in enumerate(source, 1):
            item = _json_line(line, name, number)
            if summary is not None or not isinstance(item, str | dict):
                raise CorruptDocumentError(f"{name} line {number} is not a chunk: saved chunks are damaged; "
                                      "resume from CHUNK")
            if isinstance(item, dict):
                summary = item
                continue
            batch.append(Chunk(document_id=document.id, index=count, text=item))
            count += 1
            if len(batch) == BATCH:
                stop_if(should_stop)  # stopping here rolls the transaction back
                Chunk.objects.bulk_create(batch)
                batch.clear()
        if summary is None or summary.get("chunks") != count:
            raise CorruptDocumentError(f"{name} is incomplete: saved chunks are damaged; resume from CHUNK")
        Chunk.objects.bulk_create(batch)
        _set_status(document.id, Document.Status.PARSED)
    return Outcome(document.id, count, int(summary.get("characters", 0)))


def _json_line(line: bytes, name: str, number: int) -> object:
    try:
        return json.loads(line)
    except ValueError:
        raise CorruptDocumentError(f"{name} line {number} is not JSON: saved chunks are damaged; "
                              "resume from CHUNK") from None


def _replace(storage: Storage, name: str, content: IO[bytes]) -> None:
    """Write ``content`` under exactly ``name``, one of this document's own stage outputs
    (Storage.save would pick another name if it exists)."""
    assert in_stage_folder(name), name  # never a name the parse does not own
    storage.delete(name)
    saved = storage.save(name, File(content, name=name))
    if saved != name:
        storage.delete(saved)
        raise RuntimeError(f"storage saved {name!r} as {saved!r}: another parse of this document is running")
