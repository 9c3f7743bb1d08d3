"""Dashboard figures against hand-computed fixtures."""

from __future__ import annotations

import pytest

from engine import ProcessEngine
from engine.errors import Forbidden
from tests.conftest import deploy_fixture


def test_change_and_incident_figures_match_hand_computed_values(engine: ProcessEngine, people, clock) -> None:
    deploy_fixture(engine, "report_processes.bpmn")
    for outcome, kind in [("成功", "normal"), ("成功", "emergency"), ("成功但有问题", "normal"), ("失败", "normal")]:
        engine.runtime.start("change", people["zhang"], {"planned_outcome": outcome, "change_type": kind})
    # incident A: answered after 30 min (on time), incident B: after 3 h (late); both end then
    a = engine.runtime.start("incident", people["wang"])
    b = engine.runtime.start("incident", people["wang"])
    tasks = {t.instance_id: t for t in engine.tasks.inbox(people["wang"])}
    clock.advance(minutes=30)
    engine.tasks.complete(tasks[a.id].id, people["wang"], {"defects_remaining": False})
    clock.advance(minutes=150)
    engine.tasks.complete(tasks[b.id].id, people["wang"], {"defects_remaining": False})

    report = engine.reports.dashboard(people["du"], days=7)
    assert report.change_outcomes == {"成功": 2, "成功但有问题": 1, "失败": 1}
    assert report.change_success_rate == pytest.approx(0.5)
    assert report.emergency_ratio == pytest.approx(0.25)
    assert report.incidents_resolved == 2
    assert report.incident_mttr_hours == pytest.approx((0.5 + 3.0) / 2)
    assert (report.response_tasks, report.response_breaches) == (2, 1)
    assert sum(started for _week, started, _done in report.weekly) == 6
    assert sum(done for _week, _started, done in report.weekly) == 6


def test_open_tasks_are_bucketed_by_age_and_counted_late_by_role(engine: ProcessEngine, people, clock) -> None:
    deploy_fixture(engine, "report_processes.bpmn")
    engine.runtime.start("incident", people["wang"])
    clock.advance(days=2)
    engine.runtime.start("incident", people["wang"])
    report = engine.reports.dashboard(people["du"])
    assert dict(report.ageing) == {"<1d": 1, "1-3d": 1, "3-7d": 0, ">7d": 0}
    assert report.overdue_by_role == [("ops_engineer", 1, 1)]  # one late, one due within 24 h
    assert [t.name for t in report.overdue_tasks] == ["响应处置"]


def test_staff_may_not_see_the_dashboard(engine: ProcessEngine, people) -> None:
    with pytest.raises(Forbidden):
        engine.reports.dashboard(people["zhang"])
