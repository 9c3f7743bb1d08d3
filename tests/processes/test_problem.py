"""问题管理 (problem): one scenario per path of processes/problem.bpmn (REQUIREMENTS §3.4)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import Forbidden, ValidationFailed
from tests.processes.conftest import Flow
from tests.processes.test_change import change_request, close, demo_systems, implement_to_close
from tests.processes.test_incident import RESOLVED, reported

APPROVE = {"decision": "approve"}
SUCCESS = {"result": "success"}
RCA = {"root_cause_found": True, "root_cause": "登录网关连接池上限按旧并发量配置，早盘高峰耗尽",
       "analysis_method": "timeline", "analysis": "三次事件均在 9:15 前后，连接池监控达到上限",
       "known_error": True, "workaround": "高峰前手工扩大连接池并重启网关",
       "fix_by_change": True, "fix_proposal": "连接池上限改为按并发量自动调整，发布网关 2.3.1"}


def registration(**changes: Any) -> dict[str, Any]:
    data = {"title": "网上交易早盘登录缓慢反复发生", "description": "近一月三次早盘登录超时",
            "systems": demo_systems("网上交易"), "priority": "high", "analyst": "lina"}
    data.update(changes)
    return data


def incident_needing_a_problem(flow: Flow) -> int:
    incident = reported(flow)
    flow.do(incident, "respond", "lina", {"assessment": "登录网关连接池耗尽"})
    flow.do(incident, "resolve", "lina", RESOLVED)
    flow.do(incident, "confirm", "wuhao", {"result": "success"})
    flow.do(incident, "close", "liuyang", {"problem_needed": True, "comment": "同类事件第三次发生"})
    return incident


def linked(flow: Flow, case: int) -> set[tuple[str, str, int]]:
    return {(link["kind"], link["direction"], link["instance_id"]) for link in flow.links(case)}


def fixing_change(flow: Flow) -> int:
    change = flow.start("change", "zhangwei", {"title": "网关连接池参数调整"})
    flow.do(change, "request", "zhangwei", change_request(title="网关连接池参数调整"))
    return change


def complete(flow: Flow, change: int) -> None:
    flow.do(change, "approve_ops", "liuyang", APPROVE)
    implement_to_close(flow, change)
    close(flow, change)


def analysed(flow: Flow, **rca: Any) -> int:
    problem = flow.start("problem", "liuyang", {"title": "问题"})
    flow.do(problem, "register", "liuyang", registration())
    analyse = flow.task(problem, "analyse")
    assert (analyse.assignee, analyse.return_reason) == ("lina", None)  # the first analysis is no return
    flow.do(problem, "analyse", "lina", {**RCA, **rca})
    return problem


def test_incident_problem_is_analysed_fixed_by_a_change_verified_and_closed(flow: Flow) -> None:
    incident = incident_needing_a_problem(flow)
    earlier = reported(flow, title="网上交易登录超时（上周）")
    problem = [link["instance_id"] for link in flow.links(incident) if link["kind"] == "problem"][0]
    assert flow.open_names(problem) == ["register"]
    assert "register" in [t.bpmn_id for t in flow.inbox("liuyang")]
    opening = flow.prefill(problem, "register")  # what the incident handed over, to complete
    assert (opening["description"], opening["priority"]) == ("部分客户登录超时；同类事件第三次发生", "medium")
    assert "comment" not in opening
    flow.do(problem, "register", "liuyang", registration(incident_ids=[earlier]))
    assert linked(flow, problem) == {("problem", "from", incident), ("problem", "from", earlier)}
    assert ("problem", "to", problem) in linked(flow, earlier)

    task = flow.task(problem, "analyse")
    assert task.assignee == "lina"
    assert task.due_at is not None
    flow.do(problem, "analyse", "lina", RCA)
    assert flow.open_names(problem) == ["review_rca"]
    assert flow.prefill(problem, "review_rca") == {}
    flow.do(problem, "review_rca", "liuyang", {"decision": "approve", "comment": "同意，按修复方案提变更"})
    data = flow.data(problem)
    assert (data["known_error"], data["workaround"]) == (True, "高峰前手工扩大连接池并重启网关")
    fix = flow.task(problem, "fix")
    assert (fix.assignee, fix.return_reason) == ("lina", None)

    change = fixing_change(flow)
    flow.do(problem, "fix", "lina", {"change_case_id": change})  # not finished yet: refused
    assert flow.open_names(problem) == ["fix"]
    fix = flow.task(problem, "fix")
    assert fix.assignee == "lina" and fix.returned_by is None  # an automatic check sent it back
    assert (fix.return_reason or "").startswith("修复变更核对未通过：") and "尚未完成" in fix.return_reason
    assert flow.prefill(problem, "fix") == {"change_case_id": change}  # the analyst's own entry, to correct
    complete(flow, change)
    flow.do(problem, "fix", "lina", {"change_case_id": change, "notes": "网关 2.3.1 已上线"})
    assert ("fix", "to", change) in linked(flow, problem)
    assert ("fix", "from", problem) in linked(flow, change)
    assert flow.prefill(problem, "verify_fix") == {}  # the reviewer's approval and comment are not pre-filled
    flow.do(problem, "verify_fix", "liuyang", SUCCESS)
    flow.do(problem, "close", "liuyang", {"summary": "连接池自动调整上线后两周无复发", "known_error_status": "retired"})
    assert flow.status(problem) == "completed"
    data = flow.data(problem)
    assert (data["outcome"], data["known_error_status"], data["change_case_id"]) == ("已解决", "retired", change)
    assert "decision" not in data and "result" not in data and "comment" not in data
    steps = [(e.bpmn_id, e.completed_by, e.outcome_label) for e in flow.record(problem)]
    assert steps == [("register", "liuyang", None), ("analyse", "lina", None), ("review_rca", "liuyang", "批准"),
                     ("fix", "lina", None), ("fix", "lina", None), ("verify_fix", "liuyang", "成功"),
                     ("close", "liuyang", None)]
    assert [a["text"] for a in flow.record(problem)[2].answers] == ["同意，按修复方案提变更"]


def test_shallow_analysis_is_returned_and_a_problem_without_a_change_closes(flow: Flow) -> None:
    problem = analysed(flow, root_cause_found=False, known_error=False, fix_by_change=False)
    flow.do(problem, "review_rca", "liuyang", {"decision": "return", "comment": "请结合网关日志找出根因"})
    analyse = flow.task(problem, "analyse")
    assert analyse.assignee == "lina"
    assert (analyse.return_reason, analyse.returned_by) == ("运维负责人退回：请结合网关日志找出根因", "liuyang")
    opening = flow.prefill(problem, "analyse")
    assert (opening["root_cause_found"], opening["analysis_method"]) == (False, "timeline")  # her own analysis
    assert "decision" not in opening and "comment" not in opening
    returned = flow.record(problem)[-1]
    assert (returned.bpmn_id, returned.completed_by, returned.outcome, returned.outcome_label) == (
        "review_rca", "liuyang", "return", "退回")
    flow.do(problem, "analyse", "lina", {**RCA, "known_error": False, "fix_by_change": False,
                                         "root_cause": "操作员误将限流开关打开，已纠正并纳入检查单"})
    assert flow.prefill(problem, "review_rca") == {}  # the second review opens empty: no stale 退回
    flow.do(problem, "review_rca", "liuyang", APPROVE)
    assert flow.open_names(problem) == ["close"]
    flow.do(problem, "close", "liuyang", {"summary": "操作失误，已纳入日常检查单", "known_error_status": "none"})
    assert flow.data(problem)["outcome"] == "已关闭"


def test_rejected_problem_is_closed_unfixed(flow: Flow) -> None:
    problem = analysed(flow, root_cause_found=False, known_error=False, fix_by_change=False)
    flow.do(problem, "review_rca", "liuyang", {"decision": "reject", "comment": "无法复现，暂不处理"})
    assert flow.status(problem) == "completed"
    assert flow.data(problem)["outcome"] == "未修复"
    rejected = flow.record(problem)[-1]
    assert (rejected.bpmn_id, rejected.outcome_label) == ("review_rca", "驳回")
    assert {a["field"]: a["value"] for a in rejected.answers} == {"comment": "无法复现，暂不处理"}


def test_fix_that_does_not_hold_goes_back_to_analysis(flow: Flow) -> None:
    problem = analysed(flow)
    flow.do(problem, "review_rca", "liuyang", APPROVE)
    change = fixing_change(flow)
    flow.do(problem, "fix", "lina", {"change_case_id": change})  # not finished yet: sent back
    assert "尚未完成" in (flow.task(problem, "fix").return_reason or "")
    complete(flow, change)
    flow.do(problem, "fix", "lina", {"change_case_id": change})
    flow.do(problem, "verify_fix", "liuyang", {"result": "failed", "comment": "修复后仍出现两次登录超时"})
    analyse = flow.task(problem, "analyse")
    assert analyse.assignee == "lina"
    assert (analyse.return_reason, analyse.returned_by) == (
        "运维负责人验证修复无效：修复后仍出现两次登录超时", "liuyang")
    assert "result" not in flow.prefill(problem, "analyse")

    # a second round: the earlier approval and failed verification are not taken for this round's
    flow.do(problem, "analyse", "lina", {**RCA, "fix_proposal": "连接池改为按并发量自动调整，并扩容网关节点"})
    assert flow.prefill(problem, "review_rca") == {}
    flow.do(problem, "review_rca", "liuyang", APPROVE)
    fix = flow.task(problem, "fix")
    assert (fix.assignee, fix.return_reason, fix.returned_by) == ("lina", None, None)  # a new round, no stale return
    flow.do(problem, "fix", "lina", {"change_case_id": change, "notes": "扩容随同一变更完成"})
    assert flow.prefill(problem, "verify_fix") == {}  # no stale 失败
    flow.do(problem, "verify_fix", "liuyang", SUCCESS)
    flow.do(problem, "close", "liuyang", {"summary": "扩容并自动调整后无复发", "known_error_status": "retired"})
    assert flow.data(problem)["outcome"] == "已解决"
    verdicts = [e.outcome for e in flow.record(problem) if e.bpmn_id == "verify_fix"]
    assert verdicts == ["failed", "success"]


def test_the_fix_must_be_a_successful_change(flow: Flow) -> None:
    problem = analysed(flow)
    flow.do(problem, "review_rca", "liuyang", APPROVE)
    flow.do(problem, "fix", "lina", {"change_case_id": problem})
    fix = flow.task(problem, "fix")
    assert fix.assignee == "lina" and fix.returned_by is None
    assert "不是 change 流程" in (fix.return_reason or "")
    rejected = fixing_change(flow)
    flow.do(rejected, "approve_ops", "liuyang", {"decision": "reject", "comment": "方案不完整"})
    flow.do(problem, "fix", "lina", {"change_case_id": rejected})
    assert "结论不是" in (flow.task(problem, "fix").return_reason or "")
    assert flow.open_names(problem) == ["fix"]
    assert flow.links(problem) == []


def test_unknown_incident_returns_the_registration(flow: Flow) -> None:
    problem = flow.start("problem", "liuyang", {"title": "问题"})
    flow.do(problem, "register", "liuyang", registration(incident_ids=[999]))
    assert flow.open_names(problem) == ["register"]
    register = flow.task(problem, "register")
    assert register.assignee == "liuyang"  # back to the manager who registered it, not the queue
    assert (register.return_reason, register.returned_by) == ("关联事件核对未通过：流程 999 不存在", None)
    assert flow.prefill(problem, "register")["incident_ids"] == [999]  # the registration, to correct
    with pytest.raises(ValidationFailed) as refused:  # the analyst must be an ops engineer
        flow.do(problem, "register", "liuyang", registration(incident_ids=[], analyst="zhoujie"))
    assert [e.field for e in refused.value.errors] == ["analyst"]
    assert flow.open_names(problem) == ["register"]


def test_analyst_may_not_review_their_own_analysis(flow: Flow) -> None:
    flow.engine.identity.add_user("sunli", ["ops_engineer", "ops_manager"], "孙立")
    problem = flow.start("problem", "liuyang", {"title": "问题"})
    flow.do(problem, "register", "liuyang", registration(analyst="sunli"))
    flow.do(problem, "analyse", "sunli", RCA)
    with pytest.raises(Forbidden) as refused:
        flow.engine.tasks.claim(flow.task(problem, "review_rca").id, flow.user("sunli"))
    assert refused.value.rule == "separation_of_duties"


def test_a_review_cannot_carry_a_field_that_steers_the_fix(flow: Flow) -> None:
    problem = analysed(flow)  # the analysis says a change is needed
    with pytest.raises(ValidationFailed) as refused:
        flow.do(problem, "review_rca", "liuyang", {"decision": "approve", "fix_by_change": False})
    assert [e.field for e in refused.value.errors] == ["fix_by_change"]
    assert flow.open_names(problem) == ["review_rca"]  # nothing moved
    assert flow.data(problem)["fix_by_change"] is True
    flow.do(problem, "review_rca", "liuyang", APPROVE)
    assert flow.open_names(problem) == ["fix"]  # the fix by change was not skipped
