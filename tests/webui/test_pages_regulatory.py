"""The register of regulatory reports as compliance sees it (/compliance/reports) and the 报告书 download:
a late 首报 shows as late, the filters narrow the list, staff are refused, the PDF shows Chinese text and the
DOCX holds it too; without a Chinese font on the server both answer 503 naming what to install.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from engine import ProcessEngine
from tests.conftest import Clock
from tests.processes.conftest import SHANGHAI, Flow, clock, engine, flow  # noqa: F401
from tests.processes.test_emergency import APPROVE, FIRST_REPORT, SUBMITTED
from tests.processes.test_regulatory_register import assert_report_book, reporting_only
from tests.processes.test_report_book_docx import DOCX_MIMETYPE, assert_report_docx, no_chinese_font  # noqa: F401
from tests.webui.test_pages_support import Pages
from webui import create_app


@pytest.fixture
def pages(engine: ProcessEngine, clock: Clock) -> Pages:  # the whole library (processes/), not only change
    return Pages(create_app(engine, {"SECRET_KEY": "pages-test", "TESTING": True}).test_client(), engine, clock)


def rows(html: str) -> list[tuple[str, str, str]]:
    """(case, kind, status) of each row of the register table."""
    import re

    return re.findall(r'data-case="(\d+)" data-kind="([^"]+)" data-status="([a-z]+)"', html)


def test_a_late_first_report_shows_as_late_and_an_unsent_one_as_overdue(pages: Pages, flow: Flow,
                                                                        clock: Clock) -> None:
    late = reporting_only(flow)
    pending = reporting_only(flow)
    clock.now = datetime(2026, 11, 20, 18, 50, tzinfo=SHANGHAI)  # due at 18:35
    flow.do(late, "first_report", "sunyan", FIRST_REPORT)
    flow.do(late, "sign_first_report", "zhaolei", APPROVE)
    flow.do(late, "submit_first_report", "sunyan", {**SUBMITTED, "submitted_at": "2026-11-20T18:50:00+08:00"})
    pages.sign_in("sunyan")  # 合规专员
    html = pages.get("/compliance/reports").text
    assert 'id="nav-regulatory"' in html
    # once the 首报 is sent, the investigation report (总结, 5 working days from recovery) is due
    assert sorted(rows(html)) == sorted([(str(late), "首报", "late"), (str(late), "总结", "due"),
                                         (str(pending), "首报", "overdue")])
    assert "迟报" in html and "已超期未报送" in html and "监管报告登记" in html  # the Chinese UI
    assert "2026-11-20 18:35" in html and "zhaolei" in html  # due time and 签发人
    assert rows(pages.get("/compliance/reports?status=late").text) == [(str(late), "首报", "late")]
    assert rows(pages.get("/compliance/reports?status=sent").text) == []
    assert rows(pages.get("/compliance/reports?kind=总结").text) == [(str(late), "总结", "due")]
    # the same register through the API
    token = pages.engine.identity.create_token("sunyan")
    items = pages.get("/api/v1/regulatory-reports?status=late", headers={"Authorization": f"Bearer {token}"}).json
    assert [(i["instance_id"], i["kind"], i["signer"], i["status"]) for i in items["items"]] == [
        (late, "首报", "zhaolei", "late")]
    assert items["items"][0]["attachment"]["name"] == "报告书.pdf"


def test_staff_are_refused_with_a_403_page(pages: Pages, flow: Flow) -> None:
    case = reporting_only(flow)
    pages.sign_in("zhangwei")
    response = pages.get("/compliance/reports")
    assert response.status_code == 403 and "<html" in response.text
    assert 'id="nav-regulatory"' not in pages.get("/").text
    pages.sign_in("huangmin")  # 测试负责人: takes no part in the emergency, may not read the case nor its 报告书
    assert pages.get("/compliance/reports").status_code == 403
    assert pages.get(f"/cases/{case}/report.pdf").status_code == 403
    assert pages.get(f"/cases/{case}/report.docx").status_code == 403


def test_the_report_book_downloads_as_a_pdf_showing_chinese_text(pages: Pages, flow: Flow) -> None:
    case = reporting_only(flow)
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    flow.do(case, "sign_first_report", "zhaolei", APPROVE)
    pages.sign_in("sunyan")
    assert f'/cases/{case}/report.pdf' in pages.get("/compliance/reports").text
    response = pages.get(f"/cases/{case}/report.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert_report_book(response.data, flow.engine.runtime.show(case).title, "上海主数据中心", "住所地证监局")


def test_the_report_book_downloads_as_a_docx_beside_the_pdf(pages: Pages, flow: Flow) -> None:
    case = reporting_only(flow)
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    flow.do(case, "sign_first_report", "zhaolei", APPROVE)
    pages.sign_in("sunyan")
    assert f'/cases/{case}/report.docx' in pages.get("/compliance/reports").text
    response = pages.get(f"/cases/{case}/report.docx")
    assert response.status_code == 200 and response.mimetype == DOCX_MIMETYPE
    assert f'filename="report-{case}.docx"' in response.headers["Content-Disposition"]
    assert_report_docx(response.data, flow.engine.runtime.show(case).title, "上海主数据中心", "住所地证监局")


@pytest.mark.usefixtures("no_chinese_font")
def test_without_a_chinese_font_the_report_book_answers_503_naming_what_to_install(pages: Pages,
                                                                                    flow: Flow) -> None:
    case = reporting_only(flow)
    pages.sign_in("sunyan")
    for export in ("report.pdf", "report.docx"):
        response = pages.get(f"/cases/{case}/{export}")
        assert response.status_code == 503 and "<html" in response.text, export
        assert "fonts-wqy-zenhei" in response.text and "OPSFLOW_CJK_FONT" in response.text
