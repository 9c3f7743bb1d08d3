"""The audit chain: every action recorded, tampering detected and located."""

from __future__ import annotations

from sqlalchemy import delete, update

from engine import ProcessEngine
from engine.models import AuditEvent
from tests.conftest import deploy_fixture


def _walk(engine: ProcessEngine, people) -> int:
    deploy_fixture(engine, "two_lanes.bpmn")
    case = engine.runtime.start("access_request", people["zhang"])
    task = engine.tasks.inbox(people["zhang"])[0]
    engine.tasks.complete(task.id, people["zhang"], {"title": "权限", "system": "清算", "reason": "日终清算排查"})
    approval = engine.tasks.inbox(people["li"])[0]
    engine.tasks.claim(approval.id, people["li"])
    engine.tasks.complete(approval.id, people["li"], {"decision": "approve"})
    return case.id


def test_every_action_is_recorded_with_actor_and_data(engine: ProcessEngine, people) -> None:
    case_id = _walk(engine, people)
    history = engine.runtime.show(case_id).history
    assert [(e.actor, e.action) for e in history] == [
        ("zhang", "case.started"), ("zhang", "task.completed"), ("li", "task.claimed"), ("li", "task.completed")]
    assert history[1].data["data"]["system"] == "清算"
    assert engine.audit.verify().ok


def test_edited_row_is_named_by_verify(engine: ProcessEngine, people) -> None:
    _walk(engine, people)
    with engine.ctx.db.transaction() as s:
        s.execute(update(AuditEvent).where(AuditEvent.id == 3).values(actor="someone_else"))
    report = engine.audit.verify()
    assert (report.ok, report.first_bad_id) == (False, 3)


def test_deleted_row_is_named_by_verify(engine: ProcessEngine, people) -> None:
    _walk(engine, people)
    with engine.ctx.db.transaction() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.id == 2))
    report = engine.audit.verify()
    assert (report.ok, report.first_bad_id) == (False, 2)


def test_deleted_last_row_is_detected(engine: ProcessEngine, people) -> None:
    _walk(engine, people)
    last = engine.audit.events()[-1].id
    with engine.ctx.db.transaction() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.id == last))
    assert engine.audit.verify().first_bad_id == last
