"""The handler toolkit: confined_path() keeps task-data paths inside ASYNC_TASK_FILE_ROOTS; run_step()
lets a cancel wait for the blocking step in flight before CancelledError reaches the handler."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from easyrag.task_app import task_data
from easyrag.task_app.exceptions import FileAccessError, PermanentTaskError
from easyrag.task_app.task_data import confined_path, run_step


@pytest.fixture
def roots(tmp_path, env):
    first, second, outside = tmp_path / "first", tmp_path / "second", tmp_path / "outside"
    for folder in (first, second, outside):
        folder.mkdir()
    env(ASYNC_TASK_FILE_ROOTS=f"{first},{second}")
    return first, second, outside


def test_a_relative_path_is_taken_against_the_first_root(roots):
    first, _, _ = roots
    assert confined_path("reports/q1.csv", "data_source") == first / "reports" / "q1.csv"
    assert confined_path("a/../b.csv", "data_source") == first / "b.csv"  # ".." that stays inside


def test_an_absolute_path_inside_any_root_is_kept(roots):
    _, second, _ = roots
    (second / "in.csv").write_text("x")
    assert confined_path(str(second / "in.csv"), "data_source") == second / "in.csv"


def test_a_symlink_inside_the_roots_to_a_file_inside_is_followed(roots):
    first, second, _ = roots
    (second / "target.txt").write_text("x")
    (first / "link.txt").symlink_to(second / "target.txt")
    assert confined_path("link.txt", "source_path") == second / "target.txt"


@pytest.mark.parametrize("value", ["../outside/x.csv", "../../etc/passwd", "/etc/passwd", "a/../../x"])
def test_escapes_are_refused_naming_the_field_and_the_path(roots, value):
    with pytest.raises(FileAccessError) as caught:
        confined_path(value, "data_source")
    message = str(caught.value)
    assert message == f"data_source {value!r} resolves outside ASYNC_TASK_FILE_ROOTS"
    assert str(roots[0].parent) not in message  # neither the resolved path nor the roots are echoed
    assert caught.value.field == "data_source"
    assert isinstance(caught.value, PermanentTaskError)  # the task fails at once, never retried


def test_a_symlink_pointing_out_is_refused_as_a_symlink(roots):
    first, _, outside = roots
    (outside / "secret").write_text("x")
    (first / "file-link").symlink_to(outside / "secret")
    (first / "dir-link").symlink_to(outside, target_is_directory=True)
    for value in ("file-link", "dir-link/secret", str(first / "dir-link" / "secret")):
        with pytest.raises(FileAccessError, match=r"symlink .* outside ASYNC_TASK_FILE_ROOTS") as caught:
            confined_path(value, "path")
        assert str(caught.value).startswith(f"path {value!r} is a symlink")
        shown = str(caught.value).replace(value, "")
        assert str(outside) not in shown and str(first) not in shown


@pytest.mark.parametrize("value", [None, 3, "", "  ", "a\x00b", ["a"]])
def test_a_value_that_is_not_a_path_string_is_refused(roots, value):
    with pytest.raises(FileAccessError, match="source_path must be a non-empty path string"):
        confined_path(value, "source_path")


def test_the_roots_are_read_per_call(tmp_path, env):
    env(ASYNC_TASK_FILE_ROOTS=str(tmp_path / "one"))
    assert confined_path("x", "f") == tmp_path / "one" / "x"
    env(ASYNC_TASK_FILE_ROOTS=str(tmp_path / "two"))
    assert confined_path("x", "f") == tmp_path / "two" / "x"
    with pytest.raises(FileAccessError):
        confined_path(str(tmp_path / "one" / "x"), "f")


def test_open_confined_reads_a_file_inside_the_roots(roots):
    first, _, _ = roots
    (first / "sub").mkdir()
    (first / "sub" / "in.csv").write_bytes(b"a,b\n")
    with task_data.open_confined("sub/in.csv", "data_source") as file:
        assert file.read() == b"a,b\n"


def test_open_confined_refuses_a_link_swapped_in_after_the_check(roots, monkeypatch):
    """check-then-open: the check saw regular files; by the open, a link to a secret is there."""
    first, _, outside = roots
    (outside / "secret").write_text("secret")
    (first / "file-link").symlink_to(outside / "secret")
    (first / "dir-link").symlink_to(outside, target_is_directory=True)
    for name in ("file-link", "dir-link/secret"):
        monkeypatch.setattr(task_data, "confined_path", lambda value, field, name=name: first / name)
        with pytest.raises(FileAccessError) as caught:
            task_data.open_confined(name, "source_path")
        assert caught.value.field == "source_path"
        assert str(caught.value).startswith(f"source_path {name!r} ")
        assert str(first) not in str(caught.value) and str(outside) not in str(caught.value)


def test_open_confined_refuses_a_directory_a_fifo_and_a_missing_file_without_blocking(roots):
    first, _, _ = roots
    (first / "folder").mkdir()
    os.mkfifo(first / "pipe")  # opening it to read would wait for a writer without O_NONBLOCK
    for name, problem in [("folder", "is not a file"), ("pipe", "is not a file"),
                          ("missing.csv", "does not exist"), ("folder/missing/x", "does not exist")]:
        with pytest.raises(FileAccessError) as caught:
            task_data.open_confined(name, "data_source")
        assert str(caught.value) == f"data_source {name!r} {problem}"


def test_a_cancelled_step_finishes_before_cancelled_error_is_raised():
    release, finished = threading.Event(), []

    def step() -> None:
        release.wait(10)
        finished.append("step")

    async def scenario() -> None:
        running = asyncio.ensure_future(run_step(step))
        await asyncio.sleep(0)  # one loop turn: the step is now in its thread
        running.cancel()
        done, _ = await asyncio.wait({running}, timeout=0.2)
        assert not done and finished == []  # still waiting for the step, not unwound under it
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert finished == ["step"]

    asyncio.run(scenario())


def test_a_step_returns_its_value_and_raises_its_error():
    async def scenario() -> None:
        assert await run_step(divmod, 7, 2) == (3, 1)
        with pytest.raises(ZeroDivisionError):
            await run_step(divmod, 1, 0)

    asyncio.run(scenario())


def test_the_facade_re_exports_the_toolkit():
    from easyrag.task_app import async_task_framework, exceptions, task_data

    for name in task_data.__all__:
        assert name in async_task_framework.__all__
        assert getattr(async_task_framework, name) is getattr(task_data, name)
    for name in ("TaskDataError", "FileAccessError", "PermanentTaskError"):
        assert getattr(async_task_framework, name) is getattr(exceptions, name)
