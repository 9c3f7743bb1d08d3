"""In a real browser: every approver decides on an empty form, sees the earlier approvers' own words
once (in the approval record), and a return reaches the requester with a red 已退回 banner."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from engine import ProcessEngine
from tests.conftest import ROOT, make_settings
from tests.e2e.test_inbox_e2e import login, logout, next_saturday_window
from tests.processes.test_change import change_request
from webui import create_app

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def library_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ProcessEngine]]:
    """The whole process library and the demo users."""
    tmp = tmp_path_factory.mktemp("e2e-decisions")
    engine = ProcessEngine(make_settings(f"sqlite:///{tmp / 'opsflow.db'}", tmp, forms_dir=ROOT / "forms",
                                         processes_dir=ROOT / "processes"))
    engine.init(demo=True)
    app = create_app(engine, {"SECRET_KEY": "e2e-secret"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", engine
    finally:
        server.shutdown()
        engine.close()


def open_task(page, engine: ProcessEngine, base: str, case: int, bpmn_id: str) -> None:
    task = next(t for t in engine.runtime.show(case).open_tasks if t.bpmn_id == bpmn_id)
    page.goto(f"{base}/tasks/{task.id}")
    if page.locator("#claim").count():
        page.click("#claim")
    page.wait_for_selector("#task-form")


def decide(page, decision: str, comment: str) -> None:
    assert not page.locator("[name=decision]:checked").count(), "a decision is pre-selected"
    assert page.input_value("[name=comment]") == "", "the comment box opens with someone's words"
    page.check(f"[name=decision][value={decision}]")
    page.fill("[name=comment]", comment)
    page.click("#submit")
    page.wait_for_selector(".flash.ok")


def test_change_approvers_decide_on_empty_forms_and_a_return_reaches_the_requester(
        library_server, browser, screenshot_dir: Path) -> None:
    base, engine = library_server
    start, end = next_saturday_window()
    requester = engine.identity.get("zhangwei")
    case = engine.runtime.start("change", requester, {"title": "行情网关参数调整"}).id
    request = engine.runtime.show(case).open_tasks[0]
    engine.tasks.complete(request.id, requester, change_request(
        title="行情网关参数调整", window_start=f"{start}:00+08:00", window_end=f"{end}:00+08:00",
        rollback_tested=False, test_report={"name": "测试报告.pdf", "sha256": "a" * 64, "signed_by": "huangmin"}))
    assert [t.bpmn_id for t in engine.runtime.show(case).open_tasks] == ["approve_ops"]  # medium risk
    context = browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)

    login(page, base, "liuyang")  # the ops manager approves with conditions of his own
    open_task(page, engine, base, case, "approve_ops")
    decide(page, "approve", "同意，须先在仿真环境演练回退")
    logout(page)

    login(page, base, "zhaolei")  # the IT head: an empty form, the ops manager's words in the record only
    open_task(page, engine, base, case, "approve_it_head")
    record = page.inner_text("#approval-record")
    assert "运维负责人审批" in record and "刘洋" in record and "批准" in record
    assert page.content().count("同意，须先在仿真环境演练回退") == 1
    page.screenshot(path=str(screenshot_dir / "decisions-1-it-head-zh.png"), full_page=True)
    decide(page, "return", "请补充演练记录后重新提交")
    logout(page)

    login(page, base, "zhangwei")  # the requester: back in their inbox, in red, with the reason and who
    assert page.locator("#inbox tr[data-bpmn=request]").count() == 1
    open_task(page, engine, base, case, "request")
    banner = page.inner_text("#returned")
    assert "已退回" in banner and "信息技术负责人退回：请补充演练记录后重新提交" in banner and "赵磊" in banner
    assert page.input_value("[name=title]") == "行情网关参数调整"  # their own facts, to edit
    page.screenshot(path=str(screenshot_dir / "decisions-2-returned-zh.png"), full_page=True)
    page.goto(f"{base}/cases/{case}")
    page.wait_for_selector("#approval-record")
    content = page.content()
    assert content.count("同意，须先在仿真环境演练回退") == 1 and content.count("请补充演练记录后重新提交") == 1
    outcomes = [o.strip() for o in page.locator("#approval-record td.outcome").all_inner_texts()]
    assert outcomes[-2:] == ["批准", "退回"]
    assert "退回" in page.inner_text("#history")
    page.screenshot(path=str(screenshot_dir / "decisions-3-case-zh.png"), full_page=True)
    context.close()
