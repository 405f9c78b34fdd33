"""Imports point one way: no module imports from a layer above its own (docs/architecture.md).

Read from the source with ``ast`` (imports inside functions count too), so the test sees every
arrow without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The layers of docs/architecture.md, lowest first.  A module may import its own layer and those
#: before it.  Names are relative to ``easyrag.``.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "common.redis_utils", "task_app.exceptions", "settings"),
    ("task_app.lock", "task_app.keys", "task_app.scripts", "task_app.queues", "task_app.records"),
    ("task_app.cancellation", "task_app.runner", "task_app.lifeline", "task_app.nodes", "task_app.submission",
     "task_app.result_backend", "task_app.scheduler"),
    ("task_app.base_task", "task_app.interruptions"),
    ("task_app.task_handlers", "task_app.task_data", "task_app.django_tasks"),
    ("task_app.validation", "task_app.stats", "task_app.owners", "task_app.framework", "task_app.throttling",
     "task_app.metrics", "task_app.overview"),
    ("task_app.async_task_framework",),
    ("task_app.serializers", "task_app.views", "task_app.urls", "task_app.apps", "task_app.management",
     "celery", "urls", "dashboard"),
    ("demo", "demo_samples"),
)
#: The legacy consumer stands apart: these are all it may import besides itself.
LEGACY_MAY_IMPORT = ("easyrag.config", "easyrag.common.redis_utils", "easyrag.legacy")
#: ...and these two modules bridge it to the task layer, through the facade.
LEGACY_BRIDGES = {"easyrag.legacy.forward": ("easyrag.task_app.async_task_framework",
                                             "easyrag.task_app.task_handlers"),
                  "easyrag.legacy.celery_handler": ("easyrag.task_app.async_task_framework",)}
#: ...and the one way in from outside: the staff dashboard reads and moves dead letters.
INTO_LEGACY = {"easyrag.dashboard.views": ("easyrag.legacy.dead_letters", "easyrag.legacy.errors")}


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every project module ``path`` imports (easyrag.* and tasks.*), at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in ("easyrag", "easyrag.task_app", "easyrag.common", "easyrag.documents"):
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("easyrag", "tasks")}


def _graph(folder: str) -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted((ROOT / folder).rglob("*.py"))
            if "migrations" not in path.parts}


def _layer(module: str) -> int | None:
    name = module.removeprefix("easyrag.")
    for rank, layer in enumerate(LAYERS):
        if any(name == entry or name.startswith(entry + ".") for entry in layer):
            return rank
    return None


def test_every_task_layer_module_has_a_layer():
    unplaced = [name for name in _graph("easyrag/task_app") if _layer(name) is None
                and name not in ("easyrag.task_app", "easyrag.task_app.management.commands")]
    assert unplaced == [], "add them to LAYERS here and to docs/architecture.md"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in _graph("easyrag").items() if _layer(module) is not None
        for target in targets if (_layer(target) or 0) > _layer(module)
    ]
    assert upward == []


def test_the_layers_have_no_import_cycles():
    graph = {module: {t for t in targets if t.startswith("easyrag.")}
             for module, targets in _graph("easyrag").items()}
    state: dict[str, str] = {}

    def visit(module: str, path: tuple[str, ...]) -> None:
        state[module] = "open"
        for target in graph.get(module, ()):
            assert state.get(target) != "open", "import cycle: " + " -> ".join((*path, target))
            if target not in state:
                visit(target, (*path, target))
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, (module,))


def test_documents_import_nothing_of_the_task_layer_or_the_consumer():
    arrows = [f"{m} imports {t}" for m, targets in _graph("easyrag/documents").items() for t in targets
              if not t.startswith("easyrag.documents")]
    assert arrows == []


def test_the_legacy_consumer_stands_apart_and_only_its_bridges_reach_the_facade():
    arrows = []
    for module, targets in _graph("easyrag/legacy").items():
        allowed = LEGACY_MAY_IMPORT + LEGACY_BRIDGES.get(module, ())
        arrows += [f"{module} imports {t}" for t in targets if not t.startswith(allowed)]
    assert arrows == []
    into_legacy = [f"{m} imports {t}" for m, targets in _graph("easyrag").items()
                   if not m.startswith("easyrag.legacy") for t in targets if t.startswith("easyrag.legacy")
                   and t not in INTO_LEGACY.get(m, ())]
    assert into_legacy == []


def test_nothing_in_easyrag_imports_the_handlers_and_handlers_use_the_facade():
    into_tasks = [f"{m} imports {t}" for m, targets in _graph("easyrag").items() for t in targets
                  if t.split(".")[0] == "tasks"]
    assert into_tasks == []
    handler_imports = {t for targets in _graph("tasks").values() for t in targets}
    below_the_facade = {t for t in handler_imports if t.startswith("easyrag.task_app.")
                        and t not in ("easyrag.task_app.async_task_framework", "easyrag.task_app.exceptions")}
    assert below_the_facade == set()
