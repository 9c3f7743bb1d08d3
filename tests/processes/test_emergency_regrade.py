"""An emergency already open follows its incident's regrade (issue 15, part 1).

The incident reported as 较大 opened the emergency; the restore records 35 minutes, which is 重大
under the 2021 rules: the emergency, whose reports are graded by its level, takes the new grading,
keeps it in its own grading_history and is audited. A downgrade leaves its report obligations; an
emergency that has ended is left alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.processes.conftest import SHANGHAI, Flow
from tests.processes.test_emergency import (
    APPROVE,
    FIRST_REPORT,
    PARTIES,
    PROGRESS,
    SUBMITTED,
    declaration,
    facts,
    recover,
)
from tests.processes.test_incident import RESOLVED, links, reported

ENDED = {"recovered_at": "2026-11-20T18:25:00+08:00", "cause_known": True}


def emergency_of(flow: Flow, case: int) -> int:
    [emergency] = [x["instance_id"] for x in flow.links(case) if x["kind"] == "emergency"]
    return emergency


def regraded(flow: Flow, case: int) -> list[tuple[str, dict[str, Any]]]:
    """The case's case.regraded audit events: who, and what changed."""
    return [(e.actor, e.data) for e in flow.engine.runtime.show(case).history if e.action == "case.regraded"]


def grading(flow: Flow, case: int) -> list[tuple[str | None, str, bool]]:
    return [(h["from_level"], h["level"], h["reportable"]) for h in flow.data(case).get("grading_history", [])]


def test_a_regrade_to_zhongda_updates_the_open_emergency_and_its_history(flow: Flow) -> None:
    incident = reported(flow, system_class="集中交易", outage_minutes=12)  # 2021 rules: ≥ 10 min 较大
    emergency = emergency_of(flow, incident)
    assert (flow.data(emergency)["level"], flow.data(emergency)["reportable"]) == ("较大", True)
    assert flow.open_names(emergency) == ["declare"]
    flow.do(incident, "respond", "lina", {"assessment": "集中交易主机宕机"})
    flow.do(incident, "resolve", "lina", {**RESOLVED, "outage_minutes": 35})  # ≥ 30 min: 重大

    assert (flow.data(incident)["level"], flow.data(incident)["reportable"]) == ("重大", True)
    data = flow.data(emergency)
    assert (data["level"], data["reportable"], data["outage_minutes"]) == ("重大", True, 35)
    assert grading(flow, emergency) == [("较大", "重大", True)]
    entry = data["grading_history"][-1]
    assert (entry["after"], entry["source_case"], entry["rule_set"]) == ("resolve", incident, "2021")
    assert entry["basis"] == flow.data(incident)["level_basis"] and "≥ 30 分钟" in entry["basis"]
    assert regraded(flow, emergency) == [("lina", {"from_case": incident, "from_level": "较大", "level": "重大",
                                                   "reportable": True, "report_kept_due": False})]
    assert links(flow, incident) == [("emergency", "to", "emergency")]  # the same emergency, no second one
    assert flow.open_names(incident) == ["confirm"]
    assert flow.prefill(emergency, "declare")["level"] == "重大"  # the duty officer declares the new level


def test_every_branch_of_an_activated_emergency_takes_the_new_level(flow: Flow) -> None:
    incident = reported(flow, system_class="集中交易", outage_minutes=12)
    emergency = emergency_of(flow, incident)
    flow.do(emergency, "declare", "wuhao", declaration(incident_case_id=incident))
    flow.do(emergency, "activate", "xuli", APPROVE)
    assert flow.open_names(emergency) == ["dispose", "first_report", "notify"]
    flow.do(emergency, "first_report", "sunyan", FIRST_REPORT)  # this branch runs ahead of the others
    flow.do(incident, "respond", "lina", {"assessment": "主机宕机", "outage_minutes": 35})

    assert facts(flow, emergency, "sign_first_report")["level"] == "重大"
    assert grading(flow, emergency) == [("较大", "重大", True)]
    flow.do(emergency, "sign_first_report", "zhaolei", APPROVE)
    flow.do(emergency, "submit_first_report", "sunyan", SUBMITTED)  # waits at the join with the new level
    flow.do(emergency, "notify", "wuhao", {"notifications": [
        {"party": p, "channel": "phone", "at": "2026-11-20T18:25:00+08:00"} for p in PARTIES]})
    recover(flow, emergency)
    flow.do(emergency, "recovery_report", "sunyan", {**PROGRESS, "progress": "20:30 已全部恢复"})
    assert flow.open_names(emergency) == ["summary_report"]  # past the join: every branch carried 重大
    data = flow.data(emergency)
    assert (data["level"], data["outage_minutes"]) == ("重大", 35)


def test_a_downgrade_of_the_incident_leaves_the_emergency_s_report_due(flow: Flow) -> None:
    incident = reported(flow, system_class="集中交易", outage_minutes=12)
    emergency = emergency_of(flow, incident)
    flow.do(incident, "respond", "lina", {"assessment": "误报，实际中断较短", "outage_minutes": 3})
    assert (flow.data(incident)["level"], flow.data(incident)["reportable"]) == ("一般", True)

    data = flow.data(emergency)
    assert (data["level"], data["reportable"], data["outage_minutes"]) == ("一般", True, 3)
    assert grading(flow, emergency) == [("较大", "一般", True)]
    assert data["grading_history"][-1]["report_kept_due"] is True
    assert regraded(flow, emergency)[0][1]["report_kept_due"] is True
    # the lead declines the plan on the now 一般 event: the first report is still due
    flow.do(emergency, "declare", "wuhao", declaration(incident_case_id=incident, level="一般",
                                                        restorable_within_30min=True))
    flow.do(emergency, "activate", "xuli", {"decision": "reject", "comment": "影响有限", **ENDED})
    assert flow.open_names(emergency) == ["first_report"]


def test_an_ended_emergency_is_left_alone(flow: Flow) -> None:
    # P1 but not reportable: the emergency opens, the lead declines it and it ends without a report
    incident = reported(flow, impact="high", urgency="high", system_class="网上交易", outage_minutes=0)
    assert (flow.data(incident)["priority"], flow.data(incident)["reportable"]) == ("P1", False)
    emergency = emergency_of(flow, incident)
    flow.do(emergency, "declare", "wuhao", declaration(incident_case_id=incident, plan_id="EP-ONLINE-01",
                                                        level="一般", restorable_within_30min=True))
    flow.do(emergency, "activate", "xuli", {"decision": "reject", "comment": "已恢复", **ENDED})
    assert flow.status(emergency) == "completed"
    before = flow.data(emergency)

    flow.do(incident, "respond", "lina", {"assessment": "网上交易中断", "outage_minutes": 12})  # now 较大
    assert (flow.data(incident)["level"], flow.data(incident)["reportable"]) == ("较大", True)
    assert flow.data(incident)["emergency_regrade"] == {"regraded": [], "left": [emergency]}
    assert flow.data(emergency) == before and regraded(flow, emergency) == []
    assert flow.open_names(incident) == ["resolve"]


def test_an_upgrade_tightens_the_first_report_deadline_and_a_downgrade_never_loosens_it(flow: Flow) -> None:
    incident = reported(flow, system_class="集中交易", outage_minutes=7)  # 2021 rules: 一般, reportable
    emergency = emergency_of(flow, incident)
    flow.do(emergency, "declare", "wuhao", declaration(incident_case_id=incident, level="一般",
                                                        restorable_within_30min=True, critical_infrastructure=True))
    flow.do(emergency, "activate", "xuli", APPROVE)
    # 一般 and restorable: the firm's 2 hours from discovery (18:05)
    assert flow.task(emergency, "first_report").due_at == datetime(2026, 11, 20, 20, 5, tzinfo=SHANGHAI)

    flow.do(incident, "respond", "lina", {"assessment": "委托报送中断", "outage_minutes": 12})  # 较大
    # CAC 2025 for critical infrastructure, 较大 and above: 1 hour; the first report is re-issued with it
    first = flow.task(emergency, "first_report")
    assert first.due_at == datetime(2026, 11, 20, 19, 5, tzinfo=SHANGHAI)
    data = facts(flow, emergency, "first_report")  # the reporting branch's view
    assert (data["level"], data["first_report_minutes"]) == ("较大", 60)
    assert "关键信息基础设施保护工作部门、公安机关" in data["report_recipients"]
    assert "证监会派出机构（住所地证监局）" in data["report_recipients"]  # the rule already applied stays

    flow.do(incident, "resolve", "lina", {**RESOLVED, "outage_minutes": 3})  # 一般 again, the report kept due
    assert flow.data(emergency)["level"] == "一般"
    assert flow.task(emergency, "first_report").due_at == datetime(2026, 11, 20, 19, 5, tzinfo=SHANGHAI)
    assert sorted(flow.open_names(emergency)) == ["dispose", "first_report", "notify"]
    flow.do(emergency, "first_report", "sunyan", FIRST_REPORT)
    assert flow.open_names(emergency).count("sign_first_report") == 1
