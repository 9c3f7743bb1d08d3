"""The grading history on the case page (issue 15): every regrade as a table row in Chinese, not a raw list;
the emergency an incident regraded shows the change too, naming the incident it came from."""

from __future__ import annotations

import re

import pytest

from engine import ProcessEngine
from tests.conftest import Clock
from tests.processes.conftest import Flow, clock, engine, flow  # noqa: F401
from tests.processes.test_incident import reported
from tests.webui.test_pages_support import Pages
from webui import create_app


@pytest.fixture
def pages(engine: ProcessEngine, clock: Clock) -> Pages:  # the whole library (processes/)
    return Pages(create_app(engine, {"SECRET_KEY": "pages-test", "TESTING": True}).test_client(), engine, clock)


def grading_rows(html: str) -> list[list[str]]:
    """The cells of the grading table, tags stripped and spaces collapsed."""
    table = re.search(r'<table class="history grading" id="grading-history">(.*?)</table>', html, re.S)
    assert table, "no grading table"
    body = table.group(1).split("<tbody>")[1]
    return [[" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr [^>]*>(.*?)</tr>", body, re.S)]


def test_the_grading_history_is_a_table_of_each_change(pages: Pages, flow: Flow) -> None:
    incident = reported(flow, system_class="集中交易", outage_minutes=12)  # 2021 rules: 较大, reportable
    flow.do(incident, "respond", "lina", {"assessment": "主机宕机", "outage_minutes": 35})  # 重大
    [emergency] = [x["instance_id"] for x in flow.links(incident) if x["kind"] == "emergency"]

    pages.sign_in("liuyang")  # 运维负责人
    html = pages.get(f"/cases/{incident}").text
    assert "定级变化" in html and "规则集" in html and "须报告" in html and "依据" in html
    assert 'title="grading_history"' not in html  # not the raw list among the case data
    first, regrade = grading_rows(html)
    assert first[:8] == ["grade", "2021", "较大", "P1", "是", "集中交易", "一类", "12 分钟"]
    assert regrade[:9] == ["响应事件", "2021", "较大 → 重大", "P1", "是", "集中交易", "一类", "35 分钟", "0"]
    assert "≥ 30 分钟" in regrade[9]  # the row of incident_level.dmn it applied

    pages.sign_in("sunyan")  # 合规专员 reads the emergency
    html = pages.get(f"/cases/{emergency}").text
    [row] = grading_rows(html)
    audited = rf'data-action="case.regraded">.*?随关联流程重新定级 <small>较大 → 重大 \(#{incident}\)</small>'
    assert re.search(audited, html, re.S)  # on the emergency's own history
    assert row[0] == f"2026-11-20 18:00 respond 来自流程 #{incident}"  # when it was regraded, by which case
    assert row[2:8] == ["较大 → 重大", "P1", "是", "集中交易", "一类", "35 分钟"]


def test_an_unclassified_system_and_a_report_kept_due_are_named(pages: Pages, flow: Flow) -> None:
    # a component without a 2021 class in the register; 120,000 records leaked is 重大
    incident = reported(flow, systems=["交易主机集群"], leaked_records=120000)
    flow.do(incident, "respond", "lina", {"assessment": "实际泄露 5000 条", "leaked_records": 5000})
    pages.sign_in("liuyang")
    first, regrade = grading_rows(pages.get(f"/cases/{incident}").text)
    assert first[2:8] == ["重大", "P1", "是", "其他", "未分类", "0 分钟"]
    assert regrade[2:9] == ["重大 → 一般", "P1", "是", "其他", "未分类", "0 分钟", "5000"]  # a leak is still reported

    downgraded = reported(flow, system_class="集中交易", outage_minutes=12)
    flow.do(downgraded, "respond", "lina", {"assessment": "误报，实际中断较短", "outage_minutes": 3})
    _first, regrade = grading_rows(pages.get(f"/cases/{downgraded}").text)
    assert regrade[2:5] == ["较大 → 一般", "P1", "是 报告义务保留"]  # not reportable by itself, still due
