"""Done-when of the API issue: another system drives a change to closure and monitoring opens and updates an
incident, using only HTTP calls (time passing and the timer ticker aside, which are not API calls)."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.processes.test_change import APPROVE, IMPLEMENTED, SATURDAY, SUCCESS, change_request
from tests.webui.test_api_support import Api, api, api_clock, api_engine, app  # noqa: F401


def test_a_change_is_started_approved_implemented_and_closed_through_the_api(api: Api, api_clock) -> None:
    case = api.ok(api.post("/instances", "zhangwei", {"process_id": "change", "data": {"title": "办公系统参数调整"},
                                                      "business_key": "CHG-2026-001"}), 201)["id"]
    api.do(case, "request", "zhangwei", change_request())
    assert api.case(case)["open_tasks"][0]["name"] == "approve_ops"
    api.do(case, "approve_ops", "liuyang", APPROVE)
    # The window opens on Saturday; `opsflow tick` (the timer ticker) moves the case on.
    api_clock.now = datetime.fromisoformat(SATURDAY[0]) + timedelta(seconds=1)
    api.engine.runtime.fire_due_timers()
    assert api.open_task(case, "implement")["assignee"] == "lina"
    api.do(case, "implement", "lina", IMPLEMENTED)
    api.do(case, "review", "wangqiang", SUCCESS)
    api.do(case, "verify_tech", "lina", SUCCESS)
    api.do(case, "verify_business", "zhoujie", SUCCESS)
    api.do(case, "close", "liuyang", {"outcome": "成功", "config_items_updated": True,
                                      "config_items": ["OA-参数-会话超时"]})
    detail = api.case(case, "zhangwei")
    assert detail["status"] == "completed" and detail["data"]["outcome"] == "成功"
    performed = [(e["actor"], e["data"]["task"]) for e in api.ok(api.get(f"/audit?instance_id={case}&limit=500",
                                                                           "zhangwei"))["items"]
                 if e["action"] == "task.completed"]
    assert performed == [("zhangwei", "request"), ("liuyang", "approve_ops"), ("lina", "implement"),
                         ("wangqiang", "review"), ("lina", "verify_tech"), ("zhoujie", "verify_business"),
                         ("liuyang", "close")]


def test_an_alert_opens_an_incident_and_its_repeat_and_resolution_update_it(api: Api) -> None:
    alert = {"source": "prometheus", "fingerprint": "hq-feed-stale", "severity": "critical", "system": "行情",
             "text": "行情源 30 秒无更新", "occurred_at": "2026-11-20T18:02:00+08:00"}
    opened = api.ok(api.post("/alerts", "zabbix", alert), 201)
    case = opened["instance_id"]
    respond = api.open_task(case, "respond")
    assert api.ok(api.get(f"/tasks/{respond['id']}", "lina"))["case_data"]["priority"] == "P1"
    assert respond["id"] in {t["id"] for t in api.ok(api.get("/tasks?scope=group", "lina"))["items"]}
    repeat = api.ok(api.post("/alerts", "zabbix", {**alert, "occurred_at": "2026-11-20T18:07:00+08:00"}))
    assert (repeat["action"], repeat["instance_id"]) == ("appended", case)
    api.do(case, "respond", "lina", {"assessment": "行情网关断连"})
    resolved = api.ok(api.post("/alerts", "zabbix", {**alert, "status": "resolved",
                                                    "occurred_at": "2026-11-20T18:20:00+08:00"}))
    assert (resolved["action"], resolved["instance_id"], resolved["occurrences"]) == ("resolved", case, 3)
    history = [e["action"] for e in api.case(case, "lina")["history"]]
    assert history.index("alert.opened") < history.index("alert.appended") < history.index("alert.resolved")
