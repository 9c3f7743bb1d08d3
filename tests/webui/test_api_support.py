"""Fixtures for the REST API tests: the real app over an engine with the process library and demo cast.

Imported by the test_api_* modules (`from tests.webui.test_api_support import ...`). Users get
tokens, not passwords (Argon2 costs ~0.4 s a hash); one test logs in with a password.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine import ProcessEngine
from engine.errors import LintFailed
from engine.spiff.parsing import SourceFile
from tests.conftest import ROOT, Clock, make_settings
from webui import create_app

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Friday 2026-11-20 18:00 in Shanghai: after the day session, before the night session.
START = datetime(2026, 11, 20, 18, 0, tzinfo=SHANGHAI)
DEMO_USERS = json.loads((ROOT / "processes" / "demo_users.json").read_text(encoding="utf-8"))


class Api:
    """A test client that speaks as a user: `api.post("/tasks/1/claim", as_="liuyang")`."""

    def __init__(self, client: FlaskClient, engine: ProcessEngine) -> None:
        self.client = client
        self.engine = engine
        self._tokens: dict[str, str] = {}

    def token(self, username: str) -> str:
        if username not in self._tokens:
            self._tokens[username] = self.engine.identity.create_token(username)
        return self._tokens[username]

    def headers(self, username: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"} if username else {}

    def call(self, method: str, path: str, as_: str | None = None, json: Any = None, **kwargs: Any) -> Any:
        return self.client.open(f"/api/v1{path}", method=method, headers=self.headers(as_), json=json, **kwargs)

    def get(self, path: str, as_: str | None = None, **kwargs: Any) -> Any:
        return self.call("GET", path, as_, **kwargs)

    def post(self, path: str, as_: str | None = None, json: Any = None, **kwargs: Any) -> Any:
        return self.call("POST", path, as_, json if json is not None else {}, **kwargs)

    def ok(self, response: Any, status: int = 200) -> Any:
        assert response.status_code == status, response.get_json()
        return response.get_json()

    # driving cases the way another system would --------------------------------------------------
    def start(self, process_id: str, as_: str, data: dict[str, Any] | None = None) -> int:
        body = self.ok(self.post("/instances", as_, {"process_id": process_id, "data": data or {}}), 201)
        return body["id"]

    def case(self, instance_id: int, as_: str = "zhuhong") -> dict[str, Any]:
        return self.ok(self.get(f"/instances/{instance_id}", as_))

    def open_task(self, instance_id: int, name: str, assignee: str | None = None) -> dict[str, Any]:
        found = [t for t in self.case(instance_id)["open_tasks"]
                 if t["name"] == name and (assignee is None or t["assignee"] == assignee)]
        assert len(found) == 1, self.case(instance_id)["open_tasks"]
        return found[0]

    def do(self, instance_id: int, name: str, as_: str, data: dict[str, Any],
           assignee: str | None = None) -> dict[str, Any]:
        """Find the task in the user's inbox, claim it when it sits in a queue, complete it."""
        task = self.open_task(instance_id, name, assignee)
        inbox = self.ok(self.get("/tasks?scope=all&limit=500", as_))["items"]
        assert task["id"] in {t["id"] for t in inbox}, f"{name} is not in {as_}'s inbox"
        if task["assignee"] is None:
            self.ok(self.post(f"/tasks/{task['id']}/claim", as_))
        return self.ok(self.post(f"/tasks/{task['id']}/complete", as_, {"data": data}))


def deploy_library(eng: ProcessEngine) -> None:
    """processes/ as `opsflow init` deploys it; if one process fails lint, every other one still deploys."""
    try:
        eng.repository.deploy_directory(ROOT / "processes")
    except LintFailed:
        files = sorted((ROOT / "processes").iterdir())
        dmn = [SourceFile(p.name, p.read_bytes()) for p in files if p.suffix == ".dmn"]
        for bpmn in (p for p in files if p.suffix == ".bpmn"):
            with contextlib.suppress(LintFailed):
                eng.repository.deploy([SourceFile(bpmn.name, bpmn.read_bytes()), *dmn])


def make_engine(database_url: str, tmp_path: Path, clock: Clock) -> ProcessEngine:
    eng = ProcessEngine(make_settings(database_url, tmp_path, forms_dir=ROOT / "forms"), clock=clock)
    eng.migrate()
    eng.identity.seed_roles(ROOT / "processes" / "roles.json")
    deploy_library(eng)
    eng.seed_demo_register()
    for u in DEMO_USERS:
        eng.identity.add_user(u["username"], u["roles"], u["display_name"])
    return eng


@pytest.fixture
def api_clock() -> Clock:
    """The engine's clock, which SpiffWorkflow's timers follow too (tests move time, never sleep)."""
    return Clock(START)


@pytest.fixture
def api_engine(database_url: str, tmp_path: Path, api_clock: Clock) -> Iterator[ProcessEngine]:
    eng = make_engine(database_url, tmp_path, api_clock)
    yield eng
    eng.close()


@pytest.fixture
def app(api_engine: ProcessEngine) -> Flask:
    return create_app(api_engine, {"TESTING": True})


@pytest.fixture
def api(app: Flask, api_engine: ProcessEngine) -> Api:
    return Api(app.test_client(), api_engine)
