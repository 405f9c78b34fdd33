"""BackupTaskHandler: a .tar.gz of a directory inside the file roots, or of the database.

Archives are written into ASYNC_TASK_BACKUP_DIR (set by the operator, so not confined to the file
roots) atomically: a hidden temporary file in the same folder, renamed into place once complete.
Their names group them by source, ``dir-<name>-<hash of the path>-<time>-<task>.tar.gz`` or
``database-<alias>-<time>-<task>.tar.gz``, so retention (``keep``) prunes only the oldest
archives of the same source, ordered by the UTC time in their names.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import connections

from easyrag.config import get_config
from easyrag.task_app.async_task_framework import (
    PermanentTaskError,
    Progress,
    Task,
    TaskDataError,
    TaskHandler,
    confined_path,
    get_choice,
    get_positive_int,
    open_beneath,
    register_task_handler,
    run_step,
)

logger = logging.getLogger(__name__)

SUFFIX = ".tar.gz"
#: Bytes of files added to the archive per step off the event loop.
STEP_BYTES = 8 * 1024 * 1024
DATABASE_ALIAS = "default"


class HashingWriter:
    """A write-only file object that counts and hashes what passes through to ``file``."""

    def __init__(self, file: Any) -> None:
        self.file, self.size, self.digest = file, 0, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def source_prefix(path: Path | None) -> str:
    """The name prefix shared by every archive of one source (a directory, or the database)."""
    if path is None:
        return f"database-{DATABASE_ALIAS}-"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)[:40] or "root"
    return f"dir-{slug}-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}-"


def prune(folder: Path, prefix: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` archives named ``prefix…`` in ``folder``; returns the names."""
    archives = sorted(entry.name for entry in folder.iterdir()
                      if entry.name.startswith(prefix) and entry.name.endswith(SUFFIX))
    removed = archives[:-keep] if len(archives) > keep else []
    for name in removed:
        (folder / name).unlink(missing_ok=True)
    return removed


def pg_dump_command(settings_dict: dict[str, Any], target: Path) -> tuple[list[str], dict[str, str]]:
    """pg_dump's arguments and environment for a Django PostgreSQL database (as ``dbshell`` builds psql's)."""
    from django.db.backends.postgresql.client import DatabaseClient

    args, env = DatabaseClient.settings_to_cmd_args_env(settings_dict, ["--no-password", f"--file={target}"])
    return ["pg_dump", *args[1:]], {**os.environ, **(env or {})}


def dump_database(folder: Path) -> Path:
    """Dump the default database into ``folder``; returns the dump file (blocking)."""
    connection = connections[DATABASE_ALIAS]
    if connection.vendor == "sqlite":
        target = folder / "database.sqlite3"
        connection.ensure_connection()
        try:
            # SQLite's online backup API: a consistent copy while others keep writing.
            with closing(sqlite3.connect(target)) as copy:
                connection.connection.backup(copy)
        finally:
            connection.close()  # this thread's connection (Django keeps an in-memory database open)
        return target
    if connection.vendor == "postgresql":
        target = folder / "database.sql"
        args, env = pg_dump_command(connection.settings_dict, target)
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pg_dump exited with {done.returncode}: {done.stderr.strip()[:500]}")
        return target
    raise PermanentTaskError(f"source 'database': backups support SQLite and PostgreSQL, "
                             f"not {connection.vendor}")


def directory_entries(root: Path, skip: Path) -> list[tuple[Path, int]]:
    """Every entry under ``root`` (links not followed) with its size, leaving out the ``skip`` folder."""
    entries = [(root, 0)]
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(name for name in dirs if (here / name) != skip)
        for name in sorted(dirs) + sorted(files):
            path = here / name
            try:
                entries.append((path, path.lstat().st_size if name in files else 0))
            except FileNotFoundError:  # gone since the walk listed it
                continue
    return entries


def directory_to_back_up(data: dict[str, Any], folder: Path) -> Path | None:
    """The ``path`` of a ``directory`` source, checked; None for the ``database`` source."""
    source = get_choice(data, "source", ("directory", "database"))
    given = data.get("path")
    if source == "database":
        if given is not None:
            raise TaskDataError("path is only for source 'directory'", "path")
        return None
    path = confined_path(given, "path")
    if not path.is_dir():
        raise TaskDataError(f"path {given!r} is not a directory", "path")
    if path.is_relative_to(folder):  # it would archive its own archives, and the one being written
        raise TaskDataError(f"path {given!r} is inside ASYNC_TASK_BACKUP_DIR", "path")
    return path


class BackupTaskHandler(TaskHandler):
    """``source``: ``directory`` (with ``path``) or ``database``; optional ``keep`` (archives kept).

    Result ``archive`` (absolute path), ``size``, ``sha256``, and ``removed`` (archives pruned).
    Without ``keep`` nothing is pruned.
    """

    fields = ("source", "path", "keep")

    async def handle_task(self, task: Task) -> dict[str, Any]:
        data = task.task_data
        keep = get_positive_int(data, "keep", default=None)
        folder = get_config().backup_dir
        path = directory_to_back_up(data, folder)
        await run_step(folder.mkdir, parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        prefix = source_prefix(path)
        archive = folder / f"{prefix}{stamp}-{task.task_id[:8]}{SUFFIX}"
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{archive.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                writer = HashingWriter(file)
                # Level 6, gzip's own default: tarfile's 9 costs far more time for a few % of size.
                with tarfile.open(fileobj=writer, mode="w:gz", compresslevel=6) as tar:
                    if path is None:
                        await self._add_database(task, tar)
                    else:
                        await self._add_directory(task, tar, path, folder)
                await run_step(os.fsync, file.fileno())
            os.replace(temporary, archive)  # atomic: readers see no archive or a whole one
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        removed = await run_step(prune, folder, prefix, keep) if keep else []
        logger.info("task %s (%s): wrote %s (%s bytes); removed %s", task.task_id, task.task_type,
                    archive, writer.size, removed)
        await task.update_progress(100, f"wrote {archive.name}")
        return {"archive": str(archive), "size": writer.size, "sha256": writer.digest.hexdigest(),
                "removed": removed}

    @staticmethod
    async def _add_directory(task: Task, tar: tarfile.TarFile, root: Path, skip: Path) -> None:
        entries = await run_step(directory_entries, root, skip)
        total = sum(size for _, size in entries)
        progress, done, start = Progress(task, 0, 95), 0, 0
        while start < len(entries):
            end, step = start, 0
            while end < len(entries) and (step < STEP_BYTES or end == start):
                step += entries[end][1]
                end += 1
            await run_step(_add_entries, tar, root, entries[start:end])
            done, start = done + step, end
            await progress.report(done, total, f"archived {end} of {len(entries)} entries")

    @staticmethod
    async def _add_database(task: Task, tar: tarfile.TarFile) -> None:
        await task.update_progress(10, "dumping the database")
        with tempfile.TemporaryDirectory() as scratch:
            dump = await run_step(dump_database, Path(scratch))
            await task.update_progress(60, "compressing the dump")
            await run_step(tar.add, dump, dump.name)


def _add_entries(tar: tarfile.TarFile, root: Path, entries: list[tuple[Path, int]]) -> None:
    """Add ``entries`` (paths under ``root``) without following a link anywhere on their way.

    Each entry is reached from ``root`` one component at a time (``open_beneath``), so a folder
    swapped for a symlink after the walk listed it is skipped, never followed out of the root; a
    regular file is archived from the descriptor opened that way (``fstat``, then its bytes).
    """
    for path, _ in entries:
        parts = path.relative_to(root).parts
        arcname = str(Path(root.name, *parts))
        try:
            info, file = _entry(tar, root, parts, arcname)
        except OSError as error:  # removed, or swapped for a link, while the backup ran
            logger.warning("backup: %s skipped: %s", arcname, error.strerror or error)
            continue
        if info is None:
            continue
        try:
            tar.addfile(info, file)
        finally:
            if file is not None:
                file.close()


def _entry(tar: tarfile.TarFile, root: Path, parts: tuple[str, ...],
           arcname: str) -> tuple[tarfile.TarInfo | None, Any]:
    """The archive header of one entry, and its open file for a regular file (None to skip it)."""
    if parts:
        parent = open_beneath(root, parts[:-1], os.O_RDONLY | os.O_DIRECTORY)
        try:
            status = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if stat.S_ISREG(status.st_mode):
                descriptor = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
                file = os.fdopen(descriptor, "rb")
                info = tar.gettarinfo(arcname=arcname, fileobj=file)  # from fstat of the open file
                if not info.isreg():
                    file.close()
                    return None, None
                return info, file
            link = os.readlink(parts[-1], dir_fd=parent) if stat.S_ISLNK(status.st_mode) else ""
        finally:
            os.close(parent)
    else:
        status, link = os.lstat(root), ""
    info = tarfile.TarInfo(arcname)
    info.mode, info.mtime = stat.S_IMODE(status.st_mode), int(status.st_mtime)
    info.uid, info.gid = status.st_uid, status.st_gid
    if stat.S_ISDIR(status.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(status.st_mode):  # stored as a link, never followed
        info.type, info.linkname = tarfile.SYMTYPE, link
    else:  # FIFOs, sockets, devices: nothing to back up
        return None, None
    return info, None


register_task_handler(BackupTaskHandler)
