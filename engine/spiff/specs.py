"""What kind of BPMN element a task spec is, and facts about a deployed process worked out once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.bpmn.specs.mixins.manual_task import ManualTask
from SpiffWorkflow.bpmn.specs.mixins.none_task import NoneTask
from SpiffWorkflow.bpmn.specs.mixins.script_task import ScriptTask
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask


def is_human_task(ts: Any) -> bool:
    """A user task or a manual task: a step a person performs."""
    return isinstance(ts, UserTask | ManualTask)


def is_user_task(ts: Any) -> bool:
    """A user task (a person fills in its form), not a manual task."""
    return isinstance(ts, UserTask)


def is_start_event(ts: Any) -> bool:
    return isinstance(ts, StartEvent)


def is_script_task(ts: Any) -> bool:
    return isinstance(ts, ScriptTask)


def is_abstract_task(ts: Any) -> bool:
    """A bpmn:task with no type: the engine completes it by itself."""
    return isinstance(ts, NoneTask)


_FACTS = "_opsflow_facts"


def any_task_spec(workflow: Any, fact: str, test: Callable[[Any], bool]) -> bool:
    """Whether any task spec of the process or a subprocess it calls passes `test`; specs are shared
    per deployed version, so each fact is worked out once per version and kept on the spec itself
    (not keyed by id(): a spec dropped from the cache frees its id for another version's spec, which
    then inherited the wrong facts; a case never got its message subscriptions)."""
    facts: dict[str, bool] | None = getattr(workflow.spec, _FACTS, None)
    if facts is None:
        facts = {}
        setattr(workflow.spec, _FACTS, facts)
    known = facts.get(fact)
    if known is None:
        specs = [workflow.spec, *(workflow.subprocess_specs or {}).values()]
        known = facts[fact] = any(test(ts) for spec in specs for ts in spec.task_specs.values())
    return known
