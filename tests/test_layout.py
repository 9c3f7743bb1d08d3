"""Who may import what: the web UI reaches the engine only through its front door (`engine`, `engine.errors`,
`engine.views`), so the engine's insides can move without breaking it; the engine never imports the web UI
or Flask (`opsflow serve` runs the web server by module name)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT

FRONT_DOOR = {"engine", "engine.errors", "engine.views"}
WEB = {"webui", "flask", "flask_babel", "flask_wtf", "werkzeug", "gunicorn"}


def imports(package: str, root: Path = ROOT) -> Iterator[tuple[str, int, str]]:
    """(file, line, module) of every absolute import in a package, wherever it sits in the code."""
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
            if isinstance(node, ast.Import):
                yield from ((rel, node.lineno, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield rel, node.lineno, node.module


def behind_the_front_door(root: Path = ROOT) -> list[str]:
    return [f"{rel}:{line}: {module}" for rel, line, module in imports("webui", root)
            if module.split(".")[0] == "engine" and module not in FRONT_DOOR]


def test_the_web_ui_imports_only_the_engines_front_door() -> None:
    assert behind_the_front_door() == []


def test_an_inner_module_imported_inside_a_function_is_found(tmp_path: Path) -> None:
    (tmp_path / "webui" / "pages").mkdir(parents=True)
    (tmp_path / "webui" / "pages" / "late.py").write_text(
        "from engine.views import Actor\n\n\ndef f():\n    import engine.jobs.ticker\n"
        "    from engine.storage.models import HumanTask\n", encoding="utf-8")
    assert behind_the_front_door(tmp_path) == ["webui/pages/late.py:5: engine.jobs.ticker",
                                               "webui/pages/late.py:6: engine.storage.models"]


def test_the_engine_never_imports_the_web_ui_or_flask() -> None:
    web = [f"{rel}:{line}: {module}" for rel, line, module in imports("engine") if module.split(".")[0] in WEB]
    assert web == []


# Layers of engine/, lowest first: a module imports its own layer and the ones below, never above.
LAYERS = [
    ("engine.errors", "engine.config"),
    ("engine.spiff", "engine.storage.db", "engine.storage.models", "engine.storage.migrations"),
    ("engine.context",),
    ("engine.storage.audit", "engine.jobs.queue"),  # the job table: notifications schedule onto it
    ("engine.people",),
    ("engine.definitions",),
    ("engine.configuration",),  # the registers processes read: configuration items, standard changes
    ("engine.cases",),
    ("engine.tasks",),
    ("engine.jobs",),
    ("engine.views", "engine.cli", "engine"),
]


def layer_of(module: str) -> int:
    """The layer of the longest prefix that names the module's package."""
    best = (-1, -1)
    for rank, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best[1]:
                best = (rank, len(name))
    return best[0]


def module_of(rel: str) -> str:
    return rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def upward_imports(root: Path = ROOT) -> list[str]:
    found = []
    for rel, line, module in imports("engine", root):
        if module.split(".")[0] != "engine" or module == "engine" and module_of(rel).startswith("engine.cli"):
            continue  # `from engine import ProcessEngine` is the CLI's way in
        own, other = layer_of(module_of(rel)), layer_of(module)
        if other > own:
            found.append(f"{rel}:{line}: {module} (layer {other} above {own})")
    return found


def test_no_engine_layer_imports_one_above_it() -> None:
    assert upward_imports() == []


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    (tmp_path / "engine" / "people").mkdir(parents=True)
    (tmp_path / "engine" / "people" / "late.py").write_text(
        "from engine.storage.models import User\n\n\ndef f():\n    from engine.cases.runtime import case_data\n",
        encoding="utf-8")
    assert upward_imports(tmp_path) == ["engine/people/late.py:5: engine.cases.runtime (layer 7 above 4)"]


def test_only_engine_spiff_imports_spiffworkflow() -> None:
    outside = [f"{rel}:{line}: {module}" for rel, line, module in imports("engine")
               if module.split(".")[0] == "SpiffWorkflow" and not rel.startswith("engine/spiff/")]
    assert outside == []
