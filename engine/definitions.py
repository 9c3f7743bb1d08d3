"""What OpsFlow reads from a user task in the BPMN: role, form, due time, assignee and rules.

Declared with SpiffWorkflow's own extension (bpmn-js-spiffworkflow writes these):

    <spiffworkflow:properties>
      <spiffworkflow:property name="formJsonSchemaFilename" value="change_approval.json"/>
      <spiffworkflow:property name="dueIn" value="P1D"/>               ISO 8601 duration from creation
      <spiffworkflow:property name="dueFrom" value="window_end"/>       or a datetime field of the case
      <spiffworkflow:property name="assigneeFrom" value="implementer"/> a username field (or "starter")
      <spiffworkflow:property name="separationOfDuties" value="starter, approve_manager"/>
      <spiffworkflow:property name="distinctUsers" value="implementer, reviewer"/>
      <spiffworkflow:property name="priority" value="2"/>
    </spiffworkflow:properties>

`separationOfDuties` names the earlier tasks whose performer may not do this one (`starter` is
the person who started the case); `distinctUsers` lists fields of this task's form that must
name different people.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from SpiffWorkflow.bpmn.specs.mixins.manual_task import ManualTask
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask

STARTER = "starter"


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
        )


def is_human(ts: Any) -> bool:
    return isinstance(ts, UserTask | ManualTask) and ts.bpmn_id is not None


def all_task_specs(spec: Any, subprocess_specs: dict[str, Any]) -> Iterable[Any]:
    yield from spec.task_specs.values()
    for sub in subprocess_specs.values():
        yield from sub.task_specs.values()


def user_task_rules(spec: Any, subprocess_specs: dict[str, Any]) -> dict[str, UserTaskRules]:
    return {ts.bpmn_id: UserTaskRules.from_spec(ts)
            for ts in all_task_specs(spec, subprocess_specs) if is_human(ts)}
