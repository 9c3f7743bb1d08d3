"""Budgets (issue 14): deploy refuses timers and form patterns that would run without bound, and the
engine stops a run that would never end, rolling the action back while other users are served."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from engine import ProcessEngine
from engine.definitions.forms import field_errors
from engine.errors import LintFailed, ProcessError
from engine.spiff.parsing import SourceFile
from engine.storage.models import HumanTask, ProcessInstance
from tests.conftest import FIXTURES, ROOT, Clock, make_settings

TIMER_BOUNDARY = (FIXTURES / "timer_boundary.bpmn").read_text(encoding="utf-8")
TWO_LANES = (FIXTURES / "two_lanes.bpmn").read_text(encoding="utf-8")
APPROVAL = json.loads((FIXTURES / "forms" / "approval.json").read_text(encoding="utf-8"))
EVIL = "^(a+)+$"


def refused(engine: ProcessEngine, text: str, forms: dict | None = None) -> list[str]:
    with pytest.raises(LintFailed) as info:
        engine.repository.deploy([SourceFile("p.bpmn", text.encode())], "owner", forms=forms)
    assert engine.repository.definitions() == []
    return [str(p) for p in info.value.problems]


# deploy lints -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cycle", ["R/PT0S", "R/PT59S", "R5/PT1S"])
def test_a_timer_cycle_under_a_minute_is_refused_naming_the_element(engine: ProcessEngine, cycle: str) -> None:
    problems = refused(engine, TIMER_BOUNDARY.replace('"R2/PT1H"', f'"{cycle}"'))
    assert any("remind" in p and cycle in p and "at least a minute" in p for p in problems), problems


def test_a_timer_start_expression_that_loops_stops_the_deploy_not_the_server(script_engine: ProcessEngine) -> None:
    """Deploy evaluates a timer start event's expression (to schedule the first start): under the budget."""
    looping = '"R/PT1H" if sum(1 for i in range(2**21) for j in range(2**21)) else ""'
    text = (FIXTURES / "timer_start.bpmn").read_text(encoding="utf-8").replace(
        '"R/2027-03-01T09:00:00+08:00/P1Y"', looping.replace('"', "&quot;"))
    started = time.monotonic()
    problems = refused(script_engine, text)
    assert time.monotonic() - started < 10
    assert any("timer start event" in p and "OPSFLOW_SCRIPT_TIMEOUT" in p for p in problems), problems


def test_a_timer_cycle_of_a_minute_deploys(engine: ProcessEngine) -> None:
    engine.repository.deploy([SourceFile("p.bpmn", TIMER_BOUNDARY.replace('"R2/PT1H"', '"R/PT1M"').encode())],
                             "owner")
    assert [d.process_id for d in engine.repository.definitions()] == ["timer_boundary"]


def _with_pattern(pattern: str, where: str = "pattern") -> dict:
    form = json.loads(json.dumps(APPROVAL))
    if where == "pattern":
        form["properties"]["comment"]["pattern"] = pattern
    else:
        form["patternProperties"] = {pattern: {"type": "string"}}
    return form


@pytest.mark.parametrize("pattern", ["(a)\\1", "^(?=a)a+$", "(?<!x)y"])
def test_a_form_pattern_without_a_linear_time_match_is_refused_at_deploy(engine: ProcessEngine,
                                                                        pattern: str) -> None:
    problems = refused(engine, TWO_LANES, forms={"approval.json": _with_pattern(pattern)})
    assert any("approval.json" in p and "'comment'" in p and "linear time" in p and "approve" in p
               for p in problems), problems


def test_a_pattern_properties_key_is_checked_too(engine: ProcessEngine) -> None:
    problems = refused(engine, TWO_LANES, forms={"approval.json": _with_pattern("(x)\\1", "patternProperties")})
    assert any("linear time" in p and "(x)\\\\1" in p for p in problems), problems


def test_unevaluated_properties_with_pattern_properties_is_refused(engine: ProcessEngine) -> None:
    """jsonschema matches patternProperties with Python's `re` inside unevaluatedProperties: ^(a+)+$ again."""
    form = _with_pattern(EVIL, "patternProperties") | {"unevaluatedProperties": False}
    problems = refused(engine, TWO_LANES, forms={"approval.json": form})
    assert any("approval.json" in p and "unevaluatedProperties" in p and "additionalProperties" in p
               for p in problems), problems


def test_the_form_editor_refuses_the_pattern_on_save(engine: ProcessEngine) -> None:
    owner = engine.identity.add_user("owner", ["process_owner"], password="Kunlun-2026-pw")
    with pytest.raises(LintFailed) as info:
        engine.versions.save_form(owner, "approval.json", _with_pattern("(a)\\1"))
    assert "linear time" in str(info.value.problems[0]) and "'comment'" in str(info.value.problems[0])
    assert json.loads((FIXTURES / "forms" / "approval.json").read_text(encoding="utf-8")) == APPROVAL


@pytest.mark.parametrize("where", ["pattern", "patternProperties"])
def test_a_backtracking_pattern_is_matched_in_linear_time(engine: ProcessEngine, where: str) -> None:
    """^(a+)+$ takes Python's re minutes on 40 a's and a b; the form validator answers at once."""
    engine.repository.deploy([SourceFile("p.bpmn", TWO_LANES.encode())], "owner",
                             forms={"approval.json": _with_pattern(EVIL, where)})
    form = _with_pattern(EVIL, where)
    attack = "a" * 40 + "b"
    started = time.monotonic()
    data = {"decision": "approve", "comment": attack} if where == "pattern" else {"decision": "approve", attack: "x"}
    errors = field_errors(form, data)
    assert time.monotonic() - started < 1
    if where == "pattern":
        assert [e.field for e in errors] == ["comment"] and "格式不符" in errors[0].message
    assert field_errors(form, {"decision": "approve", "comment": "aaa"}) == []


# engine steps and multi-instance cardinality -----------------------------------------------------
BUDGET_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
                  id="defs_budget" targetNamespace="http://opsflow.example/test">
  <bpmn:process id="budget" name="预算" isExecutable="true">
    <bpmn:laneSet id="lanes"><bpmn:lane id="lane_eng" name="ops_engineer">
      <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>retest</bpmn:flowNodeRef>
    </bpmn:lane></bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="retest" name="复测">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="retest.json" />
        <spiffworkflow:property name="assigneeFrom" value="starter" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:scriptTask id="spin" name="自动重试">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:incoming>f_loop</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:script>spins = spins + 1</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:exclusiveGateway id="again" default="f4">
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing><bpmn:outgoing>f_loop</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:scriptTask id="fan" name="逐台检查">
      <bpmn:incoming>f4</bpmn:incoming><bpmn:outgoing>f5</bpmn:outgoing>
      <bpmn:multiInstanceLoopCharacteristics><bpmn:loopCardinality>count</bpmn:loopCardinality>
      </bpmn:multiInstanceLoopCharacteristics>
      <bpmn:script>checked = True</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f5</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="retest" />
    <bpmn:sequenceFlow id="f2" sourceRef="retest" targetRef="spin" />
    <bpmn:sequenceFlow id="f3" sourceRef="spin" targetRef="again" />
    <bpmn:sequenceFlow id="f_loop" sourceRef="again" targetRef="spin">
      <bpmn:conditionExpression>spins &lt; limit</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f4" sourceRef="again" targetRef="fan" />
    <bpmn:sequenceFlow id="f5" sourceRef="fan" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.fixture
def budget_engine(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[ProcessEngine]:
    """An engine with a small step budget (OPSFLOW_MAX_STEPS=300), the budget process deployed."""
    settings = replace(make_settings(database_url, tmp_path), max_steps=300, max_instances=1000)
    eng = ProcessEngine(settings, clock=clock)
    eng.migrate()
    eng.identity.seed_roles(ROOT / "processes" / "roles.json")
    eng.repository.deploy([SourceFile("budget.bpmn", BUDGET_BPMN.encode())], "owner")
    yield eng
    eng.close()


def _stored(engine: ProcessEngine, case_id: int) -> tuple:
    with engine.ctx.db.transaction() as s:
        row = s.execute(select(ProcessInstance.state, ProcessInstance.revision, ProcessInstance.status)
                        .where(ProcessInstance.id == case_id)).one()
        tasks = s.execute(select(HumanTask.id, HumanTask.state).where(HumanTask.instance_id == case_id)).all()
    return tuple(row), sorted(tasks)


def _attack(engine: ProcessEngine, start_data: dict, expected: list[str], other: dict | None = None) -> None:
    wang = engine.identity.add_user("wang", ["ops_engineer"], password="Kunlun-2026-pw")
    chen = engine.identity.add_user("chen", ["ops_engineer"], password="Kunlun-2026-pw")
    case = engine.runtime.start("budget", wang, start_data)
    task = engine.tasks.inbox(wang, scope="mine")[0]
    before = _stored(engine, case.id)
    started = time.monotonic()
    with pytest.raises(ProcessError) as info:
        engine.tasks.complete(task.id, wang, {"defects_remaining": False})
    assert time.monotonic() - started < 30
    assert all(word in str(info.value) for word in expected), str(info.value)
    assert _stored(engine, case.id) == before  # rolled back: the case and its open task as they were
    assert engine.runtime.show(case.id).status == "running"
    # another user's case starts and completes afterwards
    other = engine.runtime.start("budget", chen, {"spins": 0, "limit": 3, "count": 3, **(other or {})})
    engine.tasks.complete(engine.tasks.inbox(chen, scope="mine")[0].id, chen, {"defects_remaining": False})
    assert engine.runtime.show(other.id).status == "completed"


def test_a_loop_without_a_wait_state_stops_at_the_step_budget(budget_engine: ProcessEngine) -> None:
    _attack(budget_engine, {"spins": 0, "limit": 10**9, "count": 1}, ["'spin'", "300", "OPSFLOW_MAX_STEPS"])


def test_a_cardinality_over_the_limit_is_refused(budget_engine: ProcessEngine) -> None:
    _attack(budget_engine, {"spins": 0, "limit": 1, "count": 10**7},
            ["'fan'", "10000000", "1000", "OPSFLOW_MAX_INSTANCES"])


def test_a_multi_instance_over_a_huge_input_collection_is_refused(budget_engine: ProcessEngine) -> None:
    budget_engine.repository.deploy([SourceFile("budget.bpmn", BUDGET_BPMN.replace(
        "<bpmn:loopCardinality>count</bpmn:loopCardinality>",
        '<bpmn:loopDataInputRef>hosts</bpmn:loopDataInputRef><bpmn:inputDataItem id="host" name="host" />',
    ).encode())], "owner")
    _attack(budget_engine, {"spins": 0, "limit": 1, "count": 1, "hosts": list(range(5000))},
            ["'fan'", "'hosts'", "5000", "1000", "OPSFLOW_MAX_INSTANCES"], other={"hosts": ["db1", "db2"]})


def test_ordinary_formatting_still_works_in_scripts(script_engine: ProcessEngine) -> None:
    _deploy_script(script_engine, "summary = str(5) + repr('x') + f'{3:>5}|{2!r}' + '%5.2f' % 3.14159 "
                                  "+ 'a'.ljust(3) + ','.join(['a', 'b']) + json_dumps({'a': [1]}, indent=2)\n"
                                  "texts = isinstance(summary, str) and sum([1, 2]) == 3")
    wang = script_engine.identity.add_user("wang", ["ops_engineer"], password="Kunlun-2026-pw")
    case = script_engine.runtime.start("budget", wang, {"spins": 0, "limit": 1, "count": 1})
    script_engine.tasks.complete(script_engine.tasks.inbox(wang, scope="mine")[0].id, wang,
                                 {"defects_remaining": False})
    shown = script_engine.runtime.show(case.id)
    assert shown.status == "completed"
    assert shown.data["summary"] == "5'x'    3|2 3.14a  a,b{\n  \"a\": [\n    1\n  ]\n}" and shown.data["texts"] is True


# script CPU and memory -----------------------------------------------------------------------------
@pytest.fixture
def script_engine(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[ProcessEngine]:
    """An engine whose budget process runs the script under attack (OPSFLOW_SCRIPT_TIMEOUT=0.5)."""
    settings = replace(make_settings(database_url, tmp_path), script_timeout=0.5)
    eng = ProcessEngine(settings, clock=clock)
    eng.migrate()
    eng.identity.seed_roles(ROOT / "processes" / "roles.json")
    yield eng
    eng.close()


def _deploy_script(engine: ProcessEngine, script: str) -> None:
    text = BUDGET_BPMN.replace("<bpmn:script>spins = spins + 1</bpmn:script>",
                               "<bpmn:script>spins = spins + 1\nif not retest[\"defects_remaining\"]:\n"
                               + "\n".join("    " + line for line in script.splitlines())
                               + "</bpmn:script>")
    engine.repository.deploy([SourceFile("budget.bpmn", text.encode())], "owner")


@pytest.mark.parametrize(("script", "expected"), [
    ("while True:\n    x = x + 1", "OPSFLOW_SCRIPT_TIMEOUT"),
    ("while True:\n    try:\n        x = x + 1\n    except:\n        pass", "OPSFLOW_SCRIPT_TIMEOUT"),
    ("y = 3**10**8", "size limit"),
    ("y = [0]*10**9", "size limit"),
    ("y = pow(3, 10**8)", "size limit"),
    ("y = list(range(10**9))", "size limit"),
    ("y = 'ab'\nwhile True:\n    y = y + y", "size limit"),
    # one C call that makes far more than it is given: refused before it runs
    ("y = 'a'.ljust(10**9)", "size limit"),
    ("y = '1'.zfill(10**9)", "size limit"),
    ("s = 'a' * 10**6\ny = s.replace('', s)", "size limit"),
    ("s = 'a' * 10**7\ny = ','.join([s] * 100)", "size limit"),
    ("y = '%*d' % (10**9, 1)", "size limit"),
    ("y = '%.999999999d' % 1", "size limit"),
    ("n = 10**9\ny = f'{1:>{n}}'", "size limit"),
    ("s = 'a' * 10**6\ny = str([s] * 100)", "size limit"),
    ("y = json_dumps([1], indent=10**9)", "size limit"),
    ("l = [0] * 2000000\nl.extend(l)", "size limit"),
    ("l = [0] * 2000000\nl[:0] = l", "size limit"),
    # small in memory, 100 MB once the case is saved as JSON
    ("s = 'a' * 10**6\ny = [s] * 100", "size limit"),
    # built-in sum() of lists is quadratic C code: run one checked + at a time, so the deadline stops it
    ("y = sum([[0]] * 2000000, [])", "OPSFLOW_SCRIPT_TIMEOUT"),
])
def test_a_script_over_its_budget_stops_with_the_element_named(script_engine: ProcessEngine, script: str,
                                                               expected: str) -> None:
    _deploy_script(script_engine, "x = 0\n" + script)
    # only the failing action: a retest with no defects left runs the attack, another user's case does not
    wang = script_engine.identity.add_user("wang", ["ops_engineer"], password="Kunlun-2026-pw")
    chen = script_engine.identity.add_user("chen", ["ops_engineer"], password="Kunlun-2026-pw")
    case = script_engine.runtime.start("budget", wang, {"spins": 0, "limit": 1, "count": 1})
    task = script_engine.tasks.inbox(wang, scope="mine")[0]
    before = _stored(script_engine, case.id)
    started = time.monotonic()
    with pytest.raises(ProcessError) as info:
        script_engine.tasks.complete(task.id, wang, {"defects_remaining": False})
    assert time.monotonic() - started < 10
    assert "'spin'" in str(info.value) and expected in str(info.value), str(info.value)
    assert _stored(script_engine, case.id) == before
    other = script_engine.runtime.start("budget", chen, {"spins": 0, "limit": 1, "count": 2})
    script_engine.tasks.complete(script_engine.tasks.inbox(chen, scope="mine")[0].id, chen,
                                 {"defects_remaining": True})
    assert script_engine.runtime.show(other.id).status == "completed"


def test_a_script_growing_memory_item_by_item_is_stopped_before_the_timeout(database_url: str, tmp_path: Path,
                                                                             clock: Clock) -> None:
    """No single call is too big, but the loop adds 16 MB a turn: the peak-memory check stops it."""
    eng = ProcessEngine(replace(make_settings(database_url, tmp_path), script_timeout=30), clock=clock)
    try:
        eng.migrate()
        eng.identity.seed_roles(ROOT / "processes" / "roles.json")
        _deploy_script(eng, "hoard = []\nwhile True:\n    hoard.append([0] * 2000000)")
        wang = eng.identity.add_user("wang", ["ops_engineer"], password="Kunlun-2026-pw")
        case = eng.runtime.start("budget", wang, {"spins": 0, "limit": 1, "count": 1})
        before = _stored(eng, case.id)
        with pytest.raises(ProcessError) as info:
            eng.tasks.complete(eng.tasks.inbox(wang, scope="mine")[0].id, wang, {"defects_remaining": False})
        assert "'spin'" in str(info.value) and "512 MiB of memory" in str(info.value), str(info.value)
        assert _stored(eng, case.id) == before
    finally:
        eng.close()


def test_other_users_are_served_while_a_script_spins(script_engine: ProcessEngine) -> None:
    """While one action spins until its timeout, another user signs in, starts and completes cases:
    each of their writes waits at most the script's timeout for the lock and none fails."""
    _deploy_script(script_engine, "x = 0\nwhile True:\n    x = x + 1")
    wang = script_engine.identity.add_user("wang", ["ops_engineer"], password="Kunlun-2026-pw")
    chen = script_engine.identity.add_user("chen", ["ops_engineer"], password="Kunlun-2026-pw")
    script_engine.runtime.start("budget", wang, {"spins": 0, "limit": 1, "count": 1})
    task = script_engine.tasks.inbox(wang, scope="mine")[0]
    outcome: list[str] = []

    def attack() -> None:
        try:
            script_engine.tasks.complete(task.id, wang, {"defects_remaining": False})
        except ProcessError as exc:
            outcome.append(str(exc))

    attacker = threading.Thread(target=attack)
    attacker.start()
    served = []
    while attacker.is_alive() or not served:
        assert script_engine.identity.login("chen", "Kunlun-2026-pw", "10.0.0.7") is not None
        other = script_engine.runtime.start("budget", chen, {"spins": 0, "limit": 1, "count": 1})
        mine = [t for t in script_engine.tasks.inbox(chen, scope="mine") if t.instance_id == other.id]
        script_engine.tasks.complete(mine[0].id, chen, {"defects_remaining": True})
        served.append(script_engine.runtime.show(other.id).status)
    attacker.join()
    assert len(outcome) == 1 and "OPSFLOW_SCRIPT_TIMEOUT" in outcome[0]
    assert served and set(served) == {"completed"}


def test_a_condition_that_loops_is_stopped_too(script_engine: ProcessEngine) -> None:
    script_engine.repository.deploy([SourceFile("budget.bpmn", BUDGET_BPMN.replace(
        "spins &lt; limit", "spins &lt; limit and sum(1 for i in range(2**21) for j in range(2**21)) &gt; 0"
    ).encode())], "owner")
    wang = script_engine.identity.add_user("wang", ["ops_engineer"], password="Kunlun-2026-pw")
    case = script_engine.runtime.start("budget", wang, {"spins": 0, "limit": 5, "count": 1})
    before = _stored(script_engine, case.id)
    with pytest.raises(ProcessError) as info:
        script_engine.tasks.complete(script_engine.tasks.inbox(wang, scope="mine")[0].id, wang,
                                     {"defects_remaining": False})
    assert "OPSFLOW_SCRIPT_TIMEOUT" in str(info.value)
    assert _stored(script_engine, case.id) == before
