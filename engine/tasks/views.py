"""A human task as callers read it: a copy of its inbox row, so no caller holds (or changes) an ORM row."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from engine.storage.models import HumanTask


@dataclass(frozen=True)
class TaskView:
    id: str  # the SpiffWorkflow task id
    instance_id: int
    process_id: str
    bpmn_id: str
    name: str
    role: str
    assignee: str | None
    state: str  # open|completed|cancelled
    form_key: str | None
    priority: int
    created_at: datetime
    due_at: datetime | None
    claimed_at: datetime | None
    completed_at: datetime | None
    completed_by: str | None
    acting_for: str | None  # the holder a substitute (A/B角) acted for
    answers: dict[str, Any] | None  # what was submitted (审批记录)
    return_reason: str | None  # reopened because the case was sent back
    returned_by: str | None  # who sent it back; None: an automatic check
    completed_revision: int | None

    @classmethod
    def of(cls, row: HumanTask) -> TaskView:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
