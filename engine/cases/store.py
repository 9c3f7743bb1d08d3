"""Loading and saving a case under its lock, and keeping the inbox in step on every save.

Per request: lock the case row -> take the workflow from a revision-checked cache (or restore it)
-> act -> engine steps -> save state, inbox rows, subscriptions, timers and audit -> commit.
A stale revision is a Conflict, never a lost update.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from engine.cases.figures import NO_FIGURES, KpiRules
from engine.context import EngineContext
from engine.definitions.assignment import named_assignee, performers, sod_violation
from engine.definitions.deadlines import due_at, priority_of
from engine.definitions.repository import LoadedDefinition, RepositoryService
from engine.errors import Conflict, NotFound, OpsFlowError, ProcessError
from engine.people.identity import IdentityService
from engine.spiff.messages import can_wait_for_messages, correlation_values, waiting_messages
from engine.spiff.patches import TIMER_CLOCK
from engine.spiff.sandbox import BUDGET, Budget
from engine.spiff.timers import next_timer_due
from engine.spiff.workflow import Workflow, case_data, ready_manual_tasks, run_automatic_steps
from engine.storage.db import Sql
from engine.storage.models import HumanTask, MessageSubscription, ProcessInstance


@dataclass
class OpenCase:
    row: ProcessInstance
    definition: LoadedDefinition
    workflow: Workflow
    # Ids of the user tasks that were open when the case was loaded (the inbox rows, by the save
    # invariant); None when unknown, and the save reads them from the database instead.
    open_before: set[str] | None = None
    actor: str | None = None  # whose action this save records (a return names them)


# The save's statements (engine/storage/db.py `Sql`): one UPDATE of the case, revision-checked, and the
# inbox rows that changed, written in one statement each.
# The KPI figures (engine/cases/figures.py) ride along: a figure the data no longer shows is kept.
_SAVE_CASE = Sql("UPDATE process_instance SET state = :state, revision = :revision, status = :status, "
                 "ended_at = :ended_at, next_timer_due = :next_timer_due, "
                 "detected_at = COALESCE(:detected_at, detected_at), "
                 "restored_at = COALESCE(:restored_at, restored_at), "
                 "outcome = COALESCE(:outcome, outcome), category = COALESCE(:category, category) "
                 "WHERE id = :id AND revision = :seen")
_STATE = Sql("SELECT state FROM process_instance WHERE id = :id")
_OPEN_TASK_IDS = Sql("SELECT id FROM human_task WHERE instance_id = :id AND state = 'open'")
_WITHDRAW = Sql("UPDATE human_task SET state = 'cancelled' WHERE id = :id AND state = 'open'")
_WITHDRAW_ALL = Sql("UPDATE human_task SET state = 'cancelled' WHERE instance_id = :id AND state = 'open'")
_TASK_COLUMNS = ("id", "instance_id", "process_id", "bpmn_id", "name", "role", "assignee", "form_key", "priority",
                 "return_reason", "returned_by")
_ADD_TASK = Sql("INSERT INTO human_task (id, instance_id, process_id, bpmn_id, name, role, assignee, state, "
                "form_key, priority, return_reason, returned_by, created_at, due_at, claimed_at) VALUES (:id, "
                ":instance_id, :process_id, :bpmn_id, :name, :role, :assignee, 'open', :form_key, :priority, "
                ":return_reason, :returned_by, :created_at, :due_at, :claimed_at)")
# Who last completed a step of this case: a step sent back reopens for them.
_LAST_PERFORMER = Sql("SELECT completed_by FROM human_task WHERE instance_id = :id AND bpmn_id = :bpmn_id "
                      "AND state = 'completed' ORDER BY completed_at DESC LIMIT 1")


class WorkflowCache:
    """Deserialised workflows by case id, valid only for the revision they were saved at.

    A workflow is taken out while a request works on it, so no two requests share one object. The
    ids of its open user tasks travel with it (what the next save compares against).
    """

    def __init__(self, size: int = 512) -> None:
        self._items: OrderedDict[int, tuple[int, Workflow, set[str] | None]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def take(self, instance_id: int, revision: int) -> tuple[Workflow, set[str] | None] | None:
        with self._lock:
            item = self._items.pop(instance_id, None)
        return (item[1], item[2]) if item and item[0] == revision else None

    def put(self, instance_id: int, revision: int, workflow: Workflow, open_ids: set[str] | None = None) -> None:
        with self._lock:
            self._items[instance_id] = (revision, workflow, open_ids)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class CaseStore:
    def __init__(self, ctx: EngineContext, repository: RepositoryService, identity: IdentityService) -> None:
        self.ctx = ctx
        self.repository = repository
        self.identity = identity
        self.cache = WorkflowCache()
        self.calendar: Any = None  # the trading calendar (CalendarService), for due times in working days
        # Called in the saving transaction with the inbox rows a save created (due-time jobs hook in here).
        self.on_tasks_created: list[Callable[[Session, OpenCase, list[HumanTask]], None]] = []
        self.kpis = KpiRules.of(ctx.settings)  # which case fields are kept as figures (processes/kpis.json)

    # load ---------------------------------------------------------------------------------------
    def lock(self, s: Session, instance_id: int) -> ProcessInstance:
        row = s.scalars(select(ProcessInstance).where(ProcessInstance.id == instance_id)
                        .with_for_update(of=ProcessInstance)).first()
        if row is None:
            raise NotFound(f"unknown case {instance_id}")
        return row

    @contextmanager
    def open(self, s: Session, instance_id: int, row: ProcessInstance | None = None) -> Iterator[OpenCase]:
        """Lock and load a case; the workflow goes back to the cache only after a clean commit."""
        row = row if row is not None else self.lock(s, instance_id)
        definition = self.repository.load(row.definition_id)
        cached = self.cache.take(row.id, row.revision)
        if cached is None:
            state = self.ctx.db.run(s, _STATE, {"id": row.id}).scalar_one()
            workflow = self.ctx.codec.load_state(state, definition.spec, definition.subprocess_specs,
                                                 self.ctx.script_engine)
            open_ids = None
        else:
            workflow, open_ids = cached
        if open_ids is None:
            open_ids = set(self.open_user_tasks(workflow, definition))
        case = OpenCase(row, definition, workflow, set(open_ids))
        yield case
        if s.dirty:
            s.flush()
        self.cache_after_commit(s, case)

    def cache_after_commit(self, s: Session, case: OpenCase) -> None:
        """The workflow goes back to the cache, at the revision just written, once the commit holds."""
        row_id, revision, workflow, open_ids = case.row.id, case.row.revision, case.workflow, case.open_before
        s.info.setdefault("after_commit", []).append(lambda: self.cache.put(row_id, revision, workflow, open_ids))

    def read(self, s: Session, row: ProcessInstance) -> Workflow:
        """A private copy for reading (never shared with a writer)."""
        definition = self.repository.load(row.definition_id)
        with self.ctx.db.transaction() as session:  # joins the caller's transaction if there is one
            state = session.execute(select(ProcessInstance.state).where(ProcessInstance.id == row.id)).scalar_one()
        return self.ctx.codec.load_state(state, definition.spec, definition.subprocess_specs,
                                         self.ctx.script_engine)

    # run ----------------------------------------------------------------------------------------
    @contextmanager
    def clock(self) -> Iterator[None]:
        """Spiff's timers read the engine clock in here: task.run() and send_event() compute due times too."""
        token = TIMER_CLOCK.set(self.ctx.clock)
        try:
            yield
        finally:
            TIMER_CLOCK.reset(token)

    def run_engine(self, workflow: Workflow, case_id: int, actor: str, refresh_timers: bool = False) -> None:
        """Run every automatic step; abstract tasks (bpmn:task) complete by themselves."""
        token = self.ctx.current_case.set((case_id, actor))
        clock_token = TIMER_CLOCK.set(self.ctx.clock)
        settings = self.ctx.settings
        budget_token = BUDGET.set(Budget(settings.max_steps, settings.max_instances, settings.script_timeout))
        try:
            run_automatic_steps(workflow, refresh_timers)
        except OpsFlowError:
            raise
        except Exception as exc:  # a script, condition, DMN or service failed (or went over budget)
            raise ProcessError(f"the process failed: {_describe(exc)}") from exc
        finally:
            BUDGET.reset(budget_token)
            TIMER_CLOCK.reset(clock_token)
            self.ctx.current_case.reset(token)

    # save ---------------------------------------------------------------------------------------
    @staticmethod
    def open_user_tasks(workflow: Workflow, definition: LoadedDefinition) -> dict[str, Any]:
        """The user tasks waiting for someone, by id: what the inbox holds for this case."""
        return {str(t.id): t for t in ready_manual_tasks(workflow) if t.task_spec.bpmn_id in definition.rules}

    def save(self, s: Session, case: OpenCase) -> list[HumanTask]:
        """Write state, inbox rows, subscriptions and the next timer; returns the new inbox rows.

        The case row is written once, checked against the revision it was read at: a stale one is a
        Conflict. The ORM row object is told what was written, so a later flush does not repeat it.
        """
        row, wf, db = case.row, case.workflow, self.ctx.db
        if s.new or s.dirty:
            try:
                s.flush()  # changes made through the ORM land first (and bump the revision they saw)
            except StaleDataError:
                raise Conflict(f"case {row.id} was changed by someone else; reload and try again") from None
        now = self.ctx.now()
        ready = self.open_user_tasks(wf, case.definition)
        before = case.open_before
        if before is None:
            before = {task_id for (task_id,) in db.run(s, _OPEN_TASK_IDS, {"id": row.id})}
        created = self._new_tasks(s, case, [t for task_id, t in ready.items() if task_id not in before], now)
        status, ended_at = row.status, row.ended_at
        if wf.completed and status == "running":
            status, ended_at = "completed", now
        if status != "running":
            db.run(s, _WITHDRAW_ALL, {"id": row.id})
        else:
            withdrawn = [{"id": task_id} for task_id in before if task_id not in ready]
            if withdrawn:  # withdrawn by the process (boundary event, cancel, veto) or completed by it
                db.run(s, _WITHDRAW, withdrawn)
        due = next_timer_due(wf)
        revision = row.revision + 1
        figures = self._figures(case, ready)
        result = db.run(s, _SAVE_CASE, {
            "state": self.ctx.codec.dump_state(wf), "revision": revision, "status": status,
            "ended_at": db.time_in(ended_at), "next_timer_due": db.time_in(due), "id": row.id,
            "seen": row.revision, "detected_at": db.time_in(figures["detected_at"]),
            "restored_at": db.time_in(figures["restored_at"]), "outcome": figures["outcome"],
            "category": figures["category"]})
        if result.rowcount != 1:
            raise Conflict(f"case {row.id} was changed by someone else; reload and try again")
        for key, value in (("revision", revision), ("status", status), ("ended_at", ended_at),
                           ("next_timer_due", due), *((k, v) for k, v in figures.items() if v is not None)):
            set_committed_value(row, key, value)
        if created:
            db.run(s, _ADD_TASK, [{c: getattr(t, c) for c in _TASK_COLUMNS} | {
                "created_at": db.time_in(t.created_at), "due_at": db.time_in(t.due_at),
                "claimed_at": db.time_in(t.claimed_at)} for t in created])
        case.open_before = set(ready)
        self._sync_subscriptions(s, row.id, wf)
        if created:
            for listener in self.on_tasks_created:
                listener(s, case, created)
        return created

    def _figures(self, case: OpenCase, ready: dict[str, Any]) -> dict[str, Any]:
        """The case's KPI figures from its data (processes/kpis.json); nothing for other processes."""
        process_id = case.definition.process_id
        if process_id not in self.kpis.processes:
            return NO_FIGURES
        data = next(iter(ready.values())).data if ready else case_data(case.workflow)
        return self.kpis.figures_of(process_id, data, self.ctx.zone)

    def _new_tasks(self, s: Session, case: OpenCase, ready: list[Any], now: datetime) -> list[HumanTask]:
        """Inbox rows for tasks that became ready: role from the lane, the named assignee unless barred."""
        row, definition = case.row, case.definition
        created = []
        done = None
        names = {k: v.name for k, v in definition.rules.items()}
        for task in ready:
            rules = definition.rules[task.task_spec.bpmn_id]
            role = self._role_from(rules, task.data) or self.identity.resolve_role(rules.lane) or (rules.lane or "")
            reason = self._return_reason(rules, task.data)
            returned_to = self._returned_to(s, row.id, rules, role) if reason else None
            # the person the case names for this step (one instance's owner) comes first; else who submitted it
            assignee = named_assignee(self.identity, rules, role, task.data, row.started_by) or returned_to
            if assignee and rules.separation_of_duties:
                if done is None:
                    done = performers(s, row.id)
                if sod_violation(rules, assignee, done, row.started_by, names):
                    assignee = None  # the named person is barred: the role's queue takes it
            created.append(HumanTask(
                id=str(task.id), instance_id=row.id, process_id=definition.process_id, bpmn_id=rules.bpmn_id,
                name=rules.name, role=role, assignee=assignee, state="open", form_key=rules.form,
                priority=priority_of(rules, task.data), created_at=now, due_at=self._due_at(rules, task.data, now),
                claimed_at=now if assignee else None, return_reason=reason,
                # sent back by the person whose action reopened it; by an automatic check when it was
                # the submitter's own action (None)
                returned_by=case.actor if reason and case.actor and case.actor != returned_to else None))
        return created

    def _role_from(self, rules: Any, data: dict[str, Any]) -> str | None:
        """The role a `roleFrom` expression names in the task's data, if it is a known role."""
        if not rules.role_from:
            return None
        try:
            named = self.ctx.environment.evaluate(rules.role_from, dict(data))
        except Exception:  # noqa: BLE001 (nothing named: the lane's role takes it)
            return None
        return self.identity.resolve_role(str(named)) if isinstance(named, str) and named else None

    def _return_reason(self, rules: Any, data: dict[str, Any]) -> str | None:
        """The task's returnReason expression, read in its data: non-empty text means sent back."""
        if not rules.return_reason:
            return None
        try:
            reason = self.ctx.environment.evaluate(rules.return_reason, dict(data))
        except Exception:  # noqa: BLE001 (not set on the first pass: not a return)
            return None
        text = str(reason or "").strip()
        return text[:2000] or None

    def _returned_to(self, s: Session, instance_id: int, rules: Any, role: str) -> str | None:
        """Who submitted this step last, if they still hold its role: a return goes back to them."""
        found = self.ctx.db.run(s, _LAST_PERFORMER, {"id": instance_id, "bpmn_id": rules.bpmn_id}).first()
        last = found[0] if found else None
        user = self.identity.find(last) if last else None
        return user.username if user is not None and user.has_role(role) else None

    def _due_at(self, rules: Any, data: dict[str, Any], now: datetime) -> datetime | None:
        """dueFrom / dueInFrom / dueIn, in calendar or working time (engine/definitions/deadlines.py)."""
        return due_at(rules, data, now, self.ctx.zone, self.calendar)

    def _sync_subscriptions(self, s: Session, instance_id: int, wf: Workflow) -> None:
        if not can_wait_for_messages(wf):
            return
        s.execute(delete(MessageSubscription).where(MessageSubscription.instance_id == instance_id))
        if wf.completed:
            return
        values = correlation_values(wf)
        for name in waiting_messages(wf):
            s.add(MessageSubscription(instance_id=instance_id, message_name=name,
                                      correlation=self.ctx.codec.to_plain(values)))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    cause = exc.__cause__ or getattr(exc, "error", None) or getattr(exc, "exception", None)
    if isinstance(cause, BaseException) and str(cause) and str(cause) not in text:
        text += f" ({cause.__class__.__name__}: {cause})"
    return text
