"""The 报告书 (the written 首报 of a reportable event), filled in from the case and its report register entry,
as a PDF (reportlab, a CJK TrueType font embedded as a subset, so it prints the same anywhere) or as a Word
document (python-docx; it names the same font for East Asian text rather than embedding it).

Which form: a case graded under the 2021 办法 (case data `rule_set == "2021"`) gets the 网络安全事件情况报告书,
any other the 2012 办法's 信息安全事件情况报告书. The form, its fields and their values are worked out once
(`fill`); the two renderers only lay them out.

The font is the first found of OPSFLOW_CJK_FONT and the usual Debian/Noto paths; `make browser` installs
fonts-wqy-zenhei. Without one the export refuses (NoChineseFont, HTTP 503) with a message naming what to install.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.errors import NotInstalled

FONT_NAME = "OpsFlowCJK"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)


@dataclass(frozen=True)
class Form:
    """One rule set's 报告书: its title and the rule it is the form of (domain-research §2, §7.2)."""

    rule_set: str
    title: str
    basis: str


FORMS = {
    "2012": Form("2012", "信息安全事件情况报告书",
                 "《证券期货业信息安全事件报告与调查处理办法》（证监会公告〔2012〕46号）第十七条"),
    "2021": Form("2021", "网络安全事件情况报告书",
                 "《证券期货业网络安全事件报告与调查处理办法》（证监会公告〔2021〕12号）附件"),
}
BOTH = ("2012", "2021")


@dataclass(frozen=True)
class Field:
    """A line of the 报告书: its label, where its value comes from (the draft's answers first, then the case;
    the first key with a value wins) and the forms that have it."""

    label: str
    keys: tuple[str, ...]
    forms: tuple[str, ...] = BOTH


# The fields of the 报告书, in its order: 2012 Art 17's contents plus the firm's own (name, level, systems,
# phone report, recipients). The 2021 attachment's own field list has not been read yet (domain-research §7,
# question 2), so both forms carry these; a field found to differ gets its `forms` narrowed here.
FIELDS: tuple[Field, ...] = (
    Field("报告单位", ("reporting_unit",)),
    Field("事件名称", ("title",)),
    Field("事件级别", ("level",)),
    Field("事件发生时间", ("occurred_at",)),
    Field("发现时间", ("discovered_at",)),
    Field("事件发生地点", ("place",)),
    Field("受影响系统", ("affected_systems",)),
    Field("事件概况", ("situation",)),
    Field("事件简要经过", ("course",)),
    Field("初步估计的影响范围和程度", ("scope",)),
    Field("涉及人数", ("affected_people",)),
    Field("经济损失（初步估计）", ("economic_loss",)),
    Field("事件后果初步判断", ("consequences",)),
    Field("事件原因和性质初步判断", ("cause_nature", "cause")),
    Field("已采取的措施及效果", ("measures",)),
    Field("需要有关部门和单位协助的事项", ("help_needed",)),
    Field("其他需要报告的事项", ("other",)),
    Field("电话报告时间", ("phone_reported_at",)),
    Field("报送对象", ("recipients", "report_recipients")),
    Field("联系人", ("contact_person",)),
    Field("联系方式", ("contact_phone",)),
)


@dataclass(frozen=True)
class FilledReportBook:
    form: Form
    case_id: int
    case_title: str
    kind: str  # the report it is (首报)
    rows: list[tuple[str, str]]  # (label, value as printed)

    @property
    def reference(self) -> str:
        return f"案件编号：{self.case_id}　（{self.kind}）"


class NoChineseFont(NotInstalled):
    code = "no_cjk_font"


# the 2021 办法 (证监会公告〔2021〕12号) applies to events discovered from 2021-06-04
RULES_2021_FROM = "2021-06-04"


def form_of(case_data: dict[str, Any]) -> Form:
    """The form of the rules the case was graded under; a case without a grading (an emergency
    declared directly) by its discovery date, as the incident process chooses its rule set."""
    rule_set = case_data.get("rule_set")
    if rule_set is None:
        discovered = str(case_data.get("discovered_at") or "")[:10]
        rule_set = "2012" if discovered and discovered < RULES_2021_FROM else "2021"
    return FORMS["2021"] if rule_set == "2021" else FORMS["2012"]


def fill(case_id: int, case_data: dict[str, Any], title: str, report: Any | None,
         timezone: str = "Asia/Shanghai") -> FilledReportBook:
    """The 报告书 of a case: the fields of its latest 首报 draft, else what the case already knows.
    `report` is the case's RegulatoryReport (engine/cases/regulatory.py) or None before any draft."""
    zone = ZoneInfo(timezone)
    form = form_of(case_data)
    values = {**case_data, "title": title, **(report.draft if report is not None else {})}
    signer = (report.signer if report is not None and report.signer else None) or values.get("signer")
    rows = [(f.label, _text(_first(values, f.keys), zone)) for f in FIELDS if form.rule_set in f.forms]
    rows.append(("签发人", _text(signer, zone)))
    if report is not None:
        rows += [("报告期限", _text(report.due_at, zone)), ("报送时间", _text(report.sent_at, zone) or "未报送")]
    return FilledReportBook(form, case_id, title, report.kind if report is not None else "首报", rows)


def find_font() -> Path:
    configured = os.environ.get("OPSFLOW_CJK_FONT")
    for candidate in ([configured] if configured else []) + list(FONT_CANDIDATES):
        if Path(candidate).is_file():
            return Path(candidate)
    raise NoChineseFont("no Chinese (CJK) TrueType font found for the 报告书: install fonts-wqy-zenhei "
                        "(`make browser` does) or set OPSFLOW_CJK_FONT to a .ttf/.ttc file")


@functools.lru_cache(maxsize=8)
def font_family(path: Path) -> str:
    """The family name in the font's name table (what Word looks a font up by), e.g. WenQuanYi Zen Hei."""
    from reportlab.pdfbase.ttfonts import TTFontFile

    face = TTFontFile(str(path), subfontIndex=0) if path.suffix.lower() == ".ttc" else TTFontFile(str(path))
    name = face.familyName
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def _pdf_font() -> str:
    """Registers the font found now (one name per file, so a changed OPSFLOW_CJK_FONT is honoured)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    path = find_font()
    name = f"{FONT_NAME}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(name, str(path), subfontIndex=0) if path.suffix.lower() == ".ttc"
                                else TTFont(name, str(path)))
    return name


def report_pdf(case_id: int, case_data: dict[str, Any], title: str, report: Any | None,
               timezone: str = "Asia/Shanghai") -> bytes:
    """The 报告书 as a PDF (arguments as for `fill`)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    book = fill(case_id, case_data, title, report, timezone)
    font = _pdf_font()
    body = ParagraphStyle("body", fontName=font, fontSize=10.5, leading=15, wordWrap="CJK")
    heading = ParagraphStyle("heading", parent=body, fontSize=18, leading=26, alignment=1)
    basis = ParagraphStyle("basis", parent=body, fontSize=9, leading=13, alignment=1)
    table = Table([[Paragraph(_escape(label), body), Paragraph(_escape(value), body)] for label, value in book.rows],
                  colWidths=[48 * mm, 122 * mm])
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black),
                               ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f0f0f0"))]))
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, title=f"{book.form.title} {title}", author="OpsFlow",
                            leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm, bottomMargin=18 * mm)
    doc.build([Paragraph(book.form.title, heading), Paragraph(_escape(f"（依据{book.form.basis}）"), basis),
               Spacer(1, 2 * mm), Paragraph(_escape(book.reference), body), Spacer(1, 4 * mm), table])
    return out.getvalue()


def report_docx(case_id: int, case_data: dict[str, Any], title: str, report: Any | None,
                timezone: str = "Asia/Shanghai") -> bytes:
    """The 报告书 as a Word document (arguments as for `fill`): the same rows in a two-column table. Every run
    names the PDF's font for East Asian text and is marked zh-CN, so Word and WPS pick a Chinese font even
    where that one is missing. The font is not embedded (the usual CJK fonts are 10-20 MB)."""
    from docx import Document
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Mm, Pt

    book = fill(case_id, case_data, title, report, timezone)
    family = font_family(find_font())
    document = Document()
    document.core_properties.title = f"{book.form.title} {title}"
    document.core_properties.author = "OpsFlow"
    section = document.sections[0]
    section.page_width, section.page_height = Mm(210), Mm(297)  # A4, as the PDF
    section.left_margin = section.right_margin = Mm(20)
    section.top_margin = section.bottom_margin = Mm(18)

    def write(paragraph: Any, text: str, size: float = 10.5, bold: bool = False) -> None:
        run = paragraph.add_run(text)
        run.font.size, run.font.bold = Pt(size), (True if bold else None)
        _chinese(run, family)

    heading = document.add_paragraph()
    heading.alignment = WD_ALIGN_PARAGRAPH.CENTER
    write(heading, book.form.title, 18, bold=True)
    basis = document.add_paragraph()
    basis.alignment = WD_ALIGN_PARAGRAPH.CENTER
    write(basis, f"（依据{book.form.basis}）", 9)
    write(document.add_paragraph(), book.reference)
    table = document.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for label, value in book.rows:
        cells = table.add_row().cells
        cells[0].width, cells[1].width = Mm(48), Mm(122)
        for cell, text in ((cells[0], label), (cells[1], value)):
            paragraph = cell.paragraphs[0]
            paragraph.paragraph_format.space_after = Pt(0)
            write(paragraph, text)
        _shade(cells[0], "F0F0F0")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _chinese(run: Any, family: str) -> None:
    """w:rFonts (all four scripts, w:eastAsia being the one Word uses for Chinese) and w:lang eastAsia."""
    from docx.oxml.ns import qn
    from docx.oxml.parser import OxmlElement

    run.font.name = family  # ascii and hAnsi
    properties = run._element.get_or_add_rPr()
    fonts = properties.get_or_add_rFonts()
    fonts.set(qn("w:eastAsia"), family)
    fonts.set(qn("w:cs"), family)
    fonts.set(qn("w:hint"), "eastAsia")
    language = properties.find(qn("w:lang"))
    if language is None:
        language = OxmlElement("w:lang")
        properties.append(language)
    language.set(qn("w:eastAsia"), "zh-CN")


def _shade(cell: Any, fill_colour: str) -> None:
    from docx.oxml.ns import qn
    from docx.oxml.parser import OxmlElement

    shading = OxmlElement("w:shd")
    shading.set(qn("w:val"), "clear")
    shading.set(qn("w:color"), "auto")
    shading.set(qn("w:fill"), fill_colour)
    cell._tc.get_or_add_tcPr().append(shading)


def _first(values: dict[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        if values.get(key) not in (None, "", []):
            return values[key]
    return None


def _text(value: Any, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, str) and len(value) >= 16 and value[4:5] == "-" and "T" in value:
        try:
            return datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return value
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list | tuple):
        return "、".join(str(v) for v in value)
    return str(value)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
