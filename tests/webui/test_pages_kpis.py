"""The dashboard's KPIs on the page: who may open it, the time-used chart, the labels in Chinese."""

from __future__ import annotations

import csv
import io

from tests.webui.test_pages_support import Pages, page_clock, page_engine, pages  # noqa: F401


def test_compliance_opens_the_dashboard_and_sees_the_kpis_in_chinese(pages: Pages) -> None:
    pages.submitted_change()  # approve_ops: due in one day, just created
    pages.sign_in("sunyan")  # 合规
    assert 'id="nav-dashboard"' in pages.get("/").text
    response = pages.get("/dashboard")
    assert response.status_code == 200
    html = response.text
    for label in ("响应超时率", "解决超时率", "事件平均修复时间", "变更成功率", "紧急变更占比", "在办任务时限已用比例"):
        assert label in html
    used = html.split('id="table-time_used"')[1].split("</table>")[0]
    assert "<td>&lt;50%</td><td>1</td>" in used and "<td>&gt;100%</td><td>0</td>" in used
    assert "<rect" in html.split('id="chart-time_used"')[1].split("</svg>")[0]
    assert "—" in html.split('id="kpi-response"')[1][:200]  # nothing measured yet


def test_time_used_moves_to_late_and_exports(pages: Pages) -> None:
    pages.submitted_change()
    pages.clock.advance(days=2)
    pages.sign_in("zhuhong")
    table = list(csv.reader(io.StringIO(pages.get("/dashboard?export=time_used").data.decode("utf-8-sig"))))
    assert table[0] == ["时限已用比例", "任务数"] and dict(table[1:])[">100%"] == "1"
    sla = list(csv.reader(io.StringIO(pages.get("/dashboard?export=sla").data.decode("utf-8-sig"))))
    assert [row[0] for row in sla[1:]] == ["响应", "解决"]
