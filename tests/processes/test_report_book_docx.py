"""The 报告书 (issue 15) as a Word document and in its two forms: the DOCX holds the same fields and values as
the PDF in a table, every run naming a Chinese font for East Asian text; a case graded under the 2021 办法
prints the 网络安全事件情况报告书, one under the 2012 办法 the 信息安全事件情况报告书, in both formats; without
a Chinese font on the server neither export is made, and the error names what to install.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import docx
import pytest
from docx.oxml.ns import qn

from engine.cases import report_book
from engine.errors import NotInstalled
from tests.processes.conftest import Flow
from tests.processes.test_emergency import APPROVE, FIRST_REPORT
from tests.processes.test_incident import reported
from tests.processes.test_incident_grading import BEFORE_2021, UNDER_2021
from tests.processes.test_regulatory_register import assert_report_book, report_book_text, reporting_only

NETWORK, INFORMATION = "网络安全事件情况报告书", "信息安全事件情况报告书"
DOCX_MIMETYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def docx_fields(document: bytes) -> tuple[list[str], dict[str, str]]:
    """The paragraphs above the table and the table's (label → value) rows, as Word would show them."""
    opened = docx.Document(io.BytesIO(document))
    [table] = opened.tables
    return ([p.text for p in opened.paragraphs if p.text],
            {row.cells[0].text: row.cells[1].text for row in table.rows})


def assert_report_docx(document: bytes, *texts: str, form: str = NETWORK) -> dict[str, str]:
    """The DOCX opens, shows the form's title and the given Chinese, and every run with text names an East
    Asian font (w:rFonts w:eastAsia) and is marked Chinese, so Word does not fall back to a Latin font."""
    assert document.startswith(b"PK")
    paragraphs, fields = docx_fields(document)
    assert paragraphs[0] == form
    shown = "\n".join(paragraphs + [f"{label}\n{value}" for label, value in fields.items()])
    for expected in texts:
        assert expected in shown, f"{expected!r} not in the 报告书"
    opened = docx.Document(io.BytesIO(document))
    runs = [r for p in opened.paragraphs for r in p.runs] + [
        r for row in opened.tables[0].rows for cell in row.cells for p in cell.paragraphs for r in p.runs]
    assert len(runs) > 2 * len(fields)
    for run in runs:
        fonts, language = run._element.rPr.rFonts, run._element.rPr.find(qn("w:lang"))
        assert fonts is not None and fonts.get(qn("w:eastAsia")), f"no East Asian font on {run.text!r}"
        assert language is not None and language.get(qn("w:eastAsia")) == "zh-CN"
    return fields


def first_report_drafted(flow: Flow) -> int:
    case = reporting_only(flow)
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    flow.do(case, "sign_first_report", "zhaolei", APPROVE)
    return case


def test_the_docx_holds_the_same_fields_and_values_as_the_pdf(flow: Flow) -> None:
    case = first_report_drafted(flow)
    title = flow.engine.runtime.show(case).title
    document = flow.engine.regulatory.report_book_docx(flow.user("sunyan"), case)
    fields = assert_report_docx(document, title, "集中交易主机宕机", "上海主数据中心")
    assert (fields["事件名称"], fields["事件级别"], fields["签发人"], fields["报送对象"]) == (
        title, "较大", "zhaolei", "住所地证监局")
    assert (fields["事件发生时间"], fields["涉及人数"], fields["报送时间"]) == ("2026-11-20 18:03", "30000", "未报送")
    # the PDF prints the same lines (its text layer wraps long values, hence no whitespace compared)
    pdf = re.sub(r"\s", "", report_book_text(flow.engine.regulatory.report_book(flow.user("sunyan"), case)))
    for label, value in fields.items():
        assert re.sub(r"\s", "", label + value) in pdf, (label, value)


@pytest.mark.parametrize(("discovered_at", "level", "form", "other"), [
    (BEFORE_2021, "较大", INFORMATION, NETWORK),  # 2012 办法 Art 12(四): ≥ 5 min of 集中交易
    (UNDER_2021, "重大", NETWORK, INFORMATION),  # 2021 办法: ≥ 30 min
])
def test_the_form_follows_the_rule_set_the_case_was_graded_under(flow: Flow, discovered_at: str, level: str,
                                                                  form: str, other: str) -> None:
    case = reported(flow, system_class="集中交易", outage_minutes=35, discovered_at=discovered_at)
    title = flow.engine.runtime.show(case).title
    pdf = flow.engine.regulatory.report_book(flow.user("sunyan"), case)
    assert_report_book(pdf, title, level, form=form)
    assert other not in report_book_text(pdf)
    paragraphs, fields = docx_fields(flow.engine.regulatory.report_book_docx(flow.user("sunyan"), case))
    assert paragraphs[0] == form and other not in "".join(paragraphs)
    assert (fields["事件名称"], fields["事件级别"]) == (title, level)
    assert ("证监会公告〔2021〕12号" if form == NETWORK else "证监会公告〔2012〕46号") in paragraphs[1]


@pytest.fixture
def no_chinese_font(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The server has no CJK font: the configured one is not there, nor any of the usual paths."""
    monkeypatch.setenv("OPSFLOW_CJK_FONT", str(tmp_path / "missing.ttc"))
    monkeypatch.setattr(report_book, "FONT_CANDIDATES", ())


@pytest.mark.usefixtures("no_chinese_font")
def test_without_a_chinese_font_neither_export_is_made_and_the_error_names_what_to_install(flow: Flow) -> None:
    case = first_report_drafted(flow)
    for export in (flow.engine.regulatory.report_book, flow.engine.regulatory.report_book_docx):
        with pytest.raises(NotInstalled) as refused:
            export(flow.user("sunyan"), case)
        assert refused.value.code == "no_cjk_font" and "fonts-wqy-zenhei" in refused.value.message


def test_a_case_without_a_grading_takes_the_form_of_its_discovery_date() -> None:
    # an emergency declared directly has no rule_set: the rules in force when it was discovered decide
    assert report_book.form_of({"discovered_at": BEFORE_2021}).rule_set == "2012"
    assert report_book.form_of({"discovered_at": UNDER_2021}).rule_set == "2021"
    assert report_book.form_of({"rule_set": "2012", "discovered_at": UNDER_2021}).rule_set == "2012"
