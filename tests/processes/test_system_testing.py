"""系统测试 (system_testing): one scenario per path of processes/system_testing.bpmn (REQUIREMENTS §3.3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from engine.errors import Forbidden, ValidationFailed
from tests.processes.conftest import Flow

SIGNER = "songtao"  # the demo's second test lead: signs off the reports huangmin writes
CLEAN_RUN = {"results": [{"type": "functional", "passed": True, "cases_run": 120, "cases_failed": 0}], "defects": []}
SUCCESS = {"result": "success"}
SIGN = {"decision": "approve"}


def plan_answers(flow: Flow, systems: Sequence[str] = ("集中交易",), versions: Mapping[str, str] | None = None,
              ) -> dict[str, Any]:
    """The plan's answers: `systems` picked from the register by name, each tested at `versions[name]`
    (default: the version the register holds now)."""
    ids = flow.systems(*systems)
    held = {i.name: i.version for i in flow.engine.configuration.list_items()}
    return {"title": "集中交易 V5.2 升级测试", "systems": ids,
            "tested_versions": [{"system": i, "version": (versions or {}).get(n, held[n])}
                                for n, i in zip(systems, ids, strict=True)],
            "scope": "委托、撤单、清算接口",
            "environment": {"name": "UAT-2", "not_production": True, "data_desensitised": True},
            "test_types": ["functional", "regression", "rollback", "performance"], "touches_critical_paths": True}


def run_with_defects(*open_ids: str) -> dict[str, Any]:
    return {"results": [{"type": "functional", "passed": False, "cases_run": 120, "cases_failed": len(open_ids)}],
            "defects": [{"id": d, "title": "委托回报延迟", "severity": "major", "status": "open"} for d in open_ids]}


def report(conclusion: str = "passed", document: dict[str, str] | None = None) -> dict[str, Any]:
    return {"summary": "全部用例通过，性能满足要求", "conclusion": conclusion,
            "report_file": document or {"name": "测试报告.pdf", "sha256": "b" * 64}}


def upload_report(flow: Flow, case: int, username: str = "huangmin", content: bytes = b"%PDF-1.7 test report") \
        -> dict[str, str]:
    """The tester uploads the report file on the report step, as the task page does: the form names it."""
    row = flow.engine.attachments.add(case, flow.task(case, "report").id, "测试报告.pdf", "application/pdf",
                                      content, flow.user(username), kind="form")
    return {"name": row.filename, "sha256": row.sha256}


def planned(flow: Flow, systems: Sequence[str] = ("集中交易",), versions: Mapping[str, str] | None = None) -> int:
    case = flow.start("system_testing", "huangmin", {"title": "集中交易 V5.2 升级测试"})
    assert flow.task(case, "plan").assignee == "huangmin"
    flow.do(case, "plan", "huangmin", plan_answers(flow, systems, versions))
    return case


def accept(flow: Flow, case: int, business: str = "success", ops: str = "success") -> None:
    assert flow.open_names(case) == ["accept_business", "accept_ops"]
    flow.do(case, "accept_business", "zhoujie", verdict(business, "对账不一致"))
    flow.do(case, "accept_ops", "liuyang", verdict(ops, "监控未配置"))


def verdict(result: str, why: str) -> dict[str, str]:
    return {"result": result} if result == "success" else {"result": result, "comment": why}


def reported(flow: Flow, systems: Sequence[str] = ("集中交易",), versions: Mapping[str, str] | None = None) -> int:
    """Tested clean, the report uploaded and concluded passed: waiting for the sign-off."""
    case = planned(flow, systems, versions)
    flow.do(case, "execute", "huangmin", CLEAN_RUN)
    flow.do(case, "report", "huangmin", report(document=upload_report(flow, case)))
    return case


def signed(flow: Flow, systems: Sequence[str] = ("集中交易",), versions: Mapping[str, str] | None = None) -> int:
    case = reported(flow, systems, versions)
    assert flow.open_names(case) == ["signoff"]
    flow.do(case, "signoff", SIGNER, SIGN)
    return case


def passed_testing_case(flow: Flow, systems: Sequence[str] = ("集中交易",),
                        versions: Mapping[str, str] | None = None) -> int:
    """A system_testing case that passed: `systems` (register names) tested at `versions` (name -> version;
    default the register's version now), the report uploaded, signed off by another test lead, accepted."""
    case = signed(flow, systems, versions)
    accept(flow, case)
    assert flow.data(case)["outcome"] == "passed"
    return case


def passed_test_case(flow: Flow) -> int:
    """集中交易 at its register version (kept for the callers written before the register)."""
    return passed_testing_case(flow)


def outcomes(flow: Flow, case: int) -> list[tuple[str, str, str | None]]:
    """The approval record as (step, who, outcome label)."""
    return [(e.bpmn_id, e.completed_by, e.outcome_label) for e in flow.record(case)]


def test_clean_test_passes_after_report_sign_off_and_acceptance(flow: Flow) -> None:
    case = passed_testing_case(flow, ("集中交易", "清算"), {"集中交易": "UF2.0 V202612"})
    assert flow.status(case) == "completed"
    data = flow.data(case)
    assert data["outcome"] == "passed"
    # the plan and the report are facts of the case; the sign-off and the acceptances are answers, in the record
    trading, clearing = flow.systems("集中交易", "清算")
    assert [(s["id"], s["name"]) for s in data["tested_systems"]] == [(trading, "集中交易"), (clearing, "清算")]
    assert data["tested_versions"] == [{"system": trading, "version": "UF2.0 V202612"},
                                       {"system": clearing, "version": "UF2.0 V202601"}]
    assert (data["conclusion"], data["summary"]) == ("passed", "全部用例通过，性能满足要求")
    stored = flow.engine.attachments.list(case)
    assert [(a.filename, a.sha256) for a in stored] == [(data["report_file"]["name"], data["report_file"]["sha256"])]
    assert not {"result", "comment", "decision", "signoff", "accept_business", "accept_ops"} & set(data)
    assert outcomes(flow, case) == [("plan", "huangmin", None), ("execute", "huangmin", None),
                                    ("report", "huangmin", "通过"), ("signoff", SIGNER, "签署"),
                                    ("accept_business", "zhoujie", "成功"), ("accept_ops", "liuyang", "成功")]


def test_plan_is_returned_until_every_picked_system_has_exactly_one_version(flow: Flow) -> None:
    trading, clearing, quotes = flow.systems("集中交易", "清算", "行情")
    case = flow.start("system_testing", "huangmin", {"title": "集中交易 V5.2 升级测试"})
    answers = plan_answers(flow, ("集中交易", "清算"))
    flow.do(case, "plan", "huangmin", {**answers, "tested_versions": [
        {"system": trading, "version": "V1"}, {"system": trading, "version": "V2"},
        {"system": quotes, "version": "4.2"}]})
    assert flow.open_names(case) == ["plan"]
    returned = flow.task(case, "plan")
    assert returned.assignee == "huangmin" and returned.returned_by is None  # the process's own check
    assert returned.return_reason == ("测试计划核对未通过："
                                      f"被测版本中的系统 {quotes} 不是所选的被测系统；"
                                      "未填写被测系统“清算”的测试版本；"
                                      "被测系统“集中交易”的测试版本填写了 2 次（只能填写一次）")
    flow.do(case, "plan", "huangmin", answers)
    assert flow.open_names(case) == ["execute"]
    assert flow.data(case)["return_reason"] == ""
    assert [v["system"] for v in flow.data(case)["tested_versions"]] == [trading, clearing]


def test_plan_picks_only_systems_in_the_register(flow: Flow) -> None:
    case = flow.start("system_testing", "huangmin", {"title": "测试"})
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "plan", "huangmin", {**plan_answers(flow), "systems": [999999]})
    assert [e.field for e in refused.value.errors] == ["systems[0]"]
    assert flow.open_names(case) == ["plan"]


def test_report_rejected_by_the_test_lead_goes_back_to_the_tester(flow: Flow) -> None:
    case = reported(flow)
    assert flow.task(case, "signoff").assignee is None  # the test leads' queue
    flow.do(case, "signoff", SIGNER, {"decision": "reject", "comment": "报告缺少性能测试数据"})
    assert flow.open_names(case) == ["report"]
    again = flow.task(case, "report")
    assert (again.assignee, again.returned_by) == ("huangmin", SIGNER)
    assert again.return_reason == "测试负责人退回测试报告：报告缺少性能测试数据"
    assert "outcome" not in flow.data(case)
    revised = upload_report(flow, case, content=b"%PDF-1.7 test report with performance figures")
    flow.do(case, "report", "huangmin", report(document=revised))
    assert flow.prefill(case, "signoff") == {}  # the new sign-off opens empty, not with the rejection
    flow.do(case, "signoff", SIGNER, SIGN)
    accept(flow, case)
    data = flow.data(case)
    assert (data["outcome"], data["report_file"]) == ("passed", revised)
    assert [o for o in outcomes(flow, case) if o[0] in ("report", "signoff")] == [
        ("report", "huangmin", "通过"), ("signoff", SIGNER, "退回"), ("report", "huangmin", "通过"),
        ("signoff", SIGNER, "签署")]


def test_rejecting_a_report_needs_a_reason(flow: Flow) -> None:
    case = reported(flow)
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "signoff", SIGNER, {"decision": "reject"})
    assert [e.field for e in refused.value.errors] == ["comment"]
    assert flow.open_names(case) == ["signoff"]


def test_tester_cannot_sign_off_their_own_report(flow: Flow) -> None:
    case = reported(flow)
    signoff = flow.task(case, "signoff")
    with pytest.raises(Forbidden) as refused:
        flow.engine.tasks.claim(signoff.id, flow.user("huangmin"))
    assert refused.value.rule == "separation_of_duties"
    assert flow.open_names(case) == ["signoff"]
    flow.do(case, "signoff", SIGNER, SIGN)
    assert flow.open_names(case) == ["accept_business", "accept_ops"]


def test_report_must_name_an_uploaded_file(flow: Flow) -> None:
    case = planned(flow)
    flow.do(case, "execute", "huangmin", CLEAN_RUN)
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "report", "huangmin", {"summary": "全部用例通过", "conclusion": "passed"})
    assert [e.field for e in refused.value.errors] == ["report_file"]
    assert flow.open_names(case) == ["report"]


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
    flow.do(case, "report", "huangmin", report(document=upload_report(flow, case)))
    flow.do(case, "signoff", SIGNER, SIGN)
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


def test_failed_report_ends_failed_without_sign_off_or_acceptance(flow: Flow) -> None:
    case = planned(flow)
    flow.do(case, "execute", "huangmin", {**run_with_defects("D-3"), "stop_testing": True})
    assert flow.open_names(case) == ["report"]
    flow.do(case, "report", "huangmin", report("failed", upload_report(flow, case)))
    assert flow.status(case) == "completed"
    assert flow.data(case)["outcome"] == "failed"
    assert outcomes(flow, case)[-1] == ("report", "huangmin", "不通过")
    assert flow.open_names(case) == []


def test_rejected_acceptance_fails_the_test(flow: Flow) -> None:
    case = signed(flow)
    accept(flow, case, ops="failed")
    assert flow.data(case)["outcome"] == "failed"
    ops = flow.record(case)[-1]
    assert (ops.bpmn_id, ops.completed_by, ops.outcome, ops.outcome_label) == (
        "accept_ops", "liuyang", "failed", "失败")
    assert {a["field"]: a["value"] for a in ops.answers} == {"comment": "监控未配置"}


def test_operations_acceptance_opens_empty_after_business_failed_it_with_a_comment(flow: Flow) -> None:
    case = signed(flow)
    flow.do(case, "accept_business", "zhoujie", {"result": "failed", "comment": "对账不一致"})
    assert flow.prefill(case, "accept_ops") == {}  # nobody's verdict or comment pre-selected
    flow.do(case, "accept_ops", "liuyang", SUCCESS)
    assert flow.data(case)["outcome"] == "failed"  # read from each acceptance's own answers
    assert outcomes(flow, case)[-2:] == [("accept_business", "zhoujie", "失败"), ("accept_ops", "liuyang", "成功")]


def test_business_acceptance_opens_empty_after_operations_accepted_with_a_comment(flow: Flow) -> None:
    case = signed(flow)
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
    with pytest.raises(ValidationFailed) as refused:  # signing is the other test lead's step, not a box to tick
        flow.do(case, "report", "huangmin", {**report(), "signed": True})
    assert [e.field for e in refused.value.errors] == ["signed"]
    with pytest.raises(ValidationFailed) as refused:  # nor can the tester answer the sign-off in the report
        flow.do(case, "report", "huangmin", {**report(), "signoff": {"decision": "approve"}})
    assert [e.field for e in refused.value.errors] == ["signoff"]
    flow.do(case, "report", "huangmin", report(document=upload_report(flow, case)))
    assert flow.open_names(case) == ["signoff"]
    with pytest.raises(ValidationFailed) as refused:  # the plan's check result is the process's
        flow.do(case, "signoff", SIGNER, {**SIGN, "plan_ok": True})
    assert [e.field for e in refused.value.errors] == ["plan_ok"]
    flow.do(case, "signoff", SIGNER, SIGN)
    with pytest.raises(ValidationFailed) as refused:  # the old shared key the outcome was read from
        flow.do(case, "accept_business", "zhoujie", {"result": "failed", "comment": "差异",
                                                      "business_acceptance": "success"})
    assert [e.field for e in refused.value.errors] == ["business_acceptance"]
    assert flow.open_names(case) == ["accept_business", "accept_ops"]


def test_plan_must_attest_a_safe_environment_and_performance_for_trading_paths(flow: Flow) -> None:
    case = flow.start("system_testing", "huangmin", {"title": "测试"})
    unsafe = {**plan_answers(flow), "environment": {"name": "生产", "not_production": False, "data_desensitised": True},
              "test_types": ["functional"]}
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "plan", "huangmin", unsafe)
    fields = {e.field for e in refused.value.errors}
    assert "environment.not_production" in fields
    assert "test_types" in fields


def test_tester_cannot_accept_own_test(flow: Flow) -> None:
    flow.engine.identity.add_user("qianwei", ["test_lead", "business_verifier"], "钱伟")
    case = flow.start("system_testing", "qianwei", {"title": "自测"})
    flow.do(case, "plan", "qianwei", plan_answers(flow))
    flow.do(case, "execute", "qianwei", CLEAN_RUN)
    flow.do(case, "report", "qianwei", report(document=upload_report(flow, case, "qianwei")))
    flow.do(case, "signoff", SIGNER, SIGN)
    with pytest.raises(Forbidden) as refused:
        flow.engine.tasks.claim(flow.task(case, "accept_business").id, flow.user("qianwei"))
    assert refused.value.rule == "separation_of_duties"
