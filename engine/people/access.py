"""Every "may" in one place: who may read, cancel, message, deploy, assign... decided from data.

The grants live in processes/access.json (beside roles.json); a user task's own lane decides who may
perform it (engine/definitions/assignment.py), everything else is asked here. Pages, API routes, CLI
commands, service tasks and escalations all reach these checks through the engine's services, so a
rule changed in the file changes everywhere at once.

Reading a case is one rule (`may_read_case`, and `case_filter` for lists, which must agree):
- a role granted `case.read_all` (the department-wide readers) reads every case;
- the starter reads their case; so does whoever completed a task in it or has a task assigned in it;
- an open task still in its role's queue (unassigned) lets that role's holders read the case;
- an active substitute (A/B角) reads what their holder's open tasks of a role they share reveal.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from engine.errors import BadRequest, Forbidden
from engine.people.identity import Actor
from engine.storage.models import CaseLink, HumanTask, ProcessInstance

EVERYONE = "*"
ACTIONS = ("case.read_all", "case.cancel", "case.cancel_own", "case.cancel_signoff", "case.message",
           "audit.read_all", "tasks.read_all", "tasks.assign", "dashboard.view", "process.deploy",
           "process.migrate", "registers.edit", "alerts.post", "users.manage", "substitutes.manage",
           "ci.manage")


@dataclass(frozen=True)
class Grant:
    action: str
    roles: frozenset[str]
    means_zh: str
    means_en: str


@dataclass(frozen=True)
class TaskFacts:
    """What the read rule looks at in one human task of a case."""

    role: str
    assignee: str | None
    completed_by: str | None
    open: bool


@dataclass(frozen=True)
class CaseFacts:
    id: int
    process_id: str
    started_by: str
    tasks: tuple[TaskFacts, ...]
    stuck: bool = False  # running with a recorded error (a timer that failed): its process's owners diagnose it


@dataclass(frozen=True)
class Condition:
    field: str
    values: tuple[Any, ...]

    def holds(self, data: dict[str, Any]) -> bool:
        value = data.get(self.field)
        return any(value == v and type(value) is type(v) for v in self.values)


class AccessPolicy:
    """The grants of access.json, checked: an unknown action or a malformed entry stops the start (BadRequest)."""

    def __init__(self, grants: dict[str, Grant], managers: dict[str, str],
                 approves_for: dict[str, frozenset[str]], reportable: tuple[Condition, ...]) -> None:
        self.grants = grants
        self.managers = managers
        self.approves_for = approves_for
        self.reportable_when = reportable

    @classmethod
    def load(cls, path: Path) -> AccessPolicy:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadRequest(f"{path.name}: cannot read the access policy: {exc}") from None
        return cls.parse(raw, path.name)

    @classmethod
    def parse(cls, raw: dict[str, Any], name: str = "access.json") -> AccessPolicy:
        problems: list[str] = []
        grants: dict[str, Grant] = {}
        for action, entry in (raw.get("grants") or {}).items():
            roles = entry.get("roles") if isinstance(entry, dict) else None
            if action not in ACTIONS:
                problems.append(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
            elif not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                problems.append(f"{action}: 'roles' must be a list of role keys")
            else:
                grants[action] = Grant(action, frozenset(roles), str(entry.get("means_zh", "")),
                                       str(entry.get("means_en", "")))
        problems += [f"no grant for {a!r}: name its roles, or [] for nobody" for a in ACTIONS if a not in grants
                     and not any(p.startswith(a) for p in problems)]
        managers = {k: v for k, v in (raw.get("managers") or {}).items() if k != "about"}
        if EVERYONE not in managers:
            problems.append("managers: name the default manager role under '*'")
        approves = {k: frozenset(v) for k, v in (raw.get("approves_for") or {}).items() if k != "about"}
        conditions = []
        for c in (raw.get("reportable") or {}).get("any", []):
            if not isinstance(c, dict) or "field" not in c or ("equals" not in c and "in" not in c):
                problems.append(f"reportable: {c!r} needs 'field' and 'equals' or 'in'")
                continue
            conditions.append(Condition(c["field"], tuple(c["in"]) if "in" in c else (c["equals"],)))
        if problems:
            raise BadRequest(f"{name}: " + "; ".join(problems))
        return cls(grants, managers, approves, tuple(conditions))

    # grants -------------------------------------------------------------------------------------
    def allows(self, actor: Actor, action: str) -> bool:
        roles = self.grants[action].roles
        return EVERYONE in roles or bool(actor.roles & roles)

    def require(self, actor: Actor, action: str, what: str) -> None:
        """Raise Forbidden naming the grant unless the actor holds it; `what` is the refused act."""
        if not self.allows(actor, action):
            grant = self.grants[action]
            raise Forbidden(f"{actor.username} may not {what}: it needs the grant {action} "
                            f"({grant.means_zh}; roles: {', '.join(sorted(grant.roles)) or 'nobody'})",
                            rule=action)

    def roles_for(self, action: str) -> frozenset[str]:
        return self.grants[action].roles

    def manager_of(self, role: str) -> str:
        return self.managers.get(role, self.managers[EVERYONE])

    def may_take_approval(self, role: str, lane_role: str) -> bool:
        """Whether an approval of `lane_role` may be handed to holders of `role`."""
        return role == lane_role or role in self.approves_for.get(lane_role, frozenset())

    def is_reportable(self, data: dict[str, Any]) -> bool:
        return any(c.holds(data) for c in self.reportable_when)

    # reading cases ------------------------------------------------------------------------------
    def may_read_case(self, actor: Actor, case: CaseFacts, holders: Collection[str] = ()) -> bool:
        if self.allows(actor, "case.read_all") or actor.username == case.started_by:
            return True
        if case.stuck and self.allows(actor, "process.deploy"):
            return True
        for t in case.tasks:
            if actor.username in (t.assignee, t.completed_by):
                return True
            if t.open and t.role in actor.roles and (t.assignee is None or t.assignee in holders):
                return True
        return False

    def require_read(self, actor: Actor, case: CaseFacts, holders: Collection[str] = ()) -> None:
        if not self.may_read_case(actor, case, holders):
            readers = ", ".join(sorted(self.roles_for("case.read_all")))
            raise Forbidden(f"{actor.username} takes no part in case {case.id} and may not read it "
                            f"(readers: its starter, whoever has or had a task in it, the queue of an open "
                            f"task, {readers}, and process owners while it is stuck)", rule="read")

    def case_filter(self, actor: Actor, holders: Collection[str] = ()) -> Any:
        """The same rule as may_read_case, as a WHERE clause on process_instance (None: every case)."""
        if self.allows(actor, "case.read_all"):
            return None
        roles = sorted(actor.roles)
        queue = [HumanTask.assignee.is_(None)]
        if holders:
            queue.append(HumanTask.assignee.in_(sorted(holders)))
        took_part = select(HumanTask.instance_id).where(or_(
            HumanTask.assignee == actor.username, HumanTask.completed_by == actor.username,
            and_(HumanTask.state == "open", HumanTask.role.in_(roles), or_(*queue))))
        readable = [ProcessInstance.started_by == actor.username, ProcessInstance.id.in_(took_part)]
        if self.allows(actor, "process.deploy"):
            readable.append(and_(ProcessInstance.status == "running", ProcessInstance.error.is_not(None)))
        return or_(*readable)


def case_facts(s: Session, instance_id: int, row: ProcessInstance | None = None) -> CaseFacts | None:
    """The facts the read rule needs, read in the caller's transaction (None: no such case)."""
    row = row if row is not None else s.get(ProcessInstance, instance_id)
    if row is None:
        return None
    tasks = s.execute(select(HumanTask.role, HumanTask.assignee, HumanTask.completed_by, HumanTask.state)
                      .where(HumanTask.instance_id == instance_id))
    return CaseFacts(row.id, row.process_id, row.started_by,
                     tuple(TaskFacts(r, a, c, st == "open") for r, a, c, st in tasks),
                     stuck=row.status == "running" and row.error is not None)


def linked_cases(s: Session, instance_id: int) -> list[int]:
    rows = s.execute(select(CaseLink.from_instance_id, CaseLink.to_instance_id).where(
        or_(CaseLink.from_instance_id == instance_id, CaseLink.to_instance_id == instance_id)))
    return sorted({a if b == instance_id else b for a, b in rows})

