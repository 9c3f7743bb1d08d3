"""In a real browser: the supervisor sees an overdue approval red on the dashboard and can export it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from engine.storage.models import HumanTask
from tests.e2e.test_inbox_e2e import login
from tests.webui.test_pages_support import CHANGE

pytestmark = pytest.mark.e2e


def test_supervisor_sees_an_overdue_step_on_the_dashboard(live_server, browser, screenshot_dir: Path) -> None:
    base, engine = live_server
    requester = engine.identity.get("zhangwei")
    case = engine.runtime.start("change", requester, {"title": "看板演示变更"})
    request = next(t for t in engine.tasks.inbox(requester, "mine") if t.instance_id == case.id)
    approval = engine.tasks.complete(request.id, requester, dict(CHANGE))[0]
    with engine.ctx.db.transaction() as s:  # its due time has passed (the clock itself is tested elsewhere)
        s.execute(update(HumanTask).where(HumanTask.id == approval.id)
                  .values(due_at=engine.ctx.now() - timedelta(hours=5)))

    context = browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    login(page, base, "zhuhong")
    page.click("#nav-dashboard")
    page.wait_for_selector("#kpi-overdue")
    assert page.inner_text("#kpi-overdue b") != "0"
    assert "督导看板" in page.inner_text("h1")
    assert page.locator("#chart-by_role rect.bar-0").count() >= 1  # overdue bars are drawn red
    assert "ops_manager" in page.inner_text("#table-by_role")
    assert approval.name in page.inner_text("#table-overdue_tasks")
    href = page.get_attribute("#table-by_role + a.export", "href")
    assert href and "export=by_role" in href
    page.screenshot(path=str(screenshot_dir / "6-dashboard-zh.png"), full_page=True)
    context.close()
