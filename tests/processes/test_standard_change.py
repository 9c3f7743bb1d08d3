"""标准变更模板审批 (standard_change_template) and the rule a standard change is held to (issue 16, item 3).

A template is proposed by an ops engineer or ops manager, approved by an ops manager and then the IT
head (neither the proposer), becomes active for its validity, is reviewed 30 days before it ends
(renewed as a new version, or retired) and expires if not renewed in time. `check_standard_change`
is what a change citing a template is checked by.
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from engine import ProcessEngine
from engine.configuration.templates import CORE_UNTESTED, StandardChangeCatalogue, TemplateView
from engine.errors import Forbidden, LintFailed, ValidationFailed
from engine.spiff.parsing import SourceFile
from engine.storage.models import AuditEvent
from tests.conftest import ROOT
from tests.processes.conftest import START, Flow

PROCESS = "standard_change_template"


def proposal(flow: Flow, **changes: Any) -> dict[str, Any]:
    return {"title": "行情系统参数调整", "systems": flow.systems("行情", "办公自动化"),
            "steps": ["备份行情参数文件", "按审定的参数表修改并重载", "核对行情发布正常"],
            "rollback_plan": "恢复备份的参数文件并重载行情服务", "rollback_tested": True, "validity": "P1Y",
            **changes}


def proposed(flow: Flow, proposer: str = "lina", **changes: Any) -> int:
    case = flow.start(PROCESS, proposer, {"title": "标准变更模板：行情系统参数调整"})
    assert flow.task(case, "propose").assignee == proposer
    flow.do(case, "propose", proposer, proposal(flow, **changes))
    return case


def approved(flow: Flow, **changes: Any) -> int:
    case = proposed(flow, **changes)
    flow.do(case, "approve_ops", "liuyang", {"decision": "approve", "comment": "步骤清楚，同意"})
    flow.do(case, "approve_it_head", "zhaolei", {"decision": "approve", "comment": "同意作为标准变更"})
    return case


def catalogue(engine: ProcessEngine) -> StandardChangeCatalogue:
    return StandardChangeCatalogue(engine.ctx, engine.audit)


def templates(engine: ProcessEngine) -> list[TemplateView]:
    return catalogue(engine).list_templates()


def events(engine: ProcessEngine, prefix: str = "template.") -> list[tuple[str, str, int | None, dict[str, Any]]]:
    with engine.ctx.db.read() as s:
        return [(e.actor, e.action, e.instance_id, e.data) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.id))]


def check(engine: ProcessEngine, template_id: Any, systems: list[int], rollback_tested: bool) -> dict[str, Any]:
    """The operator change.bpmn calls, as registered with the engine."""
    result: dict[str, Any] = engine.ctx.environment.services["check_standard_change"](
        template_id, systems, rollback_tested)
    return result


def at(flow: Flow, moment: datetime) -> None:
    flow.engine.ctx.clock.now = moment  # type: ignore[attr-defined]
    flow.engine.runtime.fire_due_timers()


# approval ------------------------------------------------------------------------------------------------
def test_template_approved_by_the_ops_manager_and_the_it_head_becomes_active(flow: Flow, engine: ProcessEngine) -> None:
    case = approved(flow)
    [t] = templates(engine)
    assert (t.code, t.title, t.status, t.version) == ("SC-0001", "行情系统参数调整", "生效", 1)
    assert [s["name"] for s in t.systems] == ["行情", "办公自动化"]
    assert t.steps[0] == "备份行情参数文件" and t.rollback_tested
    assert (t.approved_by_ops, t.approved_by_it_head, t.instance_id) == ("liuyang", "zhaolei", case)
    assert t.valid_from == START and t.valid_until == START.replace(year=2027)
    assert [(a, action, i) for a, action, i, _ in events(engine)] == [("zhaolei", "template.activated", case)]
    # the case waits for the review, with the register's word on the systems it names
    assert flow.status(case) == "running" and flow.open_names(case) == []
    data = flow.data(case)
    assert data["outcome"] == "已生效" and data["template_code"] == "SC-0001"
    assert [s["name"] for s in data["template_systems"]] == ["行情", "办公自动化"]
    assert check(engine, t.id, flow.systems("行情"), True) == {"ok": True, "reason": ""}


def test_ops_manager_rejects_and_no_template_is_made(flow: Flow, engine: ProcessEngine) -> None:
    case = proposed(flow)
    flow.do(case, "approve_ops", "liuyang", {"decision": "reject", "comment": "不宜作为标准变更"})
    assert flow.status(case) == "completed" and flow.data(case)["outcome"] == "已驳回"
    assert templates(engine) == [] and events(engine) == []


def test_it_head_rejects_and_no_template_is_made(flow: Flow, engine: ProcessEngine) -> None:
    case = proposed(flow)
    flow.do(case, "approve_ops", "liuyang", {"decision": "approve"})
    flow.do(case, "approve_it_head", "zhaolei", {"decision": "reject", "comment": "风险过高，按一般变更审批"})
    assert flow.status(case) == "completed" and flow.data(case)["outcome"] == "已驳回"
    assert templates(engine) == []


def test_it_head_returns_to_the_proposer_who_resubmits(flow: Flow, engine: ProcessEngine) -> None:
    case = proposed(flow)
    flow.do(case, "approve_ops", "liuyang", {"decision": "approve"})
    flow.do(case, "approve_it_head", "zhaolei", {"decision": "return", "comment": "补充核对步骤"})
    task = flow.task(case, "propose")
    assert task.assignee == "lina" and task.return_reason == "信息技术负责人退回：补充核对步骤"
    flow.do(case, "propose", "lina", proposal(flow, steps=["备份", "修改并重载", "核对行情发布与客户端显示"]))
    flow.do(case, "approve_ops", "liuyang", {"decision": "approve"})
    flow.do(case, "approve_it_head", "zhaolei", {"decision": "approve"})
    [t] = templates(engine)
    assert t.steps[-1] == "核对行情发布与客户端显示" and t.status == "生效"


def test_proposer_cannot_approve_their_own_template(flow: Flow, engine: ProcessEngine) -> None:
    engine.identity.add_user("sunli", ["ops_manager"], "孙立")
    case = proposed(flow, proposer="liuyang")  # an ops manager proposes
    task = flow.task(case, "approve_ops")
    with pytest.raises(Forbidden) as refused:
        engine.tasks.claim(task.id, flow.user("liuyang"))
    assert refused.value.rule == "separation_of_duties"
    flow.do(case, "approve_ops", "sunli", {"decision": "approve"})
    flow.do(case, "approve_it_head", "zhaolei", {"decision": "approve"})
    [t] = templates(engine)
    assert (t.approved_by_ops, t.approved_by_it_head) == ("sunli", "zhaolei")


def test_core_system_with_an_untested_rollback_is_returned_to_the_proposer(flow: Flow, engine: ProcessEngine) -> None:
    case = proposed(flow, systems=flow.systems("集中交易"), rollback_tested=False)
    task = flow.task(case, "propose")
    assert task.return_reason == "模板核对未通过：集中交易为核心系统，回退方案未经测试的不得作为标准变更模板"
    flow.do(case, "propose", "lina", proposal(flow, systems=flow.systems("集中交易"), rollback_tested=True))
    assert flow.open_names(case) == ["approve_ops"]


def test_only_an_ops_engineer_or_manager_may_propose(flow: Flow, engine: ProcessEngine) -> None:
    case = flow.start(PROCESS, "zhangwei", {"title": "模板"})
    assert flow.status(case) == "completed" and flow.data(case)["outcome"] == "不受理"
    assert "zhangwei 不具备提出标准变更模板的角色" in flow.data(case)["proposer_check"]["reason"]


# the rule a change is held to -----------------------------------------------------------------------------
def test_check_standard_change_refuses_what_is_not_standard(flow: Flow, engine: ProcessEngine) -> None:
    case = approved(flow)
    [t] = templates(engine)
    quotes, office, trading = flow.systems("行情", "办公自动化", "集中交易")
    assert check(engine, t.id, [quotes, office], True) == {"ok": True, "reason": ""}
    assert check(engine, t.id, [office], False)["ok"]  # a non-core system needs no tested rollback
    assert check(engine, None, [quotes], True) == {"ok": False, "reason": "标准变更须引用一个生效的标准变更模板"}
    assert check(engine, 999, [quotes], True) == {"ok": False, "reason": "标准变更模板 999 不存在"}
    assert check(engine, t.id, [quotes, trading], True) == {
        "ok": False, "reason": "标准变更模板 SC-0001（行情系统参数调整）不适用于：集中交易"}
    assert check(engine, t.id, [quotes], False) == {"ok": False, "reason": CORE_UNTESTED}
    assert check(engine, t.id, [], True)["ok"] is False
    # retired on review: no longer active
    at(flow, t.valid_until - timedelta(days=30, seconds=-1))
    flow.do(case, "review", "liuyang", {"decision": "retire", "comment": "行情系统即将更换"})
    assert check(engine, t.id, [quotes], True) == {
        "ok": False, "reason": "标准变更模板 SC-0001（行情系统参数调整）状态为停用，未生效"}
    assert flow.status(case) == "completed" and flow.data(case)["outcome"] == "已停用"
    assert [(a, action) for a, action, _, _ in events(engine)][-1] == ("liuyang", "template.retired")


def test_a_template_past_its_validity_is_refused_even_before_the_timer_marks_it(flow: Flow,
                                                                               engine: ProcessEngine) -> None:
    approved(flow)
    [t] = templates(engine)
    assert t.valid_until is not None
    engine.ctx.clock.now = t.valid_until  # type: ignore[attr-defined]  # no timer fired yet
    assert check(engine, t.id, flow.systems("行情"), True) == {
        "ok": False,
        "reason": "标准变更模板 SC-0001（行情系统参数调整）已于 2027-11-20 18:00 到期，须复审续期后方可引用"}


# review and expiry -----------------------------------------------------------------------------------------
def test_review_opens_30_days_before_expiry_and_an_unrenewed_template_expires(flow: Flow,
                                                                             engine: ProcessEngine) -> None:
    case = approved(flow)
    [t] = templates(engine)
    assert t.valid_until is not None
    at(flow, t.valid_until - timedelta(days=30, seconds=1))
    assert flow.open_names(case) == []
    at(flow, t.valid_until - timedelta(days=30, seconds=-1))
    task = flow.task(case, "review")
    assert task.role == "ops_manager" and task.due_at == t.valid_until
    assert "review" in [x.bpmn_id for x in flow.inbox("liuyang")]
    at(flow, t.valid_until + timedelta(seconds=1))
    [t] = templates(engine)
    assert t.status == "过期"
    assert [(a, action, i) for a, action, i, _ in events(engine)][-1] == ("system", "template.expired", case)
    assert check(engine, t.id, flow.systems("行情"), True)["reason"].endswith("状态为过期，未生效")
    assert flow.open_names(case) == ["review"]  # the review stays open: it may still renew

    # renewed after expiry: version 2, a new validity from the renewal, active again
    flow.do(case, "review", "liuyang", {"decision": "renew", "validity": "P2Y", "comment": "运行平稳，续期"})
    flow.do(case, "approve_renewal", "zhaolei", {"decision": "approve"})
    [t2] = templates(engine)
    renewed_at = engine.ctx.now()
    assert (t2.code, t2.version, t2.status) == ("SC-0001", 2, "生效")
    assert (t2.valid_from, t2.valid_until) == (renewed_at, renewed_at.replace(year=renewed_at.year + 2))
    assert (t2.approved_by_ops, t2.approved_by_it_head) == ("liuyang", "zhaolei")
    assert check(engine, t2.id, flow.systems("行情"), True)["ok"]
    activated = [d for _, action, _, d in events(engine) if action == "template.activated"]
    assert [d["version"] for d in activated] == [1, 2]
    assert flow.open_names(case) == [] and flow.status(case) == "running"  # waiting for the next review


def test_renewed_before_its_end_a_template_never_expires_at_the_old_date(flow: Flow, engine: ProcessEngine) -> None:
    case = approved(flow)
    [t] = templates(engine)
    assert t.valid_until is not None
    at(flow, t.valid_until - timedelta(days=10))
    flow.do(case, "review", "liuyang", {"decision": "renew", "validity": "P1Y"})
    flow.do(case, "approve_renewal", "zhaolei", {"decision": "approve"})
    at(flow, t.valid_until + timedelta(days=1))  # past the first version's end
    [t2] = templates(engine)
    # renewed on 2027-11-10 for a year: valid to 2028-11-10, from the renewal
    assert (t2.status, t2.version, t2.valid_until) == ("生效", 2, datetime(2028, 11, 10, 18, 0, tzinfo=START.tzinfo))
    assert [action for _, action, _, _ in events(engine)] == ["template.activated", "template.activated"]
    assert check(engine, t2.id, flow.systems("行情"), True)["ok"] and flow.open_names(case) == []


def test_it_head_not_approving_a_renewal_sends_it_back_to_the_review(flow: Flow, engine: ProcessEngine) -> None:
    case = approved(flow)
    [t] = templates(engine)
    assert t.valid_until is not None
    at(flow, t.valid_until - timedelta(days=20))
    flow.do(case, "review", "liuyang", {"decision": "renew", "validity": "P1Y"})
    flow.do(case, "approve_renewal", "zhaolei", {"decision": "reject", "comment": "改为一般变更管理"})
    task = flow.task(case, "review")
    assert task.return_reason == "信息技术负责人未批准续期：改为一般变更管理"
    flow.do(case, "review", "liuyang", {"decision": "retire", "comment": "按信息技术负责人意见停用"})
    [t] = templates(engine)
    assert (t.status, t.version) == ("停用", 1)
    assert flow.status(case) == "completed"


# ci_reconcile: the quarterly review of the register (§6.4.5) -----------------------------------------------
def test_quarterly_run_opens_a_review_per_owner_role_and_records_the_result(flow: Flow, engine: ProcessEngine) -> None:
    assert engine.runtime.cases(process_id="ci_reconcile") == []
    engine.ctx.clock.now = datetime(2027, 1, 4, 9, 0, 1, tzinfo=START.tzinfo)  # type: ignore[attr-defined]
    engine.jobs.tick()
    [case] = [c.id for c in engine.runtime.cases(process_id="ci_reconcile")]
    assert engine.runtime.show(case).started_by == "system"
    tasks = flow.open_tasks(case)
    # each owner role reviews its own items, in its own queue (roleFrom)
    assert [t.bpmn_id for t in tasks] == ["reconcile", "reconcile"]
    assert sorted(t.role for t in tasks) == ["ops_engineer", "ops_manager"]
    owners = flow.data(case)["owners"]
    assert [(o["role"], o["role_name"]) for o in owners] == [
        ("ops_engineer", "运维工程师"), ("ops_manager", "运维负责人")]
    assert [i["name"] for i in owners[0]["items"]] == ["交易主机集群", "办公自动化", "期货主机", "期货交易中继", "行情"]
    assert sum(len(o["items"]) for o in owners) == 12  # every item in service, each under its owner

    # each task shows its owner role's items; another role may not take it
    by_role = {engine.tasks.get(t.id).case_data["owner"]["role"]: t for t in tasks}
    assert by_role["ops_engineer"].role == "ops_engineer" and by_role["ops_manager"].role == "ops_manager"
    with pytest.raises(Forbidden):
        engine.tasks.claim(by_role["ops_manager"].id, flow.user("lina"))
    assert by_role["ops_engineer"].id in {t.id for t in flow.inbox("lina")}
    engine.tasks.claim(by_role["ops_engineer"].id, flow.user("lina"))
    engine.tasks.complete(by_role["ops_engineer"].id, flow.user("lina"), {"result": "consistent"})
    assert flow.status(case) == "running"
    engine.tasks.claim(by_role["ops_manager"].id, flow.user("liuyang"))
    engine.tasks.complete(by_role["ops_manager"].id, flow.user("liuyang"), {"result": "discrepancies",
                                                                            "discrepancies": [
        {"item": "集中交易", "note": "实际版本已升级为 UF2.0 V202603"}]})

    assert flow.status(case) == "completed"
    data = flow.data(case)
    assert (data["outcome"], data["discrepancy_count"]) == ("有差异", 1)
    results = {r["role"]: (r["result"], r["discrepancies"]) for r in data["reconcile_result"]}
    assert results == {"ops_engineer": ("consistent", []), "ops_manager": (
        "discrepancies", [{"item": "集中交易", "note": "实际版本已升级为 UF2.0 V202603"}])}
    record = [(e.bpmn_id, e.completed_by, e.outcome) for e in flow.record(case)]
    assert sorted(record) == [("reconcile", "lina", "consistent"), ("reconcile", "liuyang", "discrepancies")]


def test_a_discrepancy_must_be_named(flow: Flow, engine: ProcessEngine) -> None:
    engine.ctx.clock.now = datetime(2027, 1, 4, 9, 0, 1, tzinfo=START.tzinfo)  # type: ignore[attr-defined]
    engine.jobs.tick()
    [case] = [c.id for c in engine.runtime.cases(process_id="ci_reconcile")]
    [task] = [t for t in flow.open_tasks(case) if t.role == "ops_engineer"]
    lina = flow.user("lina")
    engine.tasks.claim(task.id, lina)
    with pytest.raises(ValidationFailed):
        engine.tasks.complete(task.id, lina, {"result": "discrepancies"})
    assert len(flow.open_tasks(case)) == 2


@pytest.mark.parametrize("expression", ['requested_role', 'owner["role"] if owner else requested_role'])
def test_a_task_routed_by_data_may_read_only_what_the_process_computes(engine: ProcessEngine,
                                                                      expression: str) -> None:
    """roleFrom reading a field start data or a form could set would let a requester pick who decides."""
    text = (ROOT / "processes" / "ci_reconcile.bpmn").read_text(encoding="utf-8")
    forged = text.replace('value="owner[&quot;role&quot;]"', f'value="{html.escape(expression)}"')
    assert forged != text
    with pytest.raises(LintFailed) as refused:
        engine.repository.deploy([SourceFile("ci_reconcile.bpmn", forged.encode())], "owner")
    assert any("roleFrom reads requested_role" in p.message for p in refused.value.problems)
