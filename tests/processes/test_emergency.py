"""应急处置与调查处理 (emergency): one scenario per path of processes/emergency.bpmn (REQUIREMENTS §3.5)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from engine.errors import Forbidden, ValidationFailed
from tests.processes.conftest import SHANGHAI, Flow
from tests.processes.test_incident import reported

DISCOVERED = "2026-11-20T18:05:00+08:00"
APPROVE = {"decision": "approve"}
SUCCESS = {"result": "success"}
FILE = {"name": "报告书.pdf", "sha256": "c" * 64}
PARTIES = ["住所地证监局", "上海证券交易所", "深圳证券交易所", "客户服务中心", "营业部"]  # EP-TRADE-01's notify list
FIRST_REPORT = {
    "occurred_at": "2026-11-20T18:03:00+08:00", "place": "上海主数据中心", "course": "集中交易主机宕机，委托无法报送",
    "scope": "全部营业部，约 3 万客户", "affected_people": 30000, "consequences": "委托中断",
    "cause_nature": "初步判断为主机硬件故障", "measures": "切换备机中", "reporting_unit": "示例证券股份有限公司",
    "signer": "zhaolei", "contact_person": "孙艳", "contact_phone": "021-60000000",
    "phone_reported_at": "2026-11-20T18:20:00+08:00", "recipients": ["住所地证监局"]}
SUBMITTED = {"submitted_at": "2026-11-20T18:40:00+08:00", "recipients": ["住所地证监局"], "channel": "system",
             "signed_report": FILE}
PROGRESS = {"reported_at": "2026-11-20T19:05:00+08:00", "progress": "备机已接管 80% 营业部", "channel": "phone"}
ITEMS = [{"id": "R1", "title": "主机硬件巡检纳入日常操作", "owner": "lina", "due_date": "2026-12-31"},
         {"id": "R2", "title": "备机自动切换演练", "owner": "wangqiang", "due_date": "2027-01-15"}]


def declaration(**changes: Any) -> dict[str, Any]:
    data = {"title": "集中交易系统中断", "plan_id": "EP-TRADE-01", "situation": "集中交易主机宕机，委托无法报送",
            "discovered_at": DISCOVERED, "affected_systems": ["集中交易"], "level": "较大",
            "restorable_within_30min": False, "critical_infrastructure": False}
    data.update(changes)
    return data


def step(action: str, status: str = "continue", **extra: Any) -> dict[str, Any]:
    return {"steps": [{"at": "2026-11-20T18:30:00+08:00", "action": action, "result": "完成"}],
            "evidence_protected": True, "disposal_status": status, **extra}


def summary(items: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"basic_facts": {"time": "2026-11-20 18:03–20:30", "place": "上海主数据中心", "course": "主机宕机后切换备机",
                            "scope": "全部营业部", "loss": "无直接经济损失"},
            "disposal": {"reports_made": "18:20 电话报告，18:40 书面首报，每小时续报", "measures": "切换备机",
                         "effect": "20:30 恢复"},
            "investigation": {"cause": "主机电源模块老化失效", "level": "较大", "responsibility": "硬件巡检不到位",
                              "conclusion": "设备故障，巡检缺失"},
            "handling": {"problems_exposed": "巡检与切换演练不足", "rectification_items": items or ITEMS,
                         "accountability": "对机房管理员通报批评"}}


def linked(flow: Flow, case: int, kind: str) -> int:
    found = [link["instance_id"] for link in flow.links(case) if link["kind"] == kind]
    assert len(found) == 1, flow.links(case)
    return found[0]


def links(flow: Flow, case: int) -> list[tuple[str, str, int]]:
    return [(x["kind"], x["direction"], x["instance_id"]) for x in flow.links(case)]


def task_data(flow: Flow, case: int, bpmn_id: str) -> dict[str, Any]:
    return flow.engine.tasks.get(flow.task(case, bpmn_id).id).data


def activated(flow: Flow, **changes: Any) -> tuple[int, int]:
    """A P1 集中交易 incident opens the emergency; the duty officer declares it and the lead activates the plan."""
    incident = reported(flow, impact="high", urgency="high", system_class="集中交易", outage_minutes=10)
    emergency = linked(flow, incident, "emergency")
    assert flow.open_names(emergency) == ["declare"]
    flow.do(emergency, "declare", "wuhao", declaration(**changes))
    flow.do(emergency, "activate", "xuli", APPROVE)
    return incident, emergency


def fire_at(flow: Flow, when: str) -> None:
    flow.engine.ctx.clock.now = datetime.fromisoformat(when)
    flow.engine.runtime.fire_due_timers()


def recover(flow: Flow, case: int, cause_known: bool = True, at: str = "2026-11-20T20:30:00+08:00") -> None:
    flow.do(case, "dispose", "lina", step("切换备机完成", "restored", restored_at=at))
    flow.do(case, "confirm_recovery", "xuli", {"result": "success", "recovered_at": at, "cause_known": cause_known})


def report_first(flow: Flow, case: int) -> None:
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    flow.do(case, "sign_first_report", "zhaolei", APPROVE)
    flow.do(case, "submit_first_report", "sunyan", SUBMITTED)


def finish_emergency(flow: Flow, case: int, cause_known: bool = True,
                     recovered_at: str = "2026-11-20T20:30:00+08:00") -> None:
    """Every parallel branch to its end, so the case moves on to the investigation."""
    report_first(flow, case)
    flow.do(case, "notify", "wuhao", {"notifications": [
        {"party": p, "channel": "phone", "at": "2026-11-20T18:25:00+08:00"} for p in PARTIES]})
    recover(flow, case, cause_known, recovered_at)
    flow.do(case, "recovery_report", "sunyan", {**PROGRESS, "progress": "20:30 已全部恢复"})


def rectify_and_close(flow: Flow, case: int) -> None:
    for item in ITEMS:
        flow.do(case, "rectify", item["owner"], {"completed_at": "2026-12-20T10:00:00+08:00", "summary": "已完成整改",
                                                 "evidence": FILE}, assignee=item["owner"])
    flow.do(case, "close_review", "liuyang", SUCCESS)
    assert flow.status(case) == "completed"


def test_p1_incident_emergency_runs_disposal_reporting_and_notification_in_parallel(flow: Flow) -> None:
    incident, case = activated(flow)
    assert links(flow, case) == [("emergency", "from", incident)]
    assert flow.open_names(case) == ["dispose", "first_report", "notify"]
    assert "dispose" in [t.bpmn_id for t in flow.inbox("lina")]
    assert "first_report" in [t.bpmn_id for t in flow.inbox("sunyan")]
    assert "notify" in [t.bpmn_id for t in flow.inbox("wuhao")]
    data = task_data(flow, case, "first_report")
    assert data["plan"]["name"] == "集中交易系统故障应急预案"
    assert (data["first_report_minutes"], data["first_report_due"]) == (30, "2026-11-20T18:35:00+08:00")
    assert data["reporting_rules"][0].startswith("证监会 2012 办法第十六条（三）")
    assert flow.task(case, "first_report").due_at == datetime(2026, 11, 20, 18, 35, tzinfo=SHANGHAI)

    fire_at(flow, "2026-11-20T18:34:00+08:00")
    assert "escalate_first_report" not in flow.open_names(case)
    fire_at(flow, "2026-11-20T18:36:00+08:00")  # first report late: the 签发人 is told
    assert "escalate_first_report" in [t.bpmn_id for t in flow.inbox("zhaolei")]
    flow.do(case, "escalate_first_report", "zhaolei", {"note": "已要求合规立即电话报告"})

    flow.do(case, "dispose", "lina", step("隔离故障主机"))
    assert task_data(flow, case, "dispose")["disposal_log"][0]["action"] == "隔离故障主机"
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    sign = flow.task(case, "sign_first_report")
    assert sign.assignee == "zhaolei"
    flow.do(case, "sign_first_report", "zhaolei", {"decision": "return", "comment": "补充受影响客户数"})
    assert task_data(flow, case, "revise_first_report")["first_signoff_comment"] == "补充受影响客户数"
    flow.do(case, "revise_first_report", "sunyan", {**FIRST_REPORT, "affected_people": 31000})
    flow.do(case, "sign_first_report", "zhaolei", APPROVE)
    flow.do(case, "submit_first_report", "sunyan", SUBMITTED)

    fire_at(flow, "2026-11-20T19:01:00+08:00")  # unresolved after an hour: a progress report is due
    assert flow.open_names(case).count("progress_report") == 1
    flow.do(case, "progress_report", "sunyan", PROGRESS)
    fire_at(flow, "2026-11-20T20:01:00+08:00")
    assert flow.open_names(case).count("progress_report") == 1

    flow.do(case, "notify", "wuhao", {"notifications": [
        {"party": "住所地证监局", "channel": "phone", "at": "2026-11-20T18:25:00+08:00"}]})
    assert flow.open_names(case).count("notify") == 1
    assert task_data(flow, case, "notify")["notify_reason"] == (
        "尚未通知预案所列相关方：上海证券交易所、深圳证券交易所、客户服务中心、营业部")
    flow.do(case, "notify", "wuhao", {"notifications": [
        {"party": p, "channel": "phone", "at": "2026-11-20T18:45:00+08:00"} for p in PARTIES[1:]]})
    assert "notify" not in flow.open_names(case)

    recover(flow, case)  # the open reminder is withdrawn: the recovery report takes its place
    assert flow.open_names(case) == ["recovery_report"]
    fire_at(flow, "2026-11-20T23:00:00+08:00")  # recovered: no more reminders
    assert flow.open_names(case) == ["recovery_report"]
    flow.do(case, "recovery_report", "sunyan", {**PROGRESS, "progress": "20:30 已全部恢复"})

    # investigation: summary report within 5 working days of recovery (Friday 20:30 -> next Friday)
    summary_task = flow.task(case, "summary_report")
    assert summary_task.due_at == datetime(2026, 11, 27, 23, 59, 59, tzinfo=SHANGHAI)
    assert task_data(flow, case, "summary_report")["disposal_log"][-1]["action"] == "切换备机完成"
    flow.do(case, "summary_report", "liuyang", summary())
    flow.do(case, "sign_report", "zhaolei", APPROVE)
    flow.do(case, "submit_report", "sunyan", SUBMITTED)
    rectify = sorted((t.assignee, t.due_at) for t in flow.open_tasks(case))
    assert rectify == [("lina", datetime(2026, 12, 31, 23, 59, 59, tzinfo=SHANGHAI)),
                       ("wangqiang", datetime(2027, 1, 15, 23, 59, 59, tzinfo=SHANGHAI))]
    rectify_and_close(flow, case)


def test_unknown_cause_needs_a_preliminary_report_first(flow: Flow) -> None:
    _incident, case = activated(flow)
    finish_emergency(flow, case, cause_known=False)
    assert flow.open_names(case) == ["preliminary_report"]
    assert flow.task(case, "preliminary_report").due_at == datetime(2026, 11, 27, 23, 59, 59, tzinfo=SHANGHAI)
    flow.do(case, "preliminary_report", "liuyang", {
        "basic_facts": "11 月 20 日 18:03 集中交易中断，20:30 恢复", "disposal": "切换备机，逐一恢复营业部",
        "preliminary_analysis": "疑似存储控制器固件缺陷", "pending": "厂商分析固件日志",
        "final_report_due": "2026-12-18T18:00:00+08:00"})
    flow.do(case, "sign_report", "zhaolei", APPROVE)
    flow.do(case, "submit_report", "sunyan", SUBMITTED)
    assert flow.task(case, "summary_report").due_at == datetime(2026, 12, 18, 18, 0, tzinfo=SHANGHAI)
    flow.do(case, "summary_report", "liuyang", summary())
    flow.do(case, "sign_report", "zhaolei", {"decision": "return", "comment": "责任认定须具体到岗位"})
    assert flow.open_names(case) == ["summary_report"]
    assert task_data(flow, case, "summary_report")["report_signoff_comment"] == "责任认定须具体到岗位"
    flow.do(case, "summary_report", "liuyang", summary())
    flow.do(case, "sign_report", "zhaolei", APPROVE)
    flow.do(case, "submit_report", "sunyan", SUBMITTED)
    for item in ITEMS:
        flow.do(case, "rectify", item["owner"], {"completed_at": "2026-12-20T10:00:00+08:00", "summary": "已完成整改",
                                                 "evidence": FILE}, assignee=item["owner"])
    flow.do(case, "close_review", "liuyang", {"result": "failed", "comment": "R2 未演练切换", "reopen_items": ["R2"]})
    assert [(t.bpmn_id, t.assignee) for t in flow.open_tasks(case)] == [("rectify", "wangqiang")]
    flow.do(case, "rectify", "wangqiang", {"completed_at": "2027-01-10T10:00:00+08:00", "summary": "已完成切换演练",
                                           "evidence": FILE})
    flow.do(case, "close_review", "liuyang", SUCCESS)
    assert flow.status(case) == "completed"


def test_recovery_not_confirmed_goes_back_to_disposal_and_reminders_go_on(flow: Flow) -> None:
    _incident, case = activated(flow)
    flow.do(case, "dispose", "lina", step("重启交易网关", "restored", restored_at="2026-11-20T18:50:00+08:00"))
    flow.do(case, "confirm_recovery", "xuli", {"result": "failed", "comment": "部分营业部仍无法委托"})
    assert task_data(flow, case, "dispose")["recovery_comment"] == "部分营业部仍无法委托"
    fire_at(flow, "2026-11-20T19:01:00+08:00")
    assert "progress_report" in flow.open_names(case)
    recover(flow, case)
    assert "recovery_report" in flow.open_names(case)


def test_purge_needs_a_snapshot_and_a_second_approver(flow: Flow) -> None:
    flow.engine.identity.add_user("zhouqi", ["ops_engineer", "ops_manager"], "周琦")
    _incident, case = activated(flow)
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "dispose", "zhouqi", step("清理满盘日志", "purge"))
    assert [e.field for e in refused.value.errors] == ["purge"]
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "dispose", "zhouqi", step("清理满盘日志", "purge",
                                                purge={"target": "/data/log", "reason": "日志盘已满无法写入"}))
    assert [e.field for e in refused.value.errors] == ["purge.snapshot"]
    with pytest.raises(ValidationFailed):  # the scene is always protected
        flow.do(case, "dispose", "zhouqi", {**step("清理日志"), "evidence_protected": False})
    purge = {"target": "/data/log/trade-*.log", "reason": "日志盘满导致交易网关无法写入",
             "snapshot": {"name": "snap-20261120-1840", "location": "备份存储 /snap", "sha256": "d" * 64}}
    flow.do(case, "dispose", "zhouqi", step("申请清理日志", "purge", purge=purge))
    with pytest.raises(Forbidden) as barred:  # who asked for the purge may not approve it
        flow.engine.tasks.claim(flow.task(case, "approve_purge").id, flow.user("zhouqi"))
    assert barred.value.rule == "separation_of_duties"
    flow.do(case, "approve_purge", "liuyang", APPROVE)
    data = task_data(flow, case, "dispose")
    assert data["purge_decision"] == "approve"
    assert data["purge_log"] == [{"target": "/data/log/trade-*.log", "snapshot": purge["snapshot"],
                                  "decision": "approve", "comment": ""}]
    assert flow.task(case, "dispose").assignee is None  # back to the engineers' queue


def test_declaration_needs_an_incident_and_an_active_plan(flow: Flow) -> None:
    case = flow.start("emergency", "wuhao", {"title": "机房断电"})
    assert [e["id"] for e in flow.data(case)["plan_register"]][:2] == ["EP-TRADE-01", "EP-ONLINE-01"]
    assert "EP-TRADE-00" not in [e["id"] for e in flow.data(case)["plan_register"]]  # retired plans are not offered
    flow.do(case, "declare", "wuhao", declaration(plan_id="EP-TRADE-00"))
    reason = flow.data(case)["return_reason"]
    assert "须关联至少一个 incident 流程" in reason and "EP-TRADE-00 已停用" in reason
    incident = reported(flow)  # a minor incident: it opened no emergency itself
    flow.do(case, "declare", "wuhao", declaration(plan_id="EP-NONE", incident_case_id=incident))
    assert flow.data(case)["return_reason"].startswith("应急预案：登记册中没有 'EP-NONE'")
    flow.do(case, "declare", "wuhao", declaration(incident_case_id=incident, plan_id="EP-DC-01"))
    assert flow.open_names(case) == ["activate"]
    assert links(flow, case) == [("emergency", "from", incident)]


def test_activation_may_be_returned_or_refused(flow: Flow) -> None:
    incident = reported(flow, impact="high", urgency="high")
    case = linked(flow, incident, "emergency")
    flow.do(case, "declare", "wuhao", declaration())
    flow.do(case, "activate", "xuli", {"decision": "return", "comment": "预案选择有误，应为网上交易预案"})
    assert flow.data(case)["return_reason"] == "应急指挥退回：预案选择有误，应为网上交易预案"
    flow.do(case, "declare", "wuhao", declaration(plan_id="EP-ONLINE-01"))
    flow.do(case, "activate", "xuli", {"decision": "reject", "comment": "已恢复，无需启动应急"})
    assert flow.status(case) == "completed"
    assert flow.data(case)["activation"] == "reject"


CSRC, CAC, CII = "证监会派出机构（住所地证监局）", "省级网信部门", "关键信息基础设施保护工作部门、公安机关"


@pytest.mark.parametrize(("changes", "minutes", "recipients"), [
    ({"restorable_within_30min": False}, 30, [CAC, CSRC]),  # 2012: not restorable in 30 min -> at once
    ({"restorable_within_30min": True, "leaked_records": 500}, 30, [CAC, CSRC]),  # 2012: investor data leaked
    ({"restorable_within_30min": True, "critical_infrastructure": True}, 60, [CII]),  # CAC 2025: CII 1 h
    ({"restorable_within_30min": True}, 240, [CAC]),  # CAC 2025: other operators 4 h
    ({"restorable_within_30min": True, "level": "一般"}, 120, [CSRC]),  # the firm's own seed rule
])
def test_first_report_deadline_follows_the_rule_set(flow: Flow, changes: dict[str, Any], minutes: int,
                                                    recipients: list[str]) -> None:
    _incident, case = activated(flow, **changes)
    data = task_data(flow, case, "first_report")
    assert (data["first_report_minutes"], data["report_recipients"]) == (minutes, recipients)
    due = datetime.fromisoformat(DISCOVERED) + timedelta(minutes=minutes)
    assert flow.task(case, "first_report").due_at == due


def test_signer_and_rectification_owners_are_checked(flow: Flow) -> None:
    _incident, case = activated(flow)
    with pytest.raises(ValidationFailed) as refused:  # the 签发人 must be the head of IT
        flow.do(case, "first_report", "sunyan", {**FIRST_REPORT, "signer": "liuyang"})
    assert [e.field for e in refused.value.errors] == ["signer"]
    finish_emergency(flow, case)
    flow.do(case, "summary_report", "liuyang", summary([{**ITEMS[0], "owner": "zhoujie"}]))
    assert flow.open_names(case) == ["summary_report"]
    assert task_data(flow, case, "summary_report")["owners_check"]["reason"] == (
        "整改项 R1 责任人：用户 zhoujie 不具备角色 ops_engineer")
    flow.do(case, "summary_report", "liuyang", summary())
    assert flow.open_names(case) == ["sign_report"]


def test_investigation_deadline_counts_working_days_of_the_trading_calendar(flow: Flow) -> None:
    flow.engine.ctx.clock.now = datetime(2026, 9, 30, 18, 0, tzinfo=SHANGHAI)  # the eve of National Day
    _incident, case = activated(flow, discovered_at="2026-09-30T18:05:00+08:00")
    finish_emergency(flow, case, recovered_at="2026-09-30T20:30:00+08:00")
    # closed 10-01..10-07 (weekend and holidays): the 5th working day after recovery is Wednesday 10-14
    assert flow.task(case, "summary_report").due_at == datetime(2026, 10, 14, 23, 59, 59, tzinfo=SHANGHAI)
