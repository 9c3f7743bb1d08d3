"""配置项登记与变更 (config_item): one scenario per path of processes/config_item.bpmn (issue 16, §6.4).

A request is checked against the register's rules, reviewed by a config manager (never the requester)
and, when approved, written to the register as that manager, with the case on its audit event.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from engine import ProcessEngine
from engine.configuration import ItemView
from engine.errors import Forbidden
from engine.storage.models import AuditEvent
from tests.processes.conftest import Flow

# The tests' own systems, named apart from any demo register the library engine may hold.
BASE = [{"name": "柜台网关", "class": "核心交易", "system_class": "二类", "category": "集中交易", "markets": ["SSE"],
         "owner_role": "ops_engineer", "maintainer_a": "lina", "maintainer_b": "wangqiang", "vendor": "恒生电子",
         "version": "1.0"},
        {"name": "网关主机", "class": "核心交易", "owner_role": "ops_engineer", "vendor": "华为",
         "version": "TaiShan 200"}]
NEW = {"name": "两融风控", "class": "核心交易", "system_class": "二类", "category": "融资融券",
       "markets": ["SZSE", "SSE"], "owner_role": "ops_engineer", "maintainer_a": "lina", "maintainer_b": "wangqiang",
       "vendor": "恒生电子", "version": "3.1", "depends_on": ["柜台网关"], "runs_on": ["网关主机"]}


@pytest.fixture
def base(engine: ProcessEngine) -> dict[str, int]:
    """The test systems imported by the operator, by name -> register id."""
    engine.configuration.import_items("opsflow", json.dumps(BASE, ensure_ascii=False), "base.json")
    return {i.name: i.id for i in engine.configuration.list_items() if i.name in {b["name"] for b in BASE}}


def new_item(**changes: Any) -> dict[str, Any]:
    return {"action": "create", "item": {**NEW, **changes}, "reason": "两融风控系统新上线，纳入配置管理"}


def requested(flow: Flow, data: dict[str, Any], requester: str = "zhangwei") -> int:
    case = flow.start("config_item", requester, {"title": "配置项申请"})
    assert flow.task(case, "request").assignee == requester
    flow.do(case, "request", requester, data)
    return case


def items(engine: ProcessEngine) -> dict[str, ItemView]:
    return {i.name: i for i in engine.configuration.list_items()}


def ci_events(engine: ProcessEngine) -> list[tuple[str, str, int | None, dict[str, Any]]]:
    with engine.ctx.db.read() as s:
        return [(e.actor, e.action, e.instance_id, e.data) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(("ci.created", "ci.updated"))).order_by(AuditEvent.id))]


def refusals(engine: ProcessEngine, case: int) -> list[tuple[str, str]]:
    with engine.ctx.db.read() as s:
        return [(e.actor, e.data["rule"]) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "task.refused", AuditEvent.instance_id == case))]


def test_new_item_is_registered_with_its_relations_once_the_config_manager_approves(
        flow: Flow, engine: ProcessEngine, base: dict[str, int]) -> None:
    before = ci_events(engine)
    case = requested(flow, new_item())
    assert flow.open_names(case) == ["review"]
    assert "review" in [t.bpmn_id for t in flow.inbox("mazhen")]
    assert flow.data(case)["item_check"]["ok"] and "两融风控" not in items(engine)  # checked, not yet written
    flow.do(case, "review", "mazhen", {"decision": "approve", "comment": "同意登记"})

    assert flow.status(case) == "completed"
    data = flow.data(case)
    registered = items(engine)["两融风控"]
    assert (data["outcome"], data["registration"]["ok"], data["registration"]["item_id"]) == (
        "已登记", True, registered.id)
    assert (registered.class_label, registered.system_class_label, registered.category) == (
        "核心交易", "二类", "融资融券")
    assert (registered.markets, registered.environment, registered.status) == (["SSE", "SZSE"], "生产", "在用")
    assert (registered.maintainer_a, registered.maintainer_b, registered.version) == ("lina", "wangqiang", "3.1")
    assert (registered.depends_on, registered.runs_on, registered.updated_by) == (["柜台网关"], ["网关主机"], "mazhen")
    [(actor, action, instance_id, event)] = ci_events(engine)[len(before):]
    assert (actor, action, instance_id, event["name"]) == ("mazhen", "ci.created", case, "两融风控")
    assert event["fields"]["relations"] == {"depends_on": ["柜台网关"], "runs_on": ["网关主机"]}
    assert event["fields"]["markets"] == ["SSE", "SZSE"]
    steps = [(e.bpmn_id, e.completed_by, e.outcome_label) for e in flow.record(case)]
    assert steps == [("request", "zhangwei", None), ("review", "mazhen", "批准")]


def test_change_of_a_registered_item_updates_only_what_was_asked_and_is_audited_from_to(
        flow: Flow, engine: ProcessEngine, base: dict[str, int]) -> None:
    gateway = base["柜台网关"]
    before = ci_events(engine)
    case = requested(flow, {"action": "update", "item_id": gateway, "reason": "网关升级到 2.0，B角调整",
                            "item": {"version": "2.0", "maintainer_b": "zhangwei", "runs_on": ["网关主机"]}},
                     requester="lina")  # any signed-in user may ask, an engineer too
    check = flow.data(case)["item_check"]
    assert check["changes"] == {"version": {"from": "1.0", "to": "2.0"},
                                "maintainer_b": {"from": "wangqiang", "to": "zhangwei"},
                                "relations": {"from": {}, "to": {"runs_on": ["网关主机"]}}}  # what the reviewer sees
    flow.do(case, "review", "mazhen", {"decision": "approve"})

    assert flow.data(case)["outcome"] == "已登记"
    changed = items(engine)["柜台网关"]
    assert (changed.id, changed.version, changed.maintainer_b, changed.runs_on) == (gateway, "2.0", "zhangwei",
                                                                                    ["网关主机"])
    assert (changed.maintainer_a, changed.vendor, changed.markets, changed.system_class_label) == (
        "lina", "恒生电子", ["SSE"], "二类")  # not asked for: kept
    [(actor, action, instance_id, event)] = ci_events(engine)[len(before):]
    assert (actor, action, instance_id, event["name"]) == ("mazhen", "ci.updated", case, "柜台网关")
    assert event["changes"] == check["changes"]


def test_renaming_a_registered_item_keeps_its_id_and_relations(flow: Flow, engine: ProcessEngine,
                                                               base: dict[str, int]) -> None:
    flow.do(requested(flow, new_item()), "review", "mazhen", {"decision": "approve"})
    case = requested(flow, {"action": "update", "item_id": base["柜台网关"], "item": {"name": "统一接入网关"},
                            "reason": "系统更名为统一接入网关"})
    flow.do(case, "review", "mazhen", {"decision": "approve"})
    register = items(engine)
    assert "柜台网关" not in register and register["统一接入网关"].id == base["柜台网关"]
    assert register["两融风控"].depends_on == ["统一接入网关"]
    assert ci_events(engine)[-1][3]["changes"] == {"name": {"from": "柜台网关", "to": "统一接入网关"}}


def test_request_returned_for_rework_goes_back_to_the_requester_and_registers_when_approved(
        flow: Flow, engine: ProcessEngine, base: dict[str, int]) -> None:
    before = ci_events(engine)
    case = requested(flow, new_item(version=""))
    flow.do(case, "review", "mazhen", {"decision": "return", "comment": "请补充版本号"})

    request = flow.task(case, "request")
    assert (request.assignee, request.returned_by) == ("zhangwei", "mazhen")
    assert request.return_reason == "配置管理员退回：请补充版本号"
    assert flow.prefill(case, "request")["item"]["name"] == "两融风控"  # the requester's own entry, to correct
    assert "两融风控" not in items(engine) and ci_events(engine) == before
    flow.do(case, "request", "zhangwei", new_item(version="3.1.2"))
    review = flow.task(case, "review")
    assert review.return_reason is None and flow.prefill(case, "review") == {}  # the manager's own answer is gone
    flow.do(case, "review", "mazhen", {"decision": "approve", "comment": "已补充"})

    assert flow.data(case)["outcome"] == "已登记" and items(engine)["两融风控"].version == "3.1.2"
    outcomes = [(e.bpmn_id, e.outcome_label) for e in flow.record(case)]
    assert outcomes == [("request", None), ("review", "退回"), ("request", None), ("review", "批准")]


def test_rejected_request_ends_and_leaves_the_register_unchanged(flow: Flow, engine: ProcessEngine,
                                                                 base: dict[str, int]) -> None:
    register, events = items(engine), ci_events(engine)
    case = requested(flow, {"action": "update", "item_id": base["柜台网关"], "item": {"status": "已下线"},
                            "reason": "柜台网关不再使用"})
    flow.do(case, "review", "mazhen", {"decision": "reject", "comment": "网关仍在使用，不能下线"})

    assert flow.status(case) == "completed" and flow.data(case)["outcome"] == "已驳回"
    assert items(engine) == register and ci_events(engine) == events
    assert [(e.bpmn_id, e.outcome_label) for e in flow.record(case)] == [("request", None), ("review", "驳回")]


@pytest.mark.parametrize(("data", "reason"), [
    (new_item(markets=["SSE", "NYSE"]), "市场 “NYSE” 不在交易日历中"),
    (new_item(name="柜台网关", depends_on=[]), "名称“柜台网关”已被配置项"),
    (new_item(depends_on=["核心数据库"]), "依赖中的 “核心数据库” 不在配置项登记册中"),
    (new_item(owner_role="dba"), "归属角色 “dba” 不存在"),
    ({"action": "update", "item_id": 99999, "item": {"version": "2"}, "reason": "版本升级到 2"},
     "配置项登记册中没有编号为 99999 的配置项"),
    ({"action": "update", "item_id": 1, "item": {"name": "柜台网关"}, "reason": "改名为已登记的名称"},
     "名称“柜台网关”已被配置项"),
    ({"action": "update", "item_id": 1, "item": {"version": "TaiShan 200"}, "reason": "版本核对一下"},
     "未提出任何变更"),
    ({**new_item(), "item_id": 1}, "新增配置项不填配置项编号"),
], ids=["unknown market", "name taken", "unknown relation", "unknown owner role", "unknown item", "rename to taken",
        "nothing changed", "new item with an id"])
def test_request_the_register_would_refuse_goes_back_to_the_requester_with_the_reason(
        flow: Flow, engine: ProcessEngine, base: dict[str, int], data: dict[str, Any], reason: str) -> None:
    register, events = items(engine), ci_events(engine)
    if data.get("item_id") == 1:  # the other test system (网关主机)
        data = {**data, "item_id": base["网关主机"]}
    case = requested(flow, data)

    request = flow.task(case, "request")  # back before any review: a manager never sees it
    assert flow.open_names(case) == ["request"]
    assert (request.assignee, request.returned_by) == ("zhangwei", None)  # 自动检查
    assert request.return_reason is not None and request.return_reason.startswith("登记核对未通过：")
    assert reason in request.return_reason
    assert items(engine) == register and ci_events(engine) == events


def test_name_taken_between_review_and_approval_returns_the_case_and_writes_nothing(
        flow: Flow, engine: ProcessEngine, base: dict[str, int]) -> None:
    case = requested(flow, new_item())
    engine.configuration.import_items("opsflow", json.dumps([{"name": "两融风控", "class": "非核心"}],
                                                            ensure_ascii=False), "meanwhile.json")
    taken = items(engine)["两融风控"]
    flow.do(case, "review", "mazhen", {"decision": "approve"})

    request = flow.task(case, "request")
    assert (request.assignee, request.returned_by) == ("zhangwei", "mazhen")
    assert request.return_reason == (f"登记未通过：名称“两融风控”已被配置项 {taken.id} 使用"
                                     "（修改它请选择“变更”并填写其编号）")
    assert items(engine)["两融风控"] == taken
    assert [e for e in ci_events(engine) if e[2] == case] == []
    flow.do(case, "request", "zhangwei", new_item(name="两融风控（新）"))  # corrected: reviewed afresh
    flow.do(case, "review", "mazhen", {"decision": "approve"})
    assert items(engine)["两融风控（新）"].updated_by == "mazhen"


def test_requester_cannot_review_their_own_request(flow: Flow, engine: ProcessEngine, base: dict[str, int]) -> None:
    engine.identity.add_user("hefang", ["config_manager"], "何芳")
    case = requested(flow, new_item(), requester="mazhen")
    review = flow.task(case, "review")
    with pytest.raises(Forbidden) as refused:
        engine.tasks.claim(review.id, flow.user("mazhen"))
    assert refused.value.rule == "separation_of_duties"
    with pytest.raises(Forbidden):
        engine.tasks.complete(review.id, flow.user("mazhen"), {"decision": "approve"})
    assert refusals(engine, case) == [("mazhen", "separation_of_duties")] * 2
    assert "两融风控" not in items(engine) and flow.open_names(case) == ["review"]

    flow.do(case, "review", "hefang", {"decision": "approve"})  # another config manager
    assert items(engine)["两融风控"].updated_by == "hefang"


def test_only_a_config_manager_completes_the_review(flow: Flow, engine: ProcessEngine, base: dict[str, int]) -> None:
    case = requested(flow, new_item())
    review = flow.task(case, "review")
    assert review.id not in {t.id for t in flow.inbox("liuyang")}
    for outsider in ("liuyang", "zhaolei"):  # an ops manager, the head of IT: no config_manager role
        with pytest.raises(Forbidden) as refused:
            engine.tasks.complete(review.id, flow.user(outsider), {"decision": "approve"})
        assert refused.value.rule == "role"
    assert refusals(engine, case) == [("liuyang", "role"), ("zhaolei", "role")]
    assert "两融风控" not in items(engine) and flow.open_names(case) == ["review"]
