"""REST API: the inbox and the work on a task, with every refusal the engine makes."""

from __future__ import annotations

from tests.processes.conftest import Flow
from tests.processes.test_change import APPROVE, change_request, evidence_for
from tests.webui.test_api_endpoints import error
from tests.webui.test_api_support import Api, api, api_clock, api_engine, app  # noqa: F401


def submitted(api: Api, requester: str = "zhangwei", **changes) -> int:
    """A change filled in by its requester: waiting for an ops manager's approval."""
    case = api.start("change", requester, {"title": "变更"})
    api.do(case, "request", requester, change_request(**changes))
    return case


def test_inbox_scopes_and_pagination(api: Api) -> None:
    first, second = submitted(api), submitted(api)
    group = api.ok(api.get("/tasks?scope=group", "liuyang"))
    assert sorted(t["instance_id"] for t in group["items"]) == [first, second] and group["total"] == 2
    assert group["items"][0]["role"] == "ops_manager" and group["items"][0]["assignee"] is None
    page = api.ok(api.get("/tasks?scope=group&limit=1&offset=1", "liuyang"))
    assert len(page["items"]) == 1 and page["total"] == 2
    task = group["items"][0]["id"]
    api.ok(api.post(f"/tasks/{task}/claim", "liuyang"))
    assert [t["id"] for t in api.ok(api.get("/tasks?scope=mine", "liuyang"))["items"]] == [task]
    assert api.ok(api.get("/tasks", "liuyang"))["total"] == 2  # all: mine and my roles' queue
    assert api.ok(api.get("/tasks?process_id=incident", "liuyang"))["total"] == 0


def test_overdue_tasks(api: Api, api_clock) -> None:
    submitted(api)
    assert api.ok(api.get("/tasks?overdue=true", "liuyang"))["total"] == 0
    api_clock.advance(days=1, minutes=1)  # the approval is due in a day
    overdue = api.ok(api.get("/tasks?overdue=true", "liuyang"))["items"]
    assert [t["name"] for t in overdue] == ["approve_ops"]


def test_everyone_scope_is_for_supervising_roles(api: Api) -> None:
    submitted(api)
    assert api.ok(api.get("/tasks?scope=everyone", "zhuhong"))["total"] == 1
    assert error(api.get("/tasks?scope=everyone", "zhangwei"), 403)["details"] == {"rule": "tasks.read_all"}
    assert error(api.get("/tasks?scope=nobody", "zhangwei"), 422)["details"][0]["field"] == "scope"


def test_task_detail_has_its_form_and_data(api: Api) -> None:
    case = submitted(api)
    task = api.open_task(case, "approve_ops")
    body = api.ok(api.get(f"/tasks/{task['id']}", "liuyang"))
    assert body["form"] == "approval.json" and body["form_schema"]["type"] == "object"
    assert body["data"] == {} and body["case_data"]["implementer"] == "lina" and body["case_title"]
    assert [(e["bpmn_id"], e["completed_by"]) for e in body["record"]] == [("request", "zhangwei")]
    assert error(api.get(f"/tasks/{task['id']}", "lina"), 403)["details"] == {"rule": "read"}
    error(api.get("/tasks/00000000-0000-0000-0000-000000000000", "liuyang"), 404, "not_found")


def test_claim_refusals(api: Api) -> None:
    api.engine.identity.add_user("sunli", ["staff", "ops_manager"], "孙力")
    own = submitted(api, "sunli")
    task = api.open_task(own, "approve_ops")["id"]
    refusal = error(api.post(f"/tasks/{task}/claim", "sunli"), 403, "forbidden")
    assert refusal["details"] == {"rule": "separation_of_duties"} and "不相容岗位分离" in refusal["message"]
    assert error(api.post(f"/tasks/{task}/claim", "lina"), 403)["details"] == {"rule": "role"}
    body = api.ok(api.post(f"/tasks/{task}/claim", "liuyang"))
    assert body["assignee"] == "liuyang" and body["claimed_at"]
    error(api.post(f"/tasks/{task}/claim", "zhaolei"), 409, "conflict")  # claimed by someone else
    error(api.post("/tasks/nope/claim", "liuyang"), 404)


def test_unclaim_by_the_assignee_or_a_manager(api: Api) -> None:
    api.engine.identity.add_user("gaofeng", ["ops_manager"], "高峰")
    task = api.open_task(submitted(api), "approve_ops")["id"]
    api.ok(api.post(f"/tasks/{task}/claim", "liuyang"))
    assert error(api.post(f"/tasks/{task}/unclaim", "zhangwei"), 403)["details"] == {"rule": "tasks.assign"}
    assert api.ok(api.post(f"/tasks/{task}/unclaim", "gaofeng"))["assignee"] is None
    api.ok(api.post(f"/tasks/{task}/claim", "liuyang"))
    api.ok(api.post(f"/tasks/{task}/complete", "liuyang", {"data": APPROVE}))
    error(api.post(f"/tasks/{task}/unclaim", "liuyang"), 409)
    error(api.post("/tasks/nope/unclaim", "liuyang"), 404)


def test_assign_by_a_manager_to_a_holder_of_the_role(api: Api) -> None:
    api.engine.identity.add_user("gaofeng", ["ops_manager"], "高峰")
    task = api.open_task(submitted(api), "approve_ops")["id"]
    assert error(api.post(f"/tasks/{task}/assign", "zhangwei", {"user": "gaofeng"}), 403)["details"] == {
        "rule": "tasks.assign"}
    assert error(api.post(f"/tasks/{task}/assign", "liuyang", {"user": "lina"}), 403)["details"] == {"rule": "role"}
    error(api.post(f"/tasks/{task}/assign", "liuyang", {"user": "nobody"}), 404)
    assert error(api.post(f"/tasks/{task}/assign", "liuyang", {}), 422)["details"][0]["field"] == "user"
    assert api.ok(api.post(f"/tasks/{task}/assign", "liuyang", {"user": "gaofeng"}))["assignee"] == "gaofeng"
    api.ok(api.post(f"/tasks/{task}/complete", "gaofeng", {"data": APPROVE}))
    error(api.post(f"/tasks/{task}/assign", "liuyang", {"user": "liuyang"}), 409)


def test_complete_validates_the_form_with_field_errors(api: Api) -> None:
    case = api.start("change", "zhangwei", {"title": "变更"})
    task = api.open_task(case, "request")["id"]
    failed = error(api.post(f"/tasks/{task}/complete", "zhangwei", {"data": change_request(reviewer="lina")}),
                   422, "validation_failed")
    assert [d["field"] for d in failed["details"]] == ["reviewer"]
    missing = error(api.post(f"/tasks/{task}/complete", "zhangwei", {"data": {"title": "x"}}), 422)
    assert {"purpose", "plan", "rollback_plan"} <= {d["field"] for d in missing["details"]}
    assert error(api.post(f"/tasks/{task}/complete", "zhangwei", {"data": "x"}), 422)["details"][0]["field"] == "data"


def test_double_completion_is_409(api: Api) -> None:
    task = api.open_task(submitted(api), "approve_ops")["id"]
    done = api.ok(api.post(f"/tasks/{task}/complete", "liuyang", {"data": APPROVE}))
    assert done["state"] == "completed" and [t["name"] for t in done["next_tasks"]] == []  # waits for the window
    conflict = error(api.post(f"/tasks/{task}/complete", "liuyang", {"data": APPROVE}), 409, "conflict")
    assert "already completed by liuyang" in conflict["message"]


def test_complete_refusals(api: Api) -> None:
    api.engine.identity.add_user("sunli", ["staff", "ops_manager"], "孙力")
    task = api.open_task(submitted(api, "sunli"), "approve_ops")["id"]
    assert error(api.post(f"/tasks/{task}/complete", "sunli", {"data": APPROVE}), 403)["details"] == {
        "rule": "separation_of_duties"}
    assert error(api.post(f"/tasks/{task}/complete", "lina", {"data": APPROVE}), 403)["details"] == {"rule": "role"}
    error(api.post("/tasks/nope/complete", "liuyang", {"data": APPROVE}), 404)


def test_an_extra_key_is_refused_with_422_naming_it_and_nothing_moves(api: Api) -> None:
    case = submitted(api, rollback_tested=False, test_case_id=evidence_for(Flow(api.engine)))
    task = api.open_task(case, "approve_ops")["id"]
    api.ok(api.post(f"/tasks/{task}/claim", "liuyang"))
    refused = error(api.post(f"/tasks/{task}/complete", "liuyang",
                             {"data": {"decision": "approve", "approval_route": "ops_manager"}}), 422)
    assert [d["field"] for d in refused["details"]] == ["approval_route"]
    assert api.open_task(case, "approve_ops")["id"] == task  # still open: nothing saved
    api.ok(api.post(f"/tasks/{task}/complete", "liuyang", {"data": APPROVE}))
    assert api.open_task(case, "approve_it_head")  # the IT head still approves


def test_a_forged_type_marker_is_refused_and_the_case_stays_readable(api: Api) -> None:
    case = api.start("change", "zhangwei", {"title": "变更"})
    task = api.open_task(case, "request")["id"]
    forged = change_request(plan_document={"typename": "datetime", "value": "bad"})
    refused = error(api.post(f"/tasks/{task}/complete", "zhangwei", {"data": forged}), 422)
    assert "plan_document.typename" in [d["field"] for d in refused["details"]]
    start = error(api.post("/instances", "zhangwei", {"process_id": "change",
                                                      "data": {"title": {"typename": "datetime", "value": "x"}}}), 422)
    assert [d["field"] for d in start["details"]] == ["title.typename"]
    preset = error(api.post("/instances", "zhangwei", {"process_id": "change",
                                                       "data": {"approve_ops": {"decision": "approve"}}}), 422)
    assert [d["field"] for d in preset["details"]] == ["approve_ops"]
    assert api.ok(api.get(f"/instances/{case}", "zhangwei"))["status"] == "running"


def test_the_case_lists_its_approval_record_with_labels(api: Api) -> None:
    case = submitted(api)
    task = api.open_task(case, "approve_ops")["id"]
    api.ok(api.post(f"/tasks/{task}/claim", "liuyang"))
    api.ok(api.post(f"/tasks/{task}/complete", "liuyang", {"data": {"decision": "return", "comment": "补充回退步骤"}}))
    body = api.ok(api.get(f"/instances/{case}", "zhangwei"))
    returned = body["record"][-1]
    assert (returned["bpmn_id"], returned["completed_by"], returned["outcome"], returned["outcome_label"]) == (
        "approve_ops", "liuyang", "return", "退回")
    assert returned["answers"] == [{"field": "comment", "label": "审批意见", "value": "补充回退步骤",
                                    "text": "补充回退步骤"}]
    request = api.open_task(case, "request")
    assert (request["assignee"], request["returned_by"]) == ("zhangwei", "liuyang")
    assert request["return_reason"] == "运维负责人退回：补充回退步骤"
    assert "approve_ops" not in body["data"]  # shown once, in the record
