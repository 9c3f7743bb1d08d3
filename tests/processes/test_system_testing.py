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


def passed_test_case(flow: Flow) -> int:
    case = planned(flow)
    flow.do(case, "execute", "huangmin", CLEAN_RUN)
    flow.do(case, "report", "huangmin", report())
    accept(flow, case)
    return case


def test_clean_test_passes_after_report_and_acceptance(flow: Flow) -> None:
    case = passed_test_case(flow)
    assert flow.status(case) == "completed"
    assert flow.data(case)["outcome"] == "passed"


def test_defects_are_fixed_and_retested_until_none_remain(flow: Flow) -> None:
    case = planned(flow)
    flow.do(case, "execute", "huangmin", run_with_defects("D-1", "D-2"))
    assert flow.open_names(case) == ["fix"]
    assert "fix" in [t.bpmn_id for t in flow.inbox("lina")]
    flow.do(case, "fix", "lina", {"fixed": ["D-1"], "notes": "修正回报队列", "build": "5.2.1"})
    assert flow.task(case, "execute").assignee == "huangmin"
    flow.do(case, "execute", "huangmin", run_with_defects("D-2"))
    flow.do(case, "fix", "wangqiang", {"fixed": ["D-2"], "notes": "修正超时"})
    flow.do(case, "execute", "huangmin", CLEAN_RUN)
    flow.do(case, "report", "huangmin", report())
    accept(flow, case)
    assert flow.data(case)["outcome"] == "passed"


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


def test_rejected_acceptance_fails_the_test(flow: Flow) -> None:
    case = planned(flow)
    flow.do(case, "execute", "huangmin", CLEAN_RUN)
    flow.do(case, "report", "huangmin", report())
    accept(flow, case, ops="failed")
    assert flow.data(case)["outcome"] == "failed"


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
