"""BackupTaskHandler on PostgreSQL, end to end: a real worker subprocess dumps a scratch database with
pg_dump, and the archive restores into a second scratch database with the same rows.

Needs PostgreSQL on 127.0.0.1:5432 accepting the ``postgres`` user without a password (CI has it);
skipped only when nothing answers there.  Every database this file creates has a unique
``easyrag_test_<pid>_<random>`` name and is dropped afterwards; no other database is touched.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from easyrag.task_app.async_task_framework import TaskStatus, submit_task
from tests.handlers.conftest import wait_final

HOST, PORT, USER = "127.0.0.1", 5432, "postgres"
#: Rows of the seeded table: quotes, tabs, newlines, backslashes, non-ASCII text and NULL included.
ROWS: list[tuple[int, str, str | None]] = [
    (1, "alpha", "first note"),
    (2, "beta", "it's \"quoted\"\tand\ttabbed"),
    (3, "gamma", "line one\nline two \\ back"),
    (4, "délta ✓", None),
]


def conninfo(dbname: str) -> str:
    return f"host={HOST} port={PORT} user={USER} dbname={dbname} connect_timeout=5"


@pytest.fixture
def scratch_database() -> Iterator[Callable[[], str]]:
    """Factory of empty, uniquely named databases; each one is dropped at teardown, pass or fail."""
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
    except OSError as error:
        pytest.skip(f"PostgreSQL is not reachable at {HOST}:{PORT} ({error}); CI runs this test")
    created: list[str] = []

    def create() -> str:
        name = f"easyrag_test_{os.getpid()}_{secrets.token_hex(4)}"
        with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return name

    yield create
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        for name in created:  # only the databases made here; FORCE ends a connection left open
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def rows_of(dbname: str) -> list[tuple]:
    with psycopg.connect(conninfo(dbname)) as connection:
        return connection.execute("SELECT id, title, body FROM public.notes ORDER BY id").fetchall()


def test_a_postgresql_backup_holds_the_dump_and_restores_the_rows(scratch_database, worker_process,
                                                                  tmp_path: Path) -> None:
    source = scratch_database()
    with psycopg.connect(conninfo(source)) as connection:
        connection.execute("CREATE TABLE public.notes "
                           "(id integer PRIMARY KEY, title text NOT NULL, body text)")
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO public.notes (id, title, body) VALUES (%s, %s, %s)", ROWS)
    backups = tmp_path / "backups"
    worker = worker_process("pgbackup", env={
        "DATABASE_URL": f"postgres://{USER}@{HOST}:{PORT}/{source}",
        "ASYNC_TASK_BACKUP_DIR": str(backups),
    })

    task = wait_final(submit_task("BackupTaskHandler", {"source": "database"}), timeout=60)

    assert task.status is TaskStatus.COMPLETED, (task.error, worker.log_tail())
    archive = Path(task.result["archive"])
    assert archive.parent == backups and archive.name.startswith("database-default-")
    assert sorted(entry.name for entry in backups.iterdir()) == [archive.name]  # no temporary left
    content = archive.read_bytes()
    assert task.result["size"] == len(content)
    assert task.result["sha256"] == hashlib.sha256(content).hexdigest()
    assert task.result["removed"] == [] and task.progress == 100
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["database.sql"]
        tar.extract("database.sql", tmp_path / "restored", filter="data")
    dump = tmp_path / "restored" / "database.sql"
    text = dump.read_text(encoding="utf-8")
    assert "CREATE TABLE public.notes (" in text
    assert "COPY public.notes (id, title, body) FROM stdin;" in text
    lines = text.splitlines()
    for line in ("1\talpha\tfirst note", "2\tbeta\tit's \"quoted\"\\tand\\ttabbed",
                 "3\tgamma\tline one\\nline two \\\\ back", "4\tdélta ✓\t\\N"):
        assert line in lines, line

    target = scratch_database()
    restore = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(PORT),
                              "-U", USER, "--no-password", "-d", target, "-f", str(dump)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert restore.returncode == 0, restore.stderr
    assert rows_of(target) == rows_of(source) == ROWS
