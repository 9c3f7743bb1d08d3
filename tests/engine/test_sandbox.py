"""The script sandbox against a hostile BPMN author, through the engine facade.

Every attack is written so that, if it ever ran unsandboxed, it would create a marker file under
tmp_path (test_attack_would_work_without_the_sandbox shows each one really does with plain
eval/exec). Each attack is placed once in a gateway conditionExpression and once in a scriptTask:

* refused at deploy: repository.deploy raises LintFailed naming the file and the element's line,
  and nothing is deployed;
* or failing at run time: deploy succeeds, runtime.start / tasks.complete raise ProcessError, the
  marker is never created, and the case is exactly as it was before (state, inbox, audit trail).
"""

from __future__ import annotations

import datetime
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from xml.sax.saxutils import escape

import pytest
from sqlalchemy import func, select

from engine import ProcessEngine
from engine.errors import LintFailed, ProcessError
from engine.people.identity import Actor
from engine.spiff.parsing import SourceFile
from engine.spiff.sandbox import RestrictedEnvironment, ScriptPolicyError, check_snippet
from engine.storage.models import AuditEvent, HumanTask, ProcessInstance

REQUEST = {"title": "开通清算系统只读权限", "system": "清算", "reason": "月末结算需要核对数据", "days": 3}


# attacks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attack:
    """One escape attempt; $CMD is a shell command that creates the marker, $MARKER its path."""

    name: str
    when: str  # "deploy" (refused by the lint) or "run" (passes the lint, fails when evaluated)
    condition: str | None  # as a gateway conditionExpression
    script: str | None  # as a scriptTask script
    writes_marker: bool = True  # False: the attack can only leak, it has no way to run code

    def source(self, place: str, marker: Path) -> str:
        text = self.condition if place == "condition" else self.script
        assert text is not None
        assert "'" not in str(marker) and '"' not in str(marker)
        command = f"touch {shlex.quote(str(marker))}"
        return text.replace("$CMD", repr(command)).replace("$MARKER", repr(str(marker)))


_WARNINGS_OS = ("[c for c in {base}.__subclasses__() if c.__name__ == 'catch_warnings'][0]()"
                "._module.__builtins__['__import__']('os')")
_WALK = _WARNINGS_OS.format(base="().__class__.__base__")
_MRO_WALK = _WARNINGS_OS.format(base="type(x).__mro__[-1]")
_GETATTR_WALK = ("getattr(getattr([c for c in getattr(getattr(getattr(1, '__class__'), '__base__'), "
                 "'__subclasses__')() if getattr(c, '__name__') == 'catch_warnings'][0](), '_module'), "
                 "'__builtins__')['__import__']('os')")

ATTACKS = [
    Attack("import_call", "deploy",
           "__import__('os').system($CMD) == 0",
           "status = __import__('os').system($CMD)"),
    Attack("open_file", "run",
           "len(open('/etc/passwd').read()) > 0 and open($MARKER, 'w').write('x') == 1",
           "passwd = open('/etc/passwd').read()\nopen($MARKER, 'w').write(passwd)"),
    Attack("import_statement", "deploy", None,
           "import os\nos.system($CMD)"),
    Attack("from_import_statement", "deploy", None,
           "from os import system\nsystem($CMD)"),
    Attack("subclasses_walk", "deploy",
           f"{_WALK}.system($CMD) == 0",
           f"status = {_WALK}.system($CMD)"),
    Attack("format_attribute_access", "run",
           "'{0.__class__.__base__.__subclasses__}'.format(1) != ''",
           "leak = '{0.__class__.__base__.__subclasses__}'.format(1)", writes_marker=False),
    Attack("format_map_attribute_access", "run",
           "'{a.__class__.__mro__}'.format_map({'a': 1}) != ''",
           "leak = str.format_map('{a.__class__.__mro__}', {'a': 1})", writes_marker=False),
    Attack("getattr_dunder", "run",
           f"{_GETATTR_WALK}.system($CMD) == 0",
           f"status = {_GETATTR_WALK}.system($CMD)"),
    Attack("type_mro", "deploy",
           f"{_MRO_WALK}.system($CMD) == 0",
           f"status = {_MRO_WALK}.system($CMD)"),
    Attack("globals_builtins", "run",
           "globals()['__builtins__']['__import__']('os').system($CMD) == 0",
           "globals()['__builtins__']['__import__']('os').system($CMD)"),
    Attack("locals_builtins", "run",
           "locals()['__builtins__']['__import__']('os').system($CMD) == 0",
           "locals()['__builtins__']['__import__']('os').system($CMD)"),
    Attack("vars_builtins", "run",
           "vars()['__builtins__']['__import__']('os').system($CMD) == 0",
           "vars()['__builtins__']['__import__']('os').system($CMD)"),
    Attack("eval_call", "deploy",
           "eval(\"__import__('os').system(\" + repr($CMD) + \")\") == 0",
           "eval(\"__import__('os').system(\" + repr($CMD) + \")\")"),
    Attack("exec_call", "deploy",
           "exec('import os; os.system(' + repr($CMD) + ')') is None",
           "exec('import os; os.system(' + repr($CMD) + ')')"),
    Attack("compile_call", "run",
           "compile(\"__import__('os').system(1)\", 'bpmn', 'eval') is not None",
           "code = compile(\"__import__('os').system(1)\", 'bpmn', 'eval')", writes_marker=False),
    Attack("generator_frame_walk", "deploy",
           "(y for y in [1]).gi_frame.f_globals['__builtins__']['__import__']('os').system($CMD) == 0",
           "g = (y for y in [1])\ng.gi_frame.f_globals['__builtins__']['__import__']('os').system($CMD)"),
    Attack("lambda_globals_walk", "deploy",
           "(lambda: 0).__globals__['__builtins__']['__import__']('os').system($CMD) == 0",
           "f = lambda: 0\nf.__globals__['__builtins__']['__import__']('os').system($CMD)"),
    # The datetime module the sandbox offers used to carry `sys` along with it.
    Attack("module_reached_through_datetime", "run",
           "datetime.sys.modules['os'].system($CMD) == 0",
           "datetime.sys.modules['os'].system($CMD)"),
]

CASES = [pytest.param(a, place, id=f"{a.name}-{place}")
         for a in ATTACKS for place in ("condition", "script") if getattr(a, place) is not None]
BY_NAME = {a.name: a for a in ATTACKS}
AT_DEPLOY = [c for c in CASES if c.values[0].when == "deploy"]
AT_RUN = [c for c in CASES if c.values[0].when == "run"]


# BPMN built in the test (the shape of tests/fixtures/two_lanes.bpmn) --------------------------
def _user_task(task_id: str, name: str, form: str, case_fields: str = "") -> str:
    fields = f'<spiffworkflow:property name="caseFields" value="{case_fields}" />' if case_fields else ""
    return (f'<bpmn:userTask id="{task_id}" name="{name}"><bpmn:extensionElements><spiffworkflow:properties>'
            f'<spiffworkflow:property name="formJsonSchemaFilename" value="{form}" />{fields}'
            f"</spiffworkflow:properties></bpmn:extensionElements></bpmn:userTask>")


def _flow(flow_id: str, source: str, target: str, condition: str | None = None) -> str:
    if condition is None:
        return f'<bpmn:sequenceFlow id="{flow_id}" sourceRef="{source}" targetRef="{target}" />'
    return (f'<bpmn:sequenceFlow id="{flow_id}" sourceRef="{source}" targetRef="{target}">\n'
            f"<bpmn:conditionExpression>{escape(condition)}</bpmn:conditionExpression>\n"
            f"</bpmn:sequenceFlow>")


def _definitions(pid: str, staff: list[str], managers: list[str], body: list[str]) -> bytes:
    def refs(ids: list[str]) -> str:
        return "".join(f"<bpmn:flowNodeRef>{i}</bpmn:flowNodeRef>" for i in ids)

    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"',
        '                  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"',
        f'                  id="defs_{pid}" targetNamespace="http://opsflow.example/test">',
        f'<bpmn:collaboration id="collab_{pid}"><bpmn:participant id="pool_{pid}" name="沙箱" '
        f'processRef="{pid}" /></bpmn:collaboration>',
        f'<bpmn:process id="{pid}" name="沙箱 {pid}" isExecutable="true">',
        '<bpmn:laneSet id="lanes">',
        f'<bpmn:lane id="lane_staff" name="staff">{refs(staff)}</bpmn:lane>',
        f'<bpmn:lane id="lane_manager" name="ops_manager">{refs(managers)}</bpmn:lane>',
        "</bpmn:laneSet>",
        *body,
        "</bpmn:process>",
        "</bpmn:definitions>",
    ]
    return "\n".join(lines).encode()


def attack_process(pid: str, attack: Attack, place: str, marker: Path, first: bool = False) -> bytes:
    """start -> request (staff) -> ATTACK -> review (ops_manager) -> end; or ATTACK right after start."""
    source = attack.source(place, marker)
    order = ["start", "attack", "request", "review", "end"] if first else [
        "start", "request", "attack", "review", "end"]
    body = ['<bpmn:startEvent id="start" name="开始" />',
            _user_task("request", "填写申请", "access_request.json"),
            _user_task("review", "审核", "approval.json"),
            '<bpmn:endEvent id="end" name="结束" />']
    after = order[order.index("attack") + 1]
    # A gateway leaves through its own two flows (the condition and the default) instead.
    flows = [_flow(f"f_{a}_{b}", a, b) for a, b in zip(order, order[1:], strict=False)
             if place == "script" or a != "attack"]
    if place == "script":
        body.append(f'<bpmn:scriptTask id="attack" name="脚本">\n'
                    f"<bpmn:script>{escape(source)}</bpmn:script>\n</bpmn:scriptTask>")
    else:
        body += ['<bpmn:exclusiveGateway id="attack" name="检查" default="f_default" />',
                 '<bpmn:endEvent id="end_default" name="其他" />',
                 _flow("f_condition", "attack", after, source),
                 _flow("f_default", "attack", "end_default")]
    managers = ["review", "end"] + (["end_default"] if place == "condition" else [])
    return _definitions(pid, ["start", "request", "attack"], managers, body + flows)


LEGIT_SCRIPT = """\
amounts = [120, 35, 80]
total = sum(amounts)
smallest, largest = min(amounts), max(amounts)
ordered = sorted(amounts, reverse=True)
count = len(amounts)
doubled = [a * 2 for a in amounts if a > 50]
by_key = dict(low=smallest, high=largest)
labels = {str(a): a // 10 for a in amounts}
start_day = datetime.date(2024, 1, 30)
expires = (start_day + datetime.timedelta(days=days)).isoformat()
today = datetime.date.today().isoformat()
stamp = datetime.datetime(2024, 1, 2, 3, 4, tzinfo=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
parsed = datetime.datetime.strptime("2024-02-03", "%Y-%m-%d").date().isoformat()
total += 5
"""


def legit_process(pid: str) -> bytes:
    """request -> calc (script) -> approve -> decided: approve["decision"] == "approve" ? approved : rejected."""
    body = ['<bpmn:startEvent id="start" name="开始" />',
            _user_task("request", "填写申请", "access_request.json", case_fields="*"),
            f'<bpmn:scriptTask id="calc" name="计算"><bpmn:script>{escape(LEGIT_SCRIPT)}</bpmn:script>'
            "</bpmn:scriptTask>",
            _user_task("approve", "审批", "approval.json"),
            '<bpmn:exclusiveGateway id="decided" name="通过?" default="f_rejected" />',
            '<bpmn:scriptTask id="mark_ok" name="批准"><bpmn:script>outcome = "approved"</bpmn:script>'
            "</bpmn:scriptTask>",
            '<bpmn:scriptTask id="mark_rejected" name="驳回"><bpmn:script>outcome = "rejected"</bpmn:script>'
            "</bpmn:scriptTask>",
            '<bpmn:endEvent id="end_ok" name="已批准" />',
            '<bpmn:endEvent id="end_rejected" name="已驳回" />',
            _flow("f1", "start", "request"), _flow("f2", "request", "calc"), _flow("f3", "calc", "approve"),
            _flow("f4", "approve", "decided"),
            _flow("f_ok", "decided", "mark_ok", 'approve["decision"] == "approve"'),
            _flow("f_rejected", "decided", "mark_rejected"),
            _flow("f5", "mark_ok", "end_ok"), _flow("f6", "mark_rejected", "end_rejected")]
    return _definitions(pid, ["start", "request", "calc"],
                        ["approve", "decided", "mark_ok", "mark_rejected", "end_ok", "end_rejected"], body)


# helpers --------------------------------------------------------------------------------------
def line_of(xml: bytes, element_id: str) -> int:
    index = xml.index(f'id="{element_id}"'.encode())
    return xml.count(b"\n", 0, index) + 1


def open_tasks(engine: ProcessEngine, case_id: int) -> list[HumanTask]:
    with engine.ctx.db.transaction() as s:
        return list(s.scalars(select(HumanTask).where(HumanTask.instance_id == case_id,
                                                      HumanTask.state == "open")))


def case_snapshot(engine: ProcessEngine, case_id: int) -> tuple[Any, ...]:
    """Everything a failed action must leave untouched: state, inbox rows and the audit trail."""
    with engine.ctx.db.transaction() as s:
        row = s.get(ProcessInstance, case_id)
        assert row is not None
        tasks = [(t.id, t.bpmn_id, t.state, t.assignee, t.completed_by, t.completed_at) for t in
                 s.scalars(select(HumanTask).where(HumanTask.instance_id == case_id).order_by(HumanTask.id))]
        # a failed action adds its own action.failed record (tests/engine/test_failed_cases.py), nothing else
        events = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action != "action.failed"))
        return row.state, row.revision, row.status, row.ended_at, row.next_timer_due, tasks, events


def counts(engine: ProcessEngine) -> list[int]:
    """How many cases, inbox rows and audit events exist."""
    with engine.ctx.db.transaction() as s:
        events = select(func.count()).select_from(AuditEvent).where(AuditEvent.action != "action.failed")
        return [s.scalar(select(func.count()).select_from(model)) or 0
                for model in (ProcessInstance, HumanTask)] + [s.scalar(events) or 0]


def deploy(engine: ProcessEngine, name: str, xml: bytes) -> None:
    engine.repository.deploy([SourceFile(name, xml)], actor="owner")


# the attacks are real ---------------------------------------------------------------------------
@pytest.mark.parametrize(("attack", "place"), CASES)
def test_attack_would_work_without_the_sandbox(attack: Attack, place: str, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    namespace: dict[str, Any] = {"x": 1, "datetime": datetime}
    code = compile(attack.source(place, marker), "<unsandboxed>", "eval" if place == "condition" else "exec")
    eval(code, namespace)  # noqa: S307 (the control: plain Python, as SpiffWorkflow's default engine)
    assert marker.exists() == attack.writes_marker


# refused at deploy ------------------------------------------------------------------------------
@pytest.mark.parametrize(("attack", "place"), AT_DEPLOY)
def test_attack_is_refused_at_deploy_with_file_and_line(engine: ProcessEngine, attack: Attack, place: str,
                                                        tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    name = f"{attack.name}.bpmn"
    xml = attack_process("sbx_deploy", attack, place, marker)
    with pytest.raises(LintFailed) as info:
        deploy(engine, name, xml)
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.element) == (name, line_of(xml, "attack"), "attack")
    kind = "condition" if place == "condition" else "script"
    assert problem.message.startswith(f"{kind} refused by the script sandbox: Line ")
    assert str(problem).startswith(f"{name}:{line_of(xml, 'attack')}: {kind} refused")
    assert engine.repository.definitions() == []
    assert not marker.exists()


def test_condition_calling_import_is_refused_at_deploy(engine: ProcessEngine, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    xml = attack_process("sbx_import", BY_NAME["import_call"], "condition", marker)
    with pytest.raises(LintFailed) as info:
        deploy(engine, "import.bpmn", xml)
    assert [str(p) for p in info.value.problems] == [
        f"import.bpmn:{line_of(xml, 'attack')}: condition refused by the script sandbox: "
        'Line 1: "__import__" is an invalid variable name because it starts with "_"']
    assert not marker.exists()


def test_script_with_import_statement_is_refused_at_deploy(engine: ProcessEngine, tmp_path: Path) -> None:
    xml = attack_process("sbx_import_os", BY_NAME["import_statement"], "script", tmp_path / "MARKER")
    with pytest.raises(LintFailed) as info:
        deploy(engine, "import_os.bpmn", xml)
    [problem] = info.value.problems
    assert problem.line == line_of(xml, "attack")
    assert "Line 1: import statements are not allowed" in problem.message


def test_every_refused_snippet_in_a_file_is_reported_at_once(engine: ProcessEngine, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    sources = [SourceFile("a.bpmn", attack_process("sbx_a", BY_NAME["import_call"], "script", marker)),
               SourceFile("b.bpmn", attack_process("sbx_b", BY_NAME["subclasses_walk"], "condition", marker))]
    with pytest.raises(LintFailed) as info:
        engine.repository.deploy(sources, actor="owner")
    assert sorted(p.file for p in info.value.problems) == ["a.bpmn", "b.bpmn"]
    assert engine.repository.definitions() == []


# failing safely at run time ---------------------------------------------------------------------
@pytest.mark.parametrize(("attack", "place"), AT_RUN)
def test_attack_fails_safely_when_a_task_is_completed(engine: ProcessEngine, people: dict[str, Actor],
                                                      attack: Attack, place: str, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    deploy(engine, f"{attack.name}.bpmn", attack_process("sbx_run", attack, place, marker))
    case = engine.runtime.start("sbx_run", people["zhang"], {})
    [request] = open_tasks(engine, case.id)
    before = case_snapshot(engine, case.id)
    with pytest.raises(ProcessError) as info:
        engine.tasks.complete(request.id, people["zhang"], REQUEST)
    assert info.value.message.startswith("the process failed: ")
    assert not marker.exists()
    assert case_snapshot(engine, case.id) == before
    # The half-run workflow was thrown away: the same task is still waiting and fails the same way.
    with pytest.raises(ProcessError):
        engine.tasks.complete(request.id, people["zhang"], REQUEST)
    assert not marker.exists()
    assert case_snapshot(engine, case.id) == before


@pytest.mark.parametrize(("attack", "place"), AT_RUN)
def test_attack_right_after_the_start_event_fails_safely_and_creates_no_case(
        engine: ProcessEngine, people: dict[str, Actor], attack: Attack, place: str, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    deploy(engine, f"{attack.name}.bpmn", attack_process("sbx_first", attack, place, marker, first=True))
    before = counts(engine)
    with pytest.raises(ProcessError):
        engine.runtime.start("sbx_first", people["zhang"], {"title": "攻击"})
    assert not marker.exists()
    assert counts(engine) == before
    assert before[:2] == [0, 0]


def test_reading_a_file_leaks_nothing_into_the_case(engine: ProcessEngine, people: dict[str, Actor],
                                                     tmp_path: Path) -> None:
    xml = attack_process("sbx_read", BY_NAME["open_file"], "script", tmp_path / "MARKER")
    deploy(engine, "read.bpmn", xml)
    case = engine.runtime.start("sbx_read", people["zhang"], {})
    [request] = open_tasks(engine, case.id)
    with pytest.raises(ProcessError) as info:
        engine.tasks.complete(request.id, people["zhang"], REQUEST)
    assert "open" in str(info.value)
    assert "passwd" not in engine.runtime.show(case.id).data
    assert "root:" not in str(engine.runtime.show(case.id).data)


# the sandbox survives a restore from the database -----------------------------------------------
@pytest.mark.parametrize(("attack", "place"), AT_RUN)
def test_sandbox_is_still_attached_after_the_case_is_restored_from_the_database(
        engine: ProcessEngine, people: dict[str, Actor], attack: Attack, place: str, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    deploy(engine, f"{attack.name}.bpmn", attack_process("sbx_restore", attack, place, marker))
    case = engine.runtime.start("sbx_restore", people["zhang"], {})
    [request] = open_tasks(engine, case.id)
    before = case_snapshot(engine, case.id)
    engine.store.cache.clear()  # the next action deserialises the case from its stored state
    with pytest.raises(ProcessError):
        engine.tasks.complete(request.id, people["zhang"], REQUEST)
    assert not marker.exists()
    assert case_snapshot(engine, case.id) == before


def test_sandbox_is_attached_in_a_freshly_started_engine_on_the_same_database(
        engine: ProcessEngine, people: dict[str, Actor], tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    attack = BY_NAME["getattr_dunder"]
    deploy(engine, "restart.bpmn", attack_process("sbx_restart", attack, "script", marker))
    case = engine.runtime.start("sbx_restart", people["zhang"], {})
    [request] = open_tasks(engine, case.id)
    before = case_snapshot(engine, case.id)
    restarted = ProcessEngine(engine.ctx.settings, clock=engine.ctx.clock)  # nothing cached in memory
    try:
        with pytest.raises(ProcessError):
            restarted.tasks.complete(request.id, people["zhang"], REQUEST)
    finally:
        restarted.close()
    assert not marker.exists()
    assert case_snapshot(engine, case.id) == before


# legitimate code still works --------------------------------------------------------------------
@pytest.mark.parametrize(("decision", "outcome"), [("approve", "approved"), ("reject", "rejected")])
def test_legitimate_script_and_condition_run_in_the_sandbox(engine: ProcessEngine, people: dict[str, Actor],
                                                            decision: str, outcome: str) -> None:
    deploy(engine, "legit.bpmn", legit_process("sbx_legit"))
    case = engine.runtime.start("sbx_legit", people["zhang"], {})
    [request] = open_tasks(engine, case.id)
    engine.store.cache.clear()
    engine.tasks.complete(request.id, people["zhang"], REQUEST)
    data = engine.runtime.show(case.id).data
    assert data["total"] == 240 and data["count"] == 3
    assert (data["smallest"], data["largest"]) == (35, 120)
    assert data["ordered"] == [120, 80, 35]
    assert data["doubled"] == [240, 160]
    assert data["by_key"] == {"low": 35, "high": 120}
    assert data["labels"] == {"120": 12, "35": 3, "80": 8}
    assert data["expires"] == "2024-02-02"
    assert data["today"] == datetime.date.today().isoformat()
    assert (data["stamp"], data["parsed"]) == ("2024-01-02 03:04", "2024-02-03")
    [approve] = open_tasks(engine, case.id)
    engine.store.cache.clear()
    answer = {"decision": decision} if decision == "approve" else {"decision": decision, "comment": "不需要"}
    engine.tasks.complete(approve.id, people["li"], answer)
    detail = engine.runtime.show(case.id)
    assert detail.status == "completed"
    assert detail.data["outcome"] == outcome


# check_snippet ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "mode"), [
    ('decision == "approve"', "eval"),
    ("days > 30 and system in ('清算', '集中交易')", "eval"),
    ("len([s for s in systems if s]) >= 2", "eval"),
    ('"PT4H"', "eval"),
    ("due = datetime.datetime.now() + datetime.timedelta(hours=4)", "exec"),
    (LEGIT_SCRIPT, "exec"),
])
def test_check_snippet_accepts_ordinary_conditions_and_scripts(source: str, mode: str) -> None:
    assert check_snippet(source, mode) is None


@pytest.mark.parametrize(("source", "mode", "reason"), [
    ("x.__class__", "eval", '"__class__" is an invalid attribute name'),
    ("__import__('os')", "eval", '"__import__" is an invalid variable name'),
    ("_getattr_", "eval", '"_getattr_" is an invalid variable name'),
    ("(y for y in []).gi_frame", "eval", '"gi_frame" is a restricted name'),
    ("f.__globals__", "eval", '"__globals__" is an invalid attribute name'),
    ("eval('1')", "eval", "Eval calls are not allowed"),
    ("exec('x = 1')", "exec", "Exec calls are not allowed"),
    ("import os", "exec", "import statements are not allowed"),
    ("from os import path", "exec", "import statements are not allowed"),
    ("x ==== 1", "eval", "SyntaxError"),
    ("x = 1", "eval", "SyntaxError"),
])
def test_check_snippet_names_the_reason_for_a_refusal(source: str, mode: str, reason: str) -> None:
    result = check_snippet(source, mode)
    assert result is not None and reason in result


def test_check_snippet_reports_the_line_within_a_script() -> None:
    assert check_snippet("a = 1\nb = 2\nc = b.__dict__", "exec") == (
        'Line 3: "__dict__" is an invalid attribute name because it starts with "_".')


def test_check_snippet_reports_every_problem_in_a_snippet() -> None:
    result = check_snippet("().__class__.__base__", "eval")
    assert result is not None and "__class__" in result and "__base__" in result


@pytest.mark.parametrize(("source", "mode"), [
    ("", "eval"), ("a\x00b", "eval"), ("a\x00b", "exec"), ("'unterminated", "eval"), ("if x:\n", "exec"),
    ("1 +", "eval"), ("x = (", "exec"),
])
def test_check_snippet_returns_a_reason_instead_of_raising_on_broken_text(source: str, mode: str) -> None:
    reason = check_snippet(source, mode)
    assert isinstance(reason, str) and "Error: " in reason


def test_check_snippet_passes_what_only_the_run_time_guards_can_stop() -> None:
    """Names and methods are resolved at run time: the lint lets them through, the guards stop them."""
    for source in ("getattr(1, 'x')", "open('/etc/passwd')", "globals()", "'{0}'.format(1)",
                   "datetime.sys", "compile('1', 'x', 'eval')"):
        assert check_snippet(source, "eval") is None


# the run-time guards behind the lint ------------------------------------------------------------
def test_a_module_reached_through_an_attribute_is_refused_even_on_an_application_helper() -> None:
    environment = RestrictedEnvironment({"helpers": SimpleNamespace(os=os, answer=42)})
    assert environment.evaluate("helpers.answer", {}) == 42
    with pytest.raises(ScriptPolicyError, match="'os' is a module"):
        environment.evaluate("helpers.os", {})


def test_datetime_offers_its_classes_but_not_the_modules_it_imported() -> None:
    environment = RestrictedEnvironment()
    assert environment.evaluate("datetime.date(2024, 1, 2) + datetime.timedelta(days=1)", {}) == (
        datetime.date(2024, 1, 3))
    assert environment.evaluate("datetime.sys", {}) is None
    assert environment.evaluate("datetime.date.today()", {}) == datetime.date.today()
