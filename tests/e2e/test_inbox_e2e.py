"""In a real browser, in Chinese: a requester raises a change, an approver claims and decides it,
the case page draws the diagram with the steps marked, and the language switches to English."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

pytestmark = pytest.mark.e2e

SHANGHAI = ZoneInfo("Asia/Shanghai")


def next_saturday_window() -> tuple[str, str]:
    """A weekend window (no trading session) a week or more ahead, as datetime-local values."""
    today = datetime.now(SHANGHAI).date()
    saturday = today + timedelta(days=(5 - today.weekday()) % 7 + 7)
    return f"{saturday}T10:00", f"{saturday}T14:00"


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "opsflow")
    page.click("button[type=submit]")
    page.wait_for_selector("nav.mainnav")


def logout(page) -> None:
    page.click("#logout")
    page.wait_for_selector("input[name=username]")


def test_change_from_request_to_approval_in_the_browser(live_server, browser, screenshot_dir: Path) -> None:
    base, engine = live_server
    context = browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)

    # A wrong password says nothing about whether the user exists.
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "zhangwei")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.inner_text("#login-error") == "用户名或密码错误。"

    # The requester signs in (Chinese by default), starts a change and lands on the request form.
    login(page, base, "zhangwei")
    assert "待办" in page.inner_text("nav.mainnav")
    page.click("nav.mainnav >> text=发起流程")
    card = page.locator("form.process[data-process=change]")
    card.locator("input[name=title]").fill("OA 会话超时参数调整")
    card.locator("button").click()
    page.wait_for_selector("#task-form")
    assert page.inner_text("h1") == "填写变更申请"

    start, end = next_saturday_window()
    page.fill("[name=title]", "调")  # too short: the form refuses it
    # the systems come from the configuration register (init --demo seeds it), labelled by name and class
    systems = page.locator("[data-field=systems]")
    assert "集中交易（核心交易·一类）" in systems.inner_text()
    systems.locator("label.check", has_text="办公自动化（非核心·五类）").locator("input[name=systems]").check()
    page.check("[name=change_type][value=normal]")
    page.fill("[name=purpose]", "调整会话超时参数")
    page.fill("[name=window_start]", start)
    page.fill("[name=window_end]", end)
    page.fill("[name=plan]", "1. 备份参数 2. 修改 3. 重启")
    page.fill("[name=rollback_plan]", "恢复备份的参数文件并重启")
    page.check("[name=rollback_tested][value=true]")
    page.select_option("[name=implementer]", "lina")
    page.select_option("[name=reviewer]", "wangqiang")
    page.select_option("[name=business_verifier]", "zhoujie")
    page.click("#submit")
    page.wait_for_selector("#form-errors")
    assert "变更标题" in page.inner_text("[data-field=title] .field-error")
    assert page.input_value("[name=purpose]") == "调整会话超时参数"  # what was typed is kept
    assert page.input_value("[name=window_start]") == start
    assert page.input_value("[name=implementer]") == "lina"
    page.screenshot(path=str(screenshot_dir / "1-form-error-zh.png"), full_page=True)

    page.fill("[name=title]", "OA 会话超时参数调整")
    page.click("#submit")
    page.wait_for_selector("#inbox-empty, #inbox")
    assert "已完成" in page.inner_text(".flash.ok")
    logout(page)

    # The ops manager sees the approval in their role's queue, claims it and decides.
    login(page, base, "liuyang")
    assert page.inner_text("#nav-group") == "1"
    row = page.locator("#inbox tr[data-bpmn=approve_ops]")
    assert "运维负责人审批" in row.inner_text()
    assert "OA 会话超时参数调整" in row.inner_text()
    page.screenshot(path=str(screenshot_dir / "2-inbox-zh.png"), full_page=True)
    row.locator("button.claim").click()
    page.wait_for_selector("#task-form")
    assert page.inner_text("#task-assignee") == "liuyang"
    page.check("[name=decision][value=return]")
    page.click("#submit")
    page.wait_for_selector("[data-field=comment] .field-error")  # returning needs a comment
    assert page.is_checked("[name=decision][value=return]")
    page.check("[name=decision][value=approve]")
    page.fill("[name=comment]", "同意，按计划窗口实施")
    page.click("#submit")
    page.wait_for_selector(".flash.ok")

    # The case page: the diagram with the done steps and the waiting one marked.
    case_id = engine.runtime.cases(process_id="change")[0].id
    page.goto(f"{base}/cases/{case_id}")
    page.wait_for_selector("#diagram[data-ready='1']")
    diagram = page.locator("#diagram")
    active = diagram.get_attribute("data-active").split()
    assert active, "the case waits somewhere"
    for element in ("request", "approve_ops"):
        assert "of-completed" in diagram.locator(f"g.djs-element[data-element-id={element}]").get_attribute("class")
    for element in active:
        assert "of-active" in diagram.locator(f"g.djs-element[data-element-id={element}]").get_attribute("class")
    assert page.locator("g.djs-element.of-overdue").count() == 0
    history = page.inner_text("#history")
    assert "张伟" in history and "刘洋" in history and "运维负责人审批" in history
    page.screenshot(path=str(screenshot_dir / "3-case-zh.png"), full_page=True)

    # English on request, remembered for this user at the next sign-in.
    page.click("#switch-locale")
    page.wait_for_selector("text=Process diagram")
    assert "Inbox" in page.inner_text("nav.mainnav")
    page.screenshot(path=str(screenshot_dir / "4-case-en.png"), full_page=True)
    logout(page)
    login(page, base, "liuyang")
    assert "Inbox" in page.inner_text("nav.mainnav")
    page.screenshot(path=str(screenshot_dir / "5-inbox-en.png"), full_page=True)
    context.close()
