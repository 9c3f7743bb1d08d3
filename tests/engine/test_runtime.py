"""Running cases: loops, data types, messages, services, cancellation."""

from __future__ import annotations

import pytest

from engine import ProcessEngine
from engine.cases.store import OpenCase
from engine.errors import Conflict, Forbidden, NotFound, ProcessError, ValidationFailed
from engine.storage.models import ProcessInstance
from tests.conftest import deploy_fixture


def test_rework_loop_of_500_rounds_completes_without_stalling(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "loop.bpmn")
    case = engine.runtime.start("rework_loop", people["wang"], {"target": 500, "rounds": 0})
    detail = engine.runtime.show(case.id)
    assert detail.data["rounds"] == 500
    assert [t.name for t in detail.open_tasks] == ["修复缺陷"]
    engine.store.cache.clear()  # and again after a round trip through the database
    task = detail.open_tasks[0]
    engine.tasks.complete(task.id, people["wang"], {"defects_remaining": True})
    again = engine.tasks.inbox(people["wang"])[0]
    engine.tasks.complete(again.id, people["wang"], {"defects_remaining": False})
    assert engine.runtime.show(case.id).status == "completed"


def test_dates_decimals_and_naive_datetimes_survive_the_database(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "scripts.bpmn")
    case = engine.runtime.start("data_types", people["wang"], {"change_ref": "CHG-1"})
    engine.store.cache.clear()
    data = engine.runtime.show(case.id).data
    assert data["window_day"] == "2026-12-01"
    assert data["amount"] == "12.50"
    assert data["planned"] == "2026-12-01T20:00:00+08:00"  # pinned to the firm's zone, never naive
    assert data["total"] == 6


def test_message_reaches_only_the_case_it_correlates_with(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "scripts.bpmn")
    first = engine.runtime.start("data_types", people["wang"], {"change_ref": "CHG-1"})
    second = engine.runtime.start("data_types", people["wang"], {"change_ref": "CHG-2"})
    engine.store.cache.clear()
    assert engine.runtime.deliver_message("deployment_done", {"change_ref": "CHG-2"}, {"version": "1.2"},
                                          people["wang"]) == second.id
    assert engine.runtime.show(first.id).open_tasks == []
    detail = engine.runtime.show(second.id)
    assert [t.name for t in detail.open_tasks] == ["确认"]
    assert detail.data["deployment"]["version"] == "1.2"


def test_message_no_case_waits_for_is_not_found_with_the_reason(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "scripts.bpmn")
    engine.runtime.start("data_types", people["wang"], {"change_ref": "CHG-1"})
    with pytest.raises(NotFound, match="no case is waiting for message 'deployment_done'"):
        engine.runtime.deliver_message("deployment_done", {"change_ref": "CHG-9"}, {}, people["wang"])
    with pytest.raises(NotFound):
        engine.runtime.deliver_message("no_such_message", {}, {}, people["wang"])


def test_service_task_error_surfaces_as_itself_and_nothing_is_saved(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "service_error.bpmn")

    def cmdb_update(item: str) -> dict:
        raise ConnectionError(f"CMDB unreachable while updating {item}")

    engine.ctx.environment.services["cmdb_update"] = cmdb_update
    with pytest.raises(ProcessError, match="CMDB unreachable while updating db01"):
        engine.runtime.start("service_call", people["wang"], {"ci_name": "db01"})
    with engine.ctx.db.transaction() as s:
        assert s.query(ProcessInstance).count() == 0


def test_service_task_result_lands_in_case_data(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "service_error.bpmn")
    engine.ctx.environment.services["cmdb_update"] = lambda item: {"updated": item}
    case = engine.runtime.start("service_call", people["wang"], {"ci_name": "db01"})
    detail = engine.runtime.show(case.id)
    assert detail.status == "completed"
    assert detail.data["cmdb_result"] == {"updated": "db01"}


def test_cancel_needs_a_reason_and_withdraws_open_tasks(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "two_lanes.bpmn")
    case = engine.runtime.start("access_request", people["zhang"])
    with pytest.raises(Forbidden):
        engine.runtime.cancel(case.id, people["wang"], "not mine")
    engine.runtime.cancel(case.id, people["zhang"], "申请有误")
    detail = engine.runtime.show(case.id)
    assert detail.status == "cancelled" and detail.open_tasks == []
    assert engine.tasks.inbox(people["zhang"]) == []
    with pytest.raises(Conflict):
        engine.runtime.cancel(case.id, people["zhang"], "again")


def test_unknown_process_is_not_found(engine: ProcessEngine, people) -> None:
    with pytest.raises(NotFound, match="unknown process 'nope'"):
        engine.runtime.start("nope", people["zhang"])


def test_case_pages_are_shown_only_to_participants_and_readers(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "two_lanes.bpmn")
    case = engine.runtime.start("access_request", people["zhang"])
    assert engine.runtime.show(case.id, people["du"]).id == case.id  # supervisor reads all
    with pytest.raises(Forbidden):
        engine.runtime.show(case.id, people["wang"])


def test_cases_link_both_ways(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "two_lanes.bpmn")
    a = engine.runtime.start("access_request", people["zhang"])
    b = engine.runtime.start("access_request", people["zhang"])
    engine.runtime.link(a.id, b.id, "follow_up", "zhang")
    assert engine.runtime.show(a.id).links[0] | {} == {
        "kind": "follow_up", "direction": "to", "instance_id": b.id, "process_id": "access_request",
        "title": b.title}
    assert engine.runtime.show(b.id).links[0]["direction"] == "from"


def test_stale_revision_is_a_conflict_never_a_lost_update(engine: ProcessEngine, people) -> None:
    from sqlalchemy import update

    deploy_fixture(engine, "two_lanes.bpmn")
    case = engine.runtime.start("access_request", people["zhang"])
    with pytest.raises(Conflict, match="changed by someone else"):
        with engine.ctx.db.transaction() as s:
            row = s.get(ProcessInstance, case.id)
            workflow = engine.store.read(s, row)
            stale = OpenCase(row, engine.repository.load(row.definition_id), workflow)
            # someone else saves in between (same transaction here, so no lock waits)
            s.execute(update(ProcessInstance).where(ProcessInstance.id == case.id)
                      .values(revision=ProcessInstance.revision + 1).execution_options(synchronize_session=False))
            workflow.cancel()
            engine.store.save(s, stale)
    assert engine.runtime.show(case.id).status == "running"


def test_a_message_carrying_a_type_marker_is_refused_and_the_case_stays_readable(engine: ProcessEngine,
                                                                                  people) -> None:
    deploy_fixture(engine, "scripts.bpmn")
    case = engine.runtime.start("data_types", people["wang"], {"change_ref": "CHG-1"})
    with pytest.raises(ValidationFailed) as refused:
        engine.runtime.deliver_message("deployment_done", {"change_ref": "CHG-1"},
                                       {"version": {"typename": "datetime", "value": "bad"}}, people["wang"])
    assert [e.field for e in refused.value.errors] == ["payload.version.typename"]
    engine.store.cache.clear()
    assert engine.runtime.show(case.id).status == "running"
