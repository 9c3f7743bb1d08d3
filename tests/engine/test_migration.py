"""Version diffs and moving running cases to a newer version where the change lies ahead of them."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from engine import ProcessEngine
from engine.definitions.versions import diff
from engine.errors import Forbidden
from engine.spiff.parsing import SourceFile
from engine.storage.models import ProcessDefinition
from tests.conftest import FIXTURES

V1 = (FIXTURES / "two_lanes.bpmn").read_text(encoding="utf-8")
# Version 2 adds a confirmation by the manager after the approval: ahead of a case waiting to approve.
V2 = (V1.replace('<bpmn:flowNodeRef>decided</bpmn:flowNodeRef>',
                 '<bpmn:flowNodeRef>confirm</bpmn:flowNodeRef><bpmn:flowNodeRef>decided</bpmn:flowNodeRef>')
      .replace('<bpmn:sequenceFlow id="f3" sourceRef="approve" targetRef="decided" />',
               '<bpmn:sequenceFlow id="f3" sourceRef="approve" targetRef="confirm" />'
               '<bpmn:sequenceFlow id="f3b" sourceRef="confirm" targetRef="decided" />'
               '<bpmn:userTask id="confirm" name="确认"><bpmn:extensionElements><spiffworkflow:properties>'
               '<spiffworkflow:property name="formJsonSchemaFilename" value="approval.json" />'
               '</spiffworkflow:properties></bpmn:extensionElements>'
               '<bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f3b</bpmn:outgoing></bpmn:userTask>')
      .replace('<bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f_ok</bpmn:outgoing>',
               '<bpmn:incoming>f3b</bpmn:incoming><bpmn:outgoing>f_ok</bpmn:outgoing>'))
# Version 3 changes the approval itself (a longer due time): behind or at a case waiting to approve.
V3 = V2.replace('<spiffworkflow:property name="dueIn" value="P1D" />',
                '<spiffworkflow:property name="dueIn" value="P2D" />')
REQUEST = {"title": "申请权限", "system": "清算", "reason": "日终清算排查"}


def deploy(engine: ProcessEngine, text: str) -> int:
    return engine.repository.deploy([SourceFile("access.bpmn", text.encode())], "owner")[0].version


@pytest.fixture
def owner(engine: ProcessEngine):
    return engine.identity.add_user("owner", ["process_owner"], password="Kunlun-2026-pw")


def at_approval(engine: ProcessEngine, people) -> int:
    case = engine.runtime.start("access_request", people["zhang"], {"title": "v1"})
    task = next(t for t in engine.tasks.inbox(people["zhang"], scope="mine") if t.instance_id == case.id)
    engine.tasks.complete(task.id, people["zhang"], REQUEST)
    return case.id


def open_task(engine: ProcessEngine, case_id: int, bpmn_id: str):
    tasks = [t for t in engine.runtime.show(case_id).open_tasks if t.bpmn_id == bpmn_id]
    assert len(tasks) == 1, [t.bpmn_id for t in engine.runtime.show(case_id).open_tasks]
    return tasks[0]


def test_diff_names_added_removed_and_changed_elements_and_ignores_layout() -> None:
    changes = diff(V1, V2)
    assert {e.id for e in changes.added} == {"confirm", "f3b"}
    assert {e.id for e in changes.changed} == {"f3", "decided", "lane_manager"}
    assert changes.removed == []
    assert "decided" in changes.rerouted and "lane_manager" not in changes.rerouted
    assert diff(V1, V1.replace('x="260" y="95"', 'x="300" y="95"')).empty
    back = diff(V3, V1)
    assert {e.id for e in back.removed} == {"confirm", "f3b"} and "approve" in {e.id for e in back.changed}


def test_dry_run_reports_what_would_move_and_changes_nothing(engine: ProcessEngine, people, owner) -> None:
    deploy(engine, V1)
    case_id = at_approval(engine, people)
    deploy(engine, V2)
    report = engine.migration.migrate(owner, "access_request", dry_run=True)
    assert [(r.instance_id, r.from_version, r.to_version, r.ok, r.migrated) for r in report] == [
        (case_id, 1, 2, True, False)]
    assert "'approve' (审批)" in report[0].waiting_at
    assert engine.runtime.show(case_id).version == 1


def test_refuses_with_the_reason_where_the_change_is_at_the_case(engine: ProcessEngine, people, owner) -> None:
    deploy(engine, V1)
    waiting = at_approval(engine, people)
    early = engine.runtime.start("access_request", people["zhang"], {"title": "still requesting"}).id
    deploy(engine, V2)
    deploy(engine, V3)
    report = {r.instance_id: r for r in engine.migration.migrate(owner, "access_request", dry_run=False)}
    assert not report[waiting].ok
    assert report[waiting].reason == "step 'approve' (审批), which the case is waiting at, was changed"
    assert report[early].ok and report[early].migrated
    assert engine.runtime.show(waiting).version == 1
    assert engine.runtime.show(early).version == 3


def test_batch_migration_is_audited_and_the_case_completes_on_the_new_version(engine: ProcessEngine, people,
                                                                              owner) -> None:
    deploy(engine, V1)
    first, second = at_approval(engine, people), at_approval(engine, people)
    deploy(engine, V2)
    report = engine.migration.migrate(owner, "access_request", dry_run=False)
    assert sorted(r.instance_id for r in report if r.migrated) == [first, second]
    actions = [(e.action, e.instance_id) for e in engine.audit.events()]
    assert ("case.migrated", first) in actions and ("case.migrated", second) in actions
    assert actions[-1] == ("cases.migrated", None)
    assert engine.audit.verify().ok
    assert {row.version: n for row, n in engine.repository.versions("access_request")} == {2: 2, 1: 0}
    engine.tasks.claim(open_task(engine, first, "approve").id, people["li"])
    engine.tasks.complete(open_task(engine, first, "approve").id, people["li"], {"decision": "approve"})
    confirm = open_task(engine, first, "confirm")  # the step version 2 added
    engine.tasks.claim(confirm.id, people["zhou"])
    engine.tasks.complete(confirm.id, people["zhou"], {"decision": "approve"})
    shown = engine.runtime.show(first)
    assert (shown.status, shown.version) == ("completed", 2)


def test_only_a_process_owner_may_migrate(engine: ProcessEngine, people) -> None:
    deploy(engine, V1)
    with pytest.raises(Forbidden):
        engine.migration.migrate(people["li"], "access_request")


def test_a_case_on_a_version_with_shared_keys_finishes_where_it_is(engine: ProcessEngine, people, owner) -> None:
    deploy(engine, V1)
    with engine.ctx.db.transaction() as s:  # a version deployed before answers were kept by task
        s.execute(update(ProcessDefinition).values(answers="shared"))
    engine.repository._cache.clear()
    waiting = at_approval(engine, people)
    deploy(engine, V2)
    report = engine.migration.migrate(owner, "access_request", dry_run=False)
    assert [(r.ok, r.reason) for r in report] == [
        (False, "version 2 keeps each task's answers by task and version 1 in shared keys: "
                "the case finishes on its own version")]
    assert engine.runtime.show(waiting).version == 1
