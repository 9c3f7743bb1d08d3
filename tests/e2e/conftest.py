"""A live OpsFlow (demo users, real processes) on a free port, and headless Debian chromium.

The e2e tests run in `make test` like every other test (`make test` installs chromium first); a
missing browser is a failure, not a skip, so CI cannot go green without them.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from engine import ProcessEngine
from tests.conftest import ROOT, make_settings
from webui import create_app

SCREENSHOTS = ROOT / "test-output" / "e2e"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test in headless chromium (runs in make test)")


def change_library(tmp: Path) -> Path:
    """processes/ with only what the scenario needs (the change process, its DMN, roles and calendar)."""
    target = tmp / "processes"
    target.mkdir()
    for name in ("change.bpmn", "change_risk.dmn", "roles.json"):
        shutil.copy(ROOT / "processes" / name, target / name)
    shutil.copytree(ROOT / "processes" / "calendar", target / "calendar")
    return target


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ProcessEngine]]:
    tmp = tmp_path_factory.mktemp("e2e")
    engine = ProcessEngine(make_settings(f"sqlite:///{tmp / 'opsflow.db'}", tmp, forms_dir=ROOT / "forms",
                                         processes_dir=change_library(tmp)))
    yield from serving(engine)


def serving(engine: ProcessEngine) -> Iterator[tuple[str, ProcessEngine]]:
    """Initialise with the demo users and serve on a free port until the fixture ends."""
    engine.init(demo=True)
    app = create_app(engine, {"SECRET_KEY": "e2e-secret"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", engine
    finally:
        server.shutdown()
        engine.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: run `make browser` (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
