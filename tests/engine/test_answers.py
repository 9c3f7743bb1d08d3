"""Each task's own answers (issue 12): kept by task, forms write only what they declare, computed
fields are out of a form's reach, and versions deployed before the rule keep running."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from engine import ProcessEngine
from engine.errors import LintFailed, ValidationFailed
from engine.spiff.parsing import SourceFile
from engine.storage.models import ProcessDefinition
from tests.conftest import FIXTURES, ROOT
from tests.engine.test_cli import cli_env, ok, opsflow  # noqa: F401

TWO_LANES = (FIXTURES / "two_lanes.bpmn").read_text(encoding="utf-8")
REQUEST = {"title": "开通只读权限", "system": "清算", "reason": "季度对账需要查询"}
APPROVAL = json.loads((ROOT / "forms" / "approval.json").read_text(encoding="utf-8"))


def deploy(engine: ProcessEngine, text: str, forms: dict | None = None) -> None:
    engine.repository.deploy([SourceFile("p.bpmn", text.encode())], "owner", forms=forms)


def run_request(engine: ProcessEngine, people) -> tuple[int, str]:
    case = engine.runtime.start("access_request", people["zhang"], {"title": "权限"}).id
    request = engine.runtime.show(case).open_tasks[0]
    engine.tasks.complete(request.id, people["zhang"], REQUEST)
    return case, engine.runtime.show(case).open_tasks[0].id


def test_a_decision_is_kept_under_its_task_and_in_the_record(engine: ProcessEngine, people) -> None:
    deploy(engine, TWO_LANES)
    case, approval = run_request(engine, people)
    engine.tasks.claim(approval, people["li"])
    engine.tasks.complete(approval, people["li"], {"decision": "approve", "comment": "同意"})
    shown = engine.runtime.show(case)
    assert "end_ok" in engine.progress(case).completed
    assert "decision" not in shown.data and "comment" not in shown.data and shown.data["system"] == "清算"
    decided = shown.record[-1]
    assert (decided.completed_by, decided.outcome, decided.outcome_label) == ("li", "approve", "批准")


def test_a_form_field_the_process_computes_before_the_task_is_refused_at_deploy(engine: ProcessEngine) -> None:
    change = (ROOT / "processes" / "change.bpmn").read_text(encoding="utf-8")
    writes_all = change.replace('<bpmn:userTask id="approve_ops" name="运维负责人审批"><bpmn:extensionElements>'
                                '<spiffworkflow:properties>',
                                '<bpmn:userTask id="approve_ops" name="运维负责人审批"><bpmn:extensionElements>'
                                '<spiffworkflow:properties><spiffworkflow:property name="caseFields" value="*" />')
    assert writes_all != change
    forged = dict(APPROVAL, properties={**APPROVAL["properties"], "approval_route": {"type": "string"},
                                        "verify_tech": {"type": "object"}})
    sources = [SourceFile("change.bpmn", writes_all.encode()),
               SourceFile("change_risk.dmn", (ROOT / "processes" / "change_risk.dmn").read_bytes())]
    with pytest.raises(LintFailed) as refused:
        engine.repository.deploy(sources, "owner", forms={"approval.json": forged})
    problems = "\n".join(str(p) for p in refused.value.problems)
    assert "form field 'approval_route' is computed by the process (assess_risk)" in problems
    assert "form field 'verify_tech' would overwrite the answers of user task 'verify_tech'" in problems
    assert engine.repository.definitions() == []


def test_an_undeclared_key_is_refused_and_nothing_is_saved(engine: ProcessEngine, people) -> None:
    deploy(engine, TWO_LANES)
    case, approval = run_request(engine, people)
    engine.tasks.claim(approval, people["li"])
    with pytest.raises(ValidationFailed) as refused:
        engine.tasks.complete(approval, people["li"], {"decision": "approve", "approved": True})
    assert [e.field for e in refused.value.errors] == ["approved"]
    assert [t.bpmn_id for t in engine.runtime.show(case).open_tasks] == ["approve"]


def test_a_version_deployed_before_the_rule_keeps_its_shared_keys(engine: ProcessEngine, people) -> None:
    old = TWO_LANES.replace('approve["decision"] == "approve"', 'decision == "approve"').replace(
        '<spiffworkflow:property name="caseFields" value="*" />', "")
    deploy(engine, old)
    with engine.ctx.db.transaction() as s:  # as migration 0005 leaves the versions already deployed
        s.execute(update(ProcessDefinition).values(answers="shared"))
    engine.repository._cache.clear()
    case, approval = run_request(engine, people)
    assert engine.tasks.get(approval).data == {}  # forms open empty even here
    engine.tasks.claim(approval, people["li"])
    engine.tasks.complete(approval, people["li"], {"decision": "approve"})
    assert "end_ok" in engine.progress(case).completed
    assert engine.runtime.show(case).record[-1].outcome == "approve"


def test_the_command_line_refuses_an_extra_key_and_shows_the_record(opsflow) -> None:  # noqa: F811
    ok(opsflow("init"))
    ok(opsflow("user", "add", "zhang", "--role", "staff"))
    ok(opsflow("user", "add", "liu", "--role", "ops_manager", "--display-name", "刘洋"))
    ok(opsflow("deploy", str(FIXTURES / "two_lanes.bpmn")))
    case_id = ok(opsflow("start", "access_request", "--as", "zhang")).strip()
    request = json.loads(ok(opsflow("tasks", "--as", "zhang", "--json")))[0]["id"]
    ok(opsflow("complete", request, "--as", "zhang", "--data", json.dumps(REQUEST)))
    approval = json.loads(ok(opsflow("tasks", "--as", "liu", "--json")))[0]["id"]
    ok(opsflow("claim", approval, "--as", "liu"))
    forged = opsflow("complete", approval, "--as", "liu", "--data",
                     '{"decision": "approve", "approve": {"decision": "approve"}, "when": {"typename": "date"}}')
    assert forged.returncode == 1
    assert "  approve: " in forged.stderr and "  when: " in forged.stderr
    assert json.loads(ok(opsflow("task", approval, "--json")))["state"] == "open"  # nothing saved
    ok(opsflow("complete", approval, "--as", "liu", "--data", '{"decision": "reject", "comment": "无业务依据"}'))
    shown = json.loads(ok(opsflow("show", case_id, "--json")))
    assert [(e["bpmn_id"], e["completed_by_name"], e["outcome_label"]) for e in shown["record"]] == [
        ("request", "zhang", None), ("approve", "刘洋", "驳回")]
    assert shown["record"][1]["answers"] == [{"field": "comment", "label": "意见", "value": "无业务依据",
                                             "text": "无业务依据"}]
    assert "驳回" in ok(opsflow("show", case_id))
