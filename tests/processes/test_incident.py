"""事件管理 (incident): one scenario per path of processes/incident.bpmn (REQUIREMENTS §3.4)."""

from __future__ import annotations

from typing import Any

import pytest

from engine import ProcessEngine
from engine.errors import Forbidden, ValidationFailed
from tests.processes.conftest import Flow, system_ids

RESOLVED = {"actions": [{"at": "2026-11-20T18:20:00+08:00", "action": "切换备用网关"}],
            "restored_at": "2026-11-20T18:25:00+08:00", "outage_minutes": 3}


# the demo register's system of each category (processes/demo_config_items.json)
DEMO_SYSTEM = {"其他": "办公自动化"}


def incident_report(register: ProcessEngine | dict[str, int], **changes: Any) -> dict[str, Any]:
    """A report naming the demo register's system of `system_class` (a category), or `systems` by name;
    `register` is an engine with the demo register, or its ids by name."""
    category = changes.pop("system_class", "网上交易")
    names = changes.pop("systems", None) or [DEMO_SYSTEM.get(category, category)]
    ids = [register[n] for n in names] if isinstance(register, dict) else system_ids(register, *names)
    data = {"title": "网上交易登录缓慢", "description": "部分客户登录超时", "systems": ids,
            "discovered_at": "2026-11-20T18:05:00+08:00", "impact": "medium", "urgency": "medium", "outage_minutes": 0}
    data.update(changes)
    return data


def reported(flow: Flow, reporter: str = "zhangwei", **changes: Any) -> int:
    case = flow.start("incident", reporter, {"title": "事件"})
    assert flow.task(case, "report").assignee == reporter
    flow.do(case, "report", reporter, incident_report(flow.engine, **changes))
    return case


def resolve_and_close(flow: Flow, case: int) -> None:
    flow.do(case, "respond", "lina", {"assessment": "登录网关连接池耗尽"})
    flow.do(case, "resolve", "lina", RESOLVED)
    flow.do(case, "confirm", "wuhao", {"result": "success"})
    flow.do(case, "close", "liuyang", {"problem_needed": False, "root_cause": "连接池上限配置过低"})
    assert flow.status(case) == "completed"


def test_reported_incident_is_graded_resolved_confirmed_and_closed(flow: Flow) -> None:
    case = reported(flow)
    data = flow.data(case)
    assert (data["priority"], data["reportable"], data["level"]) == ("P3", False, "一般")
    assert flow.open_names(case) == ["respond"]
    assert "respond" in [t.bpmn_id for t in flow.inbox("wangqiang")]
    resolve_and_close(flow, case)


def test_duty_officer_may_report(flow: Flow) -> None:
    case = reported(flow, reporter="wuhao", impact="low", urgency="low")
    assert flow.data(case)["priority"] == "P4"


@pytest.mark.parametrize(("changes", "level"), [
    ({"system_class": "集中交易", "outage_minutes": 5}, "较大"),
    ({"system_class": "银期转账", "outage_minutes": 30}, "较大"),
    ({"system_class": "银期转账", "outage_minutes": 29}, "一般"),
    ({"system_class": "其他", "leaked_records": 100000}, "重大"),
])
def test_grading_follows_the_2012_thresholds(flow: Flow, changes: dict[str, Any], level: str) -> None:
    case = reported(flow, discovered_at="2020-11-20T18:05:00+08:00", **changes)  # before the 2021 rules
    assert (flow.data(case)["rule_set"], flow.data(case)["level"]) == ("2012", level)
    assert flow.data(case)["reportable"] is (level != "一般")


def links(flow: Flow, case: int) -> list[tuple[str, str, str]]:
    return [(link["kind"], link["direction"], link["process_id"]) for link in flow.links(case)]


def test_p1_incident_opens_a_linked_emergency(flow: Flow) -> None:
    case = reported(flow, impact="high", urgency="high")
    assert flow.data(case)["priority"] == "P1"
    assert flow.open_names(case) == ["respond"]
    assert links(flow, case) == [("emergency", "to", "emergency")]
    emergency = flow.links(case)[0]["instance_id"]
    assert links(flow, emergency) == [("emergency", "from", "incident")]
    declare = flow.task(emergency, "declare")
    assert declare.id in {t.id for t in flow.inbox("wuhao")}  # the duty officer declares it
    data = flow.data(emergency)
    assert (data["priority"], data["discovered_at"], data["affected_systems"]) == (
        "P1", "2026-11-20T18:05:00+08:00", ["网上交易"])
    assert flow.engine.runtime.show(emergency).title == "应急：网上交易登录缓慢"
    resolve_and_close(flow, case)  # the incident goes on beside the emergency
    assert flow.status(emergency) == "running"


def test_reportable_incident_opens_an_emergency_and_a_minor_one_none(flow: Flow) -> None:
    # medium x medium would be P3, but 较大 must be reported: graded P1 (processes/incident_grading.dmn)
    reportable = reported(flow, system_class="集中交易", outage_minutes=12)
    assert (flow.data(reportable)["priority"], flow.data(reportable)["level"]) == ("P1", "较大")
    assert links(flow, reportable) == [("emergency", "to", "emergency")]
    minor = reported(flow)
    assert links(flow, minor) == []


def test_late_response_escalates_by_priority(flow: Flow) -> None:
    case = reported(flow, impact="high", urgency="medium")  # P2: respond within 30 minutes
    flow.engine.ctx.clock.advance(minutes=29)
    flow.engine.runtime.fire_due_timers()
    assert flow.open_names(case) == ["respond"]
    flow.engine.ctx.clock.advance(minutes=2)
    flow.engine.runtime.fire_due_timers()
    assert flow.open_names(case) == ["escalate_response", "respond"]
    flow.do(case, "escalate_response", "liuyang", {"note": "已督促王强接单"})
    resolve_and_close(flow, case)


def test_restore_not_confirmed_reopens_for_the_engineer_who_resolved_it(flow: Flow) -> None:
    flow.engine.identity.add_user("zhaoyi", ["ops_engineer", "duty_officer"], "赵一")
    case = reported(flow)
    flow.do(case, "respond", "zhaoyi", {"assessment": "网关异常"})
    assert flow.task(case, "resolve").return_reason is None  # the first round is no return
    flow.do(case, "resolve", "zhaoyi", RESOLVED)
    with pytest.raises(Forbidden) as refused:  # who resolved it does not confirm it
        flow.engine.tasks.claim(flow.task(case, "confirm").id, flow.user("zhaoyi"))
    assert refused.value.rule == "separation_of_duties"
    flow.do(case, "confirm", "wuhao", {"result": "failed", "comment": "仍有客户无法登录"})

    resolve = flow.task(case, "resolve")
    assert resolve.assignee == "zhaoyi"  # back to the engineer who resolved it, not the queue
    assert (resolve.return_reason, resolve.returned_by) == ("值班员确认未恢复：仍有客户无法登录", "wuhao")
    assert "resolve" not in [t.bpmn_id for t in flow.inbox("lina")]
    opening = flow.prefill(case, "resolve")
    assert opening["actions"] == RESOLVED["actions"]  # the engineer's own record, to extend
    assert "result" not in opening and "comment" not in opening
    failed = flow.record(case)[-1]
    assert (failed.bpmn_id, failed.completed_by, failed.outcome, failed.outcome_label) == (
        "confirm", "wuhao", "failed", "失败")
    assert {a["field"]: a["value"] for a in failed.answers} == {"comment": "仍有客户无法登录"}

    flow.do(case, "resolve", "zhaoyi", {**RESOLVED, "workaround": "切换至备用登录网关"})
    assert flow.prefill(case, "confirm") == {}  # the second confirmation opens empty: no stale 失败
    assert flow.task(case, "confirm").return_reason is None
    flow.do(case, "confirm", "wuhao", {"result": "success"})
    with pytest.raises(ValidationFailed):  # no root cause and no problem: cannot close
        flow.do(case, "close", "liuyang", {"problem_needed": False})
    flow.do(case, "close", "liuyang", {"problem_needed": True, "comment": "根因待问题管理分析"})
    assert flow.status(case) == "completed"
    assert links(flow, case) == [("problem", "to", "problem")]
    problem = flow.links(case)[0]["instance_id"]
    assert links(flow, problem) == [("problem", "from", "incident")]
    assert flow.open_names(problem) == ["register"]
    assert flow.data(problem)["description"] == "部分客户登录超时；根因待问题管理分析"
    closed = flow.record(case)[-1]
    assert closed.bpmn_id == "close"
    assert {a["field"]: a["value"] for a in closed.answers} == {"comment": "根因待问题管理分析"}
    assert {a["field"]: a["value"] for a in closed.facts} == {"problem_needed": True}


def test_each_step_keeps_its_own_answers_and_the_reports_facts_are_the_cases(flow: Flow) -> None:
    case = reported(flow)
    flow.do(case, "respond", "lina", {"assessment": "登录网关连接池耗尽", "impact": "high"})
    flow.do(case, "resolve", "lina", RESOLVED)
    assert flow.prefill(case, "confirm") == {}  # a verification opens empty
    flow.do(case, "confirm", "wuhao", {"result": "success", "comment": "客户登录恢复正常"})
    opening = flow.prefill(case, "close")
    assert "comment" not in opening and "result" not in opening  # the duty officer's words are not the close's
    flow.do(case, "close", "liuyang", {"problem_needed": False, "root_cause": "连接池上限配置过低",
                                       "comment": "已调整上限"})
    data = flow.engine.runtime.show(case).data
    assert (data["title"], data["impact"], data["assessment"]) == ("网上交易登录缓慢", "high", "登录网关连接池耗尽")
    assert (data["root_cause"], data["problem_needed"]) == ("连接池上限配置过低", False)
    assert "comment" not in data and "result" not in data  # answers stay with their steps
    steps = [(e.bpmn_id, e.completed_by, e.outcome_label) for e in flow.record(case)]
    assert steps == [("report", "zhangwei", None), ("respond", "lina", None), ("resolve", "lina", None),
                     ("confirm", "wuhao", "成功"), ("close", "liuyang", None)]
    confirmed = flow.record(case)[3]
    assert [(a["label"], a["text"]) for a in confirmed.answers] == [("说明", "客户登录恢复正常")]


def test_a_form_cannot_overwrite_the_computed_grading(flow: Flow) -> None:
    case = reported(flow, impact="high", urgency="medium")  # P2
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "respond", "lina", {"assessment": "影响有限", "priority": "P4", "reportable": False})
    assert sorted(e.field for e in refused.value.errors) == ["priority", "reportable"]
    assert flow.open_names(case) == ["respond"]  # nothing moved
    assert flow.data(case)["priority"] == "P2"
    flow.do(case, "respond", "lina", {"assessment": "影响有限"})
    assert flow.open_names(case) == ["resolve"]
    assert flow.engine.runtime.show(case).data["priority"] == "P2"


def test_a_monitoring_alert_opens_an_incident_without_a_report(flow: Flow) -> None:
    opened = flow.engine.alerts.receive(flow.user("zabbix"), source="zabbix", fingerprint="web-login-latency",
                                        status="firing", severity="major", system="网上交易",
                                        text="登录接口 P99 延迟超过 3 秒")
    case = opened.instance_id
    assert flow.open_names(case) == ["respond"]  # monitoring skips the manual report
    data = flow.data(case)
    assert (data["source"], data["priority"], data["system_class"], data["level"]) == (
        "monitoring", "P2", "网上交易", "一般")
    # the engineer reviews the impact, urgency and grading facts monitoring reported: the case's own facts
    assert flow.prefill(case, "respond") == {"impact": "high", "urgency": "medium", "system_class": "网上交易",
                                             "outage_minutes": 0, "leaked_records": 0, "affected_share": 0}
    resolve_and_close(flow, case)
    assert [e.bpmn_id for e in flow.record(case)] == ["respond", "resolve", "confirm", "close"]
