"""The README and docs/ say what the code does: generated tables match, links resolve, examples run."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from easyrag.task_app.async_task_framework import TaskStatus, get_task_status

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_configuration_doc_is_generated_from_the_settings_table():
    result = subprocess.run([sys.executable, "scripts/config_doc.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_configuration_doc_names_every_setting():
    from easyrag.config import DJANGO_OPTIONS, REDIS_OPTIONS, TASK_OPTIONS

    text = (ROOT / "docs" / "configuration.md").read_text()
    for option in (*TASK_OPTIONS, *REDIS_OPTIONS, *DJANGO_OPTIONS):
        assert (f"`{option.env}`" if option.env else f"['{option.key}']") in text, option


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_resolves_to_a_file_and_heading(path):
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md":
            headings = {_anchor(line.lstrip("#")) for line in linked.read_text().splitlines()
                        if line.startswith("#")}
            if anchor not in headings:
                broken.append(f"{target}: no such heading")
    assert broken == []


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_docs_python_examples_are_valid_python():
    for path in DOCUMENTS:
        for body in _blocks(path, "python"):
            ast.parse(body, filename=str(path))


def test_readme_commands_name_real_actions():
    from scripts.dev import main  # noqa: F401 - the script the commands run

    dev = (ROOT / "scripts" / "dev.py").read_text()
    for body in _blocks(ROOT / "README.md", "bash"):
        for line in body.splitlines():
            command = line.split("#")[0].split()
            if command[:2] == ["python3", "scripts/dev.py"]:
                assert f'"{command[2]}"' in dev, line


def test_readme_python_example_runs_as_written(redis_client, capsys):
    """The README's example, executed with no worker running: the handler registers, the task is
    recorded and waits, the cancel ends it."""
    example = _blocks(ROOT / "README.md", "python")[0]  # the others are checked as Python above
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(example, "README.md", "exec"), namespace)
    task_id = namespace["task_id"]
    assert capsys.readouterr().out.splitlines() == [
        "PENDING", str({"URGENT": 0, "HIGH": 1, "NORMAL": 0, "LOW": 0}), "True"]
    assert get_task_status(task_id).status is TaskStatus.CANCELLED
