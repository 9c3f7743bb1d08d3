"""REST API: BPMN messages for waiting cases, and monitoring alerts that open and update incidents."""

from __future__ import annotations

from tests.webui.test_api_endpoints import error
from tests.webui.test_api_support import Api, api, api_clock, api_engine, app  # noqa: F401

# A case that waits for `deployment_done` with its own change_ref, then ends.
WAITING = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="defs_wait"
                  targetNamespace="http://opsflow.example/test">
  <bpmn:message id="msg_deployed" name="deployment_done" />
  <bpmn:correlationProperty id="change_ref" name="change_ref">
    <bpmn:correlationPropertyRetrievalExpression messageRef="msg_deployed">
      <bpmn:messagePath>change_ref</bpmn:messagePath>
    </bpmn:correlationPropertyRetrievalExpression>
  </bpmn:correlationProperty>
  <bpmn:collaboration id="collab">
    <bpmn:participant id="p" processRef="await_deploy" />
    <bpmn:correlationKey id="key" name="change_key">
      <bpmn:correlationPropertyRef>change_ref</bpmn:correlationPropertyRef>
    </bpmn:correlationKey>
  </bpmn:collaboration>
  <bpmn:process id="await_deploy" name="等待部署" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:messageEventDefinition id="med" messageRef="msg_deployed" /></bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait" />
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def deploy_waiting(api: Api) -> None:
    api.ok(api.post("/processes", "maqing", {"files": [{"name": "await_deploy.bpmn", "content": WAITING}]}), 201)


def test_message_goes_only_to_the_case_it_correlates_with(api: Api) -> None:
    deploy_waiting(api)
    first = api.start("await_deploy", "lina", {"change_ref": "CHG-1"})
    second = api.start("await_deploy", "lina", {"change_ref": "CHG-2"})
    body = api.ok(api.post("/messages", "lina", {"name": "deployment_done", "correlation": {"change_ref": "CHG-2"},
                                                  "payload": {"version": "1.2"}}))
    assert body == {"instance_id": second}
    assert api.case(second)["status"] == "completed" and api.case(first)["status"] == "running"


def test_a_message_needs_the_grant_and_a_case_the_sender_may_read(api: Api) -> None:
    """A message steers the case it reaches: not anyone's to send into anyone's case."""
    deploy_waiting(api)
    case = api.start("await_deploy", "lina", {"change_ref": "CHG-7"})
    message = {"name": "deployment_done", "correlation": {"change_ref": "CHG-7"}}
    refusal = error(api.post("/messages", "zhangwei", message), 403, "forbidden")  # staff: no grant
    assert refusal["details"]["rule"] == "case.message"
    refusal = error(api.post("/messages", "wangqiang", message), 403, "forbidden")  # granted, not his case
    assert refusal["details"]["rule"] == "read" and f"case {case}" in refusal["message"]
    assert api.case(case)["status"] == "running"
    assert api.ok(api.post("/messages", "lina", message)) == {"instance_id": case}


def test_message_no_case_waits_for_is_404_with_the_reason(api: Api) -> None:
    deploy_waiting(api)
    api.start("await_deploy", "lina", {"change_ref": "CHG-1"})
    refusal = error(api.post("/messages", "lina", {"name": "deployment_done", "correlation": {"change_ref": "CHG-9"}}),
                    404, "not_found")
    assert "no case is waiting for message 'deployment_done'" in refusal["message"]
    error(api.post("/messages", "lina", {"name": "no_such_message"}), 404)


def test_a_new_case_never_takes_a_message_meant_for_another(api: Api) -> None:
    deploy_waiting(api)
    message = {"name": "deployment_done", "correlation": {"change_ref": "CHG-5"}}
    error(api.post("/messages", "lina", message), 404)  # CHG-5's case does not exist yet
    other = api.start("await_deploy", "lina", {"change_ref": "CHG-6"})
    error(api.post("/messages", "lina", message), 404)
    mine = api.start("await_deploy", "lina", {"change_ref": "CHG-5"})
    assert api.ok(api.post("/messages", "lina", message)) == {"instance_id": mine}
    assert api.case(other)["status"] == "running"


def test_ambiguous_message_is_409_and_a_nameless_one_422(api: Api) -> None:
    deploy_waiting(api)
    api.start("await_deploy", "lina", {"change_ref": "CHG-1"})
    api.start("await_deploy", "lina", {"change_ref": "CHG-1"})
    error(api.post("/messages", "lina", {"name": "deployment_done", "correlation": {"change_ref": "CHG-1"}}), 409)
    assert error(api.post("/messages", "lina", {"correlation": {}}), 422)["details"][0]["field"] == "name"


# alerts -------------------------------------------------------------------------------------------
def alert(**changes) -> dict:
    body = {"source": "zabbix", "fingerprint": "web-login-latency", "status": "firing", "severity": "major",
            "system": "网上交易", "text": "登录接口 P99 延迟超过 3 秒", "occurred_at": "2026-11-20T18:01:00+08:00"}
    body.update(changes)
    return body


def test_new_alert_opens_an_incident_graded_by_the_dmn(api: Api) -> None:
    opened = api.ok(api.post("/alerts", "zabbix", alert()), 201)
    assert (opened["action"], opened["duplicate"], opened["occurrences"]) == ("opened", False, 1)
    case = api.case(opened["instance_id"])
    assert case["process_id"] == "incident" and case["started_by"] == "zabbix"
    assert "网上交易" in case["title"]
    respond = api.open_task(opened["instance_id"], "respond")  # monitoring skips the manual report
    data = api.ok(api.get(f"/tasks/{respond['id']}", "lina"))["case_data"]
    assert (data["source"], data["impact"], data["urgency"], data["priority"]) == ("monitoring", "high", "medium", "P2")
    assert data["system_class"] == "网上交易" and data["level"]


def test_repeats_are_appended_resolution_noted_and_retries_change_nothing(api: Api) -> None:
    case = api.ok(api.post("/alerts", "zabbix", alert()), 201)["instance_id"]
    retry = api.ok(api.post("/alerts", "zabbix", alert()))
    assert (retry["duplicate"], retry["instance_id"], retry["occurrences"]) == (True, case, 1)
    again = api.ok(api.post("/alerts", "zabbix", alert(occurred_at="2026-11-20T18:11:00+08:00", severity="critical")))
    assert (again["action"], again["duplicate"], again["instance_id"], again["occurrences"]) == (
        "appended", False, case, 2)
    resolved = api.ok(api.post("/alerts", "zabbix", alert(status="resolved", occurred_at="2026-11-20T18:30:00+08:00")))
    assert (resolved["action"], resolved["status"], resolved["occurrences"]) == ("resolved", "resolved", 3)
    assert api.ok(api.post("/alerts", "zabbix", alert(status="resolved", occurred_at="2026-11-20T18:30:00+08:00")))[
        "duplicate"] is True
    actions = [e["action"] for e in api.case(case)["history"] if e["action"].startswith("alert.")]
    assert actions == ["alert.opened", "alert.appended", "alert.resolved"]
    assert api.case(case)["status"] == "running"  # people close incidents, not monitoring


def test_alert_after_its_incident_closed_opens_a_new_one(api: Api) -> None:
    first = api.ok(api.post("/alerts", "zabbix", alert()), 201)["instance_id"]
    api.ok(api.post(f"/instances/{first}/cancel", "liuyang", {"reason": "误报"}))
    second = api.ok(api.post("/alerts", "zabbix", alert(occurred_at="2026-11-21T09:00:00+08:00")), 201)
    assert second["instance_id"] != first and second["action"] == "opened"


def test_only_alert_sources_post_alerts_and_each_only_its_own(api: Api) -> None:
    """A staff token cannot flood the incident queue, and one source cannot resolve another's alert."""
    refusal = error(api.post("/alerts", "wuhao", alert()), 403, "forbidden")
    assert refusal["details"]["rule"] == "alerts.post" and "monitoring" in refusal["message"]
    assert api.ok(api.get("/instances?process_id=incident", "liuyang"))["total"] == 0
    api.engine.identity.add_user("prometheus", ["monitoring"], password="Prom-source-2026")
    case = api.ok(api.post("/alerts", "zabbix", alert()), 201)["instance_id"]
    for status in ("resolved", "firing"):
        later = alert(status=status, occurred_at="2026-11-20T18:40:00+08:00")
        refusal = error(api.post("/alerts", "prometheus", later), 403, "forbidden")
        assert refusal["details"]["rule"] == "alert_source" and "raised by zabbix" in refusal["message"]
    history = [e["action"] for e in api.case(case, "liuyang")["history"] if e["action"].startswith("alert.")]
    assert history == ["alert.opened"]


def test_alert_errors(api: Api) -> None:
    refusal = error(api.post("/alerts", "zabbix", alert(status="resolved")), 404, "not_found")
    assert "nothing to resolve" in refusal["message"]
    details = error(api.post("/alerts", "zabbix", alert(severity="apocalyptic", system="")), 422)["details"]
    assert {d["field"] for d in details} == {"severity", "system"}
    error(api.post("/alerts", "zabbix", alert(occurred_at="2026-11-20T18:01:00")), 422)  # no zone
    error(api.post("/alerts", "zabbix", alert(system_class="火星")), 400)
    error(api.post("/alerts", None, alert()), 401)
