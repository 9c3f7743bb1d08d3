"""Every audit event of a request says where it came from: the API or the pages, and the peer address."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import ProcessEngine
from tests.conftest import ROOT, Clock
from tests.webui.test_api_support import Api, api, api_clock, api_engine, app  # noqa: F401
from tests.webui.test_pages_support import Pages, library_engine, page_clock, pages  # noqa: F401

PEER = {"REMOTE_ADDR": "10.20.30.40"}


@pytest.fixture
def page_engine(database_url: str, tmp_path: Path, page_clock: Clock) -> Iterator[ProcessEngine]:  # noqa: F811
    """With a private copy of forms/, which the form editor writes to."""
    forms = tmp_path / "forms"
    shutil.copytree(ROOT / "forms", forms)
    eng = library_engine(database_url, tmp_path, page_clock, forms_dir=forms)
    yield eng
    eng.close()


def last(engine: ProcessEngine, action: str):
    return [e for e in engine.audit.events(limit=100_000) if e.action == action][-1]


def test_an_api_call_is_recorded_as_from_the_api_and_its_address(api: Api) -> None:  # noqa: F811
    api.engine.identity.set_password("zhangwei", "s3cret-pw-2026")
    response = api.client.post("/api/v1/auth/token", json={"username": "zhangwei", "password": "s3cret-pw-2026"},
                               environ_base=PEER)
    assert response.status_code == 201
    event = last(api.engine, "token.created")
    assert (event.actor, event.source) == ("zhangwei", "api 10.20.30.40")
    case = api.start("change", "zhangwei", {"title": "A"})
    assert last(api.engine, "case.started").source == "api 127.0.0.1"
    listed = api.ok(api.get(f"/audit?instance_id={case}", "zhangwei"))["items"]
    assert listed[0]["source"] == "api 127.0.0.1"
    assert api.engine.ctx.source.get() == "system"  # nothing leaks past the request


def test_a_page_post_is_recorded_as_from_the_web_and_its_address(pages: Pages) -> None:  # noqa: F811
    pages.sign_in("lina")
    response = pages.post("/substitutes", {"substitute": "wangqiang", "starts": "2026-11-20", "ends": "2026-11-27",
                                           "reason": "休假"}, environ_base=PEER)
    assert response.status_code == 302
    event = last(pages.engine, "substitute.created")
    assert (event.actor, event.source) == ("lina", "web 10.20.30.40")
    assert pages.engine.ctx.source.get() == "system"


def test_a_form_saved_in_the_editor_is_audited_with_its_source(pages: Pages) -> None:  # noqa: F811
    pages.sign_in("maqing")
    schema = {"type": "object", "title": "探针", "required": [], "properties": {"note": {"type": "string"}}}
    response = pages.post("/forms/audit_probe.json", {"schema": json.dumps(schema, ensure_ascii=False)},
                          environ_base=PEER)
    assert response.status_code == 200
    event = last(pages.engine, "form.saved")
    assert (event.actor, event.data["form"], event.source) == ("maqing", "audit_probe.json", "web 10.20.30.40")
