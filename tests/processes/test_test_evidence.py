"""Test evidence (issue 16 item 4): check_test_evidence, the library service a change's gate calls, accepts
only a passed, signed-off system_testing case that tested the change's systems at the versions it brings,
and only for one change.

The service runs inside the citing case, as a service task of it would (the engine sets the current case
while it runs a case's automatic steps); the cases on both sides are real, driven through their forms.
"""

from __future__ import annotations

from typing import Any

from tests.processes.conftest import Flow
from tests.processes.test_system_testing import (
    CLEAN_RUN,
    SIGN,
    SIGNER,
    accept,
    passed_testing_case,
    planned,
    report,
    reported,
)


def check(flow: Flow, change: int, test_case: Any, systems: list[int],
          target_versions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """check_test_evidence as change `change`'s gate runs it (as its requester zhangwei)."""
    token = flow.engine.ctx.current_case.set((change, "zhangwei"))
    try:
        service = flow.engine.ctx.environment.services["check_test_evidence"]
        result: dict[str, Any] = service(test_case, systems, target_versions)
        return result
    finally:
        flow.engine.ctx.current_case.reset(token)


def change_case(flow: Flow) -> int:
    return flow.start("change", "zhangwei", {"title": "集中交易 UF2.0 升级"})


def evidence_links(flow: Flow, case: int) -> list[tuple[str, int]]:
    return [(x["direction"], x["instance_id"]) for x in flow.links(case) if x["kind"] == "test_evidence"]


def test_passed_signed_test_of_the_same_systems_and_versions_is_evidence(flow: Flow) -> None:
    trading, clearing = flow.systems("集中交易", "清算")
    test_case = passed_testing_case(flow, ("集中交易", "清算"), {"集中交易": "UF2.0 V202612"})
    change = change_case(flow)
    # 集中交易 brought to the version tested; 清算 unchanged, so tested at the register's version
    result = check(flow, change, str(test_case), [trading, clearing],
                   [{"system": trading, "version": "UF2.0 V202612"}])
    assert (result["ok"], result["reason"]) == (True, "")
    assert evidence_links(flow, change) == [("to", test_case)]
    assert evidence_links(flow, test_case) == [("from", change)]


def test_a_test_of_some_of_the_systems_is_evidence_for_a_change_of_those(flow: Flow) -> None:
    (trading,) = flow.systems("集中交易")
    test_case = passed_testing_case(flow, ("集中交易", "清算"))
    assert check(flow, change_case(flow), test_case, [trading])["ok"]


def test_a_system_the_test_did_not_cover_is_refused(flow: Flow) -> None:
    trading, quotes = flow.systems("集中交易", "行情")
    test_case = passed_testing_case(flow, ("集中交易",))
    change = change_case(flow)
    result = check(flow, change, test_case, [trading, quotes])
    assert result == {"ok": False, "reason": f"系统测试流程 {test_case} 未测试“行情”"}
    assert evidence_links(flow, change) == []  # a refused citation is not recorded


def test_a_different_version_is_refused(flow: Flow) -> None:
    (trading,) = flow.systems("集中交易")
    test_case = passed_testing_case(flow, ("集中交易",), {"集中交易": "UF2.0 V202612"})
    change = change_case(flow)
    result = check(flow, change, test_case, [trading], [{"system": trading, "version": "UF2.0 V202701"}])
    assert result == {"ok": False, "reason": f"系统测试流程 {test_case} 测试的“集中交易”版本为 UF2.0 V202612，"
                                             f"本次变更的版本为 UF2.0 V202701"}
    # without a target version the change leaves the system at the register's version, which was not tested
    result = check(flow, change, test_case, [trading])
    assert result["reason"] == (f"系统测试流程 {test_case} 测试的“集中交易”版本为 UF2.0 V202612，"
                                f"本次变更的版本为 UF2.0 V202601")
    assert evidence_links(flow, change) == []


def test_an_unfinished_or_failed_test_is_refused(flow: Flow) -> None:
    (trading,) = flow.systems("集中交易")
    change = change_case(flow)
    running = planned(flow)
    assert check(flow, change, running, [trading]) == {
        "ok": False, "reason": f"系统测试流程 {running} 尚未完成或结论不是通过（状态 running，结论 None）"}
    failed = planned(flow)
    flow.do(failed, "execute", "huangmin", CLEAN_RUN)
    flow.do(failed, "report", "huangmin", report("failed"))
    assert check(flow, change, failed, [trading])["reason"] == (
        f"系统测试流程 {failed} 尚未完成或结论不是通过（状态 completed，结论 'failed'）")
    assert evidence_links(flow, change) == []


def test_a_report_not_yet_signed_off_is_refused(flow: Flow) -> None:
    (trading,) = flow.systems("集中交易")
    waiting = reported(flow)  # the report is written and concluded passed, the sign-off still open
    rejected = reported(flow)
    flow.do(rejected, "signoff", SIGNER, {"decision": "reject", "comment": "缺少回退测试记录"})
    change = change_case(flow)
    for test_case in (waiting, rejected):
        result = check(flow, change, test_case, [trading])
        assert not result["ok"] and f"系统测试流程 {test_case} 尚未完成" in result["reason"]
    flow.do(rejected, "report", "huangmin", report())  # a report that names no stored file
    flow.do(rejected, "signoff", SIGNER, SIGN)
    accept(flow, rejected)
    assert flow.data(rejected)["outcome"] == "passed"
    assert check(flow, change, rejected, [trading]) == {
        "ok": False, "reason": f"系统测试流程 {rejected} 没有以附件上传的测试报告"}


def test_a_test_used_by_another_change_is_refused(flow: Flow) -> None:
    (trading,) = flow.systems("集中交易")
    test_case = passed_testing_case(flow)
    first, second = change_case(flow), change_case(flow)
    assert check(flow, first, test_case, [trading])["ok"]
    assert check(flow, second, test_case, [trading]) == {
        "ok": False, "reason": f"系统测试流程 {test_case} 已作为流程 {first} 的测试证据，不能再次使用"}
    assert evidence_links(flow, second) == []
    assert evidence_links(flow, test_case) == [("from", first)]


def test_the_same_change_checking_again_is_accepted_once_recorded(flow: Flow) -> None:
    (trading,) = flow.systems("集中交易")
    test_case = passed_testing_case(flow)
    change = change_case(flow)
    assert check(flow, change, test_case, [trading])["ok"]
    assert check(flow, change, test_case, [trading])["ok"]  # returned and resubmitted: still its evidence
    assert evidence_links(flow, change) == [("to", test_case)]


def test_a_delivery_citing_the_test_does_not_use_it_up_for_its_go_live_change(flow: Flow) -> None:
    from tests.processes.test_delivery import delivery_request

    (trading,) = flow.systems("集中交易")
    test_case = passed_testing_case(flow)
    delivery = flow.start("delivery", "zhangwei", {"title": "交付"})
    flow.do(delivery, "request", "zhangwei", delivery_request(test_case))
    assert evidence_links(flow, test_case) == [("from", delivery)]
    assert check(flow, change_case(flow), test_case, [trading])["ok"]


def test_what_is_not_a_passed_system_test_is_refused_by_name(flow: Flow) -> None:
    (trading,) = flow.systems("集中交易")
    change = change_case(flow)
    assert check(flow, change, None, [trading]) == {"ok": False, "reason": "未提供系统测试流程编号"}
    assert check(flow, change, "T-1", [trading]) == {"ok": False, "reason": "系统测试流程编号 'T-1' 无效"}
    assert check(flow, change, 999999, [trading]) == {"ok": False, "reason": "流程 999999 不存在"}
    assert check(flow, change, change, [trading]) == {
        "ok": False, "reason": f"流程 {change} 不是 system_testing 流程（是 change）"}
    test_case = passed_testing_case(flow)
    assert check(flow, change, test_case, []) == {
        "ok": False, "reason": "未列出涉及的系统（配置项编号），无法核对测试证据"}
    assert check(flow, change, test_case, [999999]) == {"ok": False, "reason": "配置项 999999 不在配置项登记簿中"}
    assert evidence_links(flow, change) == []


def test_a_change_cancelled_before_implementation_gives_the_test_back(flow: Flow) -> None:
    (trading,) = flow.systems("集中交易")
    test_case = passed_testing_case(flow)
    first, second = change_case(flow), change_case(flow)
    assert check(flow, first, test_case, [trading])["ok"]
    assert not check(flow, second, test_case, [trading])["ok"]  # held while the first change runs
    assert flow.engine.runtime.cancel(first, flow.user("zhangwei"), "方案有误，撤回重提") == "cancelled"
    assert check(flow, second, test_case, [trading])["ok"]
    assert sorted(evidence_links(flow, test_case)) == [("from", first), ("from", second)]
