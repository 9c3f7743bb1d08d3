"""Where a case stands, element by element, for drawing on its BPMN diagram.

Completed, active (waiting for a person, a timer or a message) and overdue (an open task past its
due time) BPMN element ids, read from the case's own workflow and inbox rows. Completed steps whose
tasks the codec pruned from the workflow's tree are remembered by the workflow itself
(engine/spiff/pruning.py), so a long-running case still shows everything it has done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from engine.cases.store import CaseStore
from engine.context import EngineContext
from engine.errors import NotFound
from engine.spiff.workflow import element_states
from engine.storage.models import HumanTask, ProcessInstance


@dataclass
class CaseProgress:
    instance_id: int
    process_id: str
    version: int
    completed: list[str] = field(default_factory=list)
    active: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)


def case_progress(ctx: EngineContext, store: CaseStore, instance_id: int) -> CaseProgress:
    """Element states of one case (the caller has already checked the reader may see it)."""
    with ctx.db.transaction() as s:
        row = s.get(ProcessInstance, instance_id)
        if row is None:
            raise NotFound(f"unknown case {instance_id}")
        completed, active = element_states(store.read(s, row))
        overdue = set(s.scalars(select(HumanTask.bpmn_id).where(
            HumanTask.instance_id == instance_id, HumanTask.state == "open", HumanTask.due_at < ctx.now())))
        return CaseProgress(row.id, row.process_id, row.definition.version,
                            sorted(completed - active), sorted(active), sorted(overdue))


def case_titles(ctx: EngineContext, instance_ids: set[int]) -> dict[int, str]:
    """Case id -> title, for lists that show many tasks (one query)."""
    if not instance_ids:
        return {}
    with ctx.db.transaction() as s:
        return dict(s.execute(select(ProcessInstance.id, ProcessInstance.title)
                              .where(ProcessInstance.id.in_(sorted(instance_ids)))).all())
