"""Cancelling over the API: a reportable incident's reporter cannot stop its report clock."""

from __future__ import annotations

from tests.processes.test_incident import incident_report
from tests.webui.test_api_endpoints import error
from tests.webui.test_api_support import Api, api, api_clock, api_engine, app  # noqa: F401


def p1_incident(api: Api) -> tuple[int, int]:
    case = api.start("incident", "zhangwei", {"title": "网上交易中断"})
    api.do(case, "report", "zhangwei", incident_report(api.engine, impact="high", urgency="high"))
    [link] = api.case(case)["links"]
    return case, link["instance_id"]


def test_the_reporter_of_a_p1_incident_gets_403_and_both_cases_keep_running(api: Api) -> None:
    case, emergency = p1_incident(api)
    for target in (case, emergency):
        refusal = error(api.post(f"/instances/{target}/cancel", "zhangwei", {"reason": "报错了"}), 403, "forbidden")
        assert refusal["details"]["rule"] == "case.cancel" and "report clock" in refusal["message"]
    assert [api.case(c)["status"] for c in (case, emergency)] == ["running", "running"]
    refused = [e for e in api.case(case)["history"] if e["action"] == "case.cancel_refused"]
    assert refused[0]["actor"] == "zhangwei"


def test_a_p1_incident_is_cancelled_after_a_second_persons_signoff(api: Api) -> None:
    case, emergency = p1_incident(api)
    asked = api.post(f"/instances/{case}/cancel", "liuyang", {"reason": "重复报告"})
    assert asked.status_code == 202 and asked.get_json()["status"] == "running"
    error(api.post(f"/instances/{case}/cancel", "liuyang", {"reason": "再催"}), 409, "conflict")
    error(api.post(f"/instances/{case}/cancel", "liuyang", {"reason": ""}), 422)  # no reason: nothing asked
    signed = api.ok(api.post(f"/instances/{case}/cancel", "sunyan", {"reason": "核实重复"}))
    assert signed["status"] == "cancelled" and api.case(emergency)["status"] == "cancelled"
    error(api.post(f"/instances/{case}/cancel", "sunyan", {"reason": "again"}), 409, "conflict")
