"""Dashboard figures against hand-computed fixtures."""

from __future__ import annotations

import pytest

from engine import ProcessEngine
from engine.errors import Forbidden
from tests.conftest import deploy_fixture


def test_figures_follow_kpis_json_on_a_stand_in_process(engine: ProcessEngine, people, clock) -> None:
    """The fixture's ids are those processes/kpis.json names: outcome and type, respond against PT1H.
    The library processes themselves are measured in tests/processes/test_kpis.py."""
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
    assert report.change_success_rate == pytest.approx(0.5)  # only 成功 is successful (kpis.json)
    assert report.emergency_ratio == pytest.approx(0.25)
    assert (report.incidents_restored, report.incident_mttr_hours) == (0, None)  # no discovery or restore recorded
    assert (report.response.measured, report.response.breaches) == (2, 1)
    assert report.resolution.measured == 0
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
