"""Deploying definitions: versions, lint with located problems, and cases pinned to their version."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import ProcessEngine
from engine.errors import LintFailed
from engine.spiff.parsing import SourceFile
from tests.conftest import FIXTURES, deploy_fixture

TWO_LANES = (FIXTURES / "two_lanes.bpmn").read_text(encoding="utf-8")


def deploy_text(engine: ProcessEngine, text: str, name: str = "p.bpmn", check: bool = False):
    return engine.repository.deploy([SourceFile(name, text.encode())], "owner", check_only=check)


def problems_of(engine: ProcessEngine, text: str) -> list[str]:
    with pytest.raises(LintFailed) as info:
        deploy_text(engine, text)
    assert engine.repository.definitions() == []
    return [str(p) for p in info.value.problems]


def test_deploy_creates_version_one_and_redeploy_of_same_content_changes_nothing(engine: ProcessEngine) -> None:
    first = deploy_text(engine, TWO_LANES)
    again = deploy_text(engine, TWO_LANES)
    assert [(d.process_id, d.version, d.changed) for d in first] == [("access_request", 1, True)]
    assert [(d.version, d.changed) for d in again] == [(1, False)]


def test_changed_content_deploys_a_new_version_and_keeps_the_old(engine: ProcessEngine) -> None:
    deploy_text(engine, TWO_LANES)
    deploy_text(engine, TWO_LANES.replace('name="审批"', 'name="主管审批"'))
    versions = engine.repository.versions("access_request")
    assert [row.version for row, _running in versions] == [2, 1]
    assert "主管审批" in versions[0][0].bpmn_xml and "主管审批" not in versions[1][0].bpmn_xml


def test_running_case_stays_on_the_version_it_started_with(engine: ProcessEngine, people) -> None:
    deploy_text(engine, TWO_LANES)
    old_case = engine.runtime.start("access_request", people["zhang"], {"title": "v1"})
    deploy_text(engine, TWO_LANES.replace('name="审批"', 'name="主管审批"'))
    new_case = engine.runtime.start("access_request", people["zhang"], {"title": "v2"})
    for case in (old_case, new_case):
        task = next(t for t in engine.tasks.inbox(people["zhang"], scope="mine") if t.instance_id == case.id)
        engine.tasks.complete(task.id, people["zhang"],
                              {"title": "申请权限", "system": "清算", "reason": "日终清算排查"})
    names = {t.instance_id: t.name for t in engine.tasks.inbox(people["li"], scope="group")}
    assert names == {old_case.id: "审批", new_case.id: "主管审批"}
    assert engine.runtime.show(old_case.id).version == 1
    assert engine.runtime.show(new_case.id).version == 2
    running = {row.version: n for row, n in engine.repository.versions("access_request")}
    assert running == {1: 1, 2: 1}


def test_check_only_lints_without_deploying(engine: ProcessEngine) -> None:
    result = deploy_text(engine, TWO_LANES, check=True)
    assert [r.process_id for r in result] == ["access_request"]
    assert engine.repository.definitions() == []


def test_lane_naming_an_unknown_role_is_a_located_problem(engine: ProcessEngine) -> None:
    problems = problems_of(engine, TWO_LANES.replace('name="ops_manager"', 'name="财务总监"'))
    assert any(p.startswith("p.bpmn:") and "财务总监" in p and "names no role" in p for p in problems)
    line = int(problems[0].split(":")[1])
    assert 'id="approve"' in TWO_LANES.splitlines()[line - 1]


def test_lane_may_name_a_role_by_key_or_by_chinese_name(engine: ProcessEngine) -> None:
    deploy_text(engine, TWO_LANES.replace('name="ops_manager"', 'name="运维负责人"'))
    assert engine.repository.definitions()[0].process_id == "access_request"


def test_user_task_without_form_or_with_missing_form_is_refused(engine: ProcessEngine) -> None:
    no_form = TWO_LANES.replace('<spiffworkflow:property name="formJsonSchemaFilename" value="approval.json" />', "")
    assert any("has no form" in p for p in problems_of(engine, no_form))
    missing = TWO_LANES.replace("approval.json", "nope.json")
    assert any("'nope.json' does not exist" in p for p in problems_of(engine, missing))


def test_form_that_is_not_valid_json_schema_is_refused(engine: ProcessEngine, tmp_path: Path) -> None:
    bad = FIXTURES / "forms" / "broken_schema.json"
    assert any("not a valid JSON Schema" in p for p in problems_of(engine, TWO_LANES.replace(
        "approval.json", bad.name)))


def test_condition_with_a_syntax_error_is_refused_at_deploy(engine: ProcessEngine) -> None:
    problems = problems_of(engine, TWO_LANES.replace('approve["decision"] == "approve"',
                                                     'approve["decision"] ==== "approve"'))
    assert any("condition refused by the script sandbox" in p for p in problems)


def test_unquoted_iso_timer_is_refused_with_the_fix(engine: ProcessEngine) -> None:
    timer = ('<bpmn:boundaryEvent id="late" attachedToRef="approve" cancelActivity="false">'
             '<bpmn:outgoing>f_late</bpmn:outgoing>'
             '<bpmn:timerEventDefinition><bpmn:timeDuration>PT4H</bpmn:timeDuration></bpmn:timerEventDefinition>'
             '</bpmn:boundaryEvent><bpmn:endEvent id="late_end"><bpmn:incoming>f_late</bpmn:incoming></bpmn:endEvent>'
             '<bpmn:sequenceFlow id="f_late" sourceRef="late" targetRef="late_end" />')
    text = TWO_LANES.replace("</bpmn:process>", timer + "</bpmn:process>")
    problems = problems_of(engine, text)
    assert any("'PT4H' is an ISO 8601 literal and must be quoted" in p for p in problems)
    deploy_text(engine, text.replace(">PT4H<", '>"PT4H"<'))


def test_separation_of_duties_naming_an_unknown_task_is_refused(engine: ProcessEngine) -> None:
    problems = problems_of(engine, TWO_LANES.replace('value="starter, request"', 'value="starter, nosuch"'))
    assert any("separationOfDuties names 'nosuch'" in p for p in problems)


def test_malformed_xml_reports_file_and_line(engine: ProcessEngine) -> None:
    problems = problems_of(engine, TWO_LANES.replace("</bpmn:userTask>", "</bpmn:userTsk>", 1))
    assert problems[0].startswith("p.bpmn:") and "not well-formed" in problems[0]


def test_every_problem_is_listed_not_just_the_first(engine: ProcessEngine) -> None:
    text = TWO_LANES.replace('name="ops_manager"', 'name="nobody"').replace("access_request.json", "nope.json")
    assert len(problems_of(engine, text)) >= 2


def test_parsed_specs_are_cached_per_version(engine: ProcessEngine) -> None:
    deploy_fixture(engine, "two_lanes.bpmn")
    definition = engine.repository.definition("access_request")
    assert engine.repository.load(definition.id) is engine.repository.load(definition.id)
