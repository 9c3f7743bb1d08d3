"""A change names its systems from the configuration register (issue 16 item 2, JR/T 0099 6.4): the window
check and the risk read the register's markets and core flag, never what the requester typed; a change that
closes successfully brings the items to the versions it names (配置项更新), and the item lists the case."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from engine.configuration.browse import item_detail
from engine.errors import ValidationFailed
from engine.storage.models import AuditEvent
from tests.processes.conftest import Flow
from tests.processes.test_change import (
    APPROVE,
    DEMO_IDS,
    DEMO_ITEMS,
    IMPLEMENTED,
    MONDAY_MORNING,
    SATURDAY,
    SUCCESS,
    change_request,
    close,
    evidence_for,
    implement_to_close,
    open_window,
    submit,
)
from tests.processes.test_standard_change import approved, templates

OFFICE = "办公自动化"


def version_events(flow: Flow) -> list[tuple[str, int | None, dict[str, Any]]]:
    with flow.engine.ctx.db.read() as s:
        return [(e.actor, e.instance_id, e.data) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "ci.updated").order_by(AuditEvent.id))
            if "version" in (e.data.get("changes") or {})]


def version(flow: Flow, name: str) -> str:
    return next(i.version for i in flow.engine.configuration.list_items() if i.name == name)


def test_the_demo_register_numbers_its_items_in_the_files_order(flow: Flow) -> None:
    # forms filled without an engine at hand (test_change.change_request) name the demo items by these ids
    assert {i.name: i.id for i in flow.engine.configuration.list_items()} == DEMO_IDS


def test_core_trading_change_in_monday_trading_hours_is_caught_by_the_registers_markets(flow: Flow) -> None:
    # the requester types no market and no core flag: 集中交易's markets and class come from the register
    case = submit(flow, systems=flow.systems("集中交易"), window_start=MONDAY_MORNING[0],
                  window_end="2026-11-23T11:00:00+08:00")
    [system] = flow.data(case)["affected_systems"]
    assert (system["name"], system["core"], sorted(system["markets"])) == ("集中交易", True, ["BSE", "SSE", "SZSE"])
    assert flow.open_names(case) == ["request"]
    reason = flow.data(case)["return_reason"]
    assert "交易时段重叠" in reason and "上海证券交易所" in reason
    assert flow.data(case)["window_check"]["window_class"] == "trading_session"


def test_core_flag_from_the_register_steers_the_risk(flow: Flow) -> None:
    evening = ("2026-11-24T16:00:00+08:00", "2026-11-24T18:00:00+08:00")  # Tuesday, after the close
    core = submit(flow, systems=flow.systems("集中交易"), window_start=evening[0], window_end=evening[1],
                  test_case_id=evidence_for(flow, "集中交易"))
    office = submit(flow, window_start=evening[0], window_end=evening[1])
    assert (flow.data(core)["risk"], flow.data(office)["risk"]) == ("high", "low")


@pytest.mark.parametrize("typed", [
    {"affected_systems": [{"name": OFFICE, "core": False, "markets": []}]},
    {"markets": ["SSE"]},
    {"core": False},
])
def test_requester_cannot_type_what_the_register_says(flow: Flow, typed: dict[str, Any]) -> None:
    case = flow.start("change", "zhangwei", {"title": "变更"})
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "request", "zhangwei", change_request(**typed))
    assert [e.field for e in refused.value.errors] == list(typed)
    assert flow.open_names(case) == ["request"]  # nothing saved


def test_start_data_cannot_carry_the_registers_facts(flow: Flow) -> None:
    with pytest.raises(ValidationFailed) as refused:
        flow.start("change", "zhangwei", {"title": "变更", "affected_systems": [{"name": OFFICE, "core": False}]})
    assert [e.field for e in refused.value.errors] == ["affected_systems"]


def test_a_system_not_in_service_cannot_be_picked(flow: Flow) -> None:
    case = flow.start("change", "zhangwei", {"title": "变更"})
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "request", "zhangwei", change_request(systems=[9999]))
    assert [e.field for e in refused.value.errors] == ["systems[0]"]


def test_target_version_for_a_system_not_picked_is_returned(flow: Flow) -> None:
    [trading] = flow.systems("集中交易")
    case = submit(flow, target_versions=[{"system": trading, "version": "V202701"}])
    assert flow.open_names(case) == ["request"]
    assert flow.task(case, "request").assignee == "zhangwei"
    reason = flow.data(case)["return_reason"]
    assert f"变更后版本中的系统 {trading} 不是本变更所选的受影响系统" in reason
    [office] = flow.systems(OFFICE)
    flow.do(case, "request", "zhangwei", change_request(target_versions=[
        {"system": office, "version": "e-cology 10.1"}, {"system": office, "version": "e-cology 10.2"}]))
    assert "同一系统只能填写一个版本" in flow.data(case)["return_reason"]
    fixed = change_request(target_versions=[{"system": office, "version": "e-cology 10.1"}])
    flow.do(case, "request", "zhangwei", fixed)
    assert flow.open_names(case) == ["approve_ops"]


def test_successful_change_updates_the_items_version_and_the_item_lists_the_case(flow: Flow) -> None:
    [office] = flow.systems(OFFICE)
    case = submit(flow, target_versions=[{"system": office, "version": "e-cology 10.1"}])
    flow.do(case, "approve_ops", "liuyang", APPROVE)
    implement_to_close(flow, case)
    assert version(flow, OFFICE) == "e-cology 10"  # not before the change is closed
    close(flow, case)
    assert version(flow, OFFICE) == "e-cology 10.1"
    assert version_events(flow) == [("liuyang", case, {"name": OFFICE, "changes": {
        "version": {"from": "e-cology 10", "to": "e-cology 10.1"}}})]  # as the closer, with the case
    page = item_detail(flow.engine.configuration, flow.user("liuyang"), office)
    assert [(c.actor, c.action, [(f.field, f.before, f.after) for f in c.changes]) for c in page.history][-1] == (
        "liuyang", "ci.updated", [("version", "e-cology 10", "e-cology 10.1")])
    assert [(c.instance_id, c.process_id, c.linked_by) for c in page.cases] == [(case, "change", "zhangwei")]
    assert flow.data(case)["item_versions"]["updated"] == [
        {"item_id": office, "name": OFFICE, "from": "e-cology 10", "to": "e-cology 10.1"}]


def test_version_changed_by_someone_else_meanwhile_shows_the_actual_previous_value(flow: Flow) -> None:
    [office] = flow.systems(OFFICE)
    case = submit(flow, target_versions=[{"system": office, "version": "e-cology 10.2"}])
    flow.do(case, "approve_ops", "liuyang", APPROVE)
    entry = next(i for i in DEMO_ITEMS if i["name"] == OFFICE)
    flow.engine.configuration.import_items("operator", json.dumps([{**entry, "version": "e-cology 10.1"}],
                                                                  ensure_ascii=False), "items.json")
    implement_to_close(flow, case)
    close(flow, case)
    assert version(flow, OFFICE) == "e-cology 10.2"
    assert [(actor, instance, event["changes"]["version"]) for actor, instance, event in version_events(flow)] == [
        ("operator", None, {"from": "e-cology 10", "to": "e-cology 10.1"}),
        ("liuyang", case, {"from": "e-cology 10.1", "to": "e-cology 10.2"})]


def test_rolled_back_change_leaves_the_version(flow: Flow) -> None:
    [office] = flow.systems(OFFICE)
    case = submit(flow, target_versions=[{"system": office, "version": "e-cology 10.1"}])
    flow.do(case, "approve_ops", "liuyang", APPROVE)
    open_window(flow, SATURDAY[0])
    flow.do(case, "implement", "lina", IMPLEMENTED)
    flow.do(case, "review", "wangqiang", SUCCESS)
    flow.do(case, "verify_tech", "lina", {"result": "failed", "comment": "会话超时未生效"})
    [incident] = [link["instance_id"] for link in flow.links(case) if link["kind"] == "incident"]
    assert [s["name"] for s in flow.data(incident)["system_records"]] == [OFFICE]  # the incident names the item
    flow.do(case, "rollback", "lina", {"steps": IMPLEMENTED["steps"], "result": "success"})
    flow.do(case, "confirm_rollback", "wangqiang", SUCCESS)
    flow.do(case, "post_review", "liuyang", {"summary": "参数未生效", "conclusion": "accepted"})
    assert (flow.status(case), flow.data(case)["outcome"]) == ("completed", "失败")
    assert version(flow, OFFICE) == "e-cology 10"
    assert version_events(flow) == []
    assert "item_versions" not in flow.data(case)


def test_problem_started_with_systems_by_id_names_the_registers_items(flow: Flow) -> None:
    # what an incident passes when it opens a problem: the ids of its systems
    [online] = flow.systems("网上交易")
    case = flow.start("problem", "liuyang", {"title": "登录缓慢反复发生", "systems": [online]})
    assert [s["name"] for s in flow.data(case)["system_records"]] == ["网上交易"]
    assert flow.prefill(case, "register")["systems"] == [online]
    page = item_detail(flow.engine.configuration, flow.user("liuyang"), online)
    assert [(c.instance_id, c.process_id) for c in page.cases] == [(case, "problem")]
    flow.do(case, "register", "liuyang", {"title": "登录缓慢反复发生", "description": "近一月三次早盘登录超时",
                                          "systems": [online], "priority": "high", "analyst": "lina"})
    assert flow.data(case)["affected_systems"] == ["网上交易"]


def test_test_evidence_must_have_tested_the_changes_systems(flow: Flow) -> None:
    case = submit(flow, rollback_tested=False, test_case_id=evidence_for(flow, "集中交易"))  # medium: evidence needed
    assert flow.open_names(case) == ["request"]
    assert f"未测试“{OFFICE}”" in flow.data(case)["return_reason"]
    flow.do(case, "request", "zhangwei", change_request(rollback_tested=False, test_case_id=evidence_for(flow)))
    assert flow.open_names(case) == ["approve_ops"]


def test_a_typed_test_report_is_no_evidence_and_no_field(flow: Flow) -> None:
    case = flow.start("change", "zhangwei", {"title": "变更"})
    typed = {"name": "测试报告.pdf", "sha256": "a" * 64, "signed_by": "huangmin"}
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "request", "zhangwei", change_request(rollback_tested=False, test_report=typed))
    assert [e.field for e in refused.value.errors] == ["test_report"]


def test_standard_change_must_cite_an_active_template_for_its_systems(flow: Flow) -> None:
    approved(flow)  # SC-0001 covers 行情 and 办公自动化
    [template] = templates(flow.engine)
    case = submit(flow, change_type="standard", standard_template=999)  # "随便写的模板"
    assert flow.open_names(case) == ["request"]
    assert "标准变更模板 999 不存在" in flow.data(case)["return_reason"]
    flow.do(case, "request", "zhangwei", change_request(change_type="standard", standard_template=template.id,
                                                        systems=flow.systems("集中交易")))
    assert "不适用于：集中交易" in flow.data(case)["return_reason"]
    flow.do(case, "request", "zhangwei", change_request(change_type="standard", standard_template=template.id,
                                                        systems=flow.systems("行情"), rollback_tested=False))
    assert "核心系统的回退方案未经测试，不得按标准变更实施" in flow.data(case)["return_reason"]  # never standard
    flow.do(case, "request", "zhangwei", change_request(change_type="standard", standard_template=template.id))
    assert (flow.open_names(case), flow.data(case)["approval_route"]) == ([], "none")  # waits for its window
