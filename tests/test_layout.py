"""Who may import what: the web UI reaches the engine only through its front door (`engine`, `engine.errors`,
`engine.views`), so the engine's insides can move without breaking it; the engine never imports the web UI
or Flask (`opsflow serve` runs the web server by module name)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT

FRONT_DOOR = {"engine", "engine.errors", "engine.views"}
# The access checker replaces these two (issue 13, one rule); drop them from here when it has.
PENDING = {("webui/pages/cases.py", "engine.definitions.assignment"), ("webui/pages/inbox.py", "engine.tasks.service")}
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
            if module.split(".")[0] == "engine" and module not in FRONT_DOOR and (rel, module) not in PENDING]


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
