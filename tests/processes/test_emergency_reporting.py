"""Regulatory reporting that the emergency lead's decision cannot skip (issue 15, part 2).

不启动 on a reportable event still sends the 首报 (compliance drafts, it_head signs as 签发人,
compliance submits) and then the investigation report; 不启动 on a non-reportable event ends as
before; a 预警 (JR/T 0099-2012 7.2.1) and its 解除 go through the same draft → sign → submit path,
or the warning is escalated into the full emergency. Hourly updates on the activated path are
proved in test_emergency.py (test_p1_incident_emergency_runs_disposal_reporting_and_notification_in_parallel).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

from tests.conftest import ROOT
from tests.processes.conftest import SHANGHAI, Flow
from tests.processes.test_emergency import (
    APPROVE,
    FIRST_REPORT,
    SUBMITTED,
    declaration,
    fire_at,
    linked,
    returned,
    summary,
)
from tests.processes.test_incident import reported

ENDED = {"recovered_at": "2026-11-20T18:25:00+08:00", "cause_known": True}
WARNING = {"found_at": "2026-11-20T18:05:00+08:00", "hazard": "集中交易主机存储控制器告警，冗余链路已失效一条",
           "possible_impact": "集中交易委托报送", "protective_measures": "切换至备用链路，厂商到场排查",
           "reporting_unit": "示例证券股份有限公司", "signer": "zhaolei", "contact_person": "孙艳",
           "contact_phone": "021-60000000", "recipients": ["住所地证监局"]}
LIFTED = {"decision": "lift", "lifted_at": "2026-11-20T22:00:00+08:00",
          "reason": "更换控制器后冗余恢复，观察 2 小时无告警"}
LIFT_REPORT = {"lifted_at": "2026-11-20T22:00:00+08:00", "lift_basis": "更换控制器，冗余链路恢复，观察无告警",
               "warning_handling": "切换备用链路，厂商更换控制器", "reporting_unit": "示例证券股份有限公司",
               "signer": "zhaolei", "contact_person": "孙艳", "contact_phone": "021-60000000",
               "recipients": ["住所地证监局"]}


def completions(flow: Flow, case: int) -> list[tuple[str, str]]:
    """The case's audit history: who completed which step, in order."""
    return [(e.data["task"], e.actor) for e in flow.engine.runtime.show(case).history if e.action == "task.completed"]


def decisions(flow: Flow, case: int, bpmn_id: str) -> list[tuple[str, str | None]]:
    return [(e.completed_by, e.outcome_label) for e in flow.record(case) if e.bpmn_id == bpmn_id]


def declared(flow: Flow, **changes: Any) -> int:
    """A P1 集中交易 outage (较大, reportable) opens the emergency; the duty officer declares it."""
    incident = reported(flow, impact="high", urgency="high", system_class="集中交易", outage_minutes=10)
    case = linked(flow, incident, "emergency")
    flow.do(case, "declare", "wuhao", declaration(**changes))
    assert flow.open_names(case) == ["activate"]
    return case


def warned(flow: Flow) -> int:
    """The lead raises a warning; compliance drafts the 预警报告, the 签发人 signs, compliance submits."""
    case = declared(flow)
    flow.do(case, "activate", "xuli", {"decision": "warning", "comment": "存储冗余失效，先发预警，暂不启动预案"})
    assert flow.open_names(case) == ["warning_report"]
    assert "warning_report" in [t.bpmn_id for t in flow.inbox("sunyan")]
    flow.do(case, "warning_report", "sunyan", WARNING)
    flow.do(case, "sign_warning_report", "zhaolei", APPROVE)
    flow.do(case, "submit_warning_report", "sunyan", SUBMITTED)
    assert flow.open_names(case) == ["lift_warning"]
    return case


def test_not_activating_a_reportable_event_still_sends_the_first_report(flow: Flow) -> None:
    case = declared(flow)
    flow.do(case, "activate", "xuli", {"decision": "reject", "comment": "已切换备机恢复，无需启动预案", **ENDED})
    # no disposal, no notification round: the regulatory report alone, with the rule set's deadline
    assert flow.open_names(case) == ["first_report"]
    assert flow.status(case) == "running"
    assert flow.task(case, "first_report").due_at == datetime(2026, 11, 20, 18, 35, tzinfo=SHANGHAI)
    assert "first_report" in [t.bpmn_id for t in flow.inbox("sunyan")]
    flow.do(case, "first_report", "sunyan", FIRST_REPORT)
    assert flow.task(case, "sign_first_report").assignee == "zhaolei"
    flow.do(case, "sign_first_report", "zhaolei", APPROVE)
    flow.do(case, "submit_first_report", "sunyan", SUBMITTED)
    assert completions(flow, case)[-3:] == [
        ("first_report", "sunyan"), ("sign_first_report", "zhaolei"), ("submit_first_report", "sunyan")]
    assert decisions(flow, case, "sign_first_report") == [("zhaolei", "批准")]

    # the event was over when refused: no hourly reminders, the investigation report follows
    # (5 working days from the recorded end: Friday -> next Friday)
    fire_at(flow, "2026-11-20T19:01:00+08:00")
    assert flow.open_names(case) == ["summary_report"]
    assert flow.task(case, "summary_report").due_at == datetime(2026, 11, 27, 23, 59, 59, tzinfo=SHANGHAI)
    flow.do(case, "summary_report", "liuyang", summary())
    flow.do(case, "sign_report", "zhaolei", APPROVE)
    flow.do(case, "submit_report", "sunyan", SUBMITTED)
    assert sorted(t.bpmn_id for t in flow.open_tasks(case)) == ["rectify", "rectify"]


def test_a_late_first_report_on_a_refused_emergency_is_escalated_to_the_signer(flow: Flow) -> None:
    case = declared(flow)
    flow.do(case, "activate", "xuli", {"decision": "reject", "comment": "已恢复", **ENDED})
    fire_at(flow, "2026-11-20T18:36:00+08:00")
    assert "escalate_first_report" in [t.bpmn_id for t in flow.inbox("zhaolei")]
    assert "first_report" in flow.open_names(case)  # the report itself is still due


def test_a_downgraded_declaration_does_not_cancel_the_incident_s_reporting_duty(flow: Flow) -> None:
    # the incident graded it reportable; the duty officer's 一般 does not take that back
    case = declared(flow, level="一般", restorable_within_30min=True)
    flow.do(case, "activate", "xuli", {"decision": "reject", "comment": "影响有限", **ENDED})
    assert flow.open_names(case) == ["first_report"]


def test_not_activating_a_non_reportable_event_ends_without_a_report(flow: Flow) -> None:
    incident = reported(flow)  # a minor incident: not reportable, it opened no emergency itself
    case = flow.start("emergency", "wuhao", {"title": "网上交易登录缓慢"})
    flow.do(case, "declare", "wuhao", declaration(incident_case_id=incident, plan_id="EP-ONLINE-01", level="一般",
                                                  restorable_within_30min=True))
    flow.do(case, "activate", "xuli", {"decision": "reject", "comment": "已恢复，无需启动应急", **ENDED})
    assert flow.status(case) == "completed"
    assert [t for t, _ in completions(flow, case)] == ["declare", "activate"]


def test_a_warning_and_its_lifting_are_both_reported_through_the_same_path(flow: Flow) -> None:
    case = declared(flow)
    flow.do(case, "activate", "xuli", {"decision": "warning", "comment": "存储冗余失效，先发预警，暂不启动预案"})
    assert decisions(flow, case, "activate") == [("xuli", "预警")]
    flow.do(case, "warning_report", "sunyan", WARNING)
    assert flow.task(case, "sign_warning_report").assignee == "zhaolei"
    flow.do(case, "sign_warning_report", "zhaolei", {"decision": "return", "comment": "写明备用链路的剩余容量"})
    assert returned(flow, case, "warning_report") == ("sunyan", "信息技术负责人退回：写明备用链路的剩余容量", "zhaolei")
    assert flow.prefill(case, "warning_report") == WARNING  # the draft, to edit
    flow.do(case, "warning_report", "sunyan", {**WARNING, "protective_measures": "切换至备用链路（余量 60%）"})
    flow.do(case, "sign_warning_report", "zhaolei", APPROVE)
    flow.do(case, "submit_warning_report", "sunyan", SUBMITTED)
    assert flow.open_names(case) == ["lift_warning"]  # the warning stands until the lead lifts it
    assert "lift_warning" in [t.bpmn_id for t in flow.inbox("xuli")]
    fire_at(flow, "2026-11-20T21:00:00+08:00")  # a warning is no emergency: no hourly reports
    assert flow.open_names(case) == ["lift_warning"]

    flow.do(case, "lift_warning", "xuli", LIFTED)
    assert flow.open_names(case) == ["lift_report"]
    assert flow.task(case, "lift_report").return_reason is None  # the warning's 退回 does not follow it
    assert flow.prefill(case, "lift_report")["signer"] == "zhaolei"  # the same channel, already known
    flow.do(case, "lift_report", "sunyan", LIFT_REPORT)
    flow.do(case, "sign_warning_report", "zhaolei", APPROVE)
    assert flow.status(case) == "running"  # not before the lifting is submitted
    flow.do(case, "submit_warning_report", "sunyan", {**SUBMITTED, "submitted_at": "2026-11-20T22:20:00+08:00"})
    assert flow.status(case) == "completed"
    assert [x for x in completions(flow, case) if x[0] != "declare"] == [
        ("activate", "xuli"), ("warning_report", "sunyan"), ("sign_warning_report", "zhaolei"),
        ("warning_report", "sunyan"), ("sign_warning_report", "zhaolei"), ("submit_warning_report", "sunyan"),
        ("lift_warning", "xuli"), ("lift_report", "sunyan"), ("sign_warning_report", "zhaolei"),
        ("submit_warning_report", "sunyan")]
    lifted = [e for e in flow.record(case) if e.bpmn_id == "lift_warning"][-1]
    assert lifted.outcome_label == "解除预警"
    assert {a["field"]: a["value"] for a in lifted.answers} == {
        "lifted_at": "2026-11-20T22:00:00+08:00", "reason": "更换控制器后冗余恢复，观察 2 小时无告警"}


def test_a_returned_lifting_report_reopens_as_the_lifting_report(flow: Flow) -> None:
    case = warned(flow)
    flow.do(case, "lift_warning", "xuli", LIFTED)
    flow.do(case, "lift_report", "sunyan", LIFT_REPORT)
    flow.do(case, "sign_warning_report", "zhaolei", {"decision": "reject", "comment": "解除依据须附观察记录"})
    assert returned(flow, case, "lift_report") == ("sunyan", "信息技术负责人驳回：解除依据须附观察记录", "zhaolei")


def test_a_warning_may_be_escalated_into_the_full_emergency(flow: Flow) -> None:
    case = warned(flow)
    flow.do(case, "lift_warning", "xuli", {"decision": "escalate", "reason": "第二条链路失效，委托中断"})
    assert flow.open_names(case) == ["dispose", "first_report", "notify"]
    assert flow.prefill(case, "first_report")["signer"] == "zhaolei"  # what the warning told, to complete
    fire_at(flow, "2026-11-20T19:01:00+08:00")  # now an emergency: hourly updates until recovery
    assert flow.open_names(case).count("progress_report") == 1


def test_whether_a_declined_emergency_reports_is_a_decision_table_citing_its_articles(flow: Flow) -> None:
    ns = {"dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/"}
    table = ET.parse(ROOT / "processes" / "emergency_must_report.dmn").getroot()
    rules = table.findall(".//dmn:rule", ns)
    assert len(rules) == 4
    for rule in rules:
        text = rule.findtext("dmn:description", namespaces=ns) or ""
        assert "第" in text and ("已核实" in text or "待核实" in text or "incident_level" in text), rule.get("id")
    # the decision and its basis are on the case: reportable by the incident's grading, and not
    case = declared(flow)
    flow.do(case, "activate", "xuli", {"decision": "reject", "comment": "已恢复", **ENDED})
    data = flow.data(case)
    assert data["must_report"] is True
    assert data["must_report_basis"] == "事件流程已判定须报告（只升不降），不启动预案不免除报告义务"
    incident = reported(flow)
    minor = flow.start("emergency", "wuhao", {"title": "网上交易登录缓慢"})
    flow.do(minor, "declare", "wuhao", declaration(incident_case_id=incident, plan_id="EP-ONLINE-01", level="一般",
                                                   restorable_within_30min=True, leaked_records=3))
    flow.do(minor, "activate", "xuli", {"decision": "reject", "comment": "已恢复", **ENDED})
    assert flow.open_names(minor) == ["first_report"]  # a leak, however small, is reported
    assert "第十六条（四）" in flow.data(minor)["must_report_basis"]
