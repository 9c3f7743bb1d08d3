"""Writing facts into a running case from outside its own steps (a linked case regraded it)."""

from __future__ import annotations

from typing import Any

from SpiffWorkflow.util.task import TaskState

from engine.spiff.workflow import Workflow

_LIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED


def set_live_data(workflow: Workflow, values: dict[str, Any]) -> int:
    """Give every step still to run these values; how many steps took them.

    Each branch of a case carries its own copy of the data, so every ready, waiting or started step
    (subprocesses included) takes the values, and later steps inherit them. A waiting step (a join, a
    catch event, a timer) re-reads the step before it when it fires, so that step takes them too, or
    the old values would come back.
    """
    live = workflow.get_tasks(state=_LIVE)
    for task in live:
        task.data.update(values)
        if task.state == TaskState.WAITING and task.parent is not None:
            task.parent.data.update(values)
    return len(live)
