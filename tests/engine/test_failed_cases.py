"""Failed cases (issue 14): a case whose timer runs a script over its budget is parked with the element
and the error, shown to the process owner, retried by them once the cause is fixed, or cancelled; a user
action the process fails rolls back and is recorded in the audit trail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine import ProcessEngine
from engine.errors import Forbidden, ProcessError
from engine.people.identity import Actor
from engine.spiff.parsing import SourceFile
from tests.conftest import FIXTURES, ROOT, Clock, make_settings
from tests.engine.test_cli import cli_env, ok, opsflow  # noqa: F401
from tests.webui.test_api_intake import WAITING

TIMER_SCRIPT = (FIXTURES / "timer_script.bpmn").read_text(encoding="utf-8")
SPINS = TIMER_SCRIPT.replace("<bpmn:script>health = probe()</bpmn:script>",
                             "<bpmn:script>while True:\n    pass</bpmn:script>")
FIXED = TIMER_SCRIPT.replace("<bpmn:script>health = probe()</bpmn:script>",
                             "<bpmn:script>health = 'ok'</bpmn:script>")
# review comes first, then the script that never ends: completing review fails
REVIEW_THEN_SPIN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
                  id="defs_review_spin" targetNamespace="http://opsflow.example/test">
  <bpmn:collaboration id="collab"><bpmn:participant id="pool" name="复核后巡检" processRef="review_spin" />
  </bpmn:collaboration>
  <bpmn:process id="review_spin" name="复核后巡检" isExecutable="true">
    <bpmn:laneSet id="lanes"><bpmn:lane id="lane_engineer" name="ops_engineer">
      <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>review</bpmn:flowNodeRef>
      <bpmn:flowNodeRef>check</bpmn:flowNodeRef><bpmn:flowNodeRef>end</bpmn:flowNodeRef>
    </bpmn:lane></bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="review" name="复核">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="approval.json" />
        <spiffworkflow:property name="caseFields" value="*" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:scriptTask id="check" name="巡检">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:script>while True:
    pass</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review" />
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="check" />
    <bpmn:sequenceFlow id="f3" sourceRef="check" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>"""


@pytest.fixture
def engine(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[ProcessEngine]:
    """An engine whose scripts stop after half a second (OPSFLOW_SCRIPT_TIMEOUT)."""
    eng = ProcessEngine(replace(make_settings(database_url, tmp_path), script_timeout=0.5), clock=clock)
    eng.migrate()
    eng.identity.seed_roles(ROOT / "processes" / "roles.json")
    yield eng
    eng.close()


@pytest.fixture
def cast(engine: ProcessEngine) -> dict[str, Actor]:
    return {"owner": engine.identity.add_user("owner", ["process_owner"], password="Kunlun-2026-pw"),
            "wang": engine.identity.add_user("wang", ["ops_engineer"], password="Kunlun-2026-pw"),
            "zhang": engine.identity.add_user("zhang", ["staff"], password="Kunlun-2026-pw")}


def deploy(engine: ProcessEngine, text: str, name: str = "timer_script.bpmn") -> None:
    engine.repository.deploy([SourceFile(name, text.encode())], "owner")


def stuck_case(engine: ProcessEngine, cast: dict[str, Actor], clock: Clock) -> int:
    deploy(engine, SPINS)
    case = engine.runtime.start("timer_script", cast["wang"]).id
    clock.advance(hours=2)
    report = engine.jobs.tick()
    assert case not in report.timers
    return case


def test_a_timer_that_runs_over_budget_leaves_the_case_stuck_naming_the_element(
        engine: ProcessEngine, cast: dict[str, Actor], clock: Clock) -> None:
    case = stuck_case(engine, cast, clock)
    shown = engine.runtime.show(case, cast["wang"])
    assert shown.status == "running" and shown.error is not None
    assert "'check'" in shown.error and "OPSFLOW_SCRIPT_TIMEOUT" in shown.error, shown.error
    assert [e.action for e in shown.history][-1] == "timer.failed"
    [failure] = engine.failures.failures(cast["owner"])
    assert (failure.instance_id, failure.process_id, failure.state) == (case, "timer_script", "retrying")
    assert "'check'" in failure.error and failure.attempts == 1 and failure.since is not None


def test_only_the_process_owner_sees_and_retries_failures(engine: ProcessEngine, cast: dict[str, Actor],
                                                          clock: Clock) -> None:
    case = stuck_case(engine, cast, clock)
    for who in ("zhang", "wang"):
        with pytest.raises(Forbidden) as refused:
            engine.failures.failures(cast[who])
        assert refused.value.rule == "process.deploy"
        with pytest.raises(Forbidden):
            engine.failures.retry(cast[who], instance_id=case)
    assert [e.action for e in engine.runtime.show(case).history].count("job.retried") == 0


def test_retries_that_run_out_fail_the_job_and_the_owner_retries_after_fixing_the_version(
        engine: ProcessEngine, cast: dict[str, Actor], clock: Clock) -> None:
    case = stuck_case(engine, cast, clock)
    for _attempt in range(6):  # the back-off doubles from 30 s: an hour apart is always due
        clock.advance(hours=1)
        engine.jobs.tick()
    [failure] = engine.failures.failures(cast["owner"])
    assert failure.state == "failed" and failure.attempts == 6 and "'check'" in failure.error
    assert "job.failed" in [e.action for e in engine.runtime.show(case).history]

    deploy(engine, FIXED)  # the fix: version 2 without the endless loop, and the case moved onto it
    [moved] = engine.migration.migrate(cast["owner"], "timer_script", dry_run=False)
    assert moved.migrated, moved.reason
    engine.failures.retry(cast["owner"], instance_id=case)
    engine.jobs.tick()
    shown = engine.runtime.show(case, cast["wang"])
    assert shown.error is None and [t.bpmn_id for t in shown.open_tasks] == ["review"]
    assert shown.data["health"] == "ok"
    retried = [e for e in shown.history if e.action == "job.retried"]
    assert [e.actor for e in retried] == ["owner"]
    assert engine.failures.failures(cast["owner"]) == []


def test_a_retry_that_fails_again_is_recorded_and_the_case_stays_listed(
        engine: ProcessEngine, cast: dict[str, Actor], clock: Clock) -> None:
    case = stuck_case(engine, cast, clock)
    engine.failures.retry(cast["owner"], instance_id=case)
    report = engine.jobs.tick()
    assert report.retrying and not report.done
    [failure] = engine.failures.failures(cast["owner"])
    assert failure.instance_id == case and failure.attempts == 2 and "'check'" in failure.error
    assert engine.runtime.show(case).error is not None


def test_a_stuck_case_can_be_cancelled_and_leaves_the_list(engine: ProcessEngine, cast: dict[str, Actor],
                                                           clock: Clock) -> None:
    case = stuck_case(engine, cast, clock)
    assert engine.runtime.may_cancel(cast["wang"], case)
    assert engine.runtime.cancel(case, cast["wang"], "巡检脚本有误，撤销") == "cancelled"
    shown = engine.runtime.show(case)
    assert shown.status == "cancelled" and shown.error is None
    assert engine.failures.failures(cast["owner"]) == []
    clock.advance(hours=1)
    report = engine.jobs.tick()  # the waiting retry finds the case ended and does nothing
    assert report.failed == [] and engine.runtime.show(case).status == "cancelled"


def test_a_task_completion_the_process_fails_is_rolled_back_and_recorded(
        engine: ProcessEngine, cast: dict[str, Actor]) -> None:
    deploy(engine, REVIEW_THEN_SPIN, "review_spin.bpmn")
    case = engine.runtime.start("review_spin", cast["wang"]).id
    [task] = engine.runtime.show(case).open_tasks
    before = engine.runtime.show(case)
    with pytest.raises(ProcessError) as failed:
        engine.tasks.complete(task.id, cast["wang"], {"decision": "approve", "comment": "好"})
    assert "'check'" in failed.value.message
    after = engine.runtime.show(case)
    assert [t.id for t in after.open_tasks] == [task.id] and after.data == before.data
    [event] = [e for e in after.history if e.action == "action.failed"]
    assert (event.actor, event.task_id) == ("wang", task.id)
    assert event.data["action"] == "task.complete" and event.data["task"] == "review"
    assert event.data["element"] == "check" and "OPSFLOW_SCRIPT_TIMEOUT" in event.data["error"]
    assert "task.completed" not in [e.action for e in after.history]


def test_a_case_start_the_process_fails_is_recorded_once(engine: ProcessEngine, cast: dict[str, Actor]) -> None:
    deploy(engine, REVIEW_THEN_SPIN.replace('sourceRef="start" targetRef="review"',
                                            'sourceRef="start" targetRef="check"'), "review_spin.bpmn")
    with pytest.raises(ProcessError):
        engine.runtime.start("review_spin", cast["wang"])
    supervisor = engine.identity.add_user("du", ["supervisor"], password="Kunlun-2026-pw")
    events, _total = engine.runtime.history(supervisor)
    failed = [e for e in events if e.action == "action.failed"]
    assert len(failed) == 1 and failed[0].actor == "wang" and failed[0].instance_id is None
    assert failed[0].data["process_id"] == "review_spin" and failed[0].data["element"] == "check"
    assert engine.runtime.cases() == []



def test_opsflow_show_names_a_stuck_case_and_opsflow_cancel_ends_it(
        engine: ProcessEngine, cast: dict[str, Actor], clock: Clock, opsflow) -> None:  # noqa: F811
    case = str(stuck_case(engine, cast, clock))  # the commands below open the same database
    shown = ok(opsflow("show", case))
    assert "STUCK" in shown and "'check'" in shown and "OPSFLOW_SCRIPT_TIMEOUT" in shown, shown
    as_json = json.loads(ok(opsflow("show", case, "--json")))
    assert as_json["status"] == "running" and "'check'" in as_json["error"]
    assert f"case {case} cancelled" in ok(opsflow("cancel", case, "--as", "wang", "--reason", "脚本有误"))
    as_json = json.loads(ok(opsflow("show", case, "--json")))
    assert as_json["status"] == "cancelled" and as_json["error"] is None


def test_a_message_the_process_fails_on_is_rolled_back_and_recorded(engine: ProcessEngine,
                                                                     cast: dict[str, Actor]) -> None:
    spin = ('<bpmn:scriptTask id="spin"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>'
            '<bpmn:script>while True:\n    pass</bpmn:script></bpmn:scriptTask>'
            '<bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>'
            '<bpmn:sequenceFlow id="f3" sourceRef="spin" targetRef="end" />')
    text = WAITING.replace('<bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>', spin) \
        .replace('<bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="end" />',
                 '<bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="spin" />')
    deploy(engine, text, "await_deploy.bpmn")
    case = engine.runtime.start("await_deploy", cast["wang"], {"change_ref": "CHG-9"}).id
    with pytest.raises(ProcessError):
        engine.runtime.deliver_message("deployment_done", {"change_ref": "CHG-9"}, {}, cast["wang"])
    shown = engine.runtime.show(case)
    assert shown.status == "running" and "message.delivered" not in [e.action for e in shown.history]
    [event] = [e for e in shown.history if e.action == "action.failed"]
    assert event.actor == "wang" and event.data["action"] == "message.deliver"
    assert event.data["message"] == "deployment_done" and event.data["element"] == "spin"
