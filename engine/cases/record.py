"""The approval record (审批记录): every completed task of a case, who did it (and for whom), when,
its outcome and its answers under the form's own labels.

Read from the inbox rows, which keep each task's answers (human_task.answers): one entry per
person, so each CAB member's vote and conditions stand on their own line, and a return names who
sent the case back and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.configuration import picker
from engine.definitions.forms import labelled_answers, outcome_field, register_fields
from engine.definitions.rules import case_fields_written
from engine.storage.models import HumanTask, User


@dataclass
class ApprovalEntry:
    task_id: str
    bpmn_id: str
    name: str
    role: str
    completed_by: str
    completed_by_name: str
    acting_for: str | None
    completed_at: datetime | None
    outcome: Any  # the value of the form's x-outcome field (approve / reject / return …), if it has one
    outcome_label: str | None  # the form's label for it (批准 / 驳回 / 退回)
    answers: list[dict[str, Any]] = field(default_factory=list)  # the person's own words: field, label, value, text
    facts: list[dict[str, Any]] = field(default_factory=list)  # what the step wrote as case fields (a request's)
    return_reason: str | None = None  # this task had reopened because the case was sent back
    returned_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["completed_at"] = self.completed_at.isoformat() if self.completed_at else None
        return out


def approval_record(s: Session, definition: Any, instance_id: int) -> list[ApprovalEntry]:
    """The case's completed tasks in the order they were done."""
    rows = list(s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                   HumanTask.state == "completed")
                          .order_by(HumanTask.completed_at, HumanTask.completed_revision, HumanTask.created_at)))
    people = {r.completed_by for r in rows if r.completed_by} | {r.acting_for for r in rows if r.acting_for}
    names = dict(s.execute(select(User.username, User.display_name).where(User.username.in_(people))).all()) \
        if people else {}
    entries = []
    named: dict[str, dict[str, Any] | None] = {}  # forms with register fields, their ids named (one read per form)
    for row in rows:
        form = definition.forms.get(row.form_key) if row.form_key else None
        if form is not None and register_fields(form):
            key = str(row.form_key)
            if key not in named:
                named[key] = picker.with_options(s, form, every_item=True)
            form = named[key]
        answers = labelled_answers(form, row.answers or {})
        outcome = outcome_field(form)
        shown = next((a for a in answers if a["field"] == outcome), None)
        rules = definition.rules.get(row.bpmn_id)
        facts = case_fields_written(rules, form) if rules is not None and definition.by_task else set()
        who = row.completed_by or ""
        entries.append(ApprovalEntry(
            row.id, row.bpmn_id, row.name, row.role, who, names.get(who, who), row.acting_for, row.completed_at,
            shown["value"] if shown else None, str(shown["text"]) if shown else None,
            [a for a in answers if a["field"] != outcome and a["field"] not in facts],
            [a for a in answers if a["field"] != outcome and a["field"] in facts],
            row.return_reason, row.returned_by))
    return entries
