"""The parse stages of a Document, on Django storage and the database (synchronous).

Each stage saves what the next one needs, beside the document's file in storage, so a parse can
resume from any stage:

    EXTRACT  <file>.extracted.txt   the normalised text (UTF-8)
    CHUNK    <file>.chunks.jsonl    one JSON string per chunk, then a summary line
                                    {"chunks", "characters", "size", "overlap"}
    STORE    Chunk rows             replaced in one transaction, with the status ``parsed``

Files stream through temporary files: no stage holds a whole document's text in memory.
"""

from __future__ import annotations

import codecs
import json
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
from easyrag.documents.extract import PageCallback, document_kind, iter_text
from easyrag.documents.models import Chunk, Document

TEXT_SUFFIX = ".extracted.txt"
CHUNKS_SUFFIX = ".chunks.jsonl"
BATCH = 500


@dataclass(frozen=True)
class Outcome:
    """What the STORE stage leaves: the task's result."""

    document_id: str
    chunks: int
    characters: int

    def as_result(self) -> dict[str, object]:
        return {"document_id": self.document_id, "chunks": self.chunks, "characters": self.characters}


def text_name(document: Document) -> str:
    return document.file.name + TEXT_SUFFIX


def chunks_name(document: Document) -> str:
    return document.file.name + CHUNKS_SUFFIX


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
    return document


def mark_parsing(document_id: str) -> None:
    _set_status(document_id, Document.Status.PARSING)


def mark_failed(document_id: str, error: str) -> None:
    _set_status(document_id, Document.Status.FAILED, error)


def _set_status(document_id: str, status: str, error: str = "") -> None:
    Document.objects.filter(pk=document_id).update(status=status, error=error, updated_at=timezone.now())


# --- EXTRACT ---

def extract(document: Document, on_page: PageCallback | None = None) -> int:
    """Save the document's normalised text in storage; return its length in characters."""
    kind = document_kind(document.file.name)
    storage = document.file.storage
    if not storage.exists(document.file.name):
        raise CorruptDocumentError(f"the file {document.file.name!r} of document {document.id!r} is missing "
                              "from storage")
    with storage.open(document.file.name, "rb") as source, tempfile.TemporaryFile() as spool:
        characters = _write_text(normalize(iter_text(kind, source, on_page)), spool)
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

def chunk(document: Document, size: int, overlap: int) -> tuple[int, int]:
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
        for text in iter_chunks(pieces(source), size, overlap):
            spool.write(json.dumps(text, ensure_ascii=False).encode("utf-8") + b"\n")
            count += 1
        summary = {"chunks": count, "characters": counted["characters"], "size": size, "overlap": overlap}
        spool.write(json.dumps(summary).encode() + b"\n")
        spool.seek(0)
        _replace(storage, chunks_name(document), spool)
    return count, counted["characters"]


# --- STORE ---

def store(document: Document) -> Outcome:
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
    """Write ``content`` under exactly ``name`` (Storage.save would pick another name if it exists)."""
    storage.delete(name)
    saved = storage.save(name, File(content, name=name))
    if saved != name:
        storage.delete(saved)
        raise RuntimeError(f"storage saved {name!r} as {saved!r}: another parse of this document is running")
