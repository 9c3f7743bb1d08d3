"""The 报告书 (信息安全事件情况报告书, the written 首报) as a PDF, filled in from the case and its report
register entry, drawn with reportlab and a CJK TrueType font embedded (subset) so it prints the same anywhere.

The font is the first found of OPSFLOW_CJK_FONT and the usual Debian/Noto paths; `make browser` installs
fonts-wqy-zenhei. Without one the export refuses with a message naming what to install.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.errors import OpsFlowError

FONT_NAME = "OpsFlowCJK"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
# (label, where the value comes from): the fields of the 报告书, in its order. A value is looked up in
# the draft's answers first, then the case.
FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("报告单位", ("reporting_unit",)),
    ("事件名称", ("title",)),
    ("事件级别", ("level",)),
    ("事件发生时间", ("occurred_at",)),
    ("发现时间", ("discovered_at",)),
    ("事件发生地点", ("place",)),
    ("受影响系统", ("affected_systems",)),
    ("事件概况", ("situation",)),
    ("事件简要经过", ("course",)),
    ("初步估计的影响范围和程度", ("scope",)),
    ("涉及人数", ("affected_people",)),
    ("经济损失（初步估计）", ("economic_loss",)),
    ("事件后果初步判断", ("consequences",)),
    ("事件原因和性质初步判断", ("cause_nature", "cause")),
    ("已采取的措施及效果", ("measures",)),
    ("需要有关部门和单位协助的事项", ("help_needed",)),
    ("其他需要报告的事项", ("other",)),
    ("电话报告时间", ("phone_reported_at",)),
    ("报送对象", ("recipients", "report_recipients")),
    ("联系人", ("contact_person",)),
    ("联系方式", ("contact_phone",)),
)


class NoChineseFont(OpsFlowError):
    code = "no_cjk_font"


def find_font() -> Path:
    configured = os.environ.get("OPSFLOW_CJK_FONT")
    for candidate in ([configured] if configured else []) + list(FONT_CANDIDATES):
        if Path(candidate).is_file():
            return Path(candidate)
    raise NoChineseFont("no Chinese (CJK) TrueType font found for the 报告书: install fonts-wqy-zenhei "
                        "(`make browser` does) or set OPSFLOW_CJK_FONT to a .ttf/.ttc file")


def _register_font() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if FONT_NAME not in pdfmetrics.getRegisteredFontNames():
        path = find_font()
        pdfmetrics.registerFont(TTFont(FONT_NAME, str(path), subfontIndex=0) if path.suffix == ".ttc"
                                else TTFont(FONT_NAME, str(path)))


def report_pdf(case_id: int, case_data: dict[str, Any], title: str, report: Any | None,
               timezone: str = "Asia/Shanghai") -> bytes:
    """The 报告书 of a case: the fields of its latest 首报 draft, else what the case already knows.
    `report` is the case's RegulatoryReport (engine/cases/regulatory.py) or None before any draft."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    _register_font()
    zone = ZoneInfo(timezone)
    body = ParagraphStyle("body", fontName=FONT_NAME, fontSize=10.5, leading=15, wordWrap="CJK")
    heading = ParagraphStyle("heading", parent=body, fontSize=18, leading=26, alignment=1)
    values = {**case_data, "title": title, **(report.draft if report is not None else {})}
    signer = (report.signer if report is not None and report.signer else None) or values.get("signer")
    rows = [[Paragraph(label, body), Paragraph(_escape(_text(_first(values, keys), zone)), body)]
            for label, keys in FIELDS]
    rows.append([Paragraph("签发人", body), Paragraph(_escape(_text(signer, zone)), body)])
    if report is not None:
        rows += [[Paragraph("报告期限", body), Paragraph(_escape(_text(report.due_at, zone)), body)],
                 [Paragraph("报送时间", body), Paragraph(_escape(_text(report.sent_at, zone) or "未报送"), body)]]
    table = Table(rows, colWidths=[48 * mm, 122 * mm])
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black),
                               ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f0f0f0"))]))
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, title=f"信息安全事件情况报告书 {title}", author="OpsFlow",
                            leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm, bottomMargin=18 * mm)
    doc.build([Paragraph("信息安全事件情况报告书", heading),
               Paragraph(_escape(f"案件编号：{case_id}　（{report.kind if report is not None else '首报'}）"), body),
               Spacer(1, 4 * mm), table])
    return out.getvalue()


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
