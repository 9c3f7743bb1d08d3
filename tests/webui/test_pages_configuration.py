"""The configuration items register in the browser (/config-items) and the API: anyone signed in lists,
searches, opens an item (relations, history, the linked cases they may read) and exports CSV / XLSX /
JSON; only a config manager imports, and a bad file is refused whole with each row's problem listed."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from engine import ProcessEngine
from engine.storage.models import AuditEvent, CaseItem
from tests.conftest import Clock
from tests.engine.test_configuration_browse import ITEMS, library_engine
from tests.processes.conftest import START
from tests.webui.test_pages_support import Pages
from webui import create_app


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[ProcessEngine]:
    eng = library_engine(database_url, tmp_path)
    eng.configuration.import_items(eng.identity.get("mazhen"), json.dumps(ITEMS, ensure_ascii=False),
                                   "config_items.json")
    yield eng
    eng.close()


@pytest.fixture
def pages(engine: ProcessEngine) -> Pages:
    return Pages(create_app(engine, {"SECRET_KEY": "pages-test", "TESTING": True}).test_client(), engine,
                 Clock(START))


def names(html: str) -> list[str]:
    """The item names of the register table's rows, in order."""
    return re.findall(r'<tr data-item="\d+" data-name="([^"]+)">', html)


def ids(engine: ProcessEngine) -> dict[str, int]:
    return {i.name: i.id for i in engine.configuration.list_items()}


def upload(pages: Pages, content: bytes, file_name: str) -> Any:
    return pages.post("/config-items/import", {"file": (io.BytesIO(content), file_name)})


def ci_events(engine: ProcessEngine) -> int:
    with engine.ctx.db.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action.like("ci.%"))) or 0


def api_get(pages: Pages, path: str, username: str) -> Any:
    token = pages.engine.identity.create_token(username)
    return pages.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {token}"})


def test_anyone_signed_in_lists_and_searches_the_register(pages: Pages, engine: ProcessEngine) -> None:
    assert pages.get("/config-items").status_code == 302  # signed out: to the login page
    pages.sign_in("zhangwei")  # staff: no grant needed to browse
    html = pages.get("/config-items").text
    assert 'id="nav-config-items"' in html and "配置项" in html and "导出" in html
    assert names(html) == [i.name for i in engine.configuration.list_items()] and len(names(html)) == len(ITEMS)
    row = html.split('data-name="集中交易"')[1].split("</tr>")[0]
    assert all(text in row for text in ("核心交易", "一类", "SSE, SZSE", "生产", "运维负责人", "wang / chen",
                                        "恒生电子", "UF2.0 V202601", "在用"))
    assert f'href="/config-items/{ids(engine)["集中交易"]}"' in row
    assert names(pages.get("/config-items?search=期货").text) == ["期货主机", "期货交易"]
    assert names(pages.get("/config-items?search=cffex").text) == ["期货交易"]
    assert 'id="no-items"' in pages.get("/config-items?search=不存在的系统").text
    assert 'id="import-form"' not in html  # importing is the config manager's
    pages.sign_in("mazhen")
    assert 'id="import-form"' in pages.get("/config-items").text
    listed = api_get(pages, "/config-items?search=期货", "zhangwei").json["items"]
    assert [(i["name"], i["class_label"], i["markets"]) for i in listed] == [
        ("期货主机", "核心交易", []), ("期货交易", "核心交易", ["CFFEX", "CZCE", "DCE", "INE", "SHFE"])]


def test_the_item_page_shows_relations_both_ways_and_the_reimported_version_from_to(
        pages: Pages, engine: ProcessEngine) -> None:
    pages.sign_in("mazhen")
    changed = [dict(i, version="UF2.0 V202612") if i["name"] == "集中交易" else i for i in ITEMS]
    response = upload(pages, json.dumps(changed, ensure_ascii=False).encode(), "config_items.json")
    assert response.status_code == 302
    assert "0 个新建，1 个更新，6 个未变" in pages.get("/config-items").text
    pages.sign_in("zhangwei")
    item = ids(engine)["集中交易"]
    html = pages.get(f"/config-items/{item}").text
    assert '<td id="item-version">UF2.0 V202612</td>' in html
    history = html.split('id="item-history"')[1]
    changed_row = history.split('data-action="ci.updated"')[1].split("</tr>")[0]
    assert "mazhen" in changed_row and '<li data-field="version">版本: <span class="from">UF2.0 V202601</span> → ' \
                                      '<span class="to">UF2.0 V202612</span></li>' in changed_row
    assert 'data-action="ci.created"' in history and "登记" in history
    relations = html.split('id="item-relations"')[1].split("</aside>")[0]
    assert f'<a href="/config-items/{ids(engine)["清算"]}" data-relation="depends_on">清算</a>' in relations
    assert f'<a href="/config-items/{ids(engine)["网上交易"]}" data-used-by="depends_on">网上交易</a>' in relations
    assert "依赖" in relations and "运行于" in relations
    detail = api_get(pages, f"/config-items/{item}", "zhangwei").json
    assert detail["item"]["version"] == "UF2.0 V202612"
    assert detail["history"][-1]["changes"] == [{"field": "version", "before": "UF2.0 V202601",
                                                 "after": "UF2.0 V202612"}]
    assert {(r["name"], r["kind"]) for r in detail["used_by"]} == {("清算", "depends_on"), ("网上交易", "depends_on")}
    assert pages.get("/config-items/99999").status_code == 404
    assert api_get(pages, "/config-items/99999", "zhangwei").status_code == 404
    assert api_get(pages, "/config-items/abc", "zhangwei").status_code == 404


def test_linked_cases_show_only_to_those_who_may_read_them(pages: Pages, engine: ProcessEngine) -> None:
    case = engine.runtime.start("incident", engine.identity.get("zhangwei"), {"title": "集中交易委托超时"}).id
    item = ids(engine)["集中交易"]
    with engine.ctx.db.transaction() as s:
        s.add(CaseItem(instance_id=case, item_id=item, linked_at=engine.ctx.now(), linked_by="zhangwei"))
    pages.sign_in("zhangwei")  # the reporter
    cases = pages.get(f"/config-items/{item}").text.split('id="item-cases"')[1].split("</section>")[0]
    assert f'<tr data-case="{case}">' in cases and f'href="/cases/{case}"' in cases
    assert "集中交易委托超时" in cases and "running" in cases
    pages.sign_in("huangmin")  # a test lead takes no part in the incident
    cases = pages.get(f"/config-items/{item}").text.split('id="item-cases"')[1].split("</section>")[0]
    assert "集中交易委托超时" not in cases and 'id="no-cases"' in cases
    assert pages.get(f"/cases/{case}").status_code == 403  # the same rule as the case page
    assert api_get(pages, f"/config-items/{item}", "huangmin").json["cases"] == []
    assert [c["instance_id"] for c in api_get(pages, f"/config-items/{item}", "liuyang").json["cases"]] == [case]


def test_the_csv_export_imports_back_unchanged_through_the_page(pages: Pages, engine: ProcessEngine) -> None:
    pages.sign_in("zhangwei")  # anyone signed in exports
    response = pages.get("/config-items/export.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="config-items.csv"' in response.headers["Content-Disposition"]
    text = response.data.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("name,class,system_class,category,markets")
    assert "期货交易,核心交易,一类,期货交易,CFFEX;CZCE;DCE;INE;SHFE" in text
    before, events = engine.configuration.list_items(), ci_events(engine)
    pages.sign_in("mazhen")
    assert upload(pages, response.data, "config-items.csv").status_code == 302
    assert "0 个新建，0 个更新，7 个未变" in pages.get("/config-items").text
    assert engine.configuration.list_items() == before and ci_events(engine) == events + 1  # ci.imported only
    searched = pages.get("/config-items/export.json?search=期货").json
    assert [i["name"] for i in searched] == ["期货主机", "期货交易"]


def test_the_xlsx_export_opens_with_every_item(pages: Pages, engine: ProcessEngine) -> None:
    pages.sign_in("zhangwei")
    response = pages.get("/config-items/export.xlsx")
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    rows = list(load_workbook(io.BytesIO(response.data)).active.iter_rows(values_only=True))
    assert rows[0][:3] == ("name", "class", "system_class")
    assert [r[0] for r in rows[1:]] == [i.name for i in engine.configuration.list_items()]
    trading = next(r for r in rows if r[0] == "集中交易")
    assert trading[1:5] == ("核心交易", "一类", "集中交易", "SSE;SZSE")
    assert pages.get("/config-items/export.pdf").status_code == 404


def test_importing_needs_the_config_manager(pages: Pages, engine: ProcessEngine) -> None:
    before, events = engine.configuration.list_items(), ci_events(engine)
    pages.sign_in("zhangwei")
    changed = [dict(i, version="X") for i in ITEMS]
    response = upload(pages, json.dumps(changed, ensure_ascii=False).encode(), "config_items.json")
    assert response.status_code == 403 and "ci.manage" in response.text
    assert engine.configuration.list_items() == before and ci_events(engine) == events
    pages.sign_in("mazhen")
    assert pages.post("/config-items/import", {"file": (io.BytesIO(b"[]"), "x.json")}, csrf=False).status_code == 400


def test_a_bad_file_lists_each_rows_problem_and_imports_nothing(pages: Pages, engine: ProcessEngine) -> None:
    before, events = engine.configuration.list_items(), ci_events(engine)
    bad = [dict(i) for i in ITEMS]
    bad[0]["version"] = "UF3.0"  # a good change, refused with the rest
    bad[1]["class"] = "重要"
    bad[2]["depends_on"] = ["核心数据库"]
    pages.sign_in("mazhen")
    response = upload(pages, json.dumps(bad, ensure_ascii=False).encode(), "config_items.json")
    assert response.status_code == 422
    errors = unescape(response.text.split('id="import-errors"')[1].split("</div>")[0])
    assert "config_items.json：未导入任何内容" in errors
    assert "<code>item 2 (网上交易)</code> unknown class '重要' (one of: 核心交易, 非核心)" in errors
    assert ("<code>item 3 (行情)</code> depends_on names '核心数据库', which is neither in the file nor in the "
            "register") in errors
    assert engine.configuration.list_items() == before and ci_events(engine) == events
    response = upload(pages, "name,class\n新柜台,核心交易\n".encode("gbk"), "items.csv")
    assert response.status_code == 422 and "不是 UTF-8 文本" in response.text
    assert engine.configuration.list_items() == before
