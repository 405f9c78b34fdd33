"""BackupTaskHandler: real .tar.gz archives of a directory or of the SQLite database, with retention."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import tarfile
from pathlib import Path

import pytest

from easyrag.task_app.async_task_framework import TaskStatus, submit_task
from tasks.backup import _add_entries, directory_entries, pg_dump_command
from tests.handlers.conftest import assert_each_fails_at_once, assert_failed_at_once, wait_final


def backup(task_data: dict, max_retries: int = 3):
    return wait_final(submit_task("BackupTaskHandler", task_data, max_retries=max_retries), timeout=20)


def archives(folder: Path) -> list[str]:
    """Every file in the backup folder, hidden temporaries included."""
    return sorted(entry.name for entry in folder.iterdir()) if folder.exists() else []


def make_site(root: Path) -> Path:
    site = root / "site"
    (site / "docs" / "deep").mkdir(parents=True)
    (site / "index.html").write_text("<h1>home</h1>")
    (site / "docs" / "deep" / "notes.txt").write_text("n" * 50_000)
    (site / "latest").symlink_to(site / "index.html")
    return site


def test_a_directory_archive_opens_and_its_checksum_matches(live_worker, folders):
    make_site(folders.root)
    task = backup({"source": "directory", "path": "site"})
    assert task.status is TaskStatus.COMPLETED, task.error
    archive = Path(task.result["archive"])
    assert archive.parent == folders.backups and archive.name.endswith(".tar.gz")
    content = archive.read_bytes()
    assert task.result["size"] == len(content)
    assert task.result["sha256"] == hashlib.sha256(content).hexdigest()
    assert archives(folders.backups) == [archive.name]  # no temporary file left behind
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["site", "site/docs", "site/docs/deep", "site/docs/deep/notes.txt",
                                          "site/index.html", "site/latest"]
        assert tar.extractfile("site/docs/deep/notes.txt").read() == b"n" * 50_000
        link = tar.getmember("site/latest")
        assert link.issym() and link.linkname == str(folders.root / "site" / "index.html")
    assert task.progress == 100 and task.result["removed"] == []


def test_the_backup_folder_is_left_out_when_it_lies_inside_the_source(live_worker, folders, env):
    env(ASYNC_TASK_BACKUP_DIR=str(folders.root / "backups"))
    (folders.root / "a.txt").write_text("a")
    first = backup({"source": "directory", "path": str(folders.root)})
    second = backup({"source": "directory", "path": "."})
    for task in (first, second):
        assert task.status is TaskStatus.COMPLETED, task.error
        with tarfile.open(task.result["archive"]) as tar:
            assert sorted(tar.getnames()) == ["root", "root/a.txt"]
    assert_failed_at_once(backup({"source": "directory", "path": "backups"}), "path",
                          "inside ASYNC_TASK_BACKUP_DIR")


def test_retention_keeps_the_newest_archives_of_the_same_source_only(live_worker, folders):
    for name in ("one", "two"):
        (folders.root / name).mkdir()
        (folders.root / name / "f.txt").write_text(name)
    other = backup({"source": "directory", "path": "two"})
    results = [backup({"source": "directory", "path": "one", "keep": 2}) for _ in range(3)]
    names = [Path(task.result["archive"]).name for task in results]
    assert [task.result["removed"] for task in results] == [[], [], [names[0]]]
    assert archives(folders.backups) == sorted([*names[1:], Path(other.result["archive"]).name])
    # The same path written differently (absolute) is the same source.
    again = backup({"source": "directory", "path": str(folders.root / "one"), "keep": 1})
    assert sorted(again.result["removed"]) == names[1:]


@pytest.mark.django_db(transaction=True)
def test_a_sqlite_database_backup_opens_and_holds_the_rows(live_worker, folders, tmp_path,
                                                           django_user_model):
    for name in ("ann", "bob"):
        django_user_model.objects.create_user(username=name, password="x")
    first = backup({"source": "database", "keep": 1})
    assert first.status is TaskStatus.COMPLETED, first.error
    second = backup({"source": "database", "keep": 1})
    assert second.result["removed"] == [Path(first.result["archive"]).name]
    archive = Path(second.result["archive"])
    assert archives(folders.backups) == [archive.name] and archive.name.startswith("database-default-")
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == second.result["sha256"]
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["database.sqlite3"]
        tar.extract("database.sqlite3", tmp_path / "restored", filter="data")
    with sqlite3.connect(tmp_path / "restored" / "database.sqlite3") as restored:
        rows = restored.execute("SELECT username FROM auth_user ORDER BY username").fetchall()
    assert rows == [("ann",), ("bob",)]


def test_an_interrupted_backup_leaves_neither_archive_nor_temporary_file(live_worker, folders):
    big = folders.root / "big"
    big.mkdir()
    for number in range(40):
        (big / f"{number}.bin").write_bytes(os.urandom(1024 * 1024))  # random: gzip gains nothing
    task_id = submit_task("BackupTaskHandler", {"source": "directory", "path": "big"}, timeout=0.2)
    task = wait_final(task_id)
    assert task.status is TaskStatus.TIMEOUT, (task.status, task.error)
    assert archives(folders.backups) == []


def test_bad_task_data_fails_at_once_naming_the_field(live_worker, folders):
    (folders.root / "a.txt").write_text("a")
    assert_each_fails_at_once("BackupTaskHandler", [(task_data, [field]) for task_data, field in [
        ({}, "source"),
        ({"source": "s3"}, "source"),
        ({"source": "directory"}, "path"),
        ({"source": "directory", "path": "a.txt"}, "path"),
        ({"source": "directory", "path": "absent"}, "path"),
        ({"source": "directory", "path": ".", "keep": 0}, "keep"),
        ({"source": "directory", "path": ".", "keep": "2"}, "keep"),
        ({"source": "directory", "path": ".", "keep": True}, "keep"),
        ({"source": "database", "path": "."}, "path"),
    ]])
    assert archives(folders.backups) == []
    task = backup({"source": "directory", "path": "a.txt"})
    assert str(folders.root) not in task.error  # "is not a directory", without the resolved path



def test_paths_out_of_the_roots_are_refused(live_worker, folders):
    (folders.outside / "secret.txt").write_text("secret")
    (folders.root / "out").symlink_to(folders.outside, target_is_directory=True)
    for path, words in (("../outside", ["resolves outside"]), (str(folders.outside), ["resolves outside"]),
                        ("out", ["symlink"])):
        task = backup({"source": "directory", "path": path})
        assert_failed_at_once(task, "path", path, "outside ASYNC_TASK_FILE_ROOTS", *words)
        shown = task.error.replace(path, "")
        assert str(folders.root) not in shown and str(folders.outside) not in shown  # no paths, no roots
    assert archives(folders.backups) == []


def test_pg_dump_gets_the_connection_settings_of_dbshell(tmp_path):
    args, env = pg_dump_command({"NAME": "rag", "USER": "app", "PASSWORD": "s3cret", "HOST": "db.internal",
                                 "PORT": 5433, "OPTIONS": {}}, tmp_path / "database.sql")
    assert args == ["pg_dump", "-U", "app", "-h", "db.internal", "-p", "5433", "--no-password",
                    f"--file={tmp_path / 'database.sql'}", "rag"]
    assert env["PGPASSWORD"] == "s3cret"


def test_the_default_backup_folder_is_backups_in_the_project_outside_media_root(env, settings, tmp_path):
    from easyrag.config import BASE_DIR, get_config

    settings.MEDIA_ROOT = str(tmp_path / "media")
    env(ASYNC_TASK_BACKUP_DIR=None)
    config = get_config()
    assert config.backup_dir == BASE_DIR / "backups"  # dumps hold credentials: never served as media
    assert not config.backup_dir.is_relative_to(config.media_root)
    ignored = subprocess.run(["git", "check-ignore", "-q", str(BASE_DIR / "backups" / "x.tar.gz")],
                             cwd=BASE_DIR, check=False)
    assert ignored.returncode == 0, "backups/ must be ignored by git"


def test_a_folder_swapped_for_a_symlink_after_the_walk_is_skipped_not_followed(tmp_path):
    """The race of issue 14 item 9: the walk lists docs/deep/notes.txt, then docs is replaced by a
    link to a folder outside the root holding a file of the same name; the archive never gets it."""
    site = make_site(tmp_path / "root")
    secret = tmp_path / "outside" / "deep"
    secret.mkdir(parents=True)
    (secret / "notes.txt").write_text("secret outside the root")
    entries = directory_entries(site, tmp_path / "backups")
    (site / "docs" / "deep" / "notes.txt").unlink()
    (site / "docs" / "deep").rmdir()
    (site / "docs").rmdir()
    (site / "docs").symlink_to(tmp_path / "outside")  # the swap, after the walk
    target = tmp_path / "out.tar"
    with tarfile.open(target, "w") as tar:
        _add_entries(tar, site, entries)
    with tarfile.open(target) as tar:
        members = {member.name: member for member in tar.getmembers()}
        contents = [tar.extractfile(m).read() for m in members.values() if m.isreg()]
    assert "site/docs/deep/notes.txt" not in members
    assert all(b"secret" not in content for content in contents)
    assert members["site/index.html"].isreg() and members["site/latest"].issym()
