"""A stored case state read without restoring it: the steps it has reached, and the steps it only
predicts (dropped before the state is restored against another version, which predicts them anew).

The state is the JSON the codec writes (engine/spiff/serializer.py), parsed: the case's task map
and one per running subprocess, plus the spec names of completed steps pruned from the tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from SpiffWorkflow.util.task import TaskState

from engine.spiff.serializer import PRUNED_KEY

_NOT_REACHED = TaskState.PREDICTED_MASK | TaskState.FUTURE
_REACHED = TaskState.WAITING | TaskState.READY | TaskState.STARTED | TaskState.COMPLETED | TaskState.ERROR


@dataclass(frozen=True)
class StoredStep:
    """One task of a stored state, by its spec name."""

    name: str
    reached: bool  # completed, waiting, ready, started or failed: the case has been here
    completed: bool
    waiting: bool  # ready or waiting: the case is at this step now
    next: bool  # not reached, but its parent has completed: the case is about to reach it


def stored_steps(state: dict[str, Any]) -> Iterator[StoredStep]:
    """Every step of the state: the pruned completed ones first (they ran first), then the case's
    tasks and each subprocess's, in stored order."""
    for name in state.get(PRUNED_KEY) or ():
        yield StoredStep(name, reached=True, completed=True, waiting=False, next=False)
    for tasks in _task_maps(state):
        for task in tasks.values():
            task_state = task["state"]
            yield StoredStep(
                task["task_spec"], reached=bool(task_state & _REACHED),
                completed=bool(task_state & TaskState.COMPLETED),
                waiting=bool(task_state & (TaskState.READY | TaskState.WAITING)),
                next=bool(not task_state & _REACHED and task_state & TaskState.FUTURE
                          and _parent_state(tasks, task) & TaskState.COMPLETED))


def drop_predicted(state: dict[str, Any]) -> None:
    """Remove, in place, the tasks not reached yet under unfinished ones, in the case and every
    subprocess; restoring the state predicts them again from the spec it is restored against."""
    for workflow in _workflow_dicts(state):
        _drop_predicted(workflow)


def _workflow_dicts(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [state, *[sub for sub in (state.get("subprocesses") or {}).values() if isinstance(sub, dict)]]


def _task_maps(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [w.get("tasks") or {} for w in _workflow_dicts(state)]


def _parent_state(tasks: dict[str, Any], task: dict[str, Any]) -> int:
    parent = tasks.get(task.get("parent") or "")
    return int(parent["state"]) if parent else TaskState.COMPLETED


def _drop_predicted(workflow: dict[str, Any]) -> None:
    tasks: dict[str, Any] = workflow.get("tasks") or {}
    drop: set[str] = set()

    def remove(task_id: str) -> None:
        drop.add(task_id)
        for child in tasks.get(task_id, {}).get("children") or []:
            remove(child)

    for task_id, task in tasks.items():
        if task["state"] & _NOT_REACHED and not _parent_state(tasks, task) & TaskState.COMPLETED:
            remove(task_id)
    for task_id in drop:
        tasks.pop(task_id, None)
    for task in tasks.values():
        task["children"] = [c for c in task.get("children") or [] if c not in drop]
