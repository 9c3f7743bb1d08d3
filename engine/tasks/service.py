"""The inbox and the work on a task: claim, unclaim, assign, complete.

Listing reads only the `human_task` table (indexed SQL); no workflow is deserialised for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, union_all
from sqlalchemy.orm import Session

from engine.cases.failures import failures_recorded
from engine.cases.record import ApprovalEntry, approval_record
from engine.cases.store import CaseStore
from engine.configuration import picker
from engine.context import EngineContext
from engine.definitions.assignment import check_may_act, distinct_users_errors, performers
from engine.definitions.forms import field_errors, undeclared_errors
from engine.definitions.repository import LoadedDefinition, RepositoryService
from engine.definitions.rules import UserTaskRules, case_fields_written
from engine.errors import BadRequest, Conflict, Forbidden, NotFound, ValidationFailed
from engine.people.access import AccessPolicy, case_facts
from engine.people.identity import Actor, IdentityService
from engine.people.substitutes import holders_for
from engine.spiff.workflow import instance_output_item, is_ready, task_by_id
from engine.storage.audit import AuditService
from engine.storage.db import Sql
from engine.storage.models import HumanTask, ProcessInstance
from engine.tasks.views import TaskView

# The task and its case, read under the case's lock (engine/storage/db.py `Sql`; column order as listed).
_TASK_FIELDS = ("instance_id", "process_id", "bpmn_id", "name", "role", "assignee", "state", "form_key",
                "priority", "created_at", "due_at", "claimed_at", "completed_by")
_CASE_FIELDS = ("id", "definition_id", "process_id", "title", "status", "started_by", "revision")
_LOCK_TASK = Sql(f"SELECT {', '.join('t.' + f for f in _TASK_FIELDS)}, {', '.join('c.' + f for f in _CASE_FIELDS)} "
                 "FROM human_task t JOIN process_instance c ON c.id = t.instance_id WHERE t.id = :id",
                 lock="FOR UPDATE OF c")
_OPEN_AS_READ = "WHERE id = :id AND state = 'open' AND COALESCE(assignee, '') = :seen"
_SET_ASSIGNEE = Sql(f"UPDATE human_task SET assignee = :assignee, claimed_at = :claimed_at {_OPEN_AS_READ}")
_COMPLETE = Sql("UPDATE human_task SET state = 'completed', assignee = :assignee, claimed_at = :claimed_at, "
                "completed_at = :completed_at, completed_by = :completed_by, acting_for = :acting_for, "
                f"answers = :answers, completed_revision = :revision {_OPEN_AS_READ}")

# Inbox orders by name (the web inbox's sort choices); the first is the default.
INBOX_ORDERS: dict[str, tuple[Any, ...]] = {
    "priority": (HumanTask.priority, HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.created_at),
    "due": (HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.priority, HumanTask.created_at),
    "created": (HumanTask.created_at.desc(), HumanTask.priority),
}


@dataclass
class TaskDetail:
    task: TaskView  # a copy of the inbox row: callers never hold an ORM row
    title: str
    case_title: str
    form: dict[str, Any] | None
    data: dict[str, Any]  # what the form opens with: the case fields it edits, never another's answers
    documentation: str | None
    instructions: str | None
    definition_id: int  # the version the case runs on (its forms and lanes)
    case_data: dict[str, Any] = field(default_factory=dict)  # the case's facts so far, read-only
    record: list[ApprovalEntry] = field(default_factory=list)  # who decided what so far (审批记录)


class TaskService:
    def __init__(self, ctx: EngineContext, repository: RepositoryService, identity: IdentityService,
                 audit: AuditService, store: CaseStore, access: AccessPolicy) -> None:
        self.ctx = ctx
        self.access = access
        self.repository = repository
        self.identity = identity
        self.audit = audit
        self.store = store

    # the inbox ----------------------------------------------------------------------------------
    def inbox(self, actor: Actor, scope: str = "all", overdue: bool = False, process_id: str | None = None,
              limit: int = 100, offset: int = 0, *, due_before: datetime | None = None,
              priority: int | None = None, order: str = "priority") -> list[HumanTask]:
        """Open tasks: `mine` (assigned to me or to those I stand in for, A/B角), `group` (my roles',
        unclaimed) or `all` of both; `due_before` and `priority` narrow, `order` names INBOX_ORDERS."""
        with self.ctx.db.read() as s:
            keys = (*INBOX_ORDERS.get(order, INBOX_ORDERS["priority"]), HumanTask.id)
            query = self._inbox_query(actor, scope, overdue, process_id, s, due_before, priority,
                                      window=(keys, offset + limit))
            return list(s.scalars(query.order_by(*keys).offset(offset).limit(limit)))

    def count(self, actor: Actor, scope: str = "all", overdue: bool = False, process_id: str | None = None,
              *, due_before: datetime | None = None, priority: int | None = None) -> int:
        with self.ctx.db.read() as s:
            query = self._inbox_query(actor, scope, overdue, process_id, s, due_before, priority)
            return s.scalar(select(func.count()).select_from(query.subquery())) or 0

    def _inbox_query(self, actor: Actor, scope: str, overdue: bool, process_id: str | None,
                     s: Session | None = None, due_before: datetime | None = None,
                     priority: int | None = None, window: tuple[tuple[Any, ...], int] | None = None) -> Any:
        """`window` (sort keys, rows): the caller reads only the first rows in that order, so each half
        of `all` sorts and cuts its own index search before the halves meet (a role's queue can hold
        thousands of tasks; only a page of them is fetched whole)."""
        holders = holders_for(s, actor.username, self.ctx.now()) if s is not None else []
        # a substitute (A/B角) sees the holders' tasks of the roles they hold themselves
        mine = or_(HumanTask.assignee == actor.username,
                   and_(HumanTask.assignee.in_(holders), HumanTask.role.in_(sorted(actor.roles)))) if holders else (
            HumanTask.assignee == actor.username)
        group = and_(HumanTask.assignee.is_(None), HumanTask.role.in_(sorted(actor.roles)))
        if scope == "mine":
            visible = mine
        elif scope == "group":
            visible = group
        elif scope == "all":
            visible = or_(mine, group)
        elif scope == "everyone":
            self.access.require(actor, "tasks.read_all", "list everyone's tasks")
            visible = HumanTask.state == "open"
        else:
            raise BadRequest(f"unknown scope {scope!r} (mine, group, all)")
        narrow = [HumanTask.state == "open"]
        if overdue:
            narrow.append(HumanTask.due_at < self.ctx.now())
        if process_id:
            narrow.append(HumanTask.process_id == process_id)
        if due_before is not None:
            narrow.append(HumanTask.due_at < due_before)
        if priority is not None:
            narrow.append(HumanTask.priority == priority)
        if scope != "all":
            return select(HumanTask).where(visible, *narrow)
        # Each half searches its own index; an OR over both would scan every open task.
        halves = [select(HumanTask.id).where(half, *narrow) for half in (mine, group)]
        if window is not None:
            keys, rows = window
            halves = [select(cut.c.id) for cut in (half.order_by(*keys).limit(rows).subquery() for half in halves)]
        both = union_all(*halves).subquery()
        return select(HumanTask).where(HumanTask.id.in_(select(both.c.id)))

    def get(self, task_id: str, actor: Actor | None = None) -> TaskDetail:
        with self.ctx.db.transaction() as s:
            task = self._task(s, task_id)
            case = s.get(ProcessInstance, task.instance_id)
            assert case is not None
            if actor is not None:  # a task is read as its case is: one rule (engine/people/access.py)
                read_rule = case_facts(s, case.id, case)
                assert read_rule is not None
                self.access.require_read(actor, read_rule, holders_for(s, actor.username, self.ctx.now()))
            definition = self.repository.load(case.definition_id)
            rules = definition.rules[task.bpmn_id]
            form = definition.forms.get(task.form_key) if task.form_key else None
            facts: dict[str, Any] = {}
            if task.state == "open":
                workflow = self.store.read(s, case)
                spiff_task = task_by_id(workflow, task.id)
                if spiff_task is not None:
                    facts = self.ctx.codec.to_plain({k: v for k, v in spiff_task.data.items()
                                                     if k not in definition.answer_keys})
            # A form opens with the case fields it edits (a returned request, its own facts), never with
            # an answer: another task's decision or comment is shown in the record, not pre-filled.
            editable = case_fields_written(rules, form) if definition.by_task else set()
            prefill = {k: v for k, v in facts.items() if k in editable}
            if task.state == "open":
                form = picker.with_options(s, form)  # the register's items in service to pick from
            return TaskDetail(TaskView.of(task), rules.name, case.title, form, prefill, rules.documentation,
                              rules.instructions, case.definition_id, facts,
                              approval_record(s, definition, task.instance_id))

    # actions ------------------------------------------------------------------------------------
    def claim(self, task_id: str, actor: Actor) -> HumanTask:
        with self._refusals_recorded(), self.ctx.db.transaction() as s:
            task, case = self._lock_open(s, task_id)
            if task.assignee == actor.username:
                return task
            if task.assignee:
                raise Conflict(f"task {task_id} is already claimed by {task.assignee}")
            self._check(s, actor, task, case, claiming=True)
            self._set_assignee(s, task, actor.username, self.ctx.now())
            self.audit.record(s, actor.username, "task.claimed", instance_id=task.instance_id, task_id=task.id)
            return task

    def unclaim(self, task_id: str, actor: Actor) -> HumanTask:
        with self.ctx.db.transaction() as s:
            task, _case = self._lock_open(s, task_id)
            if task.assignee is None:
                return task
            if task.assignee != actor.username:
                self.access.require(actor, "tasks.assign", f"release task {task_id}, claimed by {task.assignee}")
            previous = task.assignee
            self._set_assignee(s, task, None, None)
            self.audit.record(s, actor.username, "task.unclaimed", instance_id=task.instance_id,
                              task_id=task.id, data={"previous": previous})
            return task

    def assign(self, task_id: str, actor: Actor, username: str) -> HumanTask:
        """Managers hand a task to a person who holds its role and is not barred from it."""
        with self._refusals_recorded(), self.ctx.db.transaction() as s:
            task, case = self._lock_open(s, task_id)
            self.access.require(actor, "tasks.assign", f"assign task {task_id}")
            target = self.identity.find(username)
            if target is None:
                raise NotFound(f"unknown user {username!r}")
            if not target.has_role(task.role):
                raise Forbidden(f"{username} 不具备“{task.name}”所需的角色{self.identity.role_name(task.role)}",
                                rule="role")
            previous = task.assignee
            task.assignee = None  # judge the target as if the task were in the queue
            self._check(s, target, task, case)
            task.assignee = previous
            self._set_assignee(s, task, username, self.ctx.now())
            self.audit.record(s, actor.username, "task.assigned", instance_id=task.instance_id,
                              task_id=task.id, data={"assignee": username, "previous": previous})
            return task

    def complete(self, task_id: str, actor: Actor, data: dict[str, Any]) -> list[HumanTask]:
        """Validate against the form and complete; returns the tasks the case opened next.

        Every field error is reported at once and nothing is saved; a task completed meanwhile by
        someone else is a Conflict.
        """
        if not isinstance(data, dict):
            raise BadRequest("task data must be a JSON object")
        with self._refusals_recorded(), failures_recorded(self.ctx, self.audit, actor.username, "task.complete",
                                                          task_id=task_id), self.ctx.db.transaction() as s:
            task, case_row = self._lock_open(s, task_id)
            with self.store.open(s, case_row.id, case_row) as case:
                definition = case.definition
                rules = definition.rules[task.bpmn_id]
                acting_for = self._check(s, actor, task, case_row)
                schema = definition.forms.get(task.form_key) if task.form_key else None
                # Only what the form declares: an extra key could steer a gateway or forge a type.
                errors = undeclared_errors(schema, data)
                registered: dict[str, Any] = {}
                named: list[int] = []
                if not errors:
                    errors = field_errors(schema, data) if schema is not None else []
                    errors += distinct_users_errors(rules, data)
                    registered, named, unknown = picker.resolve(s, schema, data)
                    errors += unknown
                if errors:
                    raise ValidationFailed(f"the form for {rules.name!r} has {len(errors)} error(s)", errors)
                spiff_task = task_by_id(case.workflow, task.id)
                if spiff_task is None or not is_ready(spiff_task):
                    raise Conflict(f"task {task_id} is no longer waiting for input")
                written = _written(definition, rules, schema, data)
                if definition.by_task and (item := instance_output_item(spiff_task)):
                    written[item] = dict(data)
                written.update(registered)  # after the answers: the register's word, not the requester's
                spiff_task.set_data(**written)
                with self.store.clock():  # a timer after this task is due from the engine's clock
                    spiff_task.run()
                now = self.ctx.now()
                self._mark_completed(s, task, actor.username, acting_for, now, data, case_row.revision)
                picker.link(s, case_row.id, named, actor.username, now)
                case.actor = actor.username
                self.store.run_engine(case.workflow, case_row.id, actor.username)
                created = self.store.save(s, case)
                self.audit.record(s, actor.username, "task.completed", instance_id=case_row.id,
                                  task_id=task.id, data={"task": task.bpmn_id, "data": data,
                                                         **({"acting_for": acting_for} if acting_for else {})})
                return created

    # helpers ------------------------------------------------------------------------------------
    def _task(self, s: Session, task_id: str) -> HumanTask:
        task = s.get(HumanTask, task_id)
        if task is None:
            raise NotFound(f"unknown task {task_id}")
        return task

    def _lock_open(self, s: Session, task_id: str) -> tuple[HumanTask, ProcessInstance]:
        """Lock the task's case (all writers do) and read the task with it, in one statement.

        On PostgreSQL a wait for the lock can leave the task's columns as they were before the
        other writer committed; every write below is therefore guarded by what was read here.
        """
        found = self.ctx.db.run(s, _LOCK_TASK, {"id": task_id}).first()
        if found is None:
            raise NotFound(f"unknown task {task_id}")
        time_out = self.ctx.db.time_out
        task = HumanTask(id=task_id, **dict(zip(_TASK_FIELDS, found[:len(_TASK_FIELDS)], strict=True)))
        for key in ("created_at", "due_at", "claimed_at"):
            setattr(task, key, time_out(getattr(task, key)))
        case = ProcessInstance(**dict(zip(_CASE_FIELDS, found[len(_TASK_FIELDS):], strict=True)))
        if task.state != "open":
            who = f" by {task.completed_by}" if task.completed_by else ""
            raise Conflict(f"task {task_id} is already {task.state}{who}")
        return task, case

    def _guarded(self, s: Session, sql: Sql, task: HumanTask, values: dict[str, Any]) -> None:
        """Write the task only if it is still open with the assignee it was read with."""
        params = {**values, "id": task.id, "seen": task.assignee or ""}
        if self.ctx.db.run(s, sql, params).rowcount != 1:
            raise Conflict(f"task {task.id} was changed by someone else meanwhile; reload and try again")

    def _set_assignee(self, s: Session, task: HumanTask, username: str | None, at: datetime | None) -> None:
        self._guarded(s, _SET_ASSIGNEE, task, {"assignee": username, "claimed_at": self.ctx.db.time_in(at)})
        task.assignee, task.claimed_at = username, at

    def _mark_completed(self, s: Session, task: HumanTask, username: str, acting_for: str | None,
                        now: datetime, answers: dict[str, Any], revision: int) -> None:
        """Completed by `username`; an unclaimed task counts as claimed by them at the same moment."""
        assignee, claimed_at = (task.assignee, task.claimed_at) if task.assignee else (username, now)
        db = self.ctx.db
        self._guarded(s, _COMPLETE, task, {"assignee": assignee, "claimed_at": db.time_in(claimed_at),
                                           "completed_at": db.time_in(now), "completed_by": username,
                                           "acting_for": acting_for, "answers": db.json_in(answers),
                                           "revision": revision})
        task.state, task.completed_at, task.completed_by, task.acting_for = "completed", now, username, acting_for
        task.answers = answers
        task.assignee, task.claimed_at = assignee, claimed_at

    def _check(self, s: Session, actor: Actor, task: HumanTask, case: ProcessInstance,
               claiming: bool = False) -> str | None:
        """Raise Forbidden unless the actor may act; returns the holder a substitute acts for (A/B角)."""
        definition = self.repository.load(case.definition_id)
        rules = definition.rules[task.bpmn_id]
        names = {k: v.name for k, v in definition.rules.items()}
        acting_for = None
        if task.assignee and task.assignee != actor.username and not claiming \
                and task.assignee in holders_for(s, actor.username, self.ctx.now()):
            acting_for = task.assignee
        try:
            done = performers(s, case.id) if rules.separation_of_duties else {}
            check_may_act(actor, task, rules, done, case.started_by, names, role_name=self.identity.role_name,
                          claiming=claiming, acting_for=acting_for)
        except Forbidden as refusal:
            refusal.audit = (actor.username, case.id, task.id)  # type: ignore[attr-defined]
            raise
        return acting_for

    @contextmanager
    def _refusals_recorded(self) -> Iterator[None]:
        """A refusal rolls the action back but is itself recorded, in a transaction of its own."""
        try:
            yield
        except Forbidden as refusal:
            who = getattr(refusal, "audit", None)
            if who:
                with self.ctx.db.transaction() as s:
                    self.audit.record(s, who[0], "task.refused", instance_id=who[1], task_id=who[2],
                                      data={"rule": refusal.rule, "reason": refusal.message})
            raise




def _written(definition: LoadedDefinition, rules: UserTaskRules, schema: dict[str, Any] | None,
             answers: dict[str, Any]) -> dict[str, Any]:
    """What a submission writes into the case: the task's answers under its id, and the case fields
    the task declares (the deploy check keeps computed fields and other answers out of them). A
    version deployed before answers were kept per task writes them as it did."""
    if not definition.by_task:
        return dict(answers)
    fields = case_fields_written(rules, schema)
    return {**{k: v for k, v in answers.items() if k in fields}, rules.bpmn_id: dict(answers)}
