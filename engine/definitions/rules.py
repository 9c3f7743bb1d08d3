"""What OpsFlow reads from a user task in the BPMN: role, form, due time, assignee and rules.

Declared with the spiffworkflow BPMN extension (bpmn-js-spiffworkflow writes these):

    <spiffworkflow:properties>
      <spiffworkflow:property name="formJsonSchemaFilename" value="change_approval.json"/>
      <spiffworkflow:property name="dueIn" value="P1D"/>               ISO 8601 duration from creation
      <spiffworkflow:property name="dueFrom" value="window_end"/>       or a datetime field of the case
      <spiffworkflow:property name="assigneeFrom" value="implementer"/> a username field (or "starter")
      <spiffworkflow:property name="separationOfDuties" value="starter, approve_manager"/>
      <spiffworkflow:property name="distinctUsers" value="implementer, reviewer"/>
      <spiffworkflow:property name="priority" value="2"/>
      <spiffworkflow:property name="caseFields" value="*"/>             form fields that are facts of the case
      <spiffworkflow:property name="returnReason" value="return_reason"/> why the task reopened (退回)
      <spiffworkflow:property name="roleFrom" value='owner["role"]'/>   the role whose queue takes it
    </spiffworkflow:properties>

`separationOfDuties` names the earlier tasks whose performer may not do this one (`starter` is
the person who started the case); `distinctUsers` lists fields of this task's form that must
name different people.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.definitions.forms import declared_fields
from engine.spiff.specs import is_human_task, is_script_task

STARTER = "starter"
ALL_FIELDS = "*"


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").replace(";", ",").split(",") if p.strip())


@dataclass(frozen=True)
class UserTaskRules:
    bpmn_id: str
    name: str
    lane: str | None
    form: str | None
    due_in: str | None
    due_from: str | None
    assignee_from: str | None
    separation_of_duties: tuple[str, ...]
    distinct_users: tuple[str, ...]
    priority: int
    documentation: str | None
    instructions: str | None
    properties: dict[str, str]
    case_fields: tuple[str, ...] = ()
    return_reason: str | None = None
    # an expression naming the role whose queue takes the task (one review per owner role), read in
    # the task's data; the lane's role when it names none. The deploy check lets it read only what
    # the process computes, never what a form or start data sets.
    role_from: str | None = None

    @classmethod
    def from_spec(cls, ts: Any) -> UserTaskRules:
        ext = getattr(ts, "extensions", None) or {}
        props: dict[str, str] = dict(ext.get("properties") or {})
        try:
            priority = int(props.get("priority", 3))
        except ValueError:
            priority = 3
        return cls(
            bpmn_id=ts.bpmn_id,
            name=ts.bpmn_name or ts.bpmn_id,
            lane=ts.lane,
            form=props.get("formJsonSchemaFilename") or None,
            due_in=props.get("dueIn") or None,
            due_from=props.get("dueFrom") or None,
            assignee_from=props.get("assigneeFrom") or None,
            separation_of_duties=_split(props.get("separationOfDuties")),
            distinct_users=_split(props.get("distinctUsers")),
            priority=priority,
            documentation=getattr(ts, "documentation", None),
            instructions=ext.get("instructionsForEndUser"),
            properties=props,
            case_fields=_split(props.get("caseFields")),
            return_reason=(props.get("returnReason") or "").strip() or None,
            role_from=(props.get("roleFrom") or "").strip() or None,
        )


def is_human(ts: Any) -> bool:
    return is_human_task(ts) and ts.bpmn_id is not None


def all_task_specs(spec: Any, subprocess_specs: dict[str, Any]) -> Iterable[Any]:
    yield from spec.task_specs.values()
    for sub in subprocess_specs.values():
        yield from sub.task_specs.values()


def user_task_rules(spec: Any, subprocess_specs: dict[str, Any]) -> dict[str, UserTaskRules]:
    return {ts.bpmn_id: UserTaskRules.from_spec(ts)
            for ts in all_task_specs(spec, subprocess_specs) if is_human(ts)}


def computed_fields(spec: Any, subprocess_specs: dict[str, Any]) -> dict[str, str]:
    """Case fields the process computes, each with the element that computes it: a script task's
    assignments, a service's result, a DMN's outputs, a multi-instance output collection."""
    computed: dict[str, str] = {}
    for ts in all_task_specs(spec, subprocess_specs):
        element = ts.bpmn_id or ts.name
        names: list[str] = []
        script = getattr(ts, "script", None)
        if is_script_task(ts) and isinstance(script, str):
            names += _assigned_names(script)
        result = getattr(ts, "result_variable", None)
        if isinstance(result, str) and getattr(ts, "operation_name", None):
            names.append(result)
        table = getattr(getattr(ts, "dmnEngine", None), "decision_table", None)
        names += [o.name for o in getattr(table, "outputs", None) or [] if getattr(o, "name", None)]
        output = getattr(ts, "data_output", None)
        if output is not None and getattr(output, "bpmn_id", None):
            names.append(output.bpmn_id)
        for name in names:
            computed.setdefault(name, element)
    return computed


def computed_before(spec: Any, subprocess_specs: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Human task id -> the computed fields (with their element) of every element it can follow.

    Overwriting a value the process computed *before* a form is what could steer it (a route, a
    risk); a value computed only after the form, or on another branch, overwrites the form instead.
    A field computed in another (sub)process is treated as preceding every task.
    """
    per_element: dict[str, list[str]] = {}
    for name, element in computed_fields(spec, subprocess_specs).items():
        per_element.setdefault(element, []).append(name)
    human = {ts.bpmn_id: ts for ts in all_task_specs(spec, subprocess_specs) if is_human(ts)}
    barred: dict[str, dict[str, str]] = {task_id: {} for task_id in human}
    owner_of = {ts.bpmn_id: owner for owner in [spec, *subprocess_specs.values()]
                for ts in owner.task_specs.values() if ts.bpmn_id}
    for element, names in per_element.items():
        owner = owner_of.get(element)
        source = next((ts for ts in owner.task_specs.values() if ts.bpmn_id == element), None) if owner else None
        reached = _reachable(source) if source is not None else set()
        for task_id, ts in human.items():
            if ts in reached or owner_of.get(task_id) is not owner:
                for name in names:
                    barred[task_id].setdefault(name, element)
    return barred


def _reachable(start: Any) -> set[Any]:
    seen: set[Any] = set()
    stack = list(getattr(start, "outputs", None) or [])
    while stack:
        ts = stack.pop()
        if ts in seen:
            continue
        seen.add(ts)
        stack.extend(getattr(ts, "outputs", None) or [])
    return seen


def expression_names(expression: str) -> set[str] | None:
    """The data names an expression reads, or None if it does not parse."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return None
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} - set(dir(builtins))


def _assigned_names(script: str) -> list[str]:
    try:
        tree = ast.parse(script)
    except SyntaxError:
        return []  # the sandbox check reports it
    # A name the script also reads is an input it normalises (`x = x or 0`, a default when missing),
    # not a value it computes.
    names = [node for node in ast.walk(tree) if isinstance(node, ast.Name)]
    read = {node.id for node in names if isinstance(node.ctx, ast.Load)}
    return [node.id for node in names if isinstance(node.ctx, ast.Store) and node.id not in read]


def case_fields_written(rules: UserTaskRules, form: dict[str, Any] | None) -> set[str]:
    """The form fields this task writes as case fields."""
    fields = declared_fields(form) if form else set()
    return fields if ALL_FIELDS in rules.case_fields else fields & set(rules.case_fields)


def case_field_problems(rules: UserTaskRules, form: dict[str, Any] | None, computed: dict[str, str],
                        answer_ids: set[str]) -> list[str]:
    """Why a task's caseFields cannot stand: a field its form lacks, one the process computes before
    the task (`computed`: computed_before for this task), or another task's answers."""
    problems = []
    fields = declared_fields(form) if form else set()
    for name in rules.case_fields:
        if name != ALL_FIELDS and form is not None and name not in fields:
            problems.append(f"caseFields names {name!r}, which is no field of its form {rules.form!r}")
    for name in sorted(case_fields_written(rules, form)):
        if name in computed:
            problems.append(f"form field {name!r} is computed by the process ({computed[name]}); "
                            "a form may not write it")
        elif name in answer_ids:
            problems.append(f"form field {name!r} would overwrite the answers of user task {name!r}")
    return problems
