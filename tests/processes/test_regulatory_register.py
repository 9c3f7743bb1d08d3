"""The register of regulatory reports (issue 15, part 3) on the real emergency process: a 首报 sent after its
due time is late, one sent in time is sent, one not yet sent is due and then overdue; 预警 and 解除 carry
their 签发人; the printed 报告书, rendered to an image, shows its Chinese text in an embedded font.
"""

from __future__ import annotations

from datetime import datetime

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest

from engine.errors import Forbidden
from tests.processes.conftest import SHANGHAI, Flow
from tests.processes.test_emergency import APPROVE, FILE, FIRST_REPORT, SUBMITTED
from tests.processes.test_emergency_reporting import ENDED, LIFT_REPORT, LIFTED, declared, warned

DUE = datetime(2026, 11, 20, 18, 35, tzinfo=SHANGHAI)  # 30 minutes from discovery (the rule set's deadline)


def reporting_only(flow: Flow) -> int:
    """A reportable event the lead does not activate: the 首报 alone is due."""
    case = declared(flow)
    flow.do(case, "activate", "xuli", {"decision": "reject", "comment": "已切换备机恢复", **ENDED})
    assert flow.open_names(case) == ["first_report"]
    return case


def first_report_of(flow: Flow, case: int, who: str = "sunyan") -> tuple[str, object]:
    found = [r for r in flow.engine.regulatory.reports(flow.user(who), instance_id=case) if r.kind == "首报"]
    assert len(found) == 1
    return found[0].status(flow.engine.ctx.now()), found[0]


def send_first_report(flow: Flow, case: int, at: str) -> None:
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    flow.do(case, "sign_first_report", "zhaolei", APPROVE)
    flow.do(case, "submit_first_report", "sunyan", {**SUBMITTED, "submitted_at": at})


def test_a_first_report_sent_after_its_due_time_is_late(flow: Flow, clock) -> None:  # type: ignore[no-untyped-def]
    case = reporting_only(flow)
    clock.now = datetime(2026, 11, 20, 18, 50, tzinfo=SHANGHAI)
    send_first_report(flow, case, "2026-11-20T18:50:00+08:00")
    status, report = first_report_of(flow, case)
    assert status == "late"
    assert report.due_at == DUE  # type: ignore[attr-defined]
    assert report.sent_at == datetime(2026, 11, 20, 18, 50, tzinfo=SHANGHAI)  # type: ignore[attr-defined]
    assert (report.drafted_by, report.signer, report.sent_by) == ("sunyan", "zhaolei", "sunyan")  # type: ignore[attr-defined]
    assert report.recipients == ["住所地证监局"] and report.attachment == FILE  # type: ignore[attr-defined]
    late = flow.engine.regulatory.reports(flow.user("sunyan"), status="late")
    assert [r.instance_id for r in late] == [case]


def test_a_first_report_sent_in_time_is_sent_on_time(flow: Flow, clock) -> None:  # type: ignore[no-untyped-def]
    case = reporting_only(flow)
    clock.now = datetime(2026, 11, 20, 18, 25, tzinfo=SHANGHAI)
    send_first_report(flow, case, "2026-11-20T18:25:00+08:00")
    status, report = first_report_of(flow, case)
    assert status == "sent"
    assert flow.engine.regulatory.reports(flow.user("sunyan"), status="late") == []


def test_a_sending_declared_before_it_was_recorded_counts_from_the_declaration_never_later(
        flow: Flow, clock) -> None:  # type: ignore[no-untyped-def]
    case = reporting_only(flow)
    clock.now = datetime(2026, 11, 20, 18, 45, tzinfo=SHANGHAI)  # recorded late, sent at 18:30 as declared
    send_first_report(flow, case, "2026-11-20T18:30:00+08:00")
    status, report = first_report_of(flow, case)
    assert status == "sent" and report.sent_recorded_at == clock.now  # type: ignore[attr-defined]
    # a declared time after the recording cannot move the sending later (nor earlier than recorded)
    clock.now = datetime(2026, 11, 20, 18, 10, tzinfo=SHANGHAI)
    other = reporting_only(flow)
    send_first_report(flow, other, "2026-11-20T23:00:00+08:00")
    assert first_report_of(flow, other)[1].sent_at == clock.now  # type: ignore[attr-defined]


def test_an_unsent_first_report_is_due_then_overdue(flow: Flow, clock) -> None:  # type: ignore[no-untyped-def]
    case = reporting_only(flow)
    status, report = first_report_of(flow, case)
    assert status == "due" and report.sent_at is None and report.due_at == DUE  # type: ignore[attr-defined]
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)  # drafted, not yet signed nor sent
    clock.now = datetime(2026, 11, 20, 18, 36, tzinfo=SHANGHAI)
    status, report = first_report_of(flow, case)
    assert status == "overdue" and report.drafted_by == "sunyan" and report.signer is None  # type: ignore[attr-defined]
    overdue = flow.engine.regulatory.reports(flow.user("zhuhong"), status="overdue")  # the 督导 sees it too
    assert [(r.instance_id, r.kind) for r in overdue] == [(case, "首报")]


def test_a_returned_first_report_stays_one_report_with_the_first_due_time(flow: Flow) -> None:
    case = reporting_only(flow)
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    flow.do(case, "sign_first_report", "zhaolei", {"decision": "return", "comment": "补充影响范围"})
    flow.do(case, "revise_first_report", "sunyan", {**FIRST_REPORT, "scope": "全部营业部，约 3.2 万客户"})
    flow.do(case, "sign_first_report", "zhaolei", APPROVE)
    status, report = first_report_of(flow, case)
    assert report.due_at == DUE and report.signer == "zhaolei"  # type: ignore[attr-defined]
    assert report.draft["scope"] == "全部营业部，约 3.2 万客户"  # type: ignore[attr-defined]


def test_a_warning_and_its_lifting_are_two_reports_signed_by_the_it_head(flow: Flow) -> None:
    case = warned(flow)
    flow.do(case, "lift_warning", "xuli", LIFTED)
    flow.do(case, "lift_report", "sunyan", LIFT_REPORT)
    flow.do(case, "sign_warning_report", "zhaolei", APPROVE)
    flow.do(case, "submit_warning_report", "sunyan", SUBMITTED)
    reports = flow.engine.regulatory.reports(flow.user("sunyan"), instance_id=case)
    assert sorted((r.kind, r.signer, r.sent_by) for r in reports) == [("解除", "zhaolei", "sunyan"),
                                                                       ("预警", "zhaolei", "sunyan")]


def test_staff_may_not_read_the_register(flow: Flow) -> None:
    reporting_only(flow)
    with pytest.raises(Forbidden):
        flow.engine.regulatory.reports(flow.user("zhangwei"))


def test_the_printed_report_book_shows_its_chinese_text_in_an_embedded_font(flow: Flow) -> None:
    case = reporting_only(flow)
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    flow.do(case, "sign_first_report", "zhaolei", APPROVE)
    pdf = flow.engine.regulatory.report_book(flow.user("sunyan"), case)
    assert_report_book(pdf, flow.engine.runtime.show(case).title, "集中交易主机宕机", "zhaolei")


def assert_report_book(pdf: bytes, *texts: str, form: str = "网络安全事件情况报告书") -> None:
    """The PDF embeds a TrueType font, its text layer reads back the form's title and the given Chinese, and
    the page drawn as an image has ink where the title is (a font without the glyphs would print blanks or
    boxes)."""
    assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf
    text = report_book_text(pdf)
    assert form in text
    for expected in texts:
        assert expected in text, f"{expected!r} not in the 报告书"
    image = pdfium.PdfDocument(pdf)[0].render(scale=1).to_pil().convert("L")
    width, height = image.size
    title_band = image.crop((0, 0, width, height // 8))
    dark = sum(title_band.histogram()[:128])
    assert dark > 500, f"the title band is blank ({dark} dark pixels)"


def report_book_text(pdf: bytes) -> str:
    """The text layer of every page, as a reader's copy and paste would get it."""
    return "\n".join(page.get_textpage().get_text_range() for page in pdfium.PdfDocument(pdf))
