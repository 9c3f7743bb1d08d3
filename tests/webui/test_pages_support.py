"""Fixtures for the page tests: the real app over the change process, the demo cast and a fixed clock.

Imported by the test_pages_* modules. Users sign in by session (Argon2 costs ~0.4 s a hash); the
login tests use a password. CSRF is on, as in production: `pages.post` sends the page's token.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient

from engine import ProcessEngine
from tests.conftest import ROOT, Clock, make_settings
from tests.processes.test_change import demo_systems
from webui import create_app

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Friday 2026-11-20 18:00 in Shanghai: after the day session, before the night session.
START = datetime(2026, 11, 20, 18, 0, tzinfo=SHANGHAI)
DEMO_USERS = json.loads((ROOT / "processes" / "demo_users.json").read_text(encoding="utf-8"))
CHANGE = {
    "title": "办公系统参数调整", "change_type": "normal",
    "systems": demo_systems("办公自动化"),
    "purpose": "调整会话超时参数", "window_start": "2026-11-21T10:00:00+08:00",
    "window_end": "2026-11-21T14:00:00+08:00", "plan": "1. 备份参数 2. 修改 3. 重启",
    "rollback_plan": "恢复备份的参数文件并重启", "rollback_tested": True,
    "implementer": "lina", "reviewer": "wangqiang", "business_verifier": "zhoujie",
}
# The same request as the HTML form posts it.
CHANGE_FORM = {
    "title": "办公系统参数调整", "change_type": "normal", "systems": str(demo_systems("办公自动化")[0]),
    "purpose": "调整会话超时参数", "window_start": "2026-11-21T10:00", "window_end": "2026-11-21T14:00",
    "plan": "1. 备份参数 2. 修改 3. 重启", "rollback_plan": "恢复备份的参数文件并重启", "rollback_tested": "true",
    "implementer": "lina", "reviewer": "wangqiang", "business_verifier": "zhoujie",
}


def change_library(tmp: Path) -> Path:
    target = tmp / "processes"
    target.mkdir(exist_ok=True)
    for name in ("change.bpmn", "change_risk.dmn", "roles.json"):
        shutil.copy(ROOT / "processes" / name, target / name)
    shutil.copytree(ROOT / "processes" / "calendar", target / "calendar", dirs_exist_ok=True)
    return target


class Pages:
    """A browser-like client: signs in as a user and posts forms with the CSRF token."""

    def __init__(self, client: FlaskClient, engine: ProcessEngine, clock: Clock) -> None:
        self.client = client
        self.engine = engine
        self.clock = clock

    def sign_in(self, username: str | None) -> None:
        """A signed-in browser without typing the password: a real session record, as a login makes."""
        with self.client.session_transaction() as session:
            session.clear()
            if username:
                session["sid"] = self.engine.identity.open_session(username, "127.0.0.1", timedelta(days=3650))

    def token(self) -> str:
        page = self.client.get("/login", follow_redirects=True)  # the inbox, once signed in
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict[str, Any] | None = None, csrf: bool = True, **kwargs: Any) -> Any:
        body = dict(data or {})
        if csrf:
            body["csrf_token"] = self.token()
        return self.client.post(path, data=body, **kwargs)

    # cases through the engine, as the other users would ---------------------------------------
    def actor(self, username: str) -> Any:
        return self.engine.identity.get(username)

    def start_change(self, by: str = "zhangwei") -> int:
        case = self.engine.runtime.start("change", self.actor(by), {"title": "变更"})
        return case.id

    def open_task(self, instance_id: int, bpmn_id: str) -> Any:
        found = [t for t in self.engine.runtime.show(instance_id).open_tasks if t.bpmn_id == bpmn_id]
        assert len(found) == 1, [t.bpmn_id for t in self.engine.runtime.show(instance_id).open_tasks]
        return found[0]

    def submitted_change(self) -> int:
        """A low-risk change waiting for the ops manager's approval."""
        case = self.start_change()
        task = self.open_task(case, "request")
        self.engine.tasks.complete(task.id, self.actor("zhangwei"), dict(CHANGE))
        return case


@pytest.fixture
def page_clock() -> Clock:
    """A fixed start; SpiffWorkflow's timers follow the engine clock (engine/spiff/patches.py)."""
    return Clock(START)


def library_engine(database_url: str, tmp_path: Path, clock: Clock, forms_dir: Path = ROOT / "forms") -> ProcessEngine:
    """A migrated engine with the change library deployed, the demo users and the demo register."""
    eng = ProcessEngine(make_settings(database_url, tmp_path, forms_dir=forms_dir,
                                      processes_dir=change_library(tmp_path)), clock=clock)
    eng.migrate()
    eng.identity.seed_roles(ROOT / "processes" / "roles.json")
    eng.repository.deploy_directory()
    eng.seed_demo_register()  # the change form picks its systems from the register
    for u in DEMO_USERS:
        eng.identity.add_user(u["username"], u["roles"], u["display_name"])
    return eng


@pytest.fixture
def page_engine(database_url: str, tmp_path: Path, page_clock: Clock) -> Iterator[ProcessEngine]:
    eng = library_engine(database_url, tmp_path, page_clock)
    yield eng
    eng.close()


@pytest.fixture
def pages(page_engine: ProcessEngine, page_clock: Clock) -> Pages:
    app = create_app(page_engine, {"SECRET_KEY": "pages-test", "TESTING": True})
    return Pages(app.test_client(), page_engine, page_clock)
