"""The inbox and task actions: forms, roles, separation of duties, conflicts."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine import ProcessEngine
from engine.errors import Conflict, Forbidden, ValidationFailed
from engine.storage.models import HumanTask, ProcessInstance
from tests.conftest import deploy_fixture

REQUEST = {"title": "数据库只读权限", "system": "集中交易", "reason": "排查交易延迟问题"}


@pytest.fixture
def case(engine: ProcessEngine, people):
    deploy_fixture(engine, "two_lanes.bpmn")
    return engine.runtime.start("access_request", people["zhang"], business_key="ACC-1")


def first_task(engine: ProcessEngine, actor, scope: str = "all") -> HumanTask:
    tasks = engine.tasks.inbox(actor, scope=scope)
    assert tasks, f"{actor.username} has no task"
    return tasks[0]


def submit_request(engine: ProcessEngine, people) -> HumanTask:
    engine.tasks.complete(first_task(engine, people["zhang"]).id, people["zhang"], REQUEST)
    return first_task(engine, people["li"], "group")


def test_first_task_is_assigned_to_the_starter(engine: ProcessEngine, people, case) -> None:
    task = first_task(engine, people["zhang"], "mine")
    assert (task.name, task.assignee, task.role, task.instance_id) == ("填写申请", "zhang", "staff", case.id)


def test_invalid_form_lists_every_field_error_and_saves_nothing(engine: ProcessEngine, people, case) -> None:
    task = first_task(engine, people["zhang"])
    revision = case.revision
    with pytest.raises(ValidationFailed) as info:
        engine.tasks.complete(task.id, people["zhang"], {"title": "x", "system": "核心", "days": 0})
    fields = {e.field for e in info.value.errors}
    assert fields == {"title", "system", "reason", "days"}
    with engine.ctx.db.transaction() as s:
        assert s.get(HumanTask, task.id).state == "open"
        assert s.get(ProcessInstance, case.id).revision == revision


def test_valid_form_completes_and_opens_the_role_task_with_due_time(engine: ProcessEngine, people, clock,
                                                                     case) -> None:
    approval = submit_request(engine, people)
    assert (approval.name, approval.role, approval.assignee) == ("审批", "ops_manager", None)
    assert approval.due_at == clock.now + __import__("datetime").timedelta(days=1)
    assert engine.tasks.get(approval.id).case_data["system"] == "集中交易"


def test_approval_comment_is_required_unless_approving(engine: ProcessEngine, people, case) -> None:
    approval = submit_request(engine, people)
    with pytest.raises(ValidationFailed) as info:
        engine.tasks.complete(approval.id, people["li"], {"decision": "reject"})
    assert [e.field for e in info.value.errors] == ["comment"]
    engine.tasks.complete(approval.id, people["li"], {"decision": "reject", "comment": "理由不足"})
    assert engine.runtime.show(case.id).status == "completed"


def test_user_without_the_role_is_refused_and_the_refusal_is_recorded(engine: ProcessEngine, people,
                                                                      case) -> None:
    approval = submit_request(engine, people)
    with pytest.raises(Forbidden) as info:
        engine.tasks.claim(approval.id, people["wang"])
    assert info.value.rule == "role"
    actions = [e.action for e in engine.runtime.show(case.id).history]
    assert actions[-1] == "task.refused"


def test_requester_cannot_approve_own_request(engine: ProcessEngine, people, case) -> None:
    boss = engine.identity.add_user("boss", ["staff", "ops_manager"])
    own = engine.runtime.start("access_request", boss)
    engine.tasks.complete(next(t for t in engine.tasks.inbox(boss, "mine") if t.instance_id == own.id).id,
                          boss, REQUEST)
    approval = next(t for t in engine.tasks.inbox(boss, "group") if t.instance_id == own.id)
    for action in (lambda: engine.tasks.claim(approval.id, boss),
                   lambda: engine.tasks.complete(approval.id, boss, {"decision": "approve"})):
        with pytest.raises(Forbidden) as info:
            action()
        assert info.value.rule == "separation_of_duties"
        assert "不相容岗位分离" in info.value.message
    engine.tasks.complete(approval.id, people["li"], {"decision": "approve"})
    assert engine.runtime.show(own.id).status == "completed"


def test_double_completion_is_a_conflict(engine: ProcessEngine, people, case) -> None:
    approval = submit_request(engine, people)
    engine.tasks.complete(approval.id, people["li"], {"decision": "approve"})
    with pytest.raises(Conflict, match="already completed by li"):
        engine.tasks.complete(approval.id, people["zhou"], {"decision": "approve"})


def test_claimed_task_cannot_be_claimed_or_completed_by_another(engine: ProcessEngine, people, case) -> None:
    approval = submit_request(engine, people)
    engine.tasks.claim(approval.id, people["li"])
    with pytest.raises(Conflict, match="already claimed by li"):
        engine.tasks.claim(approval.id, people["zhou"])
    with pytest.raises(Forbidden):
        engine.tasks.complete(approval.id, people["zhou"], {"decision": "approve"})
    assert first_task(engine, people["li"], "mine").id == approval.id
    assert engine.tasks.inbox(people["zhou"], "group") == []


def test_unclaim_returns_the_task_to_the_role_queue(engine: ProcessEngine, people, case) -> None:
    approval = submit_request(engine, people)
    engine.tasks.claim(approval.id, people["li"])
    with pytest.raises(Forbidden):
        engine.tasks.unclaim(approval.id, people["wang"])
    engine.tasks.unclaim(approval.id, people["li"])
    assert first_task(engine, people["zhou"], "group").id == approval.id


def test_manager_assigns_to_a_role_holder_only(engine: ProcessEngine, people, case) -> None:
    approval = submit_request(engine, people)
    with pytest.raises(Forbidden):
        engine.tasks.assign(approval.id, people["wang"], "li")
    with pytest.raises(Forbidden) as info:
        engine.tasks.assign(approval.id, people["du"], "wang")
    assert info.value.rule == "role"
    engine.tasks.assign(approval.id, people["du"], "zhou")
    assert first_task(engine, people["zhou"], "mine").id == approval.id


def test_inbox_listing_never_deserialises_a_workflow(engine: ProcessEngine, people, case, monkeypatch) -> None:
    submit_request(engine, people)

    def refuse(*_a, **_k):
        raise AssertionError("inbox deserialised a workflow")

    monkeypatch.setattr(engine.ctx.codec, "load_state", refuse)
    assert len(engine.tasks.inbox(people["li"], "group")) == 1
    assert engine.tasks.count(people["li"], "group") == 1


def test_overdue_filter_uses_the_clock(engine: ProcessEngine, people, clock, case) -> None:
    submit_request(engine, people)
    assert engine.tasks.inbox(people["li"], overdue=True) == []
    clock.advance(days=1, seconds=1)
    assert len(engine.tasks.inbox(people["li"], overdue=True)) == 1


def test_nothing_is_half_written_when_completion_fails(engine: ProcessEngine, people, case) -> None:
    task = first_task(engine, people["zhang"])
    with engine.ctx.db.transaction() as s:
        before = s.scalar(select(func.count()).select_from(HumanTask))
    with pytest.raises(ValidationFailed):
        engine.tasks.complete(task.id, people["zhang"], {})
    with engine.ctx.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(HumanTask)) == before
    engine.tasks.complete(task.id, people["zhang"], REQUEST)
