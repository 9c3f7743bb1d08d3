"""The access policy on the real processes (processes/access.json): the refusals testers found, closed.

Each test tries the bypass first, then the way the policy allows.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.errors import BadRequest, Conflict, Forbidden
from engine.people.access import AccessPolicy
from tests.conftest import ROOT
from tests.processes.conftest import Flow
from tests.processes.test_change import change_request
from tests.processes.test_incident import reported


def p1_incident(flow: Flow) -> tuple[int, int]:
    case = reported(flow, impact="high", urgency="high")
    emergency = flow.links(case)[0]["instance_id"]
    return case, emergency


def actions(flow: Flow, case: int) -> list[tuple[str, str]]:
    return [(e.actor, e.action) for e in flow.engine.runtime.show(case).history if e.action.startswith("case.cancel")]


# cancelling a reportable case -----------------------------------------------------------------------
def test_the_reporter_of_a_p1_incident_cannot_cancel_it_or_its_emergency(flow: Flow) -> None:
    case, emergency = p1_incident(flow)
    for target in (case, emergency):  # the emergency was started by the reporter's action too
        with pytest.raises(Forbidden) as refused:
            flow.engine.runtime.cancel(target, flow.user("zhangwei"), "报错了")
        assert refused.value.rule == "case.cancel" and "report clock" in refused.value.message
    assert (flow.status(case), flow.status(emergency)) == ("running", "running")
    assert actions(flow, case) == [("zhangwei", "case.cancel_refused")]  # the attempt is on the record


def test_a_reportable_case_is_cancelled_only_with_another_persons_compliance_signoff(flow: Flow) -> None:
    case = reported(flow, system_class="集中交易", outage_minutes=6)  # P3 but 较大: reportable
    emergency = flow.links(case)[0]["instance_id"]
    runtime = flow.engine.runtime
    assert runtime.cancel(case, flow.user("liuyang"), "重复报告，已在 #1 处理") == "awaiting_signoff"
    assert flow.status(case) == "running"
    assert runtime.cancel_request(case)["by"] == "liuyang"
    with pytest.raises(Conflict):  # asked once: a second ask does not replace the first
        runtime.cancel(case, flow.user("liuyang"), "再次")
    assert runtime.cancel(case, flow.user("sunyan"), "核实为重复报告") == "cancelled"
    assert (flow.status(case), flow.status(emergency)) == ("cancelled", "cancelled")
    assert runtime.cancel_request(case) is None
    assert actions(flow, case) == [("liuyang", "case.cancel_requested"), ("sunyan", "case.cancelled")]
    [signed] = [e for e in runtime.show(case).history if e.action == "case.cancelled"]
    assert signed.data["signoff"] == "sunyan signed off the request of liuyang" and signed.data["reportable"]
    [linked] = [e for e in runtime.show(emergency).history if e.action == "case.cancelled"]
    assert linked.data["with"] == case


def test_the_one_who_asked_cannot_sign_off_their_own_cancellation(flow: Flow) -> None:
    case, _ = p1_incident(flow)
    engine = flow.engine
    engine.identity.add_user("both", ["ops_manager", "compliance"])
    assert engine.runtime.cancel(case, flow.user("both"), "误报") == "awaiting_signoff"
    with pytest.raises(Forbidden) as refused:
        engine.runtime.cancel(case, flow.user("both"), "误报")
    assert refused.value.rule == "separation_of_duties"
    with pytest.raises(Forbidden):  # compliance alone cannot start a cancellation either
        engine.runtime.cancel(reported(flow, impact="high", urgency="high"), flow.user("sunyan"), "误报")
    assert engine.runtime.cancel(case, flow.user("sunyan"), "核实为误报") == "cancelled"
    assert flow.status(case) == "cancelled"


def test_a_minor_incident_is_still_cancelled_by_its_reporter(flow: Flow) -> None:
    case = reported(flow)
    with pytest.raises(Forbidden):  # someone else's, without case.cancel
        flow.engine.runtime.cancel(case, flow.user("lina"), "不是我的")
    assert flow.engine.runtime.cancel(case, flow.user("zhangwei"), "误报") == "cancelled"
    assert flow.status(case) == "cancelled"


# reading a case is one rule ---------------------------------------------------------------------------
def test_department_readers_read_a_p1_incident_and_its_emergency(flow: Flow) -> None:
    case, emergency = p1_incident(flow)
    for who in ("liuyang", "zhaolei", "sunyan", "zhuhong"):
        for target in (case, emergency):
            assert flow.engine.runtime.show(target, flow.user(who)).id == target
    with pytest.raises(Forbidden):
        flow.engine.runtime.show(case, flow.user("huangmin"))  # the test lead takes no part


def test_an_assigned_task_does_not_open_the_case_to_everyone_holding_its_role(flow: Flow) -> None:
    case = reported(flow)  # P3: the response waits in the engineers' queue
    respond = flow.task(case, "respond")
    engine = flow.engine
    assert engine.runtime.show(case, flow.user("wangqiang")).id == case  # the queue may look before claiming
    assert engine.tasks.get(respond.id, flow.user("wangqiang")).task.id == respond.id
    engine.tasks.claim(respond.id, flow.user("lina"))
    with pytest.raises(Forbidden) as refused:
        engine.runtime.show(case, flow.user("wangqiang"))
    assert refused.value.rule == "read"
    with pytest.raises(Forbidden):
        engine.tasks.get(respond.id, flow.user("wangqiang"))
    with pytest.raises(Forbidden):
        engine.attachments.list(case, flow.user("wangqiang"))
    assert case not in {c.id for c in engine.runtime.visible_cases(flow.user("wangqiang"))[0]}
    assert case in {c.id for c in engine.runtime.visible_cases(flow.user("lina"))[0]}


def test_the_case_list_and_the_case_page_agree_for_every_user(flow: Flow) -> None:
    """visible_cases (SQL) and show (in Python) are the same rule: every demo user, every case."""
    p1, emergency = p1_incident(flow)
    minor = reported(flow)
    flow.engine.tasks.claim(flow.task(minor, "respond").id, flow.user("lina"))
    change = flow.start("change", "zhangwei")
    flow.do(change, "request", "zhangwei", change_request())
    engine = flow.engine
    engine.substitutes.create(flow.user("lina"), "wangqiang", engine.ctx.now() - timedelta(hours=1),
                              engine.ctx.now() + timedelta(days=1), "年假")
    cases = (p1, emergency, minor, change)
    for user in engine.identity.users():
        listed = {c.id for c in engine.runtime.visible_cases(user, limit=500)[0]}
        for case in cases:
            try:
                engine.runtime.show(case, user)
                readable = True
            except Forbidden:
                readable = False
            assert (case in listed) is readable, (user.username, case)
    # the substitute reads the case of the holder's claimed task, for a role they share
    assert minor in {c.id for c in engine.runtime.visible_cases(flow.user("wangqiang"))[0]}


# messages, escalation ---------------------------------------------------------------------------------
def test_a_policy_file_with_an_unknown_action_or_no_default_manager_is_refused() -> None:
    raw = __import__("json").loads((ROOT / "processes" / "access.json").read_text(encoding="utf-8"))
    assert AccessPolicy.parse(raw).manager_of("cab") == "it_head"
    broken = {**raw, "grants": {**raw["grants"], "case.delete": {"roles": ["admin"]}}}
    with pytest.raises(BadRequest, match="unknown action 'case.delete'"):
        AccessPolicy.parse(broken)
    missing = {**raw, "grants": {k: v for k, v in raw["grants"].items() if k != "case.cancel"}}
    with pytest.raises(BadRequest, match="no grant for 'case.cancel'"):
        AccessPolicy.parse(missing)
    with pytest.raises(BadRequest, match="default manager"):
        AccessPolicy.parse({**raw, "managers": {"cab": "it_head"}})
