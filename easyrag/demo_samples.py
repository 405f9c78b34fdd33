"""The demo's inputs: the files of samples/ put where the handlers read them, and one task per handler.

Files to read go to ``<last file root>/demo/`` (``data/demo/`` by default); documents go to Django
storage as Document rows ``demo-<name>`` (replaced on every run, with their earlier chunks and
saved stage outputs); the upload's destination is cleared so that it keeps its name.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyrag.config import Config
from easyrag.task_app.django_tasks import task

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
DOCUMENTS = ("handbook.pdf", "architecture.html", "quickstart.md")
NOTIFY_CHANNEL = "demo"
#: Where NotificationTaskHandler publishes it: every channel lives under its prefix
#: (``tasks.notification.CHANNEL_PREFIX``; the demo test fails if the two drift apart).
NOTIFY_SUBSCRIBE = "easyrag:notify:" + NOTIFY_CHANNEL
UPLOAD_NAME = "demo/release-notes.txt"


@task()
def count_words(text: str) -> dict[str, Any]:
    """The demo's Django Task: Django's Tasks API (``@task``, ``.enqueue()``) on the same workers."""
    words = text.split()
    return {"words": len(words), "longest": max(words, key=len) if words else ""}


@dataclass
class DemoTask:
    """One task the demo submits, and what became of it."""

    label: str
    task_type: str
    task_data: dict[str, Any]
    task_id: str = ""
    record: Any = field(default=None, repr=False)
    refused: str = ""  # why submit_task refused it (e.g. a handler module missing)


def prepare(config: Config) -> list[DemoTask]:
    """Copy the samples into place and return the tasks to submit, one or more per handler."""
    from django.core.files.storage import default_storage

    workspace = config.file_roots[-1] / "demo"
    for folder in ("data", "upload", "backup"):
        shutil.copytree(SAMPLES / folder, workspace / folder, dirs_exist_ok=True)
    default_storage.delete(UPLOAD_NAME)
    tasks = [DemoTask(f"parse {name}", "DocumentParseTaskHandler",
                      {"document_id": _document(name), "resume_from": "INIT"}) for name in DOCUMENTS]
    return [
        *tasks,
        DemoTask("e-mail", "EmailSendTaskHandler",
                 {"to_email": ["ops@example.com", "dev@example.com"], "subject": "EasyRAG demo",
                  "body": "Sent by the demo through Django's mail API (console backend by default)."}),
        DemoTask("CSV profile", "DataProcessTaskHandler",
                 {"data_source": str(workspace / "data" / "sales.csv")}),
        DemoTask("upload", "FileUploadTaskHandler",
                 {"source_path": str(workspace / "upload" / "release-notes.txt"),
                  "dest_name": UPLOAD_NAME}),
        DemoTask("stats report", "ReportGenerationTaskHandler",
                 {"report_type": "task_stats", "format": "json"}),
        DemoTask("notification", "NotificationTaskHandler",
                 {"channel": "redis", "redis_channel": NOTIFY_CHANNEL,
                  "payload": {"event": "demo", "text": "hello from NotificationTaskHandler"}}),
        DemoTask("backup", "BackupTaskHandler",
                 {"source": "directory", "path": str(workspace / "backup" / "site"), "keep": 3}),
    ]


def _document(name: str) -> str:
    """A fresh Document ``demo-<name>`` holding the sample file; returns its id."""
    from django.core.files import File

    from easyrag.documents.models import Document
    from easyrag.documents.pipeline import chunks_name, text_name

    document_id = "demo-" + name.replace(".", "-")
    old = Document.objects.filter(pk=document_id).first()
    if old is not None:
        for stored in (old.file.name, text_name(old), chunks_name(old)):
            old.file.storage.delete(stored)
        old.delete()
    document = Document(id=document_id)
    with (SAMPLES / "documents" / name).open("rb") as source:
        document.file.save(name, File(source), save=True)
    return document_id


def summarize(task_type: str, result: Any) -> str:
    """One line about a handler's result."""
    if not isinstance(result, dict):
        return repr(result)
    if task_type == "DocumentParseTaskHandler":
        return (f"{result.get('document_id')}: {result.get('chunks')} chunks, "
                f"{result.get('characters')} characters")
    if task_type == "EmailSendTaskHandler":
        return f"sent {result.get('sent')} to {', '.join(result.get('recipients', []))}"
    if task_type == "DataProcessTaskHandler":
        columns = result.get("columns", {})
        kinds = ", ".join(f"{name} ({info.get('type')})" for name, info in columns.items())
        return f"{result.get('rows')} rows; {kinds}"
    if task_type == "FileUploadTaskHandler":
        return f"{result.get('name')}: {result.get('size')} bytes, sha256 {str(result.get('sha256'))[:12]}…"
    if task_type == "ReportGenerationTaskHandler":
        return f"{result.get('file')} ({result.get('rows')} rows)"
    if task_type == "NotificationTaskHandler":
        return (f"{result.get('channel')}: delivered={result.get('delivered')}, "
                f"receivers={result.get('receivers')}")
    if task_type == "BackupTaskHandler":
        return f"{Path(str(result.get('archive'))).name}: {result.get('size')} bytes"
    return ", ".join(f"{key}={value}" for key, value in result.items())
