"""系统变更 (change): one scenario per path of processes/change.bpmn (REQUIREMENTS §3.1)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.errors import Forbidden, ValidationFailed
from tests.processes.conftest import Flow
from tests.processes.test_standard_change import approved, templates
from tests.processes.test_system_testing import passed_testing_case

SATURDAY = ("2026-11-21T10:00:00+08:00", "2026-11-21T14:00:00+08:00")
MONDAY_MORNING = ("2026-11-23T10:00:00+08:00", "2026-11-23T10:30:00+08:00")
APPROVE = {"decision": "approve"}
SUCCESS = {"result": "success"}
IMPLEMENTED = {"steps": [{"at": "2026-11-21T10:05:00+08:00", "action": "停止服务并更新参数", "result": "完成"}],
               "finished_at": "2026-11-21T10:40:00+08:00"}
# The demo register (processes/demo_config_items.json) seeded into a fresh database numbers its items in
# the file's order; test_change_register proves it, so forms filled without an engine at hand name ids.
DEMO_ITEMS = json.loads((Path(__file__).resolve().parents[2] / "processes" / "demo_config_items.json")
                        .read_text(encoding="utf-8"))
DEMO_IDS = {item["name"]: number for number, item in enumerate(DEMO_ITEMS, start=1)}


def demo_systems(*names: str) -> list[int]:
    return [DEMO_IDS[n] for n in names]


def change_request(**changes: Any) -> dict[str, Any]:
    data = {
        "title": "办公系统参数调整", "change_type": "normal",
        "systems": demo_systems("办公自动化"),
        "purpose": "调整会话超时参数", "window_start": SATURDAY[0], "window_end": SATURDAY[1],
        "plan": "1. 备份参数 2. 修改 3. 重启", "rollback_plan": "恢复备份的参数文件并重启",
        "rollback_tested": True, "implementer": "lina", "reviewer": "wangqiang", "business_verifier": "zhoujie",
    }
    data.update(changes)
    return data


CORE = demo_systems("集中交易")


def evidence_for(flow: Flow, *names: str) -> int:
    """Test evidence for one change: a passed, signed-off system_testing case of `names` (default the
    default request's 办公自动化) at their register versions."""
    return passed_testing_case(flow, names or ("办公自动化",))


def submit(flow: Flow, **changes: Any) -> int:
    case = flow.start("change", "zhangwei", {"title": "变更"})
    assert flow.task(case, "request").assignee == "zhangwei"
    flow.do(case, "request", "zhangwei", change_request(**changes))
    return case


def implement_to_close(flow: Flow, case: int) -> None:
    """From the window start to a successful close, with each step in the named person's inbox."""
    if "implement" not in flow.open_names(case):
        assert flow.open_names(case) == []  # waiting for the window to open
        flow.engine.runtime.fire_due_timers()
        assert flow.open_names(case) == []
        open_window(flow, flow.data(case)["window_start"])
        flow.engine.runtime.fire_due_timers()
    assert flow.task(case, "implement").assignee == "lina"
    flow.do(case, "implement", "lina", IMPLEMENTED)
    assert flow.task(case, "review").assignee == "wangqiang"
    flow.do(case, "review", "wangqiang", SUCCESS)
    assert flow.task(case, "verify_tech").assignee == "lina"
    flow.do(case, "verify_tech", "lina", SUCCESS)
    assert flow.task(case, "verify_business").assignee == "zhoujie"
    flow.do(case, "verify_business", "zhoujie", SUCCESS)


def close(flow: Flow, case: int, outcome: str = "成功") -> None:
    flow.do(case, "close", "liuyang", {"outcome": outcome, "config_items_updated": True,
                                       "config_items": ["OA-参数-会话超时"]})
    assert flow.status(case) == "completed"
    assert flow.data(case)["outcome"] == outcome


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def open_window(flow: Flow, start: str) -> None:
    """Time reaches the window start (SpiffWorkflow fires a timer strictly after its due time)."""
    flow.engine.ctx.clock.now = max(flow.engine.ctx.clock.now, _at(start) + timedelta(seconds=1))
    flow.engine.runtime.fire_due_timers()


def test_standard_change_needs_no_approval(flow: Flow) -> None:
    approved(flow)  # SC-0001: 行情 and 办公自动化, rollback tested, approved by the ops manager and the IT head
    [template] = templates(flow.engine)
    case = submit(flow, change_type="standard", standard_template=template.id)
    data = flow.data(case)
    assert (data["risk"], data["approval_route"]) == ("low", "none")
    implement_to_close(flow, case)
    close(flow, case)


def test_low_risk_change_is_approved_by_ops_manager(flow: Flow) -> None:
    case = submit(flow)
    assert flow.data(case)["risk"] == "low"
    assert flow.open_names(case) == ["approve_ops"]
    assert [t.bpmn_id for t in flow.inbox("liuyang")] == ["approve_ops"]
    flow.do(case, "approve_ops", "liuyang", APPROVE)
    implement_to_close(flow, case)
    close(flow, case)


def test_success_with_issues_needs_the_issues(flow: Flow) -> None:
    case = submit(flow)
    flow.do(case, "approve_ops", "liuyang", APPROVE)
    implement_to_close(flow, case)
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "close", "liuyang", {"outcome": "成功但有问题", "config_items_updated": True})
    assert [e.field for e in refused.value.errors] == ["issues"]
    with pytest.raises(ValidationFailed):
        flow.do(case, "close", "liuyang", {"outcome": "成功", "config_items_updated": False})
    flow.do(case, "close", "liuyang", {"outcome": "成功但有问题", "issues": "监控告警阈值需调整",
                                       "config_items_updated": True})
    assert flow.data(case)["outcome"] == "成功但有问题"


def test_medium_risk_change_goes_to_ops_manager_then_it_head(flow: Flow) -> None:
    case = submit(flow, rollback_tested=False, test_case_id=evidence_for(flow))
    assert (flow.data(case)["risk"], flow.data(case)["approval_route"]) == ("medium", "ops_manager_it_head")
    flow.do(case, "approve_ops", "liuyang", APPROVE)
    assert flow.open_names(case) == ["approve_it_head"]
    flow.do(case, "approve_it_head", "zhaolei", APPROVE)
    implement_to_close(flow, case)
    close(flow, case)


def test_medium_risk_change_without_test_evidence_is_returned(flow: Flow) -> None:
    case = submit(flow, rollback_tested=False)
    task = flow.task(case, "request")
    assert task.assignee == "zhangwei"
    assert "测试" in flow.data(case)["return_reason"]
    flow.do(case, "request", "zhangwei", change_request(rollback_tested=False, test_case_id=evidence_for(flow)))
    assert flow.open_names(case) == ["approve_ops"]


def test_major_change_needs_every_cab_member_then_it_head(flow: Flow) -> None:
    case = submit(flow, change_type="major", systems=CORE, test_case_id=evidence_for(flow, "集中交易"))
    assert flow.data(case)["risk"] == "high"
    cab = flow.open_tasks(case)
    assert sorted((t.bpmn_id, t.assignee) for t in cab) == [("cab_review", "chenjing"), ("cab_review", "yangfan")]
    flow.do(case, "cab_review", "chenjing", APPROVE, assignee="chenjing")
    assert flow.open_names(case) == ["cab_review"]  # the other member still votes
    flow.do(case, "cab_review", "yangfan", {"decision": "approve", "comment": "同意，注意盘前检查"},
            assignee="yangfan")
    assert flow.open_names(case) == ["approve_it_head"]
    flow.do(case, "approve_it_head", "zhaolei", APPROVE)
    implement_to_close(flow, case)
    close(flow, case)


def test_one_cab_rejection_rejects_the_change(flow: Flow) -> None:
    case = submit(flow, change_type="major", systems=CORE, test_case_id=evidence_for(flow, "集中交易"))
    flow.do(case, "cab_review", "yangfan", {"decision": "reject", "comment": "回退方案不完备"}, assignee="yangfan")
    assert flow.status(case) == "completed"
    assert flow.open_names(case) == []
    vote = flow.record(case)[-1]
    assert (vote.bpmn_id, vote.completed_by, vote.outcome, vote.outcome_label) == (
        "cab_review", "yangfan", "reject", "驳回")
    assert {a["field"]: a["value"] for a in vote.answers} == {"comment": "回退方案不完备"}
    assert [t.bpmn_id for t in flow.inbox("chenjing")] == []


def test_each_cab_member_vote_and_conditions_are_recorded_and_shown_to_the_it_head(flow: Flow) -> None:
    case = submit(flow, change_type="major", systems=CORE, test_case_id=evidence_for(flow, "集中交易"))
    flow.do(case, "cab_review", "chenjing", {"decision": "approve", "conditions": "须在盘后实施"},
            assignee="chenjing")
    flow.do(case, "cab_review", "yangfan", {"decision": "approve", "comment": "同意"}, assignee="yangfan")
    it_head = flow.engine.tasks.get(flow.task(case, "approve_it_head").id)
    votes = [(e.completed_by, e.outcome_label, {a["label"]: a["text"] for a in e.answers})
             for e in it_head.record if e.bpmn_id == "cab_review"]
    assert votes == [("chenjing", "批准", {"附加条件": "须在盘后实施"}), ("yangfan", "批准", {"审批意见": "同意"})]
    assert it_head.data == {}  # the IT head's own form opens empty: nobody's approval pre-selected


def test_core_normal_change_on_a_trading_day_goes_to_cab(flow: Flow) -> None:
    evening = ("2026-11-24T16:00:00+08:00", "2026-11-24T18:00:00+08:00")  # Tuesday, after the close
    case = submit(flow, systems=CORE, window_start=evening[0], window_end=evening[1],
                  test_case_id=evidence_for(flow, "集中交易"))
    data = flow.data(case)
    assert (data["window_check"]["window_class"], data["risk"]) == ("trading_day", "high")
    assert flow.open_names(case) == ["cab_review", "cab_review"]


def test_emergency_change_in_trading_hours_is_approved_by_it_head_and_reviewed_after(flow: Flow) -> None:
    flow.engine.ctx.clock.now = _at("2026-11-23T09:50:00+08:00")
    case = submit(flow, change_type="emergency", emergency_reason="行情网关内存泄漏，需立即重启",
                  systems=CORE, window_start=MONDAY_MORNING[0], window_end=MONDAY_MORNING[1])
    data = flow.data(case)
    assert data["window_check"]["overlaps"] is True
    assert (data["risk"], data["approval_route"]) == ("high", "it_head")
    assert flow.open_names(case) == ["approve_it_head"]
    flow.do(case, "approve_it_head", "zhaolei", APPROVE)
    implement_to_close(flow, case)
    assert flow.open_names(case) == ["post_review"]
    flow.do(case, "post_review", "liuyang", {"summary": "紧急重启合理，补充审批通过", "conclusion": "accepted"})
    close(flow, case)


def test_window_overlapping_trading_is_returned_with_the_reason(flow: Flow) -> None:
    case = submit(flow, systems=CORE, window_start=MONDAY_MORNING[0], window_end=MONDAY_MORNING[1])
    assert flow.open_names(case) == ["request"]
    assert flow.task(case, "request").assignee == "zhangwei"
    reason = flow.data(case)["return_reason"]
    assert "交易时段重叠" in reason and "上海证券交易所" in reason
    request = flow.task(case, "request")
    assert request.returned_by is None and "交易时段重叠" in (request.return_reason or "")  # an automatic check
    flow.do(case, "request", "zhangwei", change_request(systems=CORE, test_case_id=evidence_for(flow, "集中交易")))
    assert flow.data(case)["return_reason"] == ""
    assert flow.open_names(case) == ["approve_ops"]


def test_futures_night_session_blocks_an_early_saturday_window(flow: Flow) -> None:
    case = submit(flow, systems=flow.systems("期货交易"), window_start="2026-11-21T01:00:00+08:00",
                  window_end="2026-11-21T03:00:00+08:00", test_case_id=evidence_for(flow, "期货交易"))
    assert flow.open_names(case) == ["request"]
    assert "上海期货交易所" in flow.data(case)["return_reason"]


def test_returned_change_reopens_for_the_requester_with_the_reason(flow: Flow) -> None:
    case = submit(flow)
    flow.do(case, "approve_ops", "liuyang", {"decision": "return", "comment": "请补充回退验证步骤"})
    request = flow.task(case, "request")
    assert request.assignee == "zhangwei"
    assert (request.return_reason, request.returned_by) == ("运维负责人退回：请补充回退验证步骤", "liuyang")
    opening = flow.prefill(case, "request")
    assert opening["rollback_plan"] == "恢复备份的参数文件并重启"  # the requester's own facts, to edit
    assert "comment" not in opening and "decision" not in opening
    returned = flow.record(case)[-1]
    assert (returned.bpmn_id, returned.completed_by, returned.outcome_label) == ("approve_ops", "liuyang", "退回")
    flow.do(case, "request", "zhangwei", change_request(rollback_plan="恢复备份并核对参数校验和"))
    assert flow.prefill(case, "approve_ops") == {}  # the second round opens empty too
    flow.do(case, "approve_ops", "liuyang", APPROVE)
    implement_to_close(flow, case)
    close(flow, case)


def test_a_form_cannot_carry_fields_it_does_not_declare(flow: Flow) -> None:
    case = submit(flow, rollback_tested=False, test_case_id=evidence_for(flow))  # medium: ops manager, then IT head
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "approve_ops", "liuyang", {"decision": "approve", "approval_route": "ops_manager"})
    assert [e.field for e in refused.value.errors] == ["approval_route"]
    assert flow.open_names(case) == ["approve_ops"]  # nothing saved
    flow.do(case, "approve_ops", "liuyang", APPROVE)
    assert flow.open_names(case) == ["approve_it_head"]  # the IT head's approval was not skipped


def test_a_forged_type_marker_is_refused_and_the_case_stays_readable(flow: Flow) -> None:
    case = flow.start("change", "zhangwei", {"title": "变更"})
    forged = change_request(plan_document={"typename": "datetime", "value": "bad"})
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "request", "zhangwei", forged)
    assert "plan_document.typename" in [e.field for e in refused.value.errors]
    assert flow.engine.runtime.show(case).status == "running"


def test_rejected_change_ends(flow: Flow) -> None:
    case = submit(flow)
    with pytest.raises(ValidationFailed):
        flow.do(case, "approve_ops", "liuyang", {"decision": "reject"})  # a reason is required
    flow.do(case, "approve_ops", "liuyang", {"decision": "reject", "comment": "业务高峰期不允许变更"})
    assert flow.status(case) == "completed"
    assert flow.open_names(case) == []


def test_unknown_or_unqualified_people_are_returned_before_approval(flow: Flow) -> None:
    case = submit(flow, implementer="nobody", business_verifier="zhangwei")
    assert flow.open_names(case) == ["request"]
    reason = flow.data(case)["return_reason"]
    assert "nobody 不存在" in reason and "zhangwei 不具备角色 business_verifier" in reason


def test_implementer_and_reviewer_must_be_different_people(flow: Flow) -> None:
    case = flow.start("change", "zhangwei", {"title": "变更"})
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "request", "zhangwei", change_request(reviewer="lina"))
    assert [e.field for e in refused.value.errors] == ["reviewer"]


def test_requester_cannot_approve_own_change(flow: Flow) -> None:
    flow.engine.identity.add_user("sunli", ["staff", "ops_manager"], "孙力")
    case = flow.start("change", "sunli", {"title": "变更"})
    flow.do(case, "request", "sunli", change_request())
    task = flow.task(case, "approve_ops")
    assert task.id in {t.id for t in flow.inbox("sunli")}  # offered to the role, refused on claim
    with pytest.raises(Forbidden) as refused:
        flow.engine.tasks.claim(task.id, flow.user("sunli"))
    assert refused.value.rule == "separation_of_duties"
    with pytest.raises(Forbidden) as refused:
        flow.engine.tasks.complete(task.id, flow.user("sunli"), APPROVE)
    assert refused.value.rule == "separation_of_duties"
    flow.do(case, "approve_ops", "liuyang", APPROVE)


def test_approver_never_implements_what_they_approved(flow: Flow) -> None:
    flow.engine.identity.add_user("gaofeng", ["ops_manager", "ops_engineer"], "高峰")
    case = submit(flow, implementer="gaofeng")
    flow.do(case, "approve_ops", "gaofeng", APPROVE)
    open_window(flow, SATURDAY[0])
    task = flow.task(case, "implement")
    assert task.assignee is None  # the named implementer is barred: the role's queue takes it
    with pytest.raises(Forbidden) as refused:
        flow.engine.tasks.claim(task.id, flow.user("gaofeng"))
    assert refused.value.rule == "separation_of_duties"
    flow.do(case, "implement", "lina", IMPLEMENTED)
    review = flow.task(case, "review")
    assert review.assignee == "wangqiang"
    with pytest.raises(Forbidden):  # and the implementer may not review their own work
        flow.engine.tasks.complete(review.id, flow.user("lina"), SUCCESS)
    flow.do(case, "review", "wangqiang", SUCCESS)


def test_implementation_past_the_window_escalates(flow: Flow) -> None:
    case = submit(flow)
    flow.do(case, "approve_ops", "liuyang", APPROVE)
    open_window(flow, SATURDAY[0])
    implement = flow.task(case, "implement")
    assert implement.due_at is not None and implement.due_at == _at(SATURDAY[1])
    flow.engine.ctx.clock.now = _at("2026-11-21T14:05:00+08:00")
    assert [t.bpmn_id for t in flow.engine.tasks.inbox(flow.user("zhuhong"), overdue=True, scope="everyone")] == [
        "implement"]
    flow.engine.runtime.fire_due_timers()
    assert flow.open_names(case) == ["escalate_manager", "escalate_supervisor", "implement"]
    assert "escalate_supervisor" in [t.bpmn_id for t in flow.inbox("zhuhong")]
    flow.do(case, "escalate_manager", "liuyang", {"note": "延长半小时，超时则回退", "instruction": "continue"})
    flow.do(case, "escalate_supervisor", "zhuhong", {"note": "已知悉"})
    implement_to_close(flow, case)
    close(flow, case)


def test_failed_change_is_rolled_back_and_opens_a_linked_incident(flow: Flow) -> None:
    case = submit(flow)
    flow.do(case, "approve_ops", "liuyang", APPROVE)
    open_window(flow, SATURDAY[0])
    flow.do(case, "implement", "lina", IMPLEMENTED)
    flow.do(case, "review", "wangqiang", SUCCESS)
    flow.do(case, "verify_tech", "lina", SUCCESS)
    flow.do(case, "verify_business", "zhoujie", {"result": "failed", "comment": "委托查询结果不完整"})
    links = flow.links(case)
    assert [(link["kind"], link["direction"], link["process_id"]) for link in links] == [("incident", "to", "incident")]
    incident = links[0]["instance_id"]
    assert flow.data(incident)["title"] == "变更失败：办公系统参数调整"
    assert [(link["kind"], link["direction"], link["instance_id"]) for link in flow.links(incident)] == [
        ("incident", "from", case)]
    assert "respond" in flow.open_names(incident)
    assert flow.task(case, "rollback").assignee == "lina"
    flow.do(case, "rollback", "lina", {"steps": IMPLEMENTED["steps"], "result": "success"})
    assert flow.task(case, "confirm_rollback").assignee == "wangqiang"
    flow.do(case, "confirm_rollback", "wangqiang", {"result": "failed", "comment": "参数文件校验和不一致"})
    flow.do(case, "rollback", "lina", {"steps": IMPLEMENTED["steps"], "result": "success"})
    flow.do(case, "confirm_rollback", "wangqiang", SUCCESS)
    assert flow.open_names(case) == ["post_review"]
    flow.do(case, "post_review", "liuyang", {"summary": "验证用例覆盖不足", "conclusion": "accepted_with_actions",
                                             "actions": [{"action": "补充查询类验证用例", "owner": "zhoujie"}]})
    assert flow.status(case) == "completed"
    assert flow.data(case)["outcome"] == "失败"
