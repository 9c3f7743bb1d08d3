"""The supervisor dashboard: overdue steps by process, role and person, charts, CSV, and who may see it."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from tests.webui.test_pages_support import Pages, page_clock, page_engine, pages  # noqa: F401


def test_overdue_approval_shows_by_process_role_and_person(pages: Pages) -> None:
    pages.submitted_change()
    pages.sign_in("zhuhong")  # 督导
    html = pages.get("/dashboard").text
    assert 'id="kpi-overdue"' in html and 'id="chart-by_process"' in html
    assert "<b>0</b>" in html.split('id="kpi-overdue"')[1][:80]
    pages.clock.advance(days=3)
    html = pages.get("/dashboard").text
    assert "<b>1</b>" in html.split('id="kpi-overdue"')[1][:80]
    by_role = html.split('id="table-by_role"')[1].split("</table>")[0]
    assert "<td>ops_manager</td><td>1</td>" in by_role
    assert "<rect" in html.split('id="chart-by_role"')[1].split("</svg>")[0]


def test_every_table_exports_as_csv(pages: Pages) -> None:
    pages.submitted_change()
    pages.clock.advance(days=3)
    pages.sign_in("zhuhong")
    response = pages.get("/dashboard?export=by_process")
    assert response.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert table[1] == ["change", "1", "0"]
    assert len(table[0]) == 3


def test_ageing_buckets_count_open_tasks(pages: Pages) -> None:
    pages.submitted_change()
    pages.clock.advance(days=4)
    pages.sign_in("liuyang")  # 运维负责人 sees it too
    html = pages.get("/dashboard?days=7").text
    ageing = html.split('id="table-ageing"')[1].split("</table>")[0]
    assert "<td>3-7d</td><td>1</td>" in ageing


def test_staff_are_refused_with_a_403_page(pages: Pages) -> None:
    pages.sign_in("zhangwei")
    response = pages.get("/dashboard")
    assert response.status_code == 403 and "<html" in response.text
    assert 'id="nav-dashboard"' not in pages.get("/").text


def test_due_soon_is_counted_before_it_is_late(pages: Pages) -> None:
    pages.submitted_change()
    pages.sign_in("zhuhong")
    due = pages.engine.tasks.inbox(pages.engine.identity.get("liuyang"))[0].due_at
    pages.clock.now = due - timedelta(hours=2)
    table = pages.get("/dashboard?export=by_role").data.decode("utf-8-sig")
    assert "ops_manager,0,1" in table
