"""History pruning: a case's task tree is bounded by what it is doing, not by what it has done.

SpiffWorkflow keeps every task it ever ran (with its data) in the workflow's task tree, so a rework
loop grows the stored state by most of a kilobyte per step, for ever. The history users see lives
elsewhere (the audit trail, the human_task table); the tree only needs what SpiffWorkflow 3.2 will
still read. `prune()` works that set out, removes every other finished task, splices the tree back
together, and records the spec names of the completed tasks it removed (a set of names, not a task
per step: `completed_spec_names`) so the case diagram and migration still know what has run.

What SpiffWorkflow 3.2 reads, and therefore what is kept, in the case's workflow and in every
running subprocess ("active" = any state but COMPLETED and CANCELLED: predicted, FUTURE, WAITING,
READY, STARTED and ERROR):

- the root and its direct children (ad hoc subprocesses treat the root's children as branches;
  message-started paths hang there), and `workflow.last_task` (`case_data` reads it; a subprocess's
  last task holds the data its call activity copies back);
- every active task and its parent (a task inherits its parent's data when it becomes ready; joins
  look at their instances' parents);
- every child of an active loop or multi-instance task (completion counts the finished instances;
  the completion condition reads the last one merged);
- structured joins (boundary events, event start splits): the split `find_ancestor` finds and every
  child of it (the main task and the boundary events are judged by their states);
- unstructured joins (parallel, inclusive, the process's end join): each finished instance of the
  same gateway in the current round (below the last time it fired on this path) and its parent: a
  parallel join counts the branches that arrived, the end join merges the data every ended branch
  carried into the case's data;
- parallel joins: the nearest ancestor run of each input (SpiffWorkflow walks up the history to
  credit an input fed back by a loop, SpiffWorkflow #341);
- tasks whose subprocess is still running.

Everything else that is finished goes. Kept tasks keep their order and their ancestry among kept
tasks, so depth-first order, `is_descendant_of` and `find_ancestor` answer as before. Task data is
untouched: the serializer stores each task's data as a delta against its parent, so clearing a kept
task's data would grow its children's deltas, and the kept completed tasks are mostly ones whose
data is read again (parents of waiting tasks, ended branches, the last task). Completed subprocesses
go with their task. Ad hoc subprocesses, trees with unreachable tasks and joins of other kinds are
left alone.

What stays although it is history: per ended side branch (a non-interrupting boundary event's or a
cycle timer's path that reached an end event) its end event and the cancelled end-join instance,
until the case ends, because the end join merges their data into the case's; per input of a
parallel join in a loop, one task of the previous round. SpiffWorkflow itself also leaves one
WAITING boundary join per fired cycle timer (active, so kept).

The old rounds' join instances are not kept: SpiffWorkflow 3.2 counts them in later rounds of a
loop (a parallel join can fire before all branches of the new round arrived; an inclusive join
fires on the first one). Where a save falls between two rounds pruning removes that stale input, so
the join waits as BPMN says; it never makes a join wait longer than that.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.specs.bpmn_process_spec import AdHocSubprocessSpec
from SpiffWorkflow.bpmn.specs.control import BoundaryEventJoin, StartEventJoin
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import LoopTask
from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway
from SpiffWorkflow.bpmn.specs.mixins.unstructured_join import UnstructuredJoin
from SpiffWorkflow.specs.Join import Join
from SpiffWorkflow.util.task import TaskState

logger = logging.getLogger(__name__)

_FINISHED = TaskState.COMPLETED | TaskState.CANCELLED  # ERROR stays: the case still has to deal with it
_HISTORY = "_opsflow_completed_specs"


def completed_spec_names(workflow: Any) -> frozenset[str]:
    """Spec names of completed tasks that pruning removed (the case's and its subprocesses')."""
    return frozenset(getattr(workflow, _HISTORY, ()))


def set_completed_spec_names(workflow: Any, names: Iterable[str]) -> None:
    setattr(workflow, _HISTORY, set(names))


def pruned_bpmn_ids(workflow: Any) -> set[str]:
    """BPMN ids of the completed steps pruned from the tree (the tree's own completed tasks add the rest)."""
    ids: set[str] = set()
    specs = [workflow.spec, *workflow.subprocess_specs.values()]
    for name in completed_spec_names(workflow):
        for spec in specs:
            ts = spec.task_specs.get(name)
            if ts is not None:
                if ts.bpmn_id is not None:
                    ids.add(ts.bpmn_id)
                break
    return ids


def prune(workflow: Any) -> int:
    """Remove the history the case no longer needs; returns how many tasks went.

    The plan is made before anything changes; if making it fails (a tree shape this module does not
    know), nothing is pruned and the case is saved as it is.
    """
    try:
        plans = _plan(workflow)
    except Exception:  # noqa: BLE001 (bytes are never worth a case that cannot be saved)
        logger.exception("history pruning skipped: could not plan it")
        return 0
    if not plans:
        return 0
    return _apply(workflow, plans)


# planning -----------------------------------------------------------------------------------------
class _Plan:
    """What pruning one workflow does: new parents and children of the kept tasks, the removed ones."""

    __slots__ = ("workflow", "removed", "parents", "children")

    def __init__(self, workflow: Any) -> None:
        self.workflow = workflow
        self.removed: list[Any] = []
        self.parents: dict[Any, Any] = {}
        self.children: dict[Any, list[Any]] = {}


def _plan(top: Any) -> list[_Plan]:
    running = [top, *[sp for sp in top.subprocesses.values() if not sp.completed]]
    plans = []
    for wf in running:
        plan = _plan_one(wf, top.subprocesses)
        if plan is not None:
            plans.append(plan)
    return plans


def _plan_one(wf: Any, subprocesses: dict[UUID, Any]) -> _Plan | None:
    root = wf.task_tree
    if root is None or isinstance(wf.spec, AdHocSubprocessSpec):
        return None
    # Tasks are looked up by their UUID's int: hashing a UUID object runs Python code, an int does not.
    index = {task.id.int: task for task in wf.tasks.values()}
    parent: dict[Any, Any] = {}
    by_spec: dict[str, list[Any]] = {}
    active = []
    for task in index.values():
        spec = task.task_spec
        if isinstance(spec, Join) and not isinstance(spec, UnstructuredJoin | BoundaryEventJoin | StartEventJoin):
            return None  # a join this module has not been taught to read
        parent[task] = index.get(task._parent.int) if task._parent is not None else None
        by_spec.setdefault(spec.name, []).append(task)
        if not task._state & _FINISHED:
            active.append(task)

    def children(task: Any) -> list[Any]:
        return [index[child.int] for child in task._children]

    subtrees: dict[Any, set[Any]] = {}

    def subtree(top: Any) -> set[Any]:
        found = subtrees.get(top)
        if found is None:
            found, stack = set(), [top]
            while stack:
                node = stack.pop()
                found.add(node)
                stack.extend(children(node))
            subtrees[top] = found
        return found

    keep: set[Any] = {root, *children(root)}
    last = wf.last_task
    if last is not None and index.get(last.id.int) is last:
        keep.add(last)
    for task in active:
        keep.add(task)
        if parent[task] is not None:
            keep.add(parent[task])
    for task_id, sp in subprocesses.items():
        if not sp.completed and task_id.int in index:
            keep.add(index[task_id.int])

    for task in active:
        spec = task.task_spec
        if isinstance(spec, LoopTask):
            keep.update(children(task))
        if isinstance(spec, UnstructuredJoin):
            _keep_round(task, by_spec[spec.name], keep, parent, subtree)
            if isinstance(spec, ParallelGateway):
                _keep_input_ancestors(task, spec, keep, parent)
        elif isinstance(spec, BoundaryEventJoin | StartEventJoin):
            split = parent[task]
            while split is not None and split.task_spec.name != spec.split_task:
                split = parent[split]
            if split is not None:
                keep.add(split)
                keep.update(children(split))

    # A kept join instance is read through its parent (state, spec, data): keep that too.
    pending = [task for task in keep if isinstance(task.task_spec, UnstructuredJoin)]
    while pending:
        above = parent[pending.pop()]
        if above is not None and above not in keep:
            keep.add(above)
            if isinstance(above.task_spec, UnstructuredJoin):
                pending.append(above)

    if len(keep) >= len(index):
        return None
    return _rebuild(wf, root, keep, children, len(index))


def _keep_round(task: Any, instances: list[Any], keep: set[Any], parent: dict[Any, Any],
                subtree: Any) -> None:
    """The finished instances of this join that its current round still counts, and their parents."""
    fired = parent[task]  # the last time this join fired on the way here: instances before it are spent
    while fired is not None and not (fired.task_spec is task.task_spec and fired._state == TaskState.COMPLETED):
        fired = parent[fired]
    current = subtree(fired) if fired is not None else None
    for other in instances:
        if other is task or other is fired or not other._state & _FINISHED:
            continue
        if current is None or other in current:
            keep.add(other)
            if parent[other] is not None:
                keep.add(parent[other])


def _keep_input_ancestors(task: Any, spec: Any, keep: set[Any], parent: dict[Any, Any]) -> None:
    """The nearest ancestor run of each input of a parallel join (its threshold walks up to them)."""
    wanted = set(spec.inputs)
    current = parent[task]
    while current is not None and wanted:
        if current.task_spec in wanted:
            wanted.discard(current.task_spec)
            keep.add(current)
        current = parent[current]


def _rebuild(wf: Any, root: Any, keep: set[Any], children: Any, count: int) -> _Plan | None:
    """Depth-first over the tree: each kept task hangs under its nearest kept ancestor, in order.

    A workflow with tasks the tree does not reach (`count` counts them all) is left alone.
    """
    plan = _Plan(wf)
    plan.children[root] = []
    stack: list[tuple[Any, Any]] = [(child, root) for child in reversed(children(root))]
    while stack:
        task, anchor = stack.pop()
        if task in keep:
            plan.children[anchor].append(task)
            plan.children[task] = []
            plan.parents[task] = anchor
            anchor = task
        else:
            plan.removed.append(task)
        stack.extend((child, anchor) for child in reversed(children(task)))
    if not plan.removed or 1 + len(plan.parents) + len(plan.removed) != count:
        return None
    return plan


# applying -----------------------------------------------------------------------------------------
def _apply(top: Any, plans: list[_Plan]) -> int:
    history: set[str] = getattr(top, _HISTORY, None) or set()
    setattr(top, _HISTORY, history)
    gone: set[int] = set()
    for plan in plans:
        tasks = plan.workflow.tasks
        for task, children in plan.children.items():
            task._children = [child.id for child in children]
        for task, parent in plan.parents.items():
            task._parent = parent.id
        for task in plan.removed:
            del tasks[task.id]
            gone.add(task.id.int)
            _forget(top, task, history)
    # Completed subprocesses whose task went, and the subprocesses nested in them.
    removed = len(gone)
    while True:
        dropped = [task_id for task_id, sp in top.subprocesses.items() if task_id.int in gone and sp.completed]
        if not dropped:
            return removed
        for task_id in dropped:
            sp = top.subprocesses.pop(task_id)
            for task in sp.tasks.values():
                gone.add(task.id.int)
                _forget(top, task, history)
            removed += len(sp.tasks)


def _forget(top: Any, task: Any, history: set[str]) -> None:
    if task._state == TaskState.COMPLETED:
        history.add(task.task_spec.name)
    top.event_manager.remove_task(task)
