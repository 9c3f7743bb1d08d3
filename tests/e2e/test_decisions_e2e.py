"""In a real browser: every approver decides on an empty form, sees the earlier approvers' own words
once (in the approval record), and a return reaches the requester with a red 已退回 banner."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import ProcessEngine
from tests.conftest import ROOT, Clock, make_settings
from tests.e2e.conftest import serving
from tests.e2e.test_inbox_e2e import SHANGHAI, login, logout, next_saturday_window
from tests.processes.conftest import Flow
from tests.processes.test_change import change_request, evidence_for
from tests.processes.test_delivery import ITEMS, delivery_request
from tests.processes.test_emergency import FIRST_REPORT, declaration
from tests.processes.test_incident import incident_report
from tests.processes.test_system_testing import passed_test_case

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def library_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ProcessEngine]]:
    """The whole process library and the demo users."""
    tmp = tmp_path_factory.mktemp("e2e-decisions")
    engine = ProcessEngine(make_settings(f"sqlite:///{tmp / 'opsflow.db'}", tmp, forms_dir=ROOT / "forms",
                                         processes_dir=ROOT / "processes"))
    yield from serving(engine)


def open_task(page, engine: ProcessEngine, base: str, case: int, bpmn_id: str) -> None:
    task = next(t for t in engine.runtime.show(case).open_tasks if t.bpmn_id == bpmn_id)
    page.goto(f"{base}/tasks/{task.id}")
    if page.locator("#claim").count():
        page.click("#claim")
    page.wait_for_selector("#task-form")


def decide(page, decision: str, comment: str, outcome: str = "decision") -> None:
    assert not page.locator(f"[name={outcome}]:checked").count(), f"a {outcome} is pre-selected"
    assert page.input_value("[name=comment]") == "", "the comment box opens with someone's words"
    if page.locator("[name=conditions]").count():
        assert page.input_value("[name=conditions]") == "", "the conditions open with someone's words"
    page.check(f"[name={outcome}][value={decision}]")
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
        rollback_tested=False, test_case_id=evidence_for(Flow(engine))))
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


@pytest.fixture
def clock(library_server) -> Iterator[Clock]:
    """The live server's clock, to move instead of waiting for a change window or a trial period to pass."""
    engine = library_server[1]
    real = engine.ctx.clock
    engine.ctx.clock = moved = Clock(real())
    try:
        yield moved
    finally:
        engine.ctx.clock = real


def in_inbox(page, engine: ProcessEngine, case: int, bpmn_id: str) -> bool:
    """The case's open step is a row of the inbox the signed-in user sees (other cases may have the same step)."""
    task = next(t for t in engine.runtime.show(case).open_tasks if t.bpmn_id == bpmn_id)
    return page.locator(f"#inbox tr[data-task='{task.id}']").count() == 1


def record_rows(page, *steps: str) -> list[tuple[str, str, str]]:
    """The approval record on the page as (step, who, outcome), of the named steps."""
    rows = page.locator("#approval-record tbody tr")
    found = []
    for i in range(rows.count()):
        row = rows.nth(i)
        if row.get_attribute("data-bpmn") in steps:
            found.append((row.get_attribute("data-bpmn"), row.locator("td.who").inner_text().strip(),
                          row.locator("td.outcome").inner_text().strip()))
    return found


def accept_all_checks(page) -> None:
    boxes = page.locator("input[type=checkbox][name^='checks.']")
    assert boxes.count() == 8 and not page.locator("input[name^='checks.']:checked").count(), (
        "the acceptance opens with deliverables already ticked")
    for i in range(boxes.count()):
        boxes.nth(i).check()


def go_live(flow: Flow, clock: Clock, case: int, test_case: int) -> None:
    """Data entry, through the engine: a go-live change in next weekend's window runs to a successful close,
    the ops manager confirms the go-live and the seven-day trial passes."""
    start, end = (f"{at}:00+08:00" for at in next_saturday_window())
    flow.do(case, "request_go_live", "zhangwei", {"change_type": "normal", "window_start": start, "window_end": end})
    change = [x["instance_id"] for x in flow.links(case) if x["kind"] == "go_live"][-1]
    prefilled = flow.prefill(change, "request")
    flow.do(change, "request", "zhangwei", change_request(
        title=prefilled["title"], purpose=prefilled["purpose"], systems=prefilled["systems"],
        target_versions=prefilled["target_versions"], window_start=start, window_end=end, test_case_id=test_case))
    flow.do(change, "approve_ops", "liuyang", {"decision": "approve"})
    clock.now = datetime.fromisoformat(start) + timedelta(seconds=1)  # the window opens
    flow.engine.runtime.fire_due_timers()
    done = (datetime.fromisoformat(start) + timedelta(minutes=40)).isoformat()
    flow.do(change, "implement", "lina", {"steps": [{"at": start, "action": "部署清算 V3", "result": "完成"}],
                                          "finished_at": done})
    for step, who in (("review", "wangqiang"), ("verify_tech", "lina"), ("verify_business", "zhoujie")):
        flow.do(change, step, who, {"result": "success"})
    flow.do(change, "close", "liuyang", {"outcome": "成功", "config_items_updated": True,
                                         "config_items": ["RISK-APP-01"]})
    assert flow.status(change) == "completed"
    flow.do(case, "confirm_go_live", "liuyang", {"result": "success", "live_at": done})
    clock.now = datetime.fromisoformat(done) + timedelta(days=7, seconds=1)  # the trial period is over
    flow.engine.runtime.fire_due_timers()
    assert flow.open_names(case) == ["final_business", "final_ops"]


def test_delivery_acceptance_decisions_in_the_browser(library_server, clock: Clock, browser,
                                                      screenshot_dir: Path) -> None:
    base, engine = library_server
    flow = Flow(engine)
    test_case = passed_test_case(flow)
    case = flow.start("delivery", "zhangwei", {"title": "清算系统 V3 交付"})
    flow.do(case, "request", "zhangwei", delivery_request(test_case, trial_period="P7D"))
    assert flow.open_names(case) == ["accept_ops"]
    context = browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)

    login(page, base, "liuyang")  # the ops manager ticks every deliverable but sends it back with his words
    open_task(page, engine, base, case, "accept_ops")
    accept_all_checks(page)
    decide(page, "return", "请补充培训签到表")
    logout(page)

    login(page, base, "zhangwei")  # the requester: the delivery is back, in red, with the reason and who
    assert in_inbox(page, engine, case, "request")
    open_task(page, engine, base, case, "request")
    banner = page.inner_text("#returned")
    assert "已退回" in banner and "运维负责人退回：请补充培训签到表" in banner and "刘洋" in banner
    assert page.input_value("[name=title]") == "清算系统 V3 交付"  # their own request, to edit
    assert "验收意见：请补充培训签到表" in page.inner_text("#approval-record")  # the manager's words, in the record
    page.screenshot(path=str(screenshot_dir / "decisions-delivery-1-returned-zh.png"), full_page=True)
    page.fill("[name=description]", "新增实时风控指标与预警，附培训签到表")
    page.click("#submit")
    page.wait_for_selector(".flash.ok")
    logout(page)

    login(page, base, "liuyang")  # round two opens empty: his earlier words are in the record only
    open_task(page, engine, base, case, "accept_ops")
    assert not page.locator("#returned").count()  # a fresh decision, not a task sent back
    assert page.content().count("请补充培训签到表") == 1
    assert record_rows(page, "accept_ops") == [("accept_ops", "刘洋", "退回")]
    accept_all_checks(page)
    decide(page, "approve", "交付物齐全，同意验收")
    logout(page)

    go_live(flow, clock, case, test_case)

    login(page, base, "liuyang")  # final acceptance: an empty verdict, whatever he decided before
    open_task(page, engine, base, case, "final_ops")
    content = page.content()
    assert content.count("请补充培训签到表") == 1 and content.count("交付物齐全，同意验收") == 1
    decide(page, "success", "试运行期间无遗留问题", outcome="result")
    logout(page)

    login(page, base, "zhoujie")  # the business verifier: the ops manager's words once, in the record
    open_task(page, engine, base, case, "final_business")
    content = page.content()
    for words in ("请补充培训签到表", "交付物齐全，同意验收", "试运行期间无遗留问题"):
        assert content.count(words) == 1, words
    assert record_rows(page, "final_ops") == [("final_ops", "刘洋", "成功")]
    page.screenshot(path=str(screenshot_dir / "decisions-delivery-2-final-business-zh.png"), full_page=True)
    decide(page, "success", "业务验证通过，同意投产", outcome="result")

    page.goto(f"{base}/cases/{case}")
    page.wait_for_selector("#approval-record")
    assert page.inner_text("#case-status") == "已完成"
    content = page.content()
    for words in ("请补充培训签到表", "交付物齐全，同意验收", "试运行期间无遗留问题", "业务验证通过，同意投产"):
        assert content.count(words) == 1, words
    assert record_rows(page, "accept_ops", "final_ops", "final_business") == [
        ("accept_ops", "刘洋", "退回"), ("accept_ops", "刘洋", "批准"),
        ("final_ops", "刘洋", "成功"), ("final_business", "周杰", "成功")]
    page.screenshot(path=str(screenshot_dir / "decisions-delivery-3-case-zh.png"), full_page=True)
    context.close()


def test_incident_and_its_emergency_decisions_in_the_browser(library_server, browser,
                                                             screenshot_dir: Path) -> None:
    base, engine = library_server
    flow = Flow(engine)
    now = datetime.now(SHANGHAI).replace(second=0, microsecond=0)

    def at(minutes_ago: int) -> str:
        return (now - timedelta(minutes=minutes_ago)).isoformat()

    # data entry through the engine: a P1 incident on 集中交易 (较大, reportable) opens the linked emergency,
    # the duty officer declares it
    incident = flow.start("incident", "zhangwei", {"title": "事件"})
    flow.do(incident, "report", "zhangwei", incident_report(
        flow.engine, title="集中交易委托中断", description="集中交易主机宕机，委托无法报送",
        systems=["集中交易"], impact="high", urgency="high", outage_minutes=10, discovered_at=at(12)))
    emergency = next(x["instance_id"] for x in flow.links(incident) if x["kind"] == "emergency")
    flow.do(emergency, "declare", "wuhao", declaration(discovered_at=at(12)))
    assert flow.open_names(emergency) == ["activate"]
    context = browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)

    login(page, base, "xuli")  # the emergency lead activates the plan, in her own words
    assert in_inbox(page, engine, emergency, "activate")
    open_task(page, engine, base, emergency, "activate")
    decide(page, "approve", "同意启动集中交易系统故障应急预案")
    logout(page)
    assert flow.open_names(emergency) == ["dispose", "first_report", "notify"]

    report: dict[str, Any] = {**FIRST_REPORT, "occurred_at": at(14), "phone_reported_at": at(2)}
    flow.do(emergency, "first_report", "sunyan", report)  # compliance drafts the first report

    login(page, base, "zhaolei")  # the 签发人: an empty decision, the lead's words in the record only
    assert in_inbox(page, engine, emergency, "sign_first_report")
    open_task(page, engine, base, emergency, "sign_first_report")
    assert page.content().count("同意启动集中交易系统故障应急预案") == 1
    assert record_rows(page, "activate") == [("activate", "徐丽", "批准")]
    page.screenshot(path=str(screenshot_dir / "decisions-emergency-1-sign-zh.png"), full_page=True)
    decide(page, "return", "补充受影响客户数")
    logout(page)

    login(page, base, "sunyan")  # the revision waits in compliance's queue, in red, with the reason and who
    assert in_inbox(page, engine, emergency, "revise_first_report")
    open_task(page, engine, base, emergency, "revise_first_report")
    banner = page.inner_text("#returned")
    assert "已退回" in banner and "信息技术负责人退回：补充受影响客户数" in banner and "赵磊" in banner
    assert page.input_value("[name=affected_people]") == "30000"  # the report as drafted, to edit
    assert page.content().count("补充受影响客户数") == 2  # the banner's reason and the signer's words in the record
    page.screenshot(path=str(screenshot_dir / "decisions-emergency-2-returned-zh.png"), full_page=True)
    page.fill("[name=affected_people]", "31000")
    page.click("#submit")
    page.wait_for_selector(".flash.ok")
    logout(page)

    login(page, base, "zhaolei")  # the second signing opens empty: no stale 退回, his words once
    open_task(page, engine, base, emergency, "sign_first_report")
    assert not page.locator("#returned").count()  # a fresh decision, not a task sent back
    content = page.content()
    assert content.count("补充受影响客户数") == 1 and content.count("同意启动集中交易系统故障应急预案") == 1
    decide(page, "approve", "同意报送住所地证监局")
    logout(page)
    assert "submit_first_report" in flow.open_names(emergency)

    # the incident goes on beside the emergency: an engineer restores service, the duty officer confirms it
    flow.do(incident, "respond", "lina", {"assessment": "集中交易主机硬件故障"})
    flow.do(incident, "resolve", "lina", {"actions": [{"at": at(1), "action": "切换备机"}],
                                          "restored_at": now.isoformat(), "outage_minutes": 12})
    login(page, base, "wuhao")
    open_task(page, engine, base, incident, "confirm")
    decide(page, "success", "全部营业部委托恢复正常", outcome="result")

    page.goto(f"{base}/cases/{incident}")
    page.wait_for_selector("#approval-record")
    assert record_rows(page, "confirm") == [("confirm", "吴昊", "成功")]
    assert page.content().count("全部营业部委托恢复正常") == 1
    assert f"#{emergency}" in page.inner_text("#links")

    page.goto(f"{base}/cases/{emergency}")  # every decider once per decision, with the outcome and their words
    page.wait_for_selector("#approval-record")
    assert record_rows(page, "activate", "sign_first_report") == [
        ("activate", "徐丽", "批准"), ("sign_first_report", "赵磊", "退回"), ("sign_first_report", "赵磊", "批准")]
    content = page.content()
    for words in ("同意启动集中交易系统故障应急预案", "补充受影响客户数", "同意报送住所地证监局"):
        assert content.count(words) == 1, words
    assert f"#{incident}" in page.inner_text("#links")
    page.screenshot(path=str(screenshot_dir / "decisions-emergency-3-case-zh.png"), full_page=True)
    context.close()


def test_returned_delivery_shows_the_managers_words_only_in_the_banner_and_the_record(
        library_server, browser) -> None:
    base, engine = library_server
    flow = Flow(engine)
    case = flow.start("delivery", "zhangwei", {"title": "清算系统 V3 交付"})
    flow.do(case, "request", "zhangwei", delivery_request(passed_test_case(flow)))
    flow.do(case, "accept_ops", "liuyang", {"checks": {k: True for k in ITEMS}, "decision": "return",
                                            "comment": "请补充运维交接签字页"})
    context = browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    try:
        login(page, base, "zhangwei")
        open_task(page, engine, base, case, "request")
        assert "请补充运维交接签字页" in page.inner_text("#returned")
        assert page.content().count("请补充运维交接签字页") == 2  # the banner's reason, the record's words
    finally:
        context.close()
