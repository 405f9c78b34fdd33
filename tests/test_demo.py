"""The demo, end to end: its own worker, the test Redis, a private database and storage; every handler."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

from easyrag.task_app.async_task_framework import TaskStatus, get_task_status

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
HANDLERS = {"DocumentParseTaskHandler", "EmailSendTaskHandler", "DataProcessTaskHandler",
            "FileUploadTaskHandler", "ReportGenerationTaskHandler", "NotificationTaskHandler",
            "BackupTaskHandler"}


def run_demo(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """``python -m easyrag.demo`` with this test's Redis (REDIS_URL) and folders of its own."""
    summary = tmp_path / "summary.json"
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
                   "MEDIA_ROOT": str(tmp_path / "media"), "ASYNC_TASK_FILE_ROOTS": str(tmp_path / "files"),
                   "ASYNC_TASK_WORKERS": "2", "COLUMNS": "160",
                   "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                   "EMAIL_FILE_PATH": str(tmp_path / "mail"),
                   "ASYNC_TASK_BACKUP_DIR": str(tmp_path / "backups"), **env}
    result = subprocess.run([sys.executable, "-m", "easyrag.demo", "--summary-json", str(summary),
                             "--timeout", "90"], cwd=ROOT, env=environment, capture_output=True, text=True,
                            timeout=180)
    return result, json.loads(summary.read_text()) if summary.exists() else []


def test_demo_runs_a_task_of_every_handler_to_completed(tmp_path):
    result, tasks = run_demo(tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert {task["task_type"] for task in tasks} == HANDLERS
    assert len(tasks) == 9  # three document parses: PDF, HTML, Markdown
    for task in tasks:  # as recorded in Redis, not only as the demo says
        record = get_task_status(task["task_id"])
        assert (record.status, record.result) == (TaskStatus.COMPLETED, task["result"]), task
    assert "9 of 9 tasks completed" in result.stdout and "get_task_stats()" in result.stdout
    assert "Django Task count_words: SUCCESSFUL {'words': 8, 'longest': \"Django's\"}" in result.stdout
    results = {task["label"]: task["result"] for task in tasks}

    with sqlite3.connect(tmp_path / "demo.sqlite3") as database:
        documents = dict(database.execute(
            "SELECT d.id, COUNT(c.id) FROM documents_document d "
            "JOIN documents_chunk c ON c.document_id = d.id WHERE d.status = 'parsed' GROUP BY d.id"))
        pdf_text = database.execute("SELECT group_concat(text, ' ') FROM documents_chunk "
                                    "WHERE document_id = 'demo-handbook-pdf'").fetchone()[0]
    assert documents == {result["document_id"]: result["chunks"]
                         for label, result in results.items() if label.startswith("parse ")}
    assert "Documents and chunks" in pdf_text  # page 2 of the sample PDF

    sample = (SAMPLES / "upload" / "release-notes.txt").read_bytes()
    upload = results["upload"]
    assert (tmp_path / "media" / upload["name"]).read_bytes() == sample
    assert upload["sha256"] == hashlib.sha256(sample).hexdigest()

    report = json.loads((tmp_path / "media" / results["stats report"]["file"]).read_text())
    assert report  # the stats rows, in JSON

    assert results["CSV profile"]["rows"] == 20
    assert results["e-mail"]["sent"] == 2
    mail = "".join(path.read_text() for path in (tmp_path / "mail").iterdir())
    assert mail.count("Subject: EasyRAG demo") == 2 and "To: dev@example.com" in mail
    assert results["notification"]["receivers"] == 1  # the demo listens on the channel
    assert "hello from NotificationTaskHandler" in result.stdout

    with tarfile.open(results["backup"]["archive"]) as archive:
        names = archive.getnames()
    assert any(name.endswith("site/notes/todo.txt") for name in names)
    assert Path(results["backup"]["archive"]).parent == tmp_path / "backups"


def test_demo_exits_1_when_a_task_does_not_complete(tmp_path):
    result, tasks = run_demo(tmp_path, ASYNC_TASK_MAX_UPLOAD_BYTES="10")  # the sample upload is larger
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-4000:]
    statuses = {task["label"]: task["status"] for task in tasks}
    assert statuses.pop("upload") == "FAILED"
    assert set(statuses.values()) == {"COMPLETED"}
    assert "8 of 9 tasks completed" in result.stdout and "ASYNC_TASK_MAX_UPLOAD_BYTES" in result.stdout
