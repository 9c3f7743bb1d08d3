"""系统测试 (system_testing): one scenario per path of processes/system_testing.bpmn (REQUIREMENTS §3.3)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import Forbidden, ValidationFailed
from tests.processes.conftest import Flow

PLAN = {"title": "集中交易 V5.2 升级测试", "system": "集中交易", "version": "5.2", "scope": "委托、撤单、清算接口",
        "environment": {"name": "UAT-2", "not_production": True, "data_desensitised": True},
        "test_types": ["functional", "regression", "rollback", "performance"], "touches_critical_paths": True}
CLEAN_RUN = {"results": [{"type": "functional", "passed": True, "cases_run": 120, "cases_failed": 0}], "defects": []}
SUCCESS = {"result": "success"}


def run_with_defects(*open_ids: str) -> dict[str, Any]:
    return {"results": [{"type": "functional", "passed": False, "cases_run": 120, "cases_failed": len(open_ids)}],
            "defects": [{"id": d, "title": "委托回报延迟", "severity": "major", "status": "open"} for d in open_ids]}


def report(conclusion: str = "passed") -> dict[str, Any]:
    return {"summary": "全部用例通过，性能满足要求", "conclusion": conclusion, "signed": True,
            "report": {"name": "测试报告.pdf", "sha256": "b" * 64}}


def planned(flow: Flow) -> int:
    case = flow.start("system_testing", "huangmin", {"title": "集中交易 V5.2 升级测试"})
    assert flow.task(case, "plan").assignee == "huangmin"
    flow.do(case, "plan", "huangmin", PLAN)
    return case


def accept(flow: Flow, case: int, business: str = "success", ops: str = "success") -> None:
    assert flow.open_names(case) == ["accept_business", "accept_ops"]
    flow.do(case, "accept_business", "zhoujie", verdict(business, "对账不一致"))
    flow.do(case, "accept_ops", "liuyang", verdict(ops, "监控未配置"))


def verdict(result: str, why: str) -> dict[str, str]:
    return {"result": result} if result == "success" else {"result": result, "comment": why}


def reported(flow: Flow) -> int:
    case = planned(flow)
    flow.do(case, "execute", "huangmin", CLEAN_RUN)
    flow.do(case, "report", "huangmin", report())
    return case


def passed_test_case(flow: Flow) -> int:
    case = reported(flow)
    accept(flow, case)
    return case


def outcomes(flow: Flow, case: int) -> list[tuple[str, str, str | None]]:
    """The approval record as (step, who, outcome label)."""
    return [(e.bpmn_id, e.completed_by, e.outcome_label) for e in flow.record(case)]


def test_clean_test_passes_after_report_and_acceptance(flow: Flow) -> None:
    case = passed_test_case(flow)
    assert flow.status(case) == "completed"
    data = flow.data(case)
    assert data["outcome"] == "passed"
    # the plan and the report are facts of the case; the acceptances are answers, kept in the record
    assert (data["system"], data["conclusion"], data["summary"]) == ("集中交易", "passed", "全部用例通过，性能满足要求")
    assert not {"result", "comment", "accept_business", "accept_ops", "business_acceptance"} & set(data)
    assert outcomes(flow, case) == [("plan", "huangmin", None), ("execute", "huangmin", None),
                                    ("report", "huangmin", "通过"), ("accept_business", "zhoujie", "成功"),
                                    ("accept_ops", "liuyang", "成功")]


def test_defects_are_fixed_and_retested_until_none_remain(flow: Flow) -> None:
    case = planned(flow)
    flow.do(case, "execute", "huangmin", run_with_defects("D-1", "D-2"))
    assert flow.open_names(case) == ["fix"]
    assert "fix" in [t.bpmn_id for t in flow.inbox("lina")]
    flow.do(case, "fix", "lina", {"fixed": ["D-1"], "notes": "修正回报队列", "build": "5.2.1"})
    assert flow.task(case, "execute").assignee == "huangmin"
    # the retest opens with the tester's own execution record to update, never the fix's answers
    assert flow.prefill(case, "execute") == {**run_with_defects("D-1", "D-2"), "stop_testing": False}
    flow.do(case, "execute", "huangmin", run_with_defects("D-2"))
    assert flow.prefill(case, "fix") == {}  # a new round of fixes opens empty, not with lina's notes
    flow.do(case, "fix", "wangqiang", {"fixed": ["D-2"], "notes": "修正超时"})
    flow.do(case, "execute", "huangmin", CLEAN_RUN)
    flow.do(case, "report", "huangmin", report())
    accept(flow, case)
    assert flow.data(case)["outcome"] == "passed"
    fixes = [(e.completed_by, {a["field"]: a["value"] for a in [*e.answers, *getattr(e, "facts", [])]})
             for e in flow.record(case) if e.bpmn_id == "fix"]
    assert fixes == [("lina", {"fixed": ["D-1"], "notes": "修正回报队列", "build": "5.2.1"}),
                     ("wangqiang", {"fixed": ["D-2"], "notes": "修正超时"})]  # each round's own answers


def test_fix_and_retest_loop_does_not_stall(flow: Flow) -> None:
    case = planned(flow)
    for _round in range(40):
        flow.do(case, "execute", "huangmin", run_with_defects("D-9"))
        flow.do(case, "fix", "lina", {"fixed": ["D-9"], "notes": "再次修复"})
    flow.do(case, "execute", "huangmin", CLEAN_RUN)
    assert flow.open_names(case) == ["report"]


def test_failed_report_ends_failed_without_acceptance(flow: Flow) -> None:
    case = planned(flow)
    flow.do(case, "execute", "huangmin", {**run_with_defects("D-3"), "stop_testing": True})
    assert flow.open_names(case) == ["report"]
    flow.do(case, "report", "huangmin", report("failed"))
    assert flow.status(case) == "completed"
    assert flow.data(case)["outcome"] == "failed"
    assert outcomes(flow, case)[-1] == ("report", "huangmin", "不通过")
    assert flow.open_names(case) == []


def test_rejected_acceptance_fails_the_test(flow: Flow) -> None:
    case = reported(flow)
    accept(flow, case, ops="failed")
    assert flow.data(case)["outcome"] == "failed"
    ops = flow.record(case)[-1]
    assert (ops.bpmn_id, ops.completed_by, ops.outcome, ops.outcome_label) == (
        "accept_ops", "liuyang", "failed", "失败")
    assert {a["field"]: a["value"] for a in ops.answers} == {"comment": "监控未配置"}


def test_operations_acceptance_opens_empty_after_business_failed_it_with_a_comment(flow: Flow) -> None:
    case = reported(flow)
    flow.do(case, "accept_business", "zhoujie", {"result": "failed", "comment": "对账不一致"})
    assert flow.prefill(case, "accept_ops") == {}  # nobody's verdict or comment pre-selected
    flow.do(case, "accept_ops", "liuyang", SUCCESS)
    assert flow.data(case)["outcome"] == "failed"  # read from each acceptance's own answers
    assert outcomes(flow, case)[-2:] == [("accept_business", "zhoujie", "失败"), ("accept_ops", "liuyang", "成功")]


def test_business_acceptance_opens_empty_after_operations_accepted_with_a_comment(flow: Flow) -> None:
    case = reported(flow)
    flow.do(case, "accept_ops", "liuyang", {"result": "success", "comment": "监控与告警已核对"})
    assert flow.prefill(case, "accept_business") == {}
    flow.do(case, "accept_business", "zhoujie", SUCCESS)
    assert flow.data(case)["outcome"] == "passed"


def test_undeclared_fields_steering_the_test_are_refused_and_nothing_moves(flow: Flow) -> None:
    case = planned(flow)
    with pytest.raises(ValidationFailed) as refused:  # a computed count that would skip the fix
        flow.do(case, "execute", "huangmin", {**run_with_defects("D-4"), "open_defects": 0})
    assert [e.field for e in refused.value.errors] == ["open_defects"]
    assert flow.open_names(case) == ["execute"]
    assert flow.record(case)[-1].bpmn_id == "plan"  # nothing saved
    flow.do(case, "execute", "huangmin", run_with_defects("D-4"))
    assert flow.open_names(case) == ["fix"]
    flow.do(case, "fix", "lina", {"fixed": ["D-4"], "notes": "修复"})
    flow.do(case, "execute", "huangmin", CLEAN_RUN)
    with pytest.raises(ValidationFailed) as refused:  # the test's outcome is the process's to compute
        flow.do(case, "report", "huangmin", {**report("failed"), "outcome": "passed"})
    assert [e.field for e in refused.value.errors] == ["outcome"]
    flow.do(case, "report", "huangmin", report())
    with pytest.raises(ValidationFailed) as refused:  # the old shared key the outcome was read from
        flow.do(case, "accept_business", "zhoujie", {"result": "failed", "comment": "差异",
                                                      "business_acceptance": "success"})
    assert [e.field for e in refused.value.errors] == ["business_acceptance"]
    assert flow.open_names(case) == ["accept_business", "accept_ops"]


def test_plan_must_attest_a_safe_environment_and_performance_for_trading_paths(flow: Flow) -> None:
    case = flow.start("system_testing", "huangmin", {"title": "测试"})
    unsafe = {**PLAN, "environment": {"name": "生产", "not_production": False, "data_desensitised": True},
              "test_types": ["functional"]}
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "plan", "huangmin", unsafe)
    fields = {e.field for e in refused.value.errors}
    assert "environment.not_production" in fields
    assert "test_types" in fields


def test_tester_cannot_accept_own_test(flow: Flow) -> None:
    flow.engine.identity.add_user("qianwei", ["test_lead", "business_verifier"], "钱伟")
    case = flow.start("system_testing", "qianwei", {"title": "自测"})
    flow.do(case, "plan", "qianwei", PLAN)
    flow.do(case, "execute", "qianwei", CLEAN_RUN)
    flow.do(case, "report", "qianwei", report())
    with pytest.raises(Forbidden) as refused:
        flow.engine.tasks.claim(flow.task(case, "accept_business").id, flow.user("qianwei"))
    assert refused.value.rule == "separation_of_duties"


def test_passed_test_is_evidence_for_a_medium_risk_change(flow: Flow) -> None:
    from tests.processes.test_change import change_request

    test_case = passed_test_case(flow)
    change = flow.start("change", "zhangwei", {"title": "变更"})
    flow.do(change, "request", "zhangwei", change_request(rollback_tested=False, test_case_id=test_case))
    assert flow.open_names(change) == ["approve_ops"]
    assert {(link["kind"], link["instance_id"]) for link in flow.links(change)} == {("test_evidence", test_case)}
    assert [(link["kind"], link["direction"]) for link in flow.links(test_case)] == [("test_evidence", "from")]


def test_unfinished_test_is_no_evidence(flow: Flow) -> None:
    from tests.processes.test_change import change_request

    test_case = planned(flow)
    change = flow.start("change", "zhangwei", {"title": "变更"})
    flow.do(change, "request", "zhangwei", change_request(rollback_tested=False, test_case_id=test_case))
    assert flow.open_names(change) == ["request"]
    assert f"流程 {test_case} 尚未完成" in flow.data(change)["return_reason"]
