"""FileUploadTaskHandler: a real file copied into default_storage (MEDIA_ROOT), hashed, within the limit."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from easyrag.task_app.async_task_framework import TaskStatus, submit_task
from tests.handlers.conftest import assert_each_fails_at_once, assert_failed_at_once, wait_final


def stored_files(media: Path) -> list[str]:
    return sorted(str(path.relative_to(media)) for path in media.rglob("*") if path.is_file())


def test_a_file_is_copied_into_storage_with_its_size_and_sha256(live_worker, folders):
    content = os.urandom(2 * 1024 * 1024 + 123)  # more than two read steps
    (folders.root / "in").mkdir()
    (folders.root / "in" / "data.bin").write_bytes(content)
    task = wait_final(submit_task("FileUploadTaskHandler", {"source_path": "in/data.bin",
                                                            "dest_name": "uploads/copy.bin"}))
    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.result == {"name": "uploads/copy.bin", "size": len(content),
                           "sha256": hashlib.sha256(content).hexdigest()}
    assert (folders.media / "uploads" / "copy.bin").read_bytes() == content
    assert task.progress == 100
    assert (folders.root / "in" / "data.bin").read_bytes() == content  # a copy, not a move


def test_the_default_name_is_the_file_name_and_a_taken_name_gets_a_new_one(live_worker, folders):
    (folders.root / "notes.txt").write_text("first")
    first = wait_final(submit_task("FileUploadTaskHandler", {"source_path": str(folders.root / "notes.txt")}))
    assert first.result["name"] == "notes.txt"
    second = wait_final(submit_task("FileUploadTaskHandler", {"source_path": "notes.txt"}))
    assert second.status is TaskStatus.COMPLETED, second.error
    assert second.result["name"] != "notes.txt" and second.result["name"].startswith("notes")
    assert len(stored_files(folders.media)) == 2


def test_a_file_over_the_limit_fails_at_once_and_leaves_nothing_in_storage(live_worker, folders, env):
    env(ASYNC_TASK_MAX_UPLOAD_BYTES="1000")
    (folders.root / "big.bin").write_bytes(b"x" * 1001)
    (folders.root / "fits.bin").write_bytes(b"x" * 1000)
    task = wait_final(submit_task("FileUploadTaskHandler", {"source_path": "big.bin"}, max_retries=3))
    assert_failed_at_once(task, "source_path", "1001 bytes", "ASYNC_TASK_MAX_UPLOAD_BYTES = 1000")
    assert stored_files(folders.media) == []
    fits = wait_final(submit_task("FileUploadTaskHandler", {"source_path": "fits.bin"}))
    assert fits.result["size"] == 1000 and stored_files(folders.media) == ["fits.bin"]


def test_bad_task_data_fails_at_once_naming_the_field(live_worker, folders):
    (folders.root / "a.bin").write_bytes(b"abc")
    assert_each_fails_at_once("FileUploadTaskHandler", [
        ({}, ["source_path", "non-empty path string"]),
        ({"source_path": "absent.bin"}, ["source_path", "does not exist"]),
        ({"source_path": "."}, ["source_path", "not a file"]),
        ({"source_path": "a.bin", "dest_name": "../escape.bin"}, ["dest_name", "not a safe storage name"]),
        ({"source_path": "a.bin", "dest_name": "/etc/cron.d/x"}, ["dest_name", "not a safe storage name"]),
        ({"source_path": "a.bin", "dest_name": "dir/"}, ["dest_name", "not a safe storage name"]),
        ({"source_path": "a.bin", "dest_name": 7}, ["dest_name", "string"]),
    ])
    assert stored_files(folders.media) == []
    assert not (folders.root.parent / "escape.bin").exists()


def test_paths_out_of_the_roots_are_refused(live_worker, folders):
    secret = folders.outside / "secret.bin"
    secret.write_bytes(b"secret")
    (folders.root / "link.bin").symlink_to(secret)
    for source, words in (("../outside/secret.bin", ["resolves outside"]),
                          (str(secret), ["resolves outside"]), ("link.bin", ["symlink"])):
        task = wait_final(submit_task("FileUploadTaskHandler", {"source_path": source}, max_retries=3))
        assert_failed_at_once(task, "source_path", source, "outside ASYNC_TASK_FILE_ROOTS", *words)
        shown = task.error.replace(source, "")
        assert str(folders.root) not in shown and str(folders.outside) not in shown  # no paths, no roots
    assert stored_files(folders.media) == []


def test_dest_name_must_have_a_safe_extension(live_worker, folders):
    (folders.root / "page.bin").write_bytes(b"<script>alert(1)</script>")
    (folders.root / "page.html").write_bytes(b"<script>alert(1)</script>")
    assert_each_fails_at_once("FileUploadTaskHandler", [
        ({"source_path": "page.bin", "dest_name": name}, ["dest_name", "extension", ".pdf"])
        for name in ("x.html", "x.HTM", "x.svg", "run.php", "run.js", "noext", "dir/x.xhtml")
    ] + [({"source_path": "page.html"}, ["dest_name", "'.html'"])])  # the default name is checked too
    assert stored_files(folders.media) == []
    task = wait_final(submit_task("FileUploadTaskHandler", {"source_path": "page.bin",
                                                            "dest_name": "a/B.PDF"}))
    assert task.result["name"] == "a/B.PDF", task.error


def test_dest_name_in_the_parse_stage_folder_is_refused(live_worker, folders):
    """A document's stage outputs (parse/<id>/...) are written only by its own parse."""
    (folders.root / "text.txt").write_text("not the document's text")
    assert_each_fails_at_once("FileUploadTaskHandler", [
        ({"source_path": "text.txt", "dest_name": name}, ["dest_name", "reserved for document parsing"])
        for name in ("parse/doc_123/extracted.txt", "parse/~1f2e/chunks.jsonl", "./parse/x.txt")
    ])
    assert stored_files(folders.media) == []


def test_unreadable_sources_fail_at_once_with_a_field_error(live_worker, folders):
    """OSErrors become field errors (not retried) that show neither the roots nor absolute paths."""
    (folders.root / "locked.bin").write_bytes(b"x")
    (folders.root / "locked.bin").chmod(0)
    os.mkfifo(folders.root / "pipe.bin")  # opening it to read would wait for a writer
    (folders.root / "dir.bin").mkdir()
    cases = [({"source_path": "pipe.bin"}, ["source_path", "is not a file"]),
             ({"source_path": "dir.bin"}, ["source_path", "is not a file"]),
             ({"source_path": "dir.bin/inner.bin"}, ["source_path", "does not exist"])]
    if os.geteuid() != 0:  # root reads anything
        cases.append(({"source_path": "locked.bin"}, ["source_path", "permission denied"]))
    task_ids = [submit_task("FileUploadTaskHandler", data, max_retries=3) for data, _ in cases]
    for task_id, (_, words) in zip(task_ids, cases, strict=True):
        task = wait_final(task_id)
        assert_failed_at_once(task, *words)
        assert str(folders.root) not in task.error
    assert stored_files(folders.media) == []
