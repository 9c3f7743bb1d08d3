"""REST API: tokens, processes, instances, audit, and the error format (a test per success and error code)."""

from __future__ import annotations

from pathlib import Path

from engine import ProcessEngine
from tests.conftest import FIXTURES, ROOT, make_settings
from tests.webui.test_api_support import Api, api, api_clock, api_engine, app  # noqa: F401
from webui import create_app


def error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]


# tokens ---------------------------------------------------------------------------------------------
def test_password_gives_an_expiring_token_that_works_until_revoked(api: Api) -> None:
    api.engine.identity.set_password("zhangwei", "s3cret-pw-2026")
    body = api.ok(api.post("/auth/token", json={"username": "zhangwei", "password": "s3cret-pw-2026"}), 201)
    assert body["token_type"] == "Bearer" and body["roles"] == ["staff"]
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert api.client.get("/api/v1/tasks", headers=headers).status_code == 200
    assert api.client.delete("/api/v1/auth/token", headers=headers).get_json() == {"revoked": True}
    error(api.client.get("/api/v1/tasks", headers=headers), 401, "unauthorized")


def test_wrong_password_is_401(api: Api) -> None:
    api.engine.identity.set_password("zhangwei", "s3cret-pw-2026")
    error(api.post("/auth/token", json={"username": "zhangwei", "password": "wrong"}), 401, "unauthorized")
    error(api.post("/auth/token", json={"username": "nobody", "password": "wrong"}), 401, "unauthorized")


def test_token_request_without_password_is_422_naming_the_field(api: Api) -> None:
    details = error(api.post("/auth/token", json={"username": "zhangwei"}), 422, "validation_failed")["details"]
    assert details == [{"field": "password", "message": "Missing data for required field."}]


def test_expired_token_is_401(api: Api, api_clock) -> None:
    headers = api.headers("zhangwei")
    assert api.client.get("/api/v1/tasks", headers=headers).status_code == 200
    api_clock.advance(days=91)
    error(api.client.get("/api/v1/tasks", headers=headers), 401)


def test_no_or_malformed_token_is_401_with_a_challenge(api: Api) -> None:
    response = api.get("/processes")
    error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    error(api.client.get("/api/v1/processes", headers={"Authorization": "Basic abc"}), 401)
    error(api.client.get("/api/v1/processes", headers={"Authorization": "Bearer ofl_nope"}), 401)
    error(api.client.delete("/api/v1/auth/token"), 401)


def test_malformed_json_is_400(api: Api) -> None:
    error(api.client.post("/api/v1/instances", data="{not json", headers=api.headers("zhangwei"),
                          content_type="application/json"), 400, "bad_request")
    error(api.post("/instances", "zhangwei", json=[1, 2]), 400, "bad_request")


def test_unknown_path_and_method_are_json_errors(api: Api) -> None:
    error(api.get("/no/such/thing", "zhangwei"), 404, "not_found")
    response = api.call("PUT", "/tasks", "zhangwei")
    error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"
    error(api.get("/instances/abc", "zhangwei"), 404)


# processes ------------------------------------------------------------------------------------------
def test_processes_are_listed_a_page_at_a_time(api: Api) -> None:
    body = api.ok(api.get("/processes", "zhangwei"))
    ids = [p["id"] for p in body["items"]]
    assert {"change", "incident"} <= set(ids) and ids == sorted(ids)
    assert body["total"] == len(ids) and body["items"][0]["version"] == 1
    page = api.ok(api.get("/processes?limit=1&offset=1", "zhangwei"))
    assert ([p["id"] for p in page["items"]], page["total"], page["limit"], page["offset"]) == (
        ids[1:2], len(ids), 1, 1)
    details = error(api.get("/processes?limit=0", "zhangwei"), 422)["details"]
    assert details[0]["field"] == "limit"


def _incident_files(rename: str | None = None) -> list[dict[str, str]]:
    bpmn = (ROOT / "processes" / "incident.bpmn").read_text(encoding="utf-8")
    if rename:
        bpmn = bpmn.replace('name="事件管理" isExecutable', f'name="{rename}" isExecutable')
    return [{"name": "incident.bpmn", "content": bpmn}] + [
        {"name": n, "content": (ROOT / "processes" / n).read_text(encoding="utf-8")}
        for n in ("incident_grading.dmn", "incident_level.dmn")]


def test_process_owner_deploys_a_new_version(api: Api) -> None:
    body = api.ok(api.post("/processes", "maqing", {"files": _incident_files("事件管理（新版）")}), 201)
    assert body["deployed"] == [{"id": "incident", "name": "事件管理（新版）", "version": 2, "changed": True}]
    unchanged = api.ok(api.post("/processes", "maqing", {"files": _incident_files("事件管理（新版）")}), 201)
    assert unchanged["deployed"][0]["changed"] is False
    xml = api.get("/processes/incident/bpmn?version=1", "zhangwei")
    assert xml.status_code == 200 and xml.mimetype == "application/xml" and "事件管理（新版）" not in xml.text
    assert "事件管理（新版）" in api.get("/processes/incident/bpmn", "zhangwei").text


def test_only_a_process_owner_may_deploy(api: Api) -> None:
    refusal = error(api.post("/processes", "zhangwei", {"files": _incident_files()}), 403, "forbidden")
    assert refusal["details"] == {"rule": "process.deploy"} and "process_owner" in refusal["message"]


def test_invalid_bpmn_is_422_with_the_lint_problems(api: Api) -> None:
    files = [{"name": "two_lanes.bpmn", "content": (FIXTURES / "two_lanes.bpmn").read_text(encoding="utf-8")}]
    problems = error(api.post("/processes", "maqing", {"files": files}), 422, "lint_failed")["details"]
    assert problems and all({"file", "line", "message"} <= set(p) for p in problems)
    assert any("access_request.json" in p["message"] for p in problems)
    bad = error(api.post("/processes", "maqing", {"files": [{"name": "../x.txt", "content": "x"}]}), 422)
    assert bad["details"][0]["field"] == "files[0].name"


def test_a_timer_cycle_under_a_minute_is_refused_through_the_api_too(api: Api) -> None:
    bpmn = (FIXTURES / "timer_boundary.bpmn").read_text(encoding="utf-8").replace('"R2/PT1H"', '"R/PT0S"')
    problems = error(api.post("/processes", "maqing", {"files": [{"name": "remind.bpmn", "content": bpmn}]}), 422,
                     "lint_failed")["details"]
    assert any("remind" in p["message"] and "at least a minute" in p["message"] for p in problems), problems
    assert "timer_boundary" not in {p["id"] for p in api.ok(api.get("/processes", "maqing"))["items"]}


def test_bpmn_of_an_unknown_process_or_version_is_404(api: Api) -> None:
    error(api.get("/processes/nope/bpmn", "zhangwei"), 404, "not_found")
    error(api.get("/processes/change/bpmn?version=9", "zhangwei"), 404)
    error(api.get("/processes/change/bpmn?version=x", "zhangwei"), 422)


# instances ------------------------------------------------------------------------------------------
def test_start_returns_201_with_the_instance(api: Api) -> None:
    body = api.ok(api.post("/instances", "zhangwei", {"process_id": "change", "data": {"title": "参数调整"},
                                                      "business_key": "CHG-7"}), 201)
    assert (body["process_id"], body["status"], body["title"], body["business_key"], body["version"]) == (
        "change", "running", "参数调整", "CHG-7", 1)
    assert body["started_by"] == "zhangwei"


def test_start_errors(api: Api) -> None:
    error(api.post("/instances", "zhangwei", {"process_id": "nope"}), 404, "not_found")
    details = error(api.post("/instances", "zhangwei", {"data": []}), 422)["details"]
    assert {d["field"] for d in details} == {"process_id", "data"}
    error(api.post("/instances", "zhangwei", {"process_id": "change", "extra": 1}), 422)


def test_instances_list_filters_and_shows_only_readable_cases(api: Api) -> None:
    mine = api.start("incident", "lina", {"title": "A"})
    other = api.start("change", "zhangwei", {"title": "B"})  # its open task is staff's: not lina's
    body = api.ok(api.get("/instances", "lina"))
    assert [i["id"] for i in body["items"]] == [mine] and body["total"] == 1
    everything = api.ok(api.get("/instances", "zhuhong"))  # a supervisor reads every case
    assert [i["id"] for i in everything["items"]] == [other, mine]
    assert [i["id"] for i in api.ok(api.get("/instances?process_id=change", "zhuhong"))["items"]] == [other]
    assert api.ok(api.get("/instances?started_by=lina&status=completed", "zhuhong"))["total"] == 0
    assert api.ok(api.get("/instances?limit=1&offset=1", "zhuhong"))["items"][0]["id"] == mine
    error(api.get("/instances?status=sleeping", "zhuhong"), 422)


def test_instance_detail_and_who_may_read_it(api: Api) -> None:
    case = api.start("change", "zhangwei", {"title": "A"})
    body = api.ok(api.get(f"/instances/{case}", "zhangwei"))
    assert [t["name"] for t in body["open_tasks"]] == ["request"]
    assert body["history"][0]["action"] == "case.started" and body["links"] == []
    assert body["process_name"] == "系统变更"
    refusal = error(api.get(f"/instances/{case}", "lina"), 403, "forbidden")
    assert refusal["details"] == {"rule": "read"}
    error(api.get("/instances/999999", "zhangwei"), 404, "not_found")


def test_cancel_with_a_reason(api: Api) -> None:
    case = api.start("change", "zhangwei", {"title": "A"})
    error(api.post(f"/instances/{case}/cancel", "lina", {"reason": "不需要了"}), 403)
    details = error(api.post(f"/instances/{case}/cancel", "zhangwei", {"reason": "  "}), 422)["details"]
    assert details[0]["field"] == "reason"
    body = api.ok(api.post(f"/instances/{case}/cancel", "zhangwei", {"reason": "不需要了"}))
    assert body["status"] == "cancelled" and body["open_tasks"] == []
    error(api.post(f"/instances/{case}/cancel", "zhangwei", {"reason": "again"}), 409, "conflict")
    error(api.post("/instances/999999/cancel", "zhangwei", {"reason": "x"}), 404)


# audit ----------------------------------------------------------------------------------------------
def test_audit_of_a_case_for_its_readers(api: Api) -> None:
    case = api.start("change", "zhangwei", {"title": "A"})
    body = api.ok(api.get(f"/audit?instance_id={case}", "zhangwei"))
    assert [e["action"] for e in body["items"]] == ["case.started"] and body["total"] == 1
    assert len(body["items"][0]["hash"]) == 64
    error(api.get(f"/audit?instance_id={case}", "lina"), 403)
    error(api.get("/audit?instance_id=999999", "zhangwei"), 404)


def test_whole_audit_trail_for_privileged_readers_only(api: Api) -> None:
    api.start("change", "zhangwei", {"title": "A"})
    assert error(api.get("/audit", "zhangwei"), 403)["details"] == {"rule": "audit.read_all"}
    body = api.ok(api.get("/audit?limit=2", "sunyan"))  # compliance
    assert len(body["items"]) == 2 and body["items"][0]["action"] == "audit.keyed"  # the chain's first event
    tail = api.ok(api.get(f"/audit?offset={body['total'] - 3}", "sunyan"))["items"]
    assert [(e["action"], e["actor"]) for e in tail] == [("token.created", "zhangwei"), ("case.started", "zhangwei"),
                                                         ("token.created", "sunyan")]
    error(api.get("/audit?instance_id=0", "sunyan"), 422)


# the document ---------------------------------------------------------------------------------------
def test_openapi_document_and_page_describe_every_endpoint(api: Api, app) -> None:
    doc = api.ok(api.get("/openapi.json"))
    assert doc["openapi"].startswith("3.") and doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operations = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert ("POST", "/alerts") in operations and ("POST", "/tasks/{task_id}/complete") in operations
    assert len(operations) == 25 and ("GET", "/regulatory-reports") in operations
    assert ("GET", "/config-items") in operations and ("GET", "/config-items/{item_id}") in operations
    page = api.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "<script" not in page.text and "http" not in page.text.split("</style>")[0]
    for method, path in operations:
        assert f"{method}</span> <code>/api/v1{path}</code>" in page.text



def test_nul_characters_are_refused_with_422_not_a_server_error(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.engine.identity.create_token('zhangwei')}"}
    response = api.client.post("/api/v1/messages", json={"name": "a\x00b", "correlation": {}, "payload": {}},
                               headers=headers)
    assert error(response, 422, "validation_failed")["details"] == [
        {"field": "name", "message": "contains a NUL character"}]
    assert api.client.get("/api/v1/tasks/x%00y", headers=headers).status_code == 404



def test_ready_only_once_the_database_is_migrated(database_url: str, tmp_path: Path) -> None:
    fresh = ProcessEngine(make_settings(database_url, tmp_path))
    try:
        client = create_app(fresh, {"TESTING": True}).test_client()
        assert client.get("/healthz").get_json() == {"status": "ok"}
        pending = client.get("/readyz")
        assert (pending.status_code, pending.get_json()) == (
            503, {"status": "unavailable", "database": "migrations pending: run 'opsflow init'"})
        fresh.migrate()
        ready = client.get("/readyz")
        assert (ready.status_code, ready.get_json()) == (200, {"status": "ok", "database": "ok"})
    finally:
        fresh.close()
