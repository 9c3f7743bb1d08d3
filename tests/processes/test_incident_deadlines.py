"""Due times from the grading (issue 15, part 4): respond, resolve and emergency disposal show as overdue.

The clock starts as ITIL and the CSRC rules count it: the response from the report (respond opens as
the report is received: due = report + response_within), the resolution from discovery (resolve_due =
discovered_at + resolve_within), both from processes/incident_grading.dmn. A regrade that makes the
event reportable makes it P1 and tightens the resolution due time; a due time running is never
loosened. The boundary timers read the same figures. Disposal: no RTO in the plan register, so the
P1 resolution time (PT4H) from discovery.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.processes.conftest import SHANGHAI, Flow
from tests.processes.test_emergency import activated
from tests.processes.test_incident import RESOLVED, incident_report, reported

DISCOVERED = "2026-11-20T17:50:00+08:00"


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 11, 20, hour, minute, tzinfo=SHANGHAI)


def overdue(flow: Flow, username: str) -> list[str]:
    return [t.bpmn_id for t in flow.engine.tasks.inbox(flow.user(username), overdue=True)]


def escalated(flow: Flow, case: int) -> list[str]:
    return [e.data["rule"] for e in flow.engine.audit.events(case) if e.action == "task.escalated"]


def reported_at(flow: Flow, minute: int, **changes: object) -> int:
    """The report reaches the service desk at 18:mm (the case is opened at 18:00)."""
    case = flow.start("incident", "zhangwei", {"title": "事件"})
    flow.engine.ctx.clock.now = at(18, minute)
    flow.do(case, "report", "zhangwei", incident_report(flow.engine, discovered_at=DISCOVERED, **changes))
    return case


def test_a_p1_response_is_due_15_minutes_after_the_report_shows_overdue_and_escalates(flow: Flow) -> None:
    case = reported_at(flow, 3, impact="high", urgency="high")  # reported 18:03, discovered 17:50
    respond = flow.task(case, "respond")
    assert flow.data(case)["priority"] == "P1"
    assert (respond.due_at, respond.priority) == (at(18, 18), 1)  # 18:03 + PT15M
    assert overdue(flow, "lina") == []

    flow.engine.ctx.clock.now = at(18, 17)
    flow.engine.jobs.tick()
    assert overdue(flow, "lina") == [] and escalated(flow, case) == []
    assert flow.open_names(case) == ["respond"]

    flow.engine.ctx.clock.now = at(18, 19)
    flow.engine.jobs.tick()
    assert overdue(flow, "lina") == ["respond"]  # the engineers' inbox shows it overdue
    assert escalated(flow, case) == ["100%: notify ops_manager"]
    assert flow.engine.notify.unread_count("liuyang") >= 1  # the ops manager hears of it
    assert flow.open_names(case) == ["escalate_response", "respond"]  # the boundary timer at the same time


def test_a_p1_resolution_is_due_4_hours_after_discovery_and_its_timer_fires_then(flow: Flow) -> None:
    case = reported_at(flow, 3, impact="high", urgency="high")
    flow.do(case, "respond", "lina", {"assessment": "集中交易主机故障"})
    resolve = flow.task(case, "resolve")
    assert (resolve.due_at, resolve.priority) == (at(21, 50), 1)  # 17:50 + PT4H, not from the response
    assert flow.data(case)["resolve_due"] == "2026-11-20T21:50:00+08:00"

    flow.engine.ctx.clock.now = at(21, 49)
    flow.engine.jobs.tick()
    assert "escalate_resolve" not in flow.open_names(case) and overdue(flow, "lina") == []
    flow.engine.ctx.clock.now = at(21, 51)
    flow.engine.jobs.tick()
    assert "escalate_resolve" in flow.open_names(case)
    assert overdue(flow, "lina") == ["resolve"]
    assert "100%: notify ops_manager" in escalated(flow, case)


def test_a_regrade_to_reportable_makes_it_p1_and_tightens_the_resolution_due_time(flow: Flow) -> None:
    case = reported_at(flow, 3, system_class="集中交易", outage_minutes=0)  # medium x medium: P3
    data = flow.data(case)
    assert (data["priority"], data["response_within"], data["resolve_within"]) == ("P3", "PT2H", "P1D")
    assert flow.task(case, "respond").due_at == at(20, 3)  # 18:03 + PT2H

    flow.do(case, "respond", "lina", {"assessment": "集中交易委托中断", "outage_minutes": 25})
    data = flow.data(case)
    assert (data["level"], data["reportable"], data["priority"], data["resolve_within"]) == ("较大", True, "P1", "PT4H")
    resolve = flow.task(case, "resolve")
    assert (resolve.due_at, resolve.priority) == (at(21, 50), 1)  # 17:50 + PT4H, not 17:50 + P1D
    last = data["grading_history"][-1]
    assert (last["after"], last["from_priority"], last["priority"]) == ("respond", "P3", "P1")


def test_a_reopened_resolution_keeps_its_due_time(flow: Flow) -> None:
    case = reported_at(flow, 3, impact="high", urgency="medium")  # P2: resolve within PT8H of discovery
    flow.do(case, "respond", "lina", {"assessment": "登录网关异常"})
    assert flow.task(case, "resolve").due_at == at(17, 50) + timedelta(hours=8)
    flow.engine.ctx.clock.now = at(19, 0)
    flow.do(case, "resolve", "lina", RESOLVED)
    flow.do(case, "confirm", "wuhao", {"result": "failed", "comment": "仍有客户无法登录"})
    assert flow.task(case, "resolve").due_at == at(17, 50) + timedelta(hours=8)  # not 19:00 + PT8H


def test_emergency_disposal_is_due_4_hours_after_discovery(flow: Flow) -> None:
    _incident, emergency = activated(flow)
    dispose = flow.task(emergency, "dispose")
    discovered = datetime.fromisoformat(flow.engine.tasks.get(dispose.id).case_data["discovered_at"])
    assert dispose.due_at == discovered + timedelta(hours=4)
    flow.engine.ctx.clock.now = discovered + timedelta(hours=4, minutes=1)
    flow.engine.jobs.tick()
    assert "dispose" in overdue(flow, "lina")
    assert "100%: notify manager" in escalated(flow, emergency)


def test_reported_helper_keeps_the_default_clock(flow: Flow) -> None:
    """The scenario helper of test_incident reports at the test clock's start: due from then."""
    case = reported(flow, impact="high", urgency="high")
    assert flow.task(case, "respond").due_at == at(18, 15)
