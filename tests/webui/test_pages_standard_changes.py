"""The standard-change catalogue in the browser (/standard-changes): anyone signed in reads every template,
its systems, steps, validity and approvers; nothing on the page changes a template."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import ProcessEngine
from tests.conftest import Clock
from tests.processes.conftest import START, Flow, library_engine, library_template
from tests.webui.test_pages_support import Pages
from webui import create_app


@pytest.fixture
def engine(database_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessEngine]:
    eng = library_engine(database_url, tmp_path, Clock(START), library_template(tmp_path_factory))
    yield eng
    eng.close()


@pytest.fixture
def pages(engine: ProcessEngine) -> Pages:
    return Pages(create_app(engine, {"SECRET_KEY": "pages-test", "TESTING": True}).test_client(), engine,
                 Clock(START))


def active_template(engine: ProcessEngine) -> int:
    flow = Flow(engine)
    case = flow.start("standard_change_template", "lina", {"title": "行情参数调整"})
    flow.do(case, "propose", "lina", {
        "title": "行情系统参数调整", "systems": flow.systems("行情"), "steps": ["备份参数", "修改并重载"],
        "rollback_plan": "恢复备份的参数文件", "rollback_tested": True, "validity": "P1Y"})
    flow.do(case, "approve_ops", "liuyang", {"decision": "approve"})
    flow.do(case, "approve_it_head", "zhaolei", {"decision": "approve"})
    return case


def test_signed_in_users_read_the_catalogue_in_chinese(pages: Pages, engine: ProcessEngine) -> None:
    assert pages.get("/standard-changes").status_code == 302  # signed out: to the login page
    pages.sign_in("zhangwei")
    html = pages.get("/standard-changes").text
    assert 'id="no-templates"' in html and "尚无标准变更模板。" in html
    assert 'id="nav-standard-changes"' in html

    case = active_template(engine)
    html = pages.get("/standard-changes").text
    assert re.findall(r'<tr data-template="\d+" data-code="([^"]+)" data-status="([^"]+)">', html) == [
        ("SC-0001", "生效")]
    assert "行情系统参数调整" in html and "备份参数" in html and "回退方案已测试" in html
    assert "liuyang / zhaolei" in html and f"#{case}" in html and "有效期至" in html
    assert 'data-code="SC-0001"' not in pages.get("/standard-changes?status=停用").text
    assert 'data-code="SC-0001"' in pages.get("/standard-changes?status=生效").text
    assert pages.post("/standard-changes", {}).status_code == 405  # read-only
