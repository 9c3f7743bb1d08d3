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
PRELIMINARY = {"preliminary_facts": "11 月 20 日 18:03 集中交易中断，20:30 恢复",
               "preliminary_disposal": "切换备机，逐一恢复营业部", "preliminary_analysis": "疑似存储控制器固件缺陷",
               "pending": "厂商分析固件日志", "final_report_due": "2026-12-18T18:00:00+08:00"}
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


def facts(flow: Flow, case: int, bpmn_id: str) -> dict[str, Any]:
    """The case's facts as the open task sees them (its form opens only with its own case fields)."""
    return flow.engine.tasks.get(flow.task(case, bpmn_id).id).case_data


def answers(entry: Any) -> dict[str, Any]:
    return {a["field"]: a["value"] for a in entry.answers}


def last(flow: Flow, case: int, bpmn_id: str) -> Any:
    """The latest approval-record entry of a step."""
    return [e for e in flow.record(case) if e.bpmn_id == bpmn_id][-1]


def returned(flow: Flow, case: int, bpmn_id: str) -> tuple[str | None, str | None, str | None]:
    task = flow.task(case, bpmn_id)
    return task.assignee, task.return_reason, task.returned_by


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
    assert flow.prefill(case, "first_report") == {}
    data = facts(flow, case, "first_report")
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
    assert facts(flow, case, "dispose")["disposal_log"][0]["action"] == "隔离故障主机"
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    sign = flow.task(case, "sign_first_report")
    assert sign.assignee == "zhaolei"
    assert flow.prefill(case, "sign_first_report") == {}
    flow.do(case, "sign_first_report", "zhaolei", {"decision": "return", "comment": "补充受影响客户数"})
    # the revision is a step of its own: the compliance queue takes it, with the signer's reason
    assert returned(flow, case, "revise_first_report") == (None, "信息技术负责人退回：补充受影响客户数", "zhaolei")
    assert "revise_first_report" in [t.bpmn_id for t in flow.inbox("sunyan")]
    opening = flow.prefill(case, "revise_first_report")
    assert opening == FIRST_REPORT  # the report as drafted, to edit; not the signer's decision or comment
    signed = last(flow, case, "sign_first_report")
    assert (signed.completed_by, signed.outcome, signed.outcome_label) == ("zhaolei", "return", "退回")
    assert answers(signed) == {"comment": "补充受影响客户数"}
    flow.do(case, "revise_first_report", "sunyan", {**FIRST_REPORT, "affected_people": 31000})
    assert flow.prefill(case, "sign_first_report") == {}  # the second signing opens empty too
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
    # an automatic check sends it back to the duty officer who sent the notifications (returned_by: None)
    assert returned(flow, case, "notify") == (
        "wuhao", "尚未通知预案所列相关方：上海证券交易所、深圳证券交易所、客户服务中心、营业部", None)
    assert flow.prefill(case, "notify") == {}  # only the parties still missing are entered
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
    seen = facts(flow, case, "summary_report")  # every branch's facts, joined
    assert seen["disposal_log"][-1]["action"] == "切换备机完成"
    assert [n["party"] for n in seen["notification_log"]] == PARTIES
    assert seen["affected_people"] == 31000  # the revised first report is the case's
    assert (seen["recovered_at"], seen["cause_known"]) == ("2026-11-20T20:30:00+08:00", True)
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
    assert returned(flow, case, "preliminary_report") == (None, None, None)  # the first draft: the managers' queue
    flow.do(case, "preliminary_report", "liuyang", PRELIMINARY)
    flow.do(case, "sign_report", "zhaolei", APPROVE)
    flow.do(case, "submit_report", "sunyan", SUBMITTED)
    assert flow.task(case, "summary_report").due_at == datetime(2026, 12, 18, 18, 0, tzinfo=SHANGHAI)
    assert flow.task(case, "summary_report").return_reason is None  # the approved preliminary is no return
    assert flow.prefill(case, "summary_report") == {}  # the summary does not open with the preliminary's text
    flow.do(case, "summary_report", "liuyang", summary())
    flow.do(case, "sign_report", "zhaolei", {"decision": "return", "comment": "责任认定须具体到岗位"})
    assert flow.open_names(case) == ["summary_report"]
    assert returned(flow, case, "summary_report") == ("liuyang", "信息技术负责人退回：责任认定须具体到岗位", "zhaolei")
    opening = flow.prefill(case, "summary_report")
    assert opening["handling"]["rectification_items"] == ITEMS  # the writer's own report, to edit
    assert "decision" not in opening and "comment" not in opening
    flow.do(case, "summary_report", "liuyang", summary())
    assert flow.prefill(case, "sign_report") == {}
    flow.do(case, "sign_report", "zhaolei", APPROVE)
    flow.do(case, "submit_report", "sunyan", SUBMITTED)
    for item in ITEMS:
        flow.do(case, "rectify", item["owner"], {"completed_at": "2026-12-20T10:00:00+08:00", "summary": "已完成整改",
                                                 "evidence": FILE}, assignee=item["owner"])
    flow.do(case, "close_review", "liuyang", {"result": "failed", "comment": "R2 未演练切换", "reopen_items": ["R2"]})
    assert [(t.bpmn_id, t.assignee) for t in flow.open_tasks(case)] == [("rectify", "wangqiang")]  # the item's owner
    review = last(flow, case, "close_review")
    assert (review.outcome, review.outcome_label) == ("failed", "有未通过项")
    assert answers(review) == {"comment": "R2 未演练切换", "reopen_items": ["R2"]}
    assert flow.prefill(case, "rectify") == {}
    flow.do(case, "rectify", "wangqiang", {"completed_at": "2027-01-10T10:00:00+08:00", "summary": "已完成切换演练",
                                           "evidence": FILE})
    assert flow.prefill(case, "close_review") == {}  # the second review opens without the first one's failure
    flow.do(case, "close_review", "liuyang", SUCCESS)
    assert flow.status(case) == "completed"
    assert last(flow, case, "close_review").outcome_label == "全部通过"


def test_returned_preliminary_report_reopens_for_its_writer(flow: Flow) -> None:
    _incident, case = activated(flow)
    finish_emergency(flow, case, cause_known=False)
    flow.do(case, "preliminary_report", "liuyang", PRELIMINARY)
    flow.do(case, "sign_report", "zhaolei", {"decision": "reject", "comment": "初步分析须给出排查范围"})
    assert flow.open_names(case) == ["preliminary_report"]  # a regulatory report is never dropped
    assert returned(flow, case, "preliminary_report") == (
        "liuyang", "信息技术负责人驳回：初步分析须给出排查范围", "zhaolei")
    assert flow.prefill(case, "preliminary_report") == PRELIMINARY
    flow.do(case, "preliminary_report", "liuyang", {**PRELIMINARY, "pending": "排查存储控制器与多路径软件"})
    flow.do(case, "sign_report", "zhaolei", APPROVE)
    assert [(e.bpmn_id, e.completed_by, e.outcome_label, e.return_reason) for e in flow.record(case)][-3:] == [
        ("sign_report", "zhaolei", "驳回", None),
        ("preliminary_report", "liuyang", None, "信息技术负责人驳回：初步分析须给出排查范围"),
        ("sign_report", "zhaolei", "批准", None)]
    flow.do(case, "submit_report", "sunyan", SUBMITTED)
    assert flow.open_names(case) == ["summary_report"]


def test_recovery_not_confirmed_goes_back_to_disposal_and_reminders_go_on(flow: Flow) -> None:
    _incident, case = activated(flow)
    assert flow.task(case, "dispose").return_reason is None  # the first round is no return
    flow.do(case, "dispose", "lina", step("重启交易网关", "restored", restored_at="2026-11-20T18:50:00+08:00"))
    flow.do(case, "confirm_recovery", "xuli", {"result": "failed", "comment": "部分营业部仍无法委托"})
    # back to the engineer who reported it restored, not to the queue
    assert returned(flow, case, "dispose") == ("lina", "应急指挥退回（未恢复）：部分营业部仍无法委托", "xuli")
    assert flow.prefill(case, "dispose") == {}  # a new round of steps; the earlier ones are in the log
    assert [x["action"] for x in facts(flow, case, "dispose")["disposal_log"]] == ["重启交易网关"]
    confirmed = last(flow, case, "confirm_recovery")
    assert (confirmed.completed_by, confirmed.outcome, confirmed.outcome_label) == ("xuli", "failed", "未恢复")
    fire_at(flow, "2026-11-20T19:01:00+08:00")
    assert "progress_report" in flow.open_names(case)
    flow.do(case, "dispose", "lina", step("逐一重连营业部"))
    assert returned(flow, case, "dispose") == (None, None, None)  # progress of its own: no stale return
    flow.do(case, "dispose", "lina", step("切换备机完成", "restored", restored_at="2026-11-20T20:30:00+08:00"))
    assert flow.prefill(case, "confirm_recovery") == {}  # the second confirmation opens without the 未恢复
    flow.do(case, "confirm_recovery", "xuli", {"result": "success", "recovered_at": "2026-11-20T20:30:00+08:00",
                                               "cause_known": True, "comment": "全部营业部委托正常"})
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
    assert flow.prefill(case, "approve_purge") == {}
    flow.do(case, "approve_purge", "liuyang", APPROVE)
    assert facts(flow, case, "dispose")["purge_log"] == [{"target": "/data/log/trade-*.log",
                                                          "snapshot": purge["snapshot"],
                                                          "decision": "approve", "comment": ""}]
    approved = last(flow, case, "approve_purge")
    assert (approved.completed_by, approved.outcome_label) == ("liuyang", "批准")
    assert returned(flow, case, "dispose") == (None, None, None)  # back to the engineers' queue
    asked = last(flow, case, "dispose")
    assert (asked.completed_by, asked.outcome, asked.outcome_label) == ("zhouqi", "purge", "申请清理日志或数据")
    assert answers(asked)["purge"] == purge


def test_purge_request_sent_back_or_refused_reopens_for_the_engineer_who_asked(flow: Flow) -> None:
    _incident, case = activated(flow)
    purge = {"target": "/data/log/trade-*.log", "reason": "日志盘满导致交易网关无法写入",
             "snapshot": {"name": "snap-20261120-1840", "location": "备份存储 /snap", "sha256": "d" * 64}}
    flow.do(case, "dispose", "lina", step("申请清理日志", "purge", purge=purge))
    flow.do(case, "approve_purge", "liuyang", {"decision": "return", "comment": "快照须经第二人核对校验值"})
    assert returned(flow, case, "dispose") == ("lina", "运维负责人退回清理申请：快照须经第二人核对校验值", "liuyang")
    assert flow.prefill(case, "dispose") == {}
    flow.do(case, "dispose", "lina", step("快照校验值已由王强核对", "purge", purge=purge))
    assert flow.prefill(case, "approve_purge") == {}  # the second decision opens without the first one's 退回
    flow.do(case, "approve_purge", "liuyang", {"decision": "reject", "comment": "改为扩容日志盘，不清理"})
    assert returned(flow, case, "dispose") == ("lina", "运维负责人驳回清理申请：改为扩容日志盘，不清理", "liuyang")
    assert [(x["decision"], x["comment"]) for x in facts(flow, case, "dispose")["purge_log"]] == [
        ("return", "快照须经第二人核对校验值"), ("reject", "改为扩容日志盘，不清理")]
    flow.do(case, "dispose", "lina", step("日志盘扩容完成"))
    assert returned(flow, case, "dispose") == (None, None, None)


def test_declaration_needs_an_incident_and_an_active_plan(flow: Flow) -> None:
    case = flow.start("emergency", "wuhao", {"title": "机房断电"})
    assert [e["id"] for e in flow.data(case)["plan_register"]][:2] == ["EP-TRADE-01", "EP-ONLINE-01"]
    assert "EP-TRADE-00" not in [e["id"] for e in flow.data(case)["plan_register"]]  # retired plans are not offered
    flow.do(case, "declare", "wuhao", declaration(plan_id="EP-TRADE-00"))
    assignee, reason, by = returned(flow, case, "declare")
    assert (assignee, by) == ("wuhao", None)  # an automatic check: back to the duty officer who declared
    assert reason is not None and "须关联至少一个 incident 流程" in reason and "EP-TRADE-00 已停用" in reason
    assert flow.prefill(case, "declare") == {  # to correct, not to retype
        **declaration(plan_id="EP-TRADE-00"), "incident_case_id": None, "leaked_records": 0}
    incident = reported(flow)  # a minor incident: it opened no emergency itself
    flow.do(case, "declare", "wuhao", declaration(plan_id="EP-NONE", incident_case_id=incident))
    assert (flow.task(case, "declare").return_reason or "").startswith("应急预案：登记册中没有 'EP-NONE'")
    flow.do(case, "declare", "wuhao", declaration(incident_case_id=incident, plan_id="EP-DC-01"))
    assert flow.open_names(case) == ["activate"]
    assert flow.data(case)["plan"]["id"] == "EP-DC-01"
    assert links(flow, case) == [("emergency", "from", incident)]


def test_activation_may_be_returned_or_refused(flow: Flow) -> None:
    incident = reported(flow, impact="high", urgency="high")
    case = linked(flow, incident, "emergency")
    opening = flow.prefill(case, "declare")  # what the incident told: the duty officer confirms or corrects it
    assert (opening["title"], opening["situation"], opening["level"], opening["discovered_at"]) == (
        "应急：网上交易登录缓慢", "部分客户登录超时", "一般", "2026-11-20T18:05:00+08:00")
    flow.do(case, "declare", "wuhao", declaration())
    assert flow.prefill(case, "activate") == {}
    flow.do(case, "activate", "xuli", {"decision": "return", "comment": "预案选择有误，应为网上交易预案"})
    assert returned(flow, case, "declare") == ("wuhao", "应急指挥退回：预案选择有误，应为网上交易预案", "xuli")
    opening = flow.prefill(case, "declare")
    assert opening["plan_id"] == "EP-TRADE-01"  # the declaration as submitted, to correct
    assert "decision" not in opening and "comment" not in opening
    # not reportable (一般, restorable, no leak): the refusal ends the case (test_emergency_reporting: when it is)
    flow.do(case, "declare", "wuhao", declaration(plan_id="EP-ONLINE-01", level="一般", restorable_within_30min=True))
    assert flow.task(case, "activate").return_reason is None
    assert flow.prefill(case, "activate") == {}  # the lead's second decision opens empty: no stale 退回
    with pytest.raises(ValidationFailed) as refused_without_end:  # 不启动 records when the event ended
        flow.do(case, "activate", "xuli", {"decision": "reject", "comment": "已恢复，无需启动应急"})
    assert sorted(e.field for e in refused_without_end.value.errors) == ["cause_known", "recovered_at"]
    flow.do(case, "activate", "xuli", {"decision": "reject", "comment": "已恢复，无需启动应急",
                                       "recovered_at": "2026-11-20T18:10:00+08:00", "cause_known": True})
    assert flow.status(case) == "completed"
    refused = flow.record(case)[-1]
    assert (refused.bpmn_id, refused.completed_by, refused.outcome, refused.outcome_label) == (
        "activate", "xuli", "reject", "驳回")
    assert answers(refused) == {"comment": "已恢复，无需启动应急"}  # the end time is a fact of the case
    assert (flow.data(case)["recovered_at"], flow.data(case)["must_report"]) == ("2026-11-20T18:10:00+08:00", False)
    assert [(e.bpmn_id, e.outcome_label) for e in flow.record(case)] == [
        ("declare", None), ("activate", "退回"), ("declare", None), ("activate", "驳回")]


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
    data = facts(flow, case, "first_report")
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
    assert returned(flow, case, "summary_report") == (
        "liuyang", "整改项 R1 责任人：用户 zhoujie 不具备角色 ops_engineer", None)  # an automatic check
    flow.do(case, "summary_report", "liuyang", summary())
    assert flow.open_names(case) == ["sign_report"]


def test_a_revision_returned_again_reopens_for_whoever_revised_it(flow: Flow) -> None:
    _incident, case = activated(flow)
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    flow.do(case, "sign_first_report", "zhaolei", {"decision": "return", "comment": "补充受影响客户数"})
    flow.do(case, "revise_first_report", "sunyan", {**FIRST_REPORT, "affected_people": 31000})
    flow.do(case, "sign_first_report", "zhaolei", {"decision": "reject", "comment": "经济损失须有初步估计"})
    assert returned(flow, case, "revise_first_report") == (
        "sunyan", "信息技术负责人驳回：经济损失须有初步估计", "zhaolei")
    assert flow.prefill(case, "revise_first_report") == {**FIRST_REPORT, "affected_people": 31000}
    flow.do(case, "revise_first_report", "sunyan", {**FIRST_REPORT, "affected_people": 31000,
                                                    "economic_loss": "约 50 万元（初步）"})
    flow.do(case, "sign_first_report", "zhaolei", APPROVE)
    assert flow.task(case, "submit_first_report").return_reason is None
    assert [(e.bpmn_id, e.outcome_label) for e in flow.record(case) if e.bpmn_id == "sign_first_report"] == [
        ("sign_first_report", "退回"), ("sign_first_report", "驳回"), ("sign_first_report", "批准")]


def test_a_form_cannot_carry_fields_it_does_not_declare(flow: Flow) -> None:
    _incident, case = activated(flow)
    one = {"notifications": [{"party": "住所地证监局", "channel": "phone", "at": "2026-11-20T18:25:00+08:00"}]}
    with pytest.raises(ValidationFailed) as refused:  # the check's own result may not be forged to pass it
        flow.do(case, "notify", "wuhao", {**one, "missing_parties": []})
    assert [e.field for e in refused.value.errors] == ["missing_parties"]
    assert flow.open_names(case) == ["dispose", "first_report", "notify"]  # nothing saved, nothing moved
    assert "notify" not in [e.bpmn_id for e in flow.record(case)]
    flow.do(case, "notify", "wuhao", one)
    assert flow.open_names(case).count("notify") == 1  # the parties still missing send it back

    flow.do(case, "dispose", "lina", step("切换备机完成", "restored", restored_at="2026-11-20T20:30:00+08:00"))
    with pytest.raises(ValidationFailed) as refused:  # nor may a verification write the route it steers
        flow.do(case, "confirm_recovery", "xuli", {"result": "failed", "comment": "部分营业部仍无法委托",
                                                   "recovered_at": "2026-11-20T20:30:00+08:00", "cause_known": True,
                                                   "disposal_return": ""})
    assert [e.field for e in refused.value.errors] == ["disposal_return"]
    assert "confirm_recovery" in flow.open_names(case) and "dispose" not in flow.open_names(case)


def test_investigation_deadline_counts_working_days_of_the_trading_calendar(flow: Flow) -> None:
    flow.engine.ctx.clock.now = datetime(2026, 9, 30, 18, 0, tzinfo=SHANGHAI)  # the eve of National Day
    _incident, case = activated(flow, discovered_at="2026-09-30T18:05:00+08:00")
    finish_emergency(flow, case, recovered_at="2026-09-30T20:30:00+08:00")
    # closed 10-01..10-07 (weekend and holidays): the 5th working day after recovery is Wednesday 10-14
    assert flow.task(case, "summary_report").due_at == datetime(2026, 10, 14, 23, 59, 59, tzinfo=SHANGHAI)
