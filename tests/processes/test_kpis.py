"""Dashboard KPIs on the real library processes, against figures computed by hand.

MTTR is detection (the report's 发现时间) -> restore (the resolve step's 恢复时间); response and
resolution breaches count only the respond / resolve steps (processes/kpis.json), never the
escalation, confirmation or close steps; change success and the emergency share come from the
outcome and type each save keeps on the case row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from engine.cases.reports import Dashboard
from engine.errors import Forbidden
from engine.storage.models import HumanTask, ProcessInstance
from tests.processes.conftest import START, Flow
from tests.processes.test_change import APPROVE, IMPLEMENTED, SATURDAY, SUCCESS, close, open_window, submit
from tests.processes.test_incident import incident_report

SUPERVISOR = "zhuhong"


def reported(flow: Flow, discovered_at: str, **changes: Any) -> int:
    case = flow.start("incident", "zhangwei", {"title": "事件"})
    flow.do(case, "report", "zhangwei", incident_report(flow.engine, discovered_at=discovered_at, **changes))
    return case


def resolved(flow: Flow, case: int, restored_at: str) -> None:
    flow.do(case, "resolve", "lina", {"actions": [{"at": restored_at, "action": "切换备用网关"}],
                                      "restored_at": restored_at, "outage_minutes": 3})


def dashboard(flow: Flow, **kwargs: Any) -> Dashboard:
    return flow.engine.reports.dashboard(flow.user(SUPERVISOR), **kwargs)


def due_of_completed(flow: Flow, case: int, bpmn_id: str) -> datetime | None:
    with flow.engine.ctx.db.transaction() as s:
        return s.execute(select(HumanTask.due_at).where(HumanTask.instance_id == case, HumanTask.bpmn_id == bpmn_id,
                                                        HumanTask.state == "completed")).scalar_one()


def test_mttr_is_the_mean_of_detection_to_restore(flow: Flow) -> None:
    clock = flow.engine.ctx.clock
    a = reported(flow, "2026-11-20T17:45:00+08:00")  # restored 18:05: 20 min
    b = reported(flow, "2026-11-20T17:00:00+08:00")  # restored 20:00: 3 h
    c = reported(flow, "2026-11-20T18:00:00+08:00")  # restored 06:00 next day: 12 h
    for case in (a, b, c):
        flow.do(case, "respond", "lina", {"assessment": "网关异常"})
    clock.advance(minutes=5)
    resolved(flow, a, "2026-11-20T18:05:00+08:00")
    flow.do(a, "confirm", "wuhao", {"result": "success"})
    flow.do(a, "close", "liuyang", {"problem_needed": False, "root_cause": "连接池上限配置过低"})
    clock.now = START + timedelta(hours=2)
    resolved(flow, b, "2026-11-20T20:00:00+08:00")
    before = dashboard(flow)
    assert before.incidents_restored == 2  # c is not restored yet: it does not count
    assert before.incident_mttr_hours == pytest.approx((20 / 60 + 3) / 2)
    clock.now = START + timedelta(hours=12, minutes=10)
    resolved(flow, c, "2026-11-21T06:00:00+08:00")

    report = dashboard(flow)
    assert report.incidents_restored == 3
    assert report.incident_mttr_hours == pytest.approx((20 / 60 + 3 + 12) / 3)  # 5.11 h, closed or not
    assert dashboard(flow, process_id="change").incidents_restored == 0


def test_restore_recorded_again_after_a_failed_confirmation_replaces_the_first(flow: Flow) -> None:
    case = reported(flow, "2026-11-20T17:00:00+08:00")
    flow.do(case, "respond", "lina", {"assessment": "网关异常"})
    resolved(flow, case, "2026-11-20T18:00:00+08:00")
    flow.do(case, "confirm", "wuhao", {"result": "failed", "comment": "仍有客户无法登录"})
    assert dashboard(flow).incident_mttr_hours == pytest.approx(1.0)  # what was recorded so far
    resolved(flow, case, "2026-11-20T21:00:00+08:00")
    assert dashboard(flow).incident_mttr_hours == pytest.approx(4.0)


def test_escalation_confirmation_and_close_steps_are_not_counted_as_response_or_resolution(flow: Flow) -> None:
    clock = flow.engine.ctx.clock
    case = reported(flow, "2026-11-20T18:00:00+08:00", impact="medium", urgency="low")  # P4: respond in PT4H
    clock.advance(hours=10)
    flow.engine.runtime.fire_due_timers()
    escalation = flow.task(case, "escalate_response")
    assert escalation.due_at is not None and escalation.due_at < clock.now + timedelta(hours=1)
    clock.advance(hours=2)  # the escalation itself is now late too
    flow.do(case, "respond", "lina", {"assessment": "网关异常"})
    resolved(flow, case, "2026-11-21T06:00:00+08:00")
    clock.advance(hours=3)  # confirm (PT1H) left open past its due time
    report = dashboard(flow)
    # only respond counts (12 h against PT4H: late), and only against its own due time when it has one
    graded = due_of_completed(flow, case, "respond") is not None
    assert (report.response.measured, report.response.breaches) == ((1, 1) if graded else (0, 0))
    graded = due_of_completed(flow, case, "resolve") is not None
    assert (report.resolution.measured, report.resolution.breaches) == ((1, 0) if graded else (0, 0))  # P3D
    assert report.time_used[-1] == (">100%", 2)  # escalate_response and confirm: open past due, not measured


def test_response_and_resolution_breaches_against_the_graded_due_times(flow: Flow) -> None:
    clock = flow.engine.ctx.clock
    a = reported(flow, "2026-11-20T18:00:00+08:00")  # P3: respond PT2H, resolve P1D
    assert flow.task(a, "respond").due_at is not None  # graded due times (issue 15 part 4)
    b = reported(flow, "2026-11-20T18:00:00+08:00", impact="medium", urgency="low")  # P4: PT4H, P3D
    c = reported(flow, "2026-11-20T18:00:00+08:00")  # P3
    clock.advance(minutes=30)
    flow.do(a, "respond", "lina", {"assessment": "网关异常"})  # on time
    clock.advance(minutes=30)
    flow.do(c, "respond", "lina", {"assessment": "网关异常"})  # on time
    clock.advance(hours=1)
    resolved(flow, a, "2026-11-20T20:00:00+08:00")  # on time
    clock.now = START + timedelta(hours=10)
    flow.engine.runtime.fire_due_timers()
    flow.do(b, "respond", "lina", {"assessment": "网关异常"})  # 10 h against PT4H: late
    resolved(flow, b, "2026-11-21T04:00:00+08:00")  # on time (P3D)
    clock.now = START + timedelta(hours=30)
    flow.engine.runtime.fire_due_timers()
    resolved(flow, c, "2026-11-22T00:00:00+08:00")  # 29 h after respond against P1D: late

    report = dashboard(flow)
    assert (report.response.measured, report.response.breaches) == (3, 1)
    assert report.response.rate == pytest.approx(1 / 3)
    assert (report.resolution.measured, report.resolution.breaches) == (3, 1)
    assert report.resolution.rate == pytest.approx(1 / 3)


def test_open_task_past_its_due_time_is_a_breach_before_it_is_done(flow: Flow) -> None:
    case = reported(flow, "2026-11-20T18:00:00+08:00", impact="medium", urgency="low")  # P4: PT4H
    due = flow.task(case, "respond").due_at
    assert due is not None
    assert (dashboard(flow).response.measured, dashboard(flow).response.breaches) == (0, 0)  # not yet decided
    flow.engine.ctx.clock.now = due + timedelta(minutes=1)
    report = dashboard(flow)
    assert (report.response.measured, report.response.breaches) == (1, 1)


def test_time_used_buckets_of_open_tasks(flow: Flow) -> None:
    clock = flow.engine.ctx.clock
    change = submit(flow)  # approve_ops: due in P1D from now
    approve = flow.task(change, "approve_ops")
    assert approve.due_at is not None
    span = approve.due_at - approve.created_at
    used = {label: n for label, n in dashboard(flow, process_id="change").time_used}
    assert used == {"<50%": 1, "50-75%": 0, "75-95%": 0, "95-100%": 0, ">100%": 0}
    for share, label in ((0.6, "50-75%"), (0.8, "75-95%"), (0.97, "95-100%"), (1.0, "95-100%"), (1.2, ">100%")):
        clock.now = approve.created_at + span * share
        used = {lb: n for lb, n in dashboard(flow, process_id="change").time_used}
        assert used[label] == 1 and sum(used.values()) == 1, (share, used)


def test_change_success_rate_and_emergency_share(flow: Flow) -> None:
    cases = [submit(flow), submit(flow), submit(flow),
             submit(flow, change_type="emergency", emergency_reason="行情网关内存泄漏，需立即重启")]
    for case in cases:
        for step in ("approve_ops", "approve_it_head"):
            if step in flow.open_names(case):
                flow.do(case, step, "liuyang" if step == "approve_ops" else "zhaolei", APPROVE)
    open_window(flow, SATURDAY[0])
    for case in cases:
        flow.do(case, "implement", "lina", IMPLEMENTED)
        flow.do(case, "review", "wangqiang", SUCCESS)
        flow.do(case, "verify_tech", "lina", SUCCESS)
    ok, ok_too, failed, emergency = cases
    for case in (ok, ok_too, emergency):
        flow.do(case, "verify_business", "zhoujie", SUCCESS)
    flow.do(emergency, "post_review", "liuyang", {"summary": "紧急重启合理，补充审批通过", "conclusion": "accepted"})
    flow.do(failed, "verify_business", "zhoujie", {"result": "failed", "comment": "委托查询结果不完整"})
    flow.do(failed, "rollback", "lina", {"steps": IMPLEMENTED["steps"], "result": "success"})
    flow.do(failed, "confirm_rollback", "wangqiang", SUCCESS)
    flow.do(failed, "post_review", "liuyang", {"summary": "验证用例覆盖不足", "conclusion": "accepted"})
    before = dashboard(flow)
    assert before.change_outcomes == {"失败": 1}  # the others are not closed yet
    assert (before.changes, before.emergency_changes) == (4, 1)  # requested in the period
    close(flow, ok)
    close(flow, ok_too)
    close(flow, emergency)

    report = dashboard(flow)
    assert report.change_outcomes == {"成功": 3, "失败": 1}
    assert report.change_success_rate == pytest.approx(3 / 4)
    assert report.emergency_ratio == pytest.approx(1 / 4)
    assert dashboard(flow, process_id="incident").change_success_rate is None


def test_more_than_a_thousand_cases_all_count(flow: Flow) -> None:
    """Figures come from SQL over every case row (the old read stopped at 1,000 cases)."""
    definition = flow.engine.repository.definitions()
    change_def = next(d for d in definition if d.process_id == "change")
    incident_def = next(d for d in definition if d.process_id == "incident")
    now = flow.engine.ctx.now()
    base = {"business_key": None, "title": "批量", "started_by": "zhangwei", "state": "{}", "revision": 1}
    changes = [base | {"definition_id": change_def.id, "process_id": "change", "status": "completed",
                       "started_at": now - timedelta(days=2), "ended_at": now - timedelta(days=1),
                       "outcome": "成功" if i % 4 else "失败", "category": "emergency" if i % 10 == 0 else "normal"}
               for i in range(1200)]
    incidents = [base | {"definition_id": incident_def.id, "process_id": "incident", "status": "completed",
                         "started_at": now - timedelta(days=2), "ended_at": now - timedelta(days=1),
                         "detected_at": now - timedelta(days=2),
                         "restored_at": now - timedelta(days=2) + timedelta(hours=1 + i % 2)}
                 for i in range(1100)]
    with flow.engine.ctx.db.transaction() as s:
        s.execute(insert(ProcessInstance), changes + incidents)
    report = dashboard(flow)
    assert sum(report.change_outcomes.values()) == 1200
    assert report.change_outcomes == {"成功": 900, "失败": 300}
    assert (report.changes, report.emergency_changes) == (1200, 120)
    assert report.incidents_restored == 1100
    assert report.incident_mttr_hours == pytest.approx(1.5)


def test_compliance_may_open_the_dashboard_and_staff_may_not(flow: Flow) -> None:
    assert flow.engine.reports.dashboard(flow.user("sunyan")).process_id is None  # compliance
    with pytest.raises(Forbidden):
        flow.engine.reports.dashboard(flow.user("zhangwei"))


def test_an_implausible_discovery_year_is_no_figure_and_breaks_no_list(flow: Flow) -> None:
    """Year 405 typed into 发现时间: the case runs, a due time from it stores and reads back, the case list
    and the dashboard still load, and the year is not counted as a detection time."""
    case = reported(flow, "0405-07-03T09:00:00+08:00")
    flow.do(case, "respond", "lina", {"assessment": "网关异常"})
    resolve = flow.task(case, "resolve")
    assert resolve is not None and resolve.due_at is not None and resolve.due_at.year == 405
    resolved(flow, case, "2026-11-20T20:00:00+08:00")
    assert case in [c.id for c in flow.engine.runtime.cases(process_id="incident")]
    report = dashboard(flow)
    assert (report.incidents_restored, report.incident_mttr_hours) == (0, None)
