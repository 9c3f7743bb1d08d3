"""交付管理 (delivery): one scenario per path of processes/delivery.bpmn (REQUIREMENTS §3.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from engine.errors import Forbidden, ValidationFailed
from tests.processes.conftest import Flow
from tests.processes.test_change import SATURDAY, change_request, close, demo_systems, implement_to_close
from tests.processes.test_system_testing import CLEAN_RUN, passed_test_case, planned, report

ITEMS = ["design_docs", "operations_manual", "emergency_plan", "test_report", "monitoring", "backup", "training",
         "config_items_registered"]
APPROVE = {"decision": "approve"}
SUCCESS = {"result": "success"}
GO_LIVE = {"change_type": "normal", "window_start": SATURDAY[0], "window_end": SATURDAY[1]}
LIVE = {"result": "success", "live_at": "2026-11-21T14:00:00+08:00"}


def delivery_request(test_case_id: int, missing: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    data = {"title": "清算系统 V3 交付", "systems": demo_systems("清算"), "version": "3.0", "vendor": "示例科技",
            "delivery_type": "major_version", "description": "新增实时风控指标与预警", "test_case_id": test_case_id,
            "deliverables": {k: {"provided": k not in missing, "reference": f"DOC-{k}"} for k in ITEMS}}
    data.update(changes)
    return data


def checks(*failed: str) -> dict[str, bool]:
    return {k: k not in failed for k in ITEMS}


def requested(flow: Flow, **changes: Any) -> tuple[int, int]:
    test_case = passed_test_case(flow)
    case = flow.start("delivery", "zhangwei", {"title": "清算系统 V3 交付"})
    assert flow.task(case, "request").assignee == "zhangwei"
    flow.do(case, "request", "zhangwei", delivery_request(test_case, **changes))
    return case, test_case


def accepted(flow: Flow, **changes: Any) -> tuple[int, int]:
    case, test_case = requested(flow, **changes)
    assert flow.open_names(case) == ["accept_ops"]
    flow.do(case, "accept_ops", "liuyang", {"checks": checks(), **APPROVE})
    assert flow.task(case, "request_go_live").assignee == "zhangwei"
    return case, test_case


def go_live_change(flow: Flow, case: int) -> int:
    """The requester asks for the go-live change; it opens linked, in the requester's inbox, prefilled."""
    flow.do(case, "request_go_live", "zhangwei", GO_LIVE)
    changes = [link for link in flow.links(case) if link["kind"] == "go_live"]
    change = changes[-1]["instance_id"]
    assert flow.task(change, "request").assignee == "zhangwei"
    return change


def run_change(flow: Flow, change: int, test_case: int) -> None:
    prefilled = flow.prefill(change, "request")  # the change request opens with the delivery's facts
    assert (prefilled["title"], prefilled["test_case_id"]) == ("上线：清算系统 V3 交付", test_case)
    # the delivered systems and version, from the register's items the delivery picked
    assert (prefilled["purpose"], prefilled["systems"]) == ("交付上线：清算 3.0", demo_systems("清算"))
    assert prefilled["target_versions"] == [{"system": demo_systems("清算")[0], "version": "3.0"}]
    flow.do(change, "request", "zhangwei", change_request(
        title=prefilled["title"], purpose=prefilled["purpose"], systems=prefilled["systems"],
        target_versions=prefilled["target_versions"], test_case_id=test_case))
    flow.do(change, "approve_ops", "liuyang", APPROVE)
    implement_to_close(flow, change)
    close(flow, change)


def end_trial(flow: Flow, at: str = "2026-12-21T14:00:01+08:00") -> None:
    flow.engine.ctx.clock.now = datetime.fromisoformat(at)
    flow.engine.runtime.fire_due_timers()


def outcomes(flow: Flow, case: int, *steps: str) -> list[tuple[str, str, str | None]]:
    """The approval record as (step, who, outcome label), of the named steps."""
    return [(e.bpmn_id, e.completed_by, e.outcome_label) for e in flow.record(case) if e.bpmn_id in steps]


def comments(flow: Flow, case: int, step: str) -> list[str]:
    return [a["value"] for e in flow.record(case) if e.bpmn_id == step for a in e.answers if a["field"] == "comment"]


def live(flow: Flow) -> int:
    case, test_case = accepted(flow)
    change = go_live_change(flow, case)
    run_change(flow, change, test_case)
    flow.do(case, "confirm_go_live", "liuyang", LIVE)
    assert flow.open_names(case) == ["trial"]
    return case


def test_delivery_goes_live_through_a_change_then_trial_and_final_acceptance(flow: Flow) -> None:
    case, test_case = accepted(flow)
    assert ("test_evidence", "to", test_case) in {(x["kind"], x["direction"], x["instance_id"])
                                                  for x in flow.links(case)}
    change = go_live_change(flow, case)
    assert [(x["kind"], x["direction"], x["instance_id"]) for x in flow.links(change) if x["kind"] == "go_live"] == [
        ("go_live", "from", case)]
    run_change(flow, change, test_case)
    assert [(i.name, i.version) for i in flow.engine.configuration.list_items() if i.name == "清算"] == [
        ("清算", "3.0")]  # the go-live change, closed, brought the delivered version to the register
    flow.do(case, "confirm_go_live", "liuyang", LIVE)

    trial = flow.task(case, "trial")  # an engineer logs issues until the trial period ends
    assert trial.due_at == datetime.fromisoformat("2026-12-21T14:00:00+08:00")
    assert "trial" in [t.bpmn_id for t in flow.inbox("wangqiang")]
    issue = {"at": "2026-11-25T10:00:00+08:00", "description": "盘后风控报表生成慢", "severity": "medium",
             "status": "resolved", "action": "增加索引"}
    flow.do(case, "trial", "wangqiang", {"issue": issue})
    assert flow.prefill(case, "trial") == {}  # each issue is logged on an empty form
    flow.do(case, "trial", "lina", {"issue": {**issue, "description": "预警短信重复发送", "status": "open"}})
    end_trial(flow, "2026-12-21T13:59:00+08:00")
    assert flow.open_names(case) == ["trial"]
    end_trial(flow)
    assert flow.open_names(case) == ["final_business", "final_ops"]
    assert [i["description"] for i in flow.data(case)["trial_issues"]] == ["盘后风控报表生成慢", "预警短信重复发送"]
    flow.do(case, "final_ops", "liuyang", SUCCESS)
    flow.do(case, "final_business", "zhoujie", SUCCESS)
    assert flow.status(case) == "completed"
    data = flow.data(case)
    assert (data["outcome"], data["live_at"]) == ("已投产", LIVE["live_at"])
    assert not {"decision", "result", "comment", "acceptance", "go_live_result", "ops_final",
                "business_final"} & set(data)
    assert outcomes(flow, case, "accept_ops", "confirm_go_live", "final_ops", "final_business") == [
        ("accept_ops", "liuyang", "批准"), ("confirm_go_live", "liuyang", "已上线"),
        ("final_ops", "liuyang", "成功"), ("final_business", "zhoujie", "成功")]
    assert all(e.return_reason is None for e in flow.record(case))  # nothing was sent back


def test_trial_period_comes_from_the_request(flow: Flow) -> None:
    case, test_case = accepted(flow, trial_period="P14D")
    run_change(flow, go_live_change(flow, case), test_case)
    flow.do(case, "confirm_go_live", "liuyang", LIVE)
    assert flow.task(case, "trial").due_at == datetime.fromisoformat("2026-12-05T14:00:00+08:00")


def test_declared_missing_deliverable_is_returned_at_once(flow: Flow) -> None:
    case, test_case = requested(flow, missing=("operations_manual", "backup"))
    request = flow.task(case, "request")
    assert request.assignee == "zhangwei"
    # sent back by an automatic check: no person returned it
    assert (request.return_reason, request.returned_by) == ("交付物缺失：运维手册、备份已配置", None)
    assert flow.data(case)["return_reason"] == "交付物缺失：运维手册、备份已配置"
    opening = flow.prefill(case, "request")  # the requester's own request, to complete
    assert opening["deliverables"]["backup"] == {"provided": False, "reference": "DOC-backup"}
    assert opening["trial_period"] == "P30D"
    flow.do(case, "request", "zhangwei", delivery_request(test_case))
    assert flow.open_names(case) == ["accept_ops"]
    assert flow.task(case, "accept_ops").return_reason is None


def test_deliverable_failing_acceptance_returns_the_case_even_if_approved(flow: Flow) -> None:
    case, test_case = requested(flow)
    flow.do(case, "accept_ops", "liuyang", {"checks": checks("emergency_plan"), **APPROVE})
    request = flow.task(case, "request")
    assert request.assignee == "zhangwei"
    assert (request.return_reason, request.returned_by) == ("运维验收未通过的交付物：应急预案", "liuyang")
    assert flow.data(case)["return_reason"] == "运维验收未通过的交付物：应急预案"
    flow.do(case, "request", "zhangwei", delivery_request(test_case))
    assert flow.prefill(case, "accept_ops") == {}  # the second round opens empty: no checks or verdict carried
    flow.do(case, "accept_ops", "liuyang", {"checks": checks(), **APPROVE})
    assert flow.open_names(case) == ["request_go_live"]


def test_returned_delivery_reopens_for_the_requester_with_the_reason(flow: Flow) -> None:
    case, test_case = requested(flow)
    flow.do(case, "accept_ops", "liuyang", {"checks": checks(), "decision": "return", "comment": "请补充培训签到表"})
    request = flow.task(case, "request")
    assert request.assignee == "zhangwei"
    assert (request.return_reason, request.returned_by) == ("运维负责人退回：请补充培训签到表", "liuyang")
    opening = flow.prefill(case, "request")
    assert opening["systems"] == demo_systems("清算") and not {"decision", "comment", "checks"} & set(opening)
    returned = flow.record(case)[-1]
    assert (returned.bpmn_id, returned.completed_by, returned.outcome_label) == ("accept_ops", "liuyang", "退回")
    assert comments(flow, case, "accept_ops") == ["请补充培训签到表"]
    flow.do(case, "request", "zhangwei",
            delivery_request(test_case, description="新增实时风控指标与预警，附培训签到表"))
    assert flow.prefill(case, "accept_ops") == {}  # the ops manager's earlier comment is in the record, not the form
    flow.do(case, "accept_ops", "liuyang", {"checks": checks(), **APPROVE})
    assert flow.open_names(case) == ["request_go_live"]
    assert flow.task(case, "request_go_live").return_reason is None  # reached on approval, not sent back
    assert outcomes(flow, case, "accept_ops") == [("accept_ops", "liuyang", "退回"), ("accept_ops", "liuyang", "批准")]


def test_rejected_delivery_ends(flow: Flow) -> None:
    case, _test_case = requested(flow)
    flow.do(case, "accept_ops", "liuyang", {"checks": checks(), "decision": "reject",
                                            "comment": "厂商不具备运维交接条件"})
    assert flow.status(case) == "completed"
    assert flow.open_names(case) == []
    assert flow.data(case)["return_reason"] == "运维负责人驳回：厂商不具备运维交接条件"
    rejected = flow.record(case)[-1]
    assert (rejected.bpmn_id, rejected.completed_by, rejected.outcome, rejected.outcome_label) == (
        "accept_ops", "liuyang", "reject", "驳回")
    assert comments(flow, case, "accept_ops") == ["厂商不具备运维交接条件"]


def test_no_passed_test_is_refused(flow: Flow) -> None:
    failed_test = planned(flow)
    flow.do(failed_test, "execute", "huangmin", CLEAN_RUN)
    flow.do(failed_test, "report", "huangmin", report("failed"))
    assert flow.data(failed_test)["outcome"] == "failed"
    case = flow.start("delivery", "zhangwei", {"title": "交付"})
    flow.do(case, "request", "zhangwei", delivery_request(failed_test))
    assert flow.open_names(case) == ["request"]
    assert flow.data(case)["return_reason"].startswith("测试门禁：须提供已通过的系统测试流程")
    request = flow.task(case, "request")
    assert request.returned_by is None and request.return_reason.startswith("测试门禁：")  # an automatic check
    flow.do(case, "request", "zhangwei", delivery_request(case))  # not a system_testing case at all
    assert "不是 system_testing 流程" in flow.data(case)["return_reason"]
    assert flow.links(case) == []
    flow.do(case, "request", "zhangwei", delivery_request(passed_test_case(flow)))
    assert flow.open_names(case) == ["accept_ops"]


def test_requester_may_not_accept_their_own_delivery(flow: Flow) -> None:
    flow.engine.identity.add_user("qianli", ["staff", "ops_manager"], "钱立")
    test_case = passed_test_case(flow)
    case = flow.start("delivery", "qianli", {"title": "交付"})
    flow.do(case, "request", "qianli", delivery_request(test_case))
    with pytest.raises(Forbidden) as refused:
        flow.engine.tasks.claim(flow.task(case, "accept_ops").id, flow.user("qianli"))
    assert refused.value.rule == "separation_of_duties"


def test_go_live_is_confirmed_only_after_the_change_succeeds(flow: Flow) -> None:
    case, test_case = accepted(flow)
    first = go_live_change(flow, case)
    assert flow.task(case, "confirm_go_live").assignee is None  # the ops managers' queue
    flow.do(case, "confirm_go_live", "liuyang", LIVE)  # too early: the change is still being requested
    assert flow.open_names(case) == ["confirm_go_live"]
    assert "尚未完成" in flow.data(case)["go_live_reason"]
    confirm = flow.task(case, "confirm_go_live")  # back to the manager who confirmed, by the automatic check
    assert (confirm.assignee, confirm.returned_by) == ("liuyang", None)
    assert confirm.return_reason.startswith("核对上线变更未通过：") and "尚未完成" in confirm.return_reason
    assert flow.prefill(case, "confirm_go_live") == {"live_at": LIVE["live_at"]}  # its own fact; no verdict
    flow.do(first, "request", "zhangwei", change_request(test_case_id=test_case, systems=demo_systems("清算")))
    flow.do(first, "approve_ops", "liuyang", {"decision": "reject", "comment": "窗口与年终结算冲突"})
    assert flow.status(first) == "completed"
    flow.do(case, "confirm_go_live", "liuyang", {"result": "failed", "comment": "上线变更被驳回，另行安排窗口"})
    again = flow.task(case, "request_go_live")  # back to the requester, sent by the ops manager
    assert (again.assignee, again.return_reason, again.returned_by) == (
        "zhangwei", "运维负责人确认未上线：上线变更被驳回，另行安排窗口", "liuyang")
    assert flow.prefill(case, "request_go_live") == GO_LIVE  # the last window, to change
    second = go_live_change(flow, case)
    assert second != first
    assert sorted(x["instance_id"] for x in flow.links(case) if x["kind"] == "go_live") == [first, second]
    confirm = flow.task(case, "confirm_go_live")  # a new change: a fresh confirmation, not a return
    assert (confirm.assignee, confirm.return_reason, confirm.returned_by) == (None, None, None)
    run_change(flow, second, test_case)
    flow.do(case, "confirm_go_live", "liuyang", LIVE)
    assert flow.open_names(case) == ["trial"]
    assert outcomes(flow, case, "confirm_go_live") == [("confirm_go_live", "liuyang", "已上线"),
                                                       ("confirm_go_live", "liuyang", "未上线"),
                                                       ("confirm_go_live", "liuyang", "已上线")]


def test_failed_final_acceptance_extends_the_trial(flow: Flow) -> None:
    case = live(flow)
    end_trial(flow)
    flow.do(case, "final_ops", "liuyang", {"result": "failed", "comment": "预警短信重复问题未解决"})
    assert flow.prefill(case, "final_business") == {}  # the business verifier decides on an empty form
    flow.do(case, "final_business", "zhoujie", SUCCESS)
    assert flow.open_names(case) == ["trial"]
    assert flow.task(case, "trial").due_at == datetime.fromisoformat("2027-01-20T14:00:01+08:00")  # P30D from now
    end_trial(flow, "2027-01-20T14:00:02+08:00")
    assert (flow.prefill(case, "final_ops"), flow.prefill(case, "final_business")) == ({}, {})  # round two too
    flow.do(case, "final_ops", "liuyang", SUCCESS)
    flow.do(case, "final_business", "zhoujie", SUCCESS)
    assert flow.status(case) == "completed"
    assert outcomes(flow, case, "final_ops", "final_business") == [
        ("final_ops", "liuyang", "失败"), ("final_business", "zhoujie", "成功"),
        ("final_ops", "liuyang", "成功"), ("final_business", "zhoujie", "成功")]
    assert comments(flow, case, "final_ops") == ["预警短信重复问题未解决"]


def test_second_final_acceptance_waits_for_both_sign_offs(flow: Flow) -> None:
    """Round two of final acceptance: business signing first must not send the case back to trial
    while operations has not signed (SpiffWorkflow 3.2 counted the first round's arrival at the join)."""
    case = live(flow)
    end_trial(flow)
    flow.do(case, "final_ops", "liuyang", SUCCESS)
    flow.do(case, "final_business", "zhoujie", {"result": "failed", "comment": "对账报表仍有差异"})
    assert flow.open_names(case) == ["trial"]
    end_trial(flow, "2027-01-20T14:00:02+08:00")
    flow.do(case, "final_business", "zhoujie", SUCCESS)
    assert flow.open_names(case) == ["final_ops"]
    flow.do(case, "final_ops", "liuyang", SUCCESS)
    assert flow.status(case) == "completed"


def test_undeclared_fields_steering_the_delivery_are_refused_and_nothing_moves(flow: Flow) -> None:
    case, test_case = requested(flow)
    with pytest.raises(ValidationFailed) as refused:  # what the acceptance check computes
        flow.do(case, "accept_ops", "liuyang", {"checks": checks("emergency_plan"), **APPROVE, "accepted": True})
    assert [e.field for e in refused.value.errors] == ["accepted"]
    assert flow.open_names(case) == ["accept_ops"]  # nothing saved
    assert [e.bpmn_id for e in flow.record(case)] == ["request"]
    flow.do(case, "accept_ops", "liuyang", {"checks": checks("emergency_plan"), **APPROVE})
    assert flow.open_names(case) == ["request"]  # the unchecked deliverable still sends it back
    flow.do(case, "request", "zhangwei", delivery_request(test_case))
    flow.do(case, "accept_ops", "liuyang", {"checks": checks(), **APPROVE})
    go_live_change(flow, case)
    with pytest.raises(ValidationFailed) as refused:  # the linked change's check, forged as passed
        flow.do(case, "confirm_go_live", "liuyang", {**LIVE, "go_live_check": {"ok": True, "reason": ""}})
    assert [e.field for e in refused.value.errors] == ["go_live_check"]
    assert flow.open_names(case) == ["confirm_go_live"]
    flow.do(case, "confirm_go_live", "liuyang", LIVE)
    assert flow.open_names(case) == ["confirm_go_live"]  # the change has not succeeded: not live
