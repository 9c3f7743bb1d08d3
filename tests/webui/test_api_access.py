"""Authorisation matrix: every API endpoint × every role × owner/non-owner, generated from the route table.

Each endpoint in Flask's url_map for the `api` blueprint must be declared in `webui.api.access.ROUTES`
(that is where its access rule lives) and have an entry in EXPECTED here saying who may call it;
a new endpoint without both fails `test_every_api_endpoint_declares_its_access_rule`.
The expectations restate the engine's rules (CONTRACT.md, processes/), so a change in who may do
what shows here as a failing cell.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.processes.test_change import APPROVE, change_request
from tests.webui.test_api_intake import WAITING
from tests.webui.test_api_support import Api, api, api_clock, api_engine, app  # noqa: F401
from webui.api.access import PUBLIC, ROUTES

ROLES = [r["key"] for r in json.loads((ROOT / "processes" / "roles.json").read_text(encoding="utf-8"))]
# Restated from processes/access.json on purpose: a changed grant shows here as failing cells.
READ_ALL = {"supervisor", "compliance", "ops_manager", "it_head", "admin"}  # case.read_all
AUDIT_ALL = {"supervisor", "compliance", "admin"}  # audit.read_all
MANAGERS = {"ops_manager", "supervisor", "it_head"}  # tasks.assign: assign and release others' tasks
CANCELLERS = {"supervisor", "ops_manager"}  # case.cancel: others' cases
EVERYONE_READERS = {"supervisor", "admin", "compliance", "ops_manager", "it_head"}  # tasks.read_all
MESSENGERS = {"ops_engineer", "duty_officer", "ops_manager", "emergency_lead", "it_head", "test_lead"}
FALLBACK = {"api.unknown"}  # the JSON 404/405 for paths no endpoint serves


class Cell:
    """One caller (a user holding exactly `role`) and the objects they own or not."""

    def __init__(self, api: Api, role: str, owner: bool) -> None:
        self.api, self.role, self.owner = api, role, owner
        self.user = f"r_{role}"
        if api.engine.identity.find(self.user) is None:
            api.engine.identity.add_user(self.user, [role])
        self.actor = api.engine.identity.get(self.user)

    @property
    def someone(self) -> str:
        """Whose objects the caller acts on: their own, or zhangwei's (a staff member)."""
        return self.user if self.owner else "zhangwei"

    def incident(self) -> int:
        """An incident reported by `someone`: its report task is assigned to them (lane staff)."""
        actor = self.api.engine.identity.get(self.someone)
        return self.api.engine.runtime.start("incident", actor, {"title": "事件"}, check_role=False).id

    def report_task(self) -> str:
        case = self.incident()
        return self.api.engine.runtime.show(case).open_tasks[0].id

    def approval(self) -> str:
        """approve_ops of a change `someone` requested (separation of duties bars the requester)."""
        eng = self.api.engine
        actor = eng.identity.get(self.someone)
        case = eng.runtime.start("change", actor, {"title": "变更"}, check_role=False).id
        eng.tasks.complete(eng.runtime.show(case).open_tasks[0].id, actor, change_request())
        return eng.runtime.show(case).open_tasks[0].id

    def call(self, method: str, path: str, body: Any = None) -> int:
        return self.api.call(method, path, self.user, body).status_code


def expect(allowed: bool, status: int, ok: int = 200) -> None:
    assert status == (ok if allowed else 403), (allowed, status)


def readable(cell: Cell) -> bool:
    # the starter (the report task is assigned to them, so other staff do not read it) and case.read_all
    return cell.owner or cell.role in READ_ALL


def _processes(c: Cell) -> None:
    assert c.call("GET", "/processes") == 200


def _deploy(c: Cell) -> None:
    content = (ROOT / "processes" / "incident.bpmn").read_text(encoding="utf-8")
    files = [{"name": "incident.bpmn", "content": content}] + [
        {"name": n, "content": (ROOT / "processes" / n).read_text(encoding="utf-8")}
        for n in ("incident_grading.dmn", "incident_level.dmn")]
    expect(c.role == "process_owner", c.call("POST", "/processes", {"files": files, "check": True}), 201)


def _bpmn(c: Cell) -> None:
    assert c.call("GET", "/processes/change/bpmn") == 200


def _start(c: Cell) -> None:
    assert c.call("POST", "/instances", {"process_id": "incident"}) == 201  # no start role
    expect(c.role == "staff", c.call("POST", "/instances", {"process_id": "change"}), 201)  # lane staff


def _list_instances(c: Cell) -> None:
    case = c.incident()
    body = c.api.get("/instances?limit=500", c.user).get_json()
    assert (case in {i["id"] for i in body["items"]}) is readable(c)


def _get_instance(c: Cell) -> None:
    expect(readable(c), c.call("GET", f"/instances/{c.incident()}"))


def _cancel(c: Cell) -> None:
    allowed = c.owner or c.role in CANCELLERS
    expect(allowed, c.call("POST", f"/instances/{c.incident()}/cancel", {"reason": "不再需要"}))


def _list_tasks(c: Cell) -> None:
    task = c.report_task()
    mine = c.api.get("/tasks?scope=mine&limit=500", c.user).get_json()["items"]
    assert (task in {t["id"] for t in mine}) is c.owner
    expect(c.role in EVERYONE_READERS, c.call("GET", "/tasks?scope=everyone"))


def _get_task(c: Cell) -> None:
    expect(readable(c), c.call("GET", f"/tasks/{c.report_task()}"))


def _claim(c: Cell) -> None:
    expect(c.role == "ops_manager" and not c.owner, c.call("POST", f"/tasks/{c.approval()}/claim"))


def _unclaim(c: Cell) -> None:
    expect(c.owner or c.role in MANAGERS, c.call("POST", f"/tasks/{c.report_task()}/unclaim"))


def _assign(c: Cell) -> None:
    expect(c.role in MANAGERS, c.call("POST", f"/tasks/{c.approval()}/assign", {"user": "liuyang"}))


def _complete(c: Cell) -> None:
    status = c.call("POST", f"/tasks/{c.approval()}/complete", {"data": APPROVE})
    expect(c.role == "ops_manager" and not c.owner, status)


def _message(c: Cell) -> None:
    eng = c.api.engine
    if not any(d.process_id == "await_deploy" for d in eng.repository.definitions()):
        from engine.spiff.parsing import SourceFile

        eng.repository.deploy([SourceFile("await_deploy.bpmn", WAITING.encode())])
    ref = f"CHG-{c.role}-{c.owner}"
    eng.runtime.start("await_deploy", eng.identity.get(c.someone), {"change_ref": ref})
    status = c.call("POST", "/messages", {"name": "deployment_done", "correlation": {"change_ref": ref}})
    expect(c.role in MESSENGERS and (c.owner or c.role in READ_ALL), status)


def _alert(c: Cell) -> None:
    body = {"source": "zabbix", "fingerprint": f"fp-{c.role}-{c.owner}", "severity": "minor", "system": "清算",
            "text": "批处理延迟"}
    expect(c.role == "monitoring", c.call("POST", "/alerts", body), 201)


def _audit(c: Cell) -> None:
    expect(readable(c), c.call("GET", f"/audit?instance_id={c.incident()}"))
    expect(c.role in AUDIT_ALL, c.call("GET", "/audit"))


def _failures(c: Cell) -> None:
    expect(c.role == "process_owner", c.call("GET", "/failures"))


def _retry_failure(c: Cell) -> None:
    # the grant is checked first: the process owner is told the case is unknown, everyone else is refused
    status = c.call("POST", "/failures/retry", {"instance_id": 2**31 - 1})
    assert status == (404 if c.role == "process_owner" else 403), status


def _regulatory_reports(c: Cell) -> None:
    expect(c.role in READ_ALL, c.call("GET", "/regulatory-reports"))


def _config_items(c: Cell) -> None:
    # the register is reference data: every role reads it (the linked cases inside follow the case rule)
    c.api.engine.configuration.import_items("cli", '[{"name": "办公自动化", "class": "非核心"}]', "ci.json")
    item = c.api.engine.configuration.list_items("办公自动化")[0].id
    expect(True, c.call("GET", "/config-items?search=x"))
    expect(True, c.call("GET", f"/config-items/{item}"))


def _create_token(c: Cell) -> None:
    # public: no role is needed or refused (422 here only because the password is missing)
    assert c.call("POST", "/auth/token", {"username": c.user}) == 422


def _revoke_token(c: Cell) -> None:
    token = c.api.engine.identity.create_token(c.user)
    headers = {"Authorization": f"Bearer {token}"}
    assert c.api.client.delete("/api/v1/auth/token", headers=headers).status_code == 200
    assert c.api.client.get("/api/v1/tasks", headers=headers).status_code == 401


def _docs(c: Cell) -> None:
    assert c.call("GET", "/openapi.json") == 200 and c.call("GET", "/docs") == 200


EXPECTED: dict[str, Callable[[Cell], None]] = {
    "api.create_token": _create_token, "api.revoke_token": _revoke_token,
    "api.list_processes": _processes, "api.deploy_processes": _deploy, "api.process_bpmn": _bpmn,
    "api.start_instance": _start, "api.list_instances": _list_instances, "api.get_instance": _get_instance,
    "api.cancel_instance": _cancel, "api.list_tasks": _list_tasks, "api.get_task": _get_task,
    "api.claim_task": _claim, "api.unclaim_task": _unclaim, "api.assign_task": _assign,
    "api.complete_task": _complete, "api.deliver_message": _message, "api.receive_alert": _alert,
    "api.list_audit": _audit, "api.list_failures": _failures, "api.retry_failure": _retry_failure,
    "api.openapi_json": _docs, "api.openapi_page": _docs, "api.list_regulatory_reports": _regulatory_reports,
    "api.list_config_items": _config_items, "api.get_config_item": _config_items,
}


def test_every_api_endpoint_declares_its_access_rule(app) -> None:
    served = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")} - FALLBACK
    assert served - set(ROUTES) == set(), "declare these with webui.api.access.endpoint (it records the rule)"
    assert served - set(EXPECTED) == set(), "add who may call these to EXPECTED"
    assert set(ROUTES) - served == set()
    for name, route in ROUTES.items():
        assert route.rule.strip() and route.access in (PUBLIC, "token"), name


@pytest.mark.parametrize("endpoint", sorted(EXPECTED))
def test_access_matrix(api: Api, endpoint: str) -> None:
    """Every role, as owner and as non-owner of the object, gets exactly what the rules allow."""
    failures = []
    for role in ROLES:
        for owner in (True, False):
            try:
                EXPECTED[endpoint](Cell(api, role, owner))
            except AssertionError as exc:
                failures.append(f"{role} ({'owner' if owner else 'non-owner'}): {exc}")
    assert failures == [], f"{endpoint}:\n" + "\n".join(failures)


def test_every_token_endpoint_refuses_a_call_without_a_token(api: Api) -> None:
    for route in ROUTES.values():
        path = route.path.replace("{instance_id}", "1").replace("{task_id}", "t").replace("{process_id}", "change")
        status = api.call(route.method, path, None, {}).status_code
        assert (status == 401) is (route.access != PUBLIC), (route.method, path, status)
