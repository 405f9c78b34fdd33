"""Fixtures of the built-in handler tests: private file roots, storage and backup folders per test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from easyrag.task_app.async_task_framework import submit_task
from easyrag.task_app.records import Task, TaskStatus
from tests.support.waiting import wait_final  # the handler tests import it from here too


@dataclass
class Folders:
    """Where one test's handlers may read and write."""

    root: Path  # the only ASYNC_TASK_FILE_ROOTS entry
    outside: Path  # a folder outside the roots, for escape attempts
    media: Path  # MEDIA_ROOT: Django's default_storage
    backups: Path  # ASYNC_TASK_BACKUP_DIR


@pytest.fixture
def folders(tmp_path: Path, env: Callable[..., None], settings) -> Folders:
    """Point the file roots, MEDIA_ROOT and the backup folder at this test's tmp_path."""
    made = Folders(tmp_path / "root", tmp_path / "outside", tmp_path / "media", tmp_path / "backups")
    for folder in (made.root, made.outside, made.media):
        folder.mkdir()
    settings.MEDIA_ROOT = str(made.media)  # default_storage follows it (setting_changed)
    # env() also clears the config cache, so the in-process worker reads these on its next task.
    env(ASYNC_TASK_FILE_ROOTS=str(made.root), ASYNC_TASK_BACKUP_DIR=str(made.backups))
    return made


def assert_failed_at_once(task: Task, *words: str) -> None:
    """FAILED on the first attempt (a PermanentTaskError), with every word in the error."""
    assert task.status is TaskStatus.FAILED, (task.task_data, task.status, task.error)
    assert task.retries == 0, (task.task_data, task.error)
    for word in words:
        assert word in task.error, (task.task_data, word, task.error)


def assert_each_fails_at_once(task_type: str, cases: list[tuple[dict, list[str]]]) -> None:
    """Submit every (task_data, words) case at once (allowing retries); each must fail at once naming
    its words.  One worker for many cases keeps the suite fast."""
    task_ids = [submit_task(task_type, task_data, max_retries=3) for task_data, _ in cases]
    for task_id, (_, words) in zip(task_ids, cases, strict=True):
        assert_failed_at_once(wait_final(task_id), *words)
