"""BPMN messages: what a case waits for, with which correlation values, and delivering one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from SpiffWorkflow.bpmn import BpmnEvent
from SpiffWorkflow.util.task import TaskState

from engine.spiff.specs import any_task_spec


def can_wait_for_messages(workflow: Any) -> bool:
    """Whether the case's process has a message event at all (worked out once per version)."""
    return any_task_spec(workflow, "message", lambda ts: "Message" in type(
        getattr(ts, "event_definition", None)).__name__)


def waiting_messages(workflow: Any) -> Iterator[str]:
    """The names of the messages the case waits for now."""
    for event in workflow.waiting_events():
        if event.event_type.endswith("MessageEventDefinition"):
            yield event.name


def correlation_values(workflow: Any) -> dict[str, Any]:
    """The case's correlation properties (name -> value), over every correlation key."""
    values: dict[str, Any] = {}
    for props in (workflow.correlations or {}).values():
        values.update(props)
    return values


def send_message(workflow: Any, name: str, payload: dict[str, Any]) -> bool:
    """Deliver message `name` to the task waiting for it; False when none waits. A refusal (the
    correlation values do not match) raises whatever the workflow raises."""
    waiting = [t for t in workflow.get_tasks(state=TaskState.WAITING)
               if getattr(getattr(t.task_spec, "event_definition", None), "name", None) == name]
    if not waiting:
        return False
    event = BpmnEvent(waiting[0].task_spec.event_definition, payload=payload, correlations=workflow.correlations)
    workflow.send_event(event)
    return True
