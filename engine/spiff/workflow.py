"""A running case's workflow in the engine's terms: create it, run its automatic steps, find the
steps waiting for a person, read its data and where it stands."""

from __future__ import annotations

from typing import Any, TypeAlias
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.exceptions import TaskNotFoundException
from SpiffWorkflow.util.task import TaskState

from engine.spiff.pruning import pruned_bpmn_ids
from engine.spiff.sandbox import StepCounter
from engine.spiff.specs import any_task_spec, is_abstract_task

Workflow: TypeAlias = BpmnWorkflow  # the type callers annotate with


def new_workflow(spec: Any, subprocess_specs: dict[str, Any], script_engine: Any,
                 data: dict[str, Any]) -> Workflow:
    """A new case's workflow, its start data in place, no step run yet."""
    workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=script_engine)
    workflow.task_tree.data.update(data)
    return workflow


def run_automatic_steps(workflow: Workflow, refresh_timers: bool = False) -> None:
    """Run every step no person performs; abstract tasks (bpmn:task) complete by themselves.

    Held to the action's budget (sandbox.BUDGET): a loop without a wait state raises BudgetExceeded
    naming the element, and the caller rolls the action back.
    """
    counter = StepCounter()
    if refresh_timers:
        workflow.refresh_timers()
    workflow.do_engine_steps(did_complete_task=counter)
    while _has_abstract_tasks(workflow):
        abstract = [t for t in workflow.get_tasks(state=TaskState.READY, manual=True)
                    if is_abstract_task(t.task_spec)]
        if not abstract:
            break
        for task in abstract:
            task.run()
            counter(task)
        workflow.do_engine_steps(did_complete_task=counter)


def _has_abstract_tasks(workflow: Workflow) -> bool:
    """Whether the process has bpmn:task at all; most have none."""
    return any_task_spec(workflow, "abstract", is_abstract_task)


def ready_manual_tasks(workflow: Workflow) -> list[Any]:
    """The tasks ready and waiting for someone (user and manual tasks)."""
    return workflow.get_tasks(state=TaskState.READY, manual=True)


def is_ready(task: Any) -> bool:
    """Whether the task may be performed now."""
    return task.state == TaskState.READY


def task_by_id(workflow: Workflow, task_id: str) -> Any:
    """The case's task with this id; None when it is not (or no longer, pruned) in the tree."""
    try:
        return workflow.get_task_from_id(UUID(task_id))
    except (ValueError, KeyError, TaskNotFoundException):
        return None


def instance_output_item(task: Any) -> str | None:
    """The output data item of the multi-instance activity this task is one instance of: each
    instance's answers are its output (collected into the activity's loopDataOutputRef)."""
    parent_spec = getattr(task.parent, "task_spec", None) if task.parent is not None else None
    item = getattr(parent_spec, "output_item", None)
    return getattr(item, "bpmn_id", None) if getattr(parent_spec, "data_output", None) is not None else None


def case_data(workflow: Workflow) -> dict[str, Any]:
    """The case's current data: the open tasks' view, else the last completed task's."""
    ready = [t for t in workflow.get_tasks(state=TaskState.READY | TaskState.WAITING)
             if t.task_spec.bpmn_id is not None]  # not the internal joins, which carry no data
    if ready:
        return dict(ready[0].data)
    if workflow.data:
        return dict(workflow.data)
    last = workflow.last_task
    return dict(last.data) if last is not None else dict(workflow.task_tree.data)


def element_states(workflow: Workflow) -> tuple[set[str], set[str]]:
    """BPMN element ids the case has completed (pruned history included) and is active at
    (waiting for a person, a timer or a message)."""
    completed = pruned_bpmn_ids(workflow)
    active: set[str] = set()
    for task in workflow.get_tasks():
        bpmn_id = task.task_spec.bpmn_id
        if bpmn_id is None:
            continue
        if task.state == TaskState.COMPLETED:
            completed.add(bpmn_id)
        elif task.state & (TaskState.READY | TaskState.WAITING | TaskState.STARTED):
            active.add(bpmn_id)
    return completed, active


def predict(workflow: Workflow) -> None:
    """Predict the tasks ahead again, in the case and its subprocesses (after they were dropped)."""
    # SpiffWorkflow 3.2 has no public call for this: the one private method the engine uses.
    workflow._predict()
    for sub in workflow.subprocesses.values():
        sub._predict()
