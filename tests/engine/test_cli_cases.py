"""`opsflow cancel`, `unclaim`, `assign`, `substitute`: the access policy holds on the command line too."""

from __future__ import annotations

import json
import shutil

from tests.conftest import FIXTURES, ROOT
from tests.engine.test_cli import cli_env, ok, opsflow, same_database  # noqa: F401
from tests.processes.test_incident import incident_report


def refused(result, *words: str) -> str:
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr


def test_case_and_task_commands_go_through_the_access_policy(opsflow) -> None:  # noqa: F811
    ok(opsflow("init"))
    for name, role in (("zhang", "staff"), ("liu", "ops_manager"), ("zhou", "ops_manager"), ("wang", "ops_engineer"),
                       ("du", "supervisor")):
        ok(opsflow("user", "add", name, "--role", role))
    ok(opsflow("deploy", str(FIXTURES / "two_lanes.bpmn")))
    case = ok(opsflow("start", "access_request", "--as", "zhang")).strip()
    request = json.loads(ok(opsflow("tasks", "--as", "zhang", "--json")))[0]["id"]
    ok(opsflow("complete", request, "--as", "zhang", "--data",
               '{"title": "只读权限", "system": "清算", "reason": "日终清算排查"}'))
    approval = json.loads(ok(opsflow("tasks", "--as", "liu", "--json")))[0]["id"]

    ok(opsflow("claim", approval, "--as", "liu"))
    refused(opsflow("unclaim", approval, "--as", "wang"), "tasks.assign", "claimed by liu")
    assert "back in the queue of ops_manager" in ok(opsflow("unclaim", approval, "--as", "liu"))
    refused(opsflow("assign", approval, "zhou", "--as", "zhang"), "tasks.assign")
    refused(opsflow("assign", approval, "zhang", "--as", "du"), "zhang 不具备“审批”所需的角色运维负责人")
    assert "assigned to zhou" in ok(opsflow("assign", approval, "zhou", "--as", "du"))

    refused(opsflow("cancel", case, "--as", "wang", "--reason", "不是我的"), "case.cancel")
    assert opsflow("cancel", case, "--as", "zhang").returncode == 2  # a reason is required
    assert f"case {case} cancelled" in ok(opsflow("cancel", case, "--as", "zhang", "--reason", "不再需要"))
    shown = json.loads(ok(opsflow("show", case, "--json")))
    assert shown["status"] == "cancelled"
    assert [(e["actor"], e["action"]) for e in shown["history"] if e["action"].startswith("case.cancel")] == [
        ("wang", "case.cancel_refused"), ("zhang", "case.cancelled")]


def test_substitute_commands_refuse_an_unqualified_stand_in(opsflow) -> None:  # noqa: F811
    ok(opsflow("init"))
    for name, role in (("zhaolei", "it_head"), ("zhang", "staff"), ("hu", "it_head"), ("liu", "ops_manager")):
        ok(opsflow("user", "add", name, "--role", role))
    window = ("--from", "2026-12-20", "--until", "2026-12-27T18:00")
    refused(opsflow("substitute", "add", "zhaolei", "zhang", *window), "zhang holds none of zhaolei's roles",
            "A/B角")
    refused(opsflow("substitute", "add", "zhaolei", "hu", *window, "--as", "liu"), "substitutes.manage")
    refused(opsflow("substitute", "add", "zhaolei", "hu", "--from", "next week", "--until", "2026-12-27"), "--from")
    added = ok(opsflow("substitute", "add", "zhaolei", "hu", *window, "--reason", "年假"))
    assert "hu stands in for zhaolei" in added
    entry = json.loads(ok(opsflow("substitute", "list", "--json")))
    assert [(e["holder"], e["substitute"], e["reason"]) for e in entry] == [("zhaolei", "hu", "年假")]
    refused(opsflow("substitute", "remove", str(entry[0]["id"]), "--as", "liu"), "substitutes.manage")
    refused(opsflow("substitute", "remove", "999"), "unknown substitute entry 999")
    assert "ended" in ok(opsflow("substitute", "remove", str(entry[0]["id"])))
    assert ok(opsflow("substitute", "list")).strip() == "no substitutes"


def test_the_reporter_cannot_cancel_a_reportable_incident_from_the_command_line(opsflow) -> None:  # noqa: F811
    forms = {"OPSFLOW_FORMS_DIR": str(ROOT / "forms"), "OPSFLOW_PROCESSES_DIR": str(ROOT / "processes")}
    assert "deployed incident v1" in ok(opsflow("init", extra=forms))  # the whole library, read only
    for name, role in (("zhangwei", "staff"), ("liuyang", "ops_manager"), ("sunyan", "compliance")):
        ok(opsflow("user", "add", name, "--role", role, extra=forms))
    ok(opsflow("ci", "import", str(ROOT / "processes" / "demo_config_items.json"), extra=forms))
    register = {i["name"]: i["id"] for i in json.loads(ok(opsflow("ci", "list", "--json", extra=forms)))}
    case = ok(opsflow("start", "incident", "--as", "zhangwei", extra=forms)).strip()
    report = json.loads(ok(opsflow("tasks", "--as", "zhangwei", "--json", extra=forms)))[0]["id"]
    ok(opsflow("complete", report, "--as", "zhangwei", "--data",
               json.dumps(incident_report(register, impact="high", urgency="high"), ensure_ascii=False), extra=forms))
    refused(opsflow("cancel", case, "--as", "zhangwei", "--reason", "报错了", extra=forms), "case.cancel",
            "report clock")
    assert "waits for compliance's sign-off" in ok(opsflow("cancel", case, "--as", "liuyang", "--reason", "重复",
                                                           extra=forms))
    assert json.loads(ok(opsflow("show", case, "--json", extra=forms)))["status"] == "running"
    assert f"case {case} cancelled" in ok(opsflow("cancel", case, "--as", "sunyan", "--reason", "核实", extra=forms))
    shown = json.loads(ok(opsflow("show", case, "--json", extra=forms)))
    assert shown["status"] == "cancelled" and [link["kind"] for link in shown["links"]] == ["emergency"]


def test_editing_the_trading_calendar_for_someone_needs_registers_edit(opsflow, same_database,  # noqa: F811
                                                                       tmp_path) -> None:
    shutil.copytree(ROOT / "processes" / "calendar", tmp_path / "processes" / "calendar")
    holidays = tmp_path / "holidays-2031.txt"
    holidays.write_text("2031-02-03,春节\n", encoding="utf-8")
    ok(opsflow("init"))
    ok(opsflow("user", "add", "zhang", "--role", "staff"))
    ok(opsflow("user", "add", "ma", "--role", "process_owner"))
    refused(opsflow("calendar", "import-holidays", str(holidays), "--as", "zhang"), "registers.edit")
    assert "2031: 1 closed weekdays" in ok(opsflow("calendar", "import-holidays", str(holidays), "--as", "ma"))
    imported = [(e.actor, e.data["added"]) for e in same_database.audit.events()
                if e.action == "calendar.holidays_imported"]
    assert imported == [("ma", ["2031-02-03"])]  # the refused attempt imported nothing
