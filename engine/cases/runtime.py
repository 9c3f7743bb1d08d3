"""Running cases: start, cancel, deliver messages, fire due timers, and read a case back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from engine.cases.failures import failures_recorded
from engine.cases.record import ApprovalEntry, approval_record
from engine.cases.store import CaseStore, OpenCase
from engine.configuration import picker
from engine.context import EngineContext
from engine.definitions.forms import register_fields, type_marker_errors
from engine.definitions.repository import RepositoryService
from engine.errors import BadRequest, Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from engine.people.access import AccessPolicy, case_facts, linked_cases
from engine.people.identity import Actor, IdentityService
from engine.people.substitutes import holders_for
from engine.spiff.messages import send_message
from engine.spiff.timers import next_timer_due
from engine.spiff.workflow import case_data, new_workflow
from engine.storage.audit import AuditService
from engine.storage.db import Sql
from engine.storage.models import AuditEvent, CaseLink, HumanTask, MessageSubscription, ProcessInstance

_NEW_CASE_COLUMNS = ("definition_id", "process_id", "business_key", "title", "status", "started_by", "started_at",
                     "state", "revision")
_NEW_CASE = Sql(f"INSERT INTO process_instance ({', '.join(_NEW_CASE_COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in _NEW_CASE_COLUMNS)}) RETURNING id")


@dataclass
class CaseDetail:
    id: int
    process_id: str
    process_name: str
    version: int
    business_key: str | None
    title: str
    status: str
    started_by: str
    started_at: datetime
    ended_at: datetime | None
    data: dict[str, Any]
    open_tasks: list[HumanTask]
    history: list[AuditEvent]
    links: list[dict[str, Any]] = field(default_factory=list)
    definition_id: int = 0  # the version the case runs on
    record: list[ApprovalEntry] = field(default_factory=list)  # who decided what (审批记录)
    # Why a running case is stuck (a timer that could not fire: element and reason); None when it is not.
    error: str | None = None


class RuntimeService:
    def __init__(self, ctx: EngineContext, repository: RepositoryService, identity: IdentityService,
                 audit: AuditService, store: CaseStore, access: AccessPolicy) -> None:
        self.ctx = ctx
        self.access = access
        self.repository = repository
        self.identity = identity
        self.audit = audit
        self.store = store

    def start(self, process_id: str, actor: Actor, data: dict[str, Any] | None = None,
              business_key: str | None = None, check_role: bool = True,
              prepare: Callable[[Any], None] | None = None) -> ProcessInstance:
        """Start a case on the latest version; it stays on that version until it ends.

        `prepare(workflow)` runs before the first engine step (the job service fires timer start events).
        """
        if data is not None and not isinstance(data, dict):
            raise BadRequest("case data must be a JSON object")
        data = dict(data or {})
        definition = self.repository.load(self.repository.latest_id(process_id))
        if check_role and definition.start_role and not actor.has_role(definition.start_role):
            raise Forbidden(f"{actor.username} does not hold the role {definition.start_role!r} "
                            f"needed to start {process_id!r}", rule="role")
        errors = start_data_errors(definition, data)
        # Systems named at start (an alert's) are checked and described from the register, as a form's are.
        registers = picker.register_schema(definition.forms.values())
        named: list[int] = []
        if registers is not None:
            facts_names = {f.facts for f in register_fields(registers)}
            errors += [FieldError(k, f"“{k}” is filled in from the configuration register and cannot be set")
                       for k in data if k in facts_names]
            with self.ctx.db.read() as s:
                facts, named, unknown = picker.resolve(s, registers, data, retired_too=True)
            errors += unknown
            data.update(facts)
        if errors:
            raise ValidationFailed(f"the start data of {process_id!r} has {len(errors)} error(s)", errors)
        workflow = new_workflow(definition.spec, definition.subprocess_specs, self.ctx.script_engine, data)
        workflow.correlations = self._seed_correlations(definition.spec, data, business_key)
        if prepare is not None:
            prepare(workflow)
        now = self.ctx.now()
        title = str(data.get("title") or "").strip() or (
            f"{definition.name} {business_key}" if business_key else definition.name)
        row = ProcessInstance(definition_id=definition.id, process_id=process_id, business_key=business_key,
                              title=title[:512], status="running", started_by=actor.username,
                              started_at=now, state="", revision=1)
        db = self.ctx.db
        with failures_recorded(self.ctx, self.audit, actor.username, "case.start", process_id=process_id,
                               version=definition.version), db.transaction() as s:
            # The case id exists before any step runs, for services that link to it.
            row.id = db.run(s, _NEW_CASE, {c: getattr(row, c) for c in _NEW_CASE_COLUMNS}
                            | {"started_at": db.time_in(now)}).scalar_one()
            picker.link(s, row.id, named, actor.username, now)
            self.store.run_engine(workflow, row.id, actor.username)
            case = OpenCase(row, definition, workflow, open_before=set())
            self.store.save(s, case)
            self.audit.record(s, actor.username, "case.started", instance_id=row.id,
                              data={"process_id": process_id, "version": definition.version,
                                    "business_key": business_key, "data": data})
            self.store.cache_after_commit(s, case)
        return row

    def _seed_correlations(self, spec: Any, data: dict[str, Any], business_key: str | None) -> dict:
        """Seed every correlation key from the start data (or the business key).

        A case with no correlation values would accept any message; seeding closes that.
        """
        seeded: dict[str, dict[str, Any]] = {}
        for ts in spec.task_specs.values():
            event = getattr(ts, "event_definition", None)
            for prop in getattr(event, "correlation_properties", None) or []:
                try:
                    value = self.ctx.environment.evaluate(prop.retrieval_expression, dict(data))
                except Exception:  # noqa: BLE001 (not in the start data: fall back to the business key)
                    value = business_key
                if value is None:
                    continue
                for key in prop.correlation_keys:
                    seeded.setdefault(key, {})[prop.name] = value
        return seeded

    def cancel(self, instance_id: int, actor: Actor, reason: str) -> str:
        """Cancel a running case, or for a reportable one ask for (or give) compliance's sign-off.

        Returns "cancelled", or "awaiting_signoff" when a reportable case waits for a second person.
        A reportable case (its data, or a linked case's, matches access.json `reportable`) is never
        cancelled by its reporter: stopping it would stop the regulator's report clock.
        """
        reason = (reason or "").strip()
        if not reason:
            raise BadRequest("a reason is required to cancel a case")
        try:
            return self._cancel(instance_id, actor, reason)
        except Forbidden as refusal:  # rolled back, but the attempt is on the record
            with self.ctx.db.transaction() as s:
                self.audit.record(s, actor.username, "case.cancel_refused", instance_id=instance_id,
                                  data={"rule": refusal.rule, "reason": refusal.message, "asked": reason})
            raise

    def _cancel(self, instance_id: int, actor: Actor, reason: str) -> str:
        with self.ctx.db.transaction() as s:
            with self.store.open(s, instance_id) as case:
                if case.row.status != "running":
                    raise Conflict(f"case {instance_id} is {case.row.status}, not running")
                reportable = self._reportable(s, instance_id, case_data(case.workflow))
                outcome = self._cancel_decision(s, actor, case.row, reportable, reason)
                if outcome == "awaiting_signoff":
                    return outcome
                self._stop(s, case, actor, {"reason": reason, "reportable": reportable is not None,
                                            **({"signoff": outcome} if outcome != "cancelled" else {})})
            if reportable is not None:  # the linked emergency (or incident) stops with it, signed off alike
                for other in linked_cases(s, instance_id):
                    with self.store.open(s, other) as linked:
                        if linked.row.status == "running":
                            self._stop(s, linked, actor, {"reason": reason, "with": instance_id, "reportable": True})
        return "cancelled"

    def _stop(self, s: Any, case: OpenCase, actor: Actor, data: dict[str, Any]) -> None:
        case.workflow.cancel()
        case.row.status, case.row.ended_at = "cancelled", self.ctx.now()
        self.store.save(s, case)
        self.audit.record(s, actor.username, "case.cancelled", instance_id=case.row.id, data=data)

    def _reportable(self, s: Any, instance_id: int, data: dict[str, Any]) -> int | None:
        """The case (this one or a linked one) whose data makes this case reportable, or None."""
        if self.access.is_reportable(data):
            return instance_id
        for other in linked_cases(s, instance_id):
            row = s.get(ProcessInstance, other)
            if row is not None and self.access.is_reportable(case_data(self.store.read(s, row))):
                return other
        return None

    def may_cancel(self, actor: Actor, instance_id: int) -> bool:
        """Whether cancel() would cancel or record a request for this actor now (to offer the form)."""
        with self.ctx.db.transaction() as s:
            row = s.get(ProcessInstance, instance_id)
            if row is None or row.status != "running":
                return False
            reportable = self._reportable(s, instance_id, case_data(self.store.read(s, row)))
            try:
                self._cancel_decision(s, actor, row, reportable, "", dry=True)
            except (Forbidden, Conflict):
                return False
            return True

    def _cancel_decision(self, s: Any, actor: Actor, row: ProcessInstance, reportable: int | None,
                         reason: str, dry: bool = False) -> str:
        """Who may cancel: case.cancel, or the starter (case.cancel_own) when nothing is reportable;
        a reportable case needs case.cancel and then case.cancel_signoff by someone else."""
        own = actor.username == row.started_by and self.access.allows(actor, "case.cancel_own")
        if reportable is None:
            if own:
                return "cancelled"
            self.access.require(actor, "case.cancel", f"cancel case {row.id} (they did not start it)")
            return "cancelled"
        why = "" if reportable == row.id else f" (linked to reportable case {reportable})"
        pending = self._pending_cancel(s, row.id)
        if pending is not None and self.access.allows(actor, "case.cancel_signoff"):
            if pending.actor == actor.username:
                raise Forbidden(f"{actor.username} asked to cancel case {row.id} and may not also sign it off "
                                "(不相容岗位分离: 撤销申请与合规会签须为不同人员)", rule="separation_of_duties")
            return f"{actor.username} signed off the request of {pending.actor}"
        if not self.access.allows(actor, "case.cancel"):
            self.access.require(actor, "case.cancel", f"cancel reportable case {row.id}{why}: its reporter "
                                "may not stop the report clock")
        if pending is not None:
            raise Conflict(f"cancelling case {row.id} was already asked by {pending.actor}; it waits for "
                           "compliance's sign-off (case.cancel_signoff)")
        if not dry:
            self.audit.record(s, actor.username, "case.cancel_requested", instance_id=row.id,
                              data={"reason": reason, "reportable_case": reportable})
        return "awaiting_signoff"

    def cancel_request(self, instance_id: int) -> dict[str, Any] | None:
        """The request to cancel this reportable case that waits for a sign-off: who, when, why."""
        with self.ctx.db.transaction() as s:
            event = self._pending_cancel(s, instance_id)
            return None if event is None else {"by": event.actor, "at": event.at,
                                               "reason": event.data.get("reason", "")}

    def _pending_cancel(self, s: Any, instance_id: int) -> AuditEvent | None:
        """The open request to cancel this reportable case (the audit trail is where it lives)."""
        last = s.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id, AuditEvent.action.in_(
            ("case.cancel_requested", "case.cancelled"))).order_by(AuditEvent.id.desc()).limit(1)).first()
        return last if last is not None and last.action == "case.cancel_requested" else None

    def deliver_message(self, name: str, correlation: dict[str, Any], payload: dict[str, Any],
                        actor: Actor) -> int:
        """Deliver a BPMN message to the one case waiting for it with these correlation values."""
        errors = type_marker_errors(payload, "payload") + type_marker_errors(correlation, "correlation")
        if errors:
            raise ValidationFailed(f"message {name!r} carries a reserved key", errors)
        self.access.require(actor, "case.message", f"deliver message {name!r} into a case")
        with self.ctx.db.transaction() as s:
            subs = list(s.scalars(select(MessageSubscription).where(MessageSubscription.message_name == name)))
            matching = sorted({sub.instance_id for sub in subs
                               if all(sub.correlation.get(k) == v for k, v in correlation.items())})
        if not matching:
            raise NotFound(f"no case is waiting for message {name!r} with correlation {correlation}")
        if len(matching) > 1:
            raise Conflict(f"message {name!r} matches {len(matching)} cases; add correlation values")
        instance_id = matching[0]
        with failures_recorded(self.ctx, self.audit, actor.username, "message.deliver", instance_id=instance_id,
                               message=name), self.ctx.db.transaction() as s:
            with self.store.open(s, instance_id) as case:
                self.require_read(s, actor, case.row)  # a message steers the case: only into one's own cases
                try:
                    with self.store.clock():
                        delivered = send_message(case.workflow, name, {**correlation, **payload})
                except Exception as exc:  # noqa: BLE001 (Spiff raises a bare WorkflowException)
                    raise NotFound(f"case {instance_id} did not accept message {name!r}: {exc}") from None
                if not delivered:
                    raise NotFound(f"case {instance_id} is no longer waiting for message {name!r}")
                self.store.run_engine(case.workflow, instance_id, actor.username)
                self.store.save(s, case)
                self.audit.record(s, actor.username, "message.delivered", instance_id=instance_id,
                                  data={"name": name, "correlation": correlation, "payload": payload})
        return instance_id

    def fire_due_timers(self, now: datetime | None = None, limit: int = 100,
                        on_error: Callable[[int, Exception], None] | None = None) -> list[int]:
        """Advance every case with a timer due by now, one case per transaction.

        Each case is claimed with `FOR UPDATE SKIP LOCKED` (PostgreSQL) or under SQLite's write lock,
        so any number of processes may tick at once and every timer fires exactly once. A case that
        fails goes to on_error (the job service parks and retries it); without on_error it raises.
        """
        now = now or self.ctx.now()
        fired: list[int] = []
        passed: set[int] = set()  # failed, or due by `now` but not yet by the engine clock
        while len(fired) + len(passed) < limit:
            instance_id = None
            try:
                with self.ctx.db.transaction() as s:
                    query = select(ProcessInstance.id).where(ProcessInstance.status == "running",
                                                             ProcessInstance.next_timer_due < now)
                    if passed:
                        query = query.where(ProcessInstance.id.not_in(passed))
                    instance_id = s.scalars(query.order_by(ProcessInstance.next_timer_due).limit(1)
                                            .with_for_update(skip_locked=True)).first()
                    if instance_id is None:
                        break
                    with self.store.open(s, instance_id) as case:
                        due = case.row.next_timer_due
                        self.store.run_engine(case.workflow, instance_id, "system", refresh_timers=True)
                        if next_timer_due(case.workflow) == due and not case.workflow.completed:
                            raise _NothingFired  # due by `now`, not yet by the engine clock: roll back
                        self.store.save(s, case)
                        late = (self.ctx.now() - due).total_seconds() * 1000 if due else None
                        self.audit.record(s, "system", "timer.fired", instance_id=instance_id,
                                          data={"due": due, "late_ms": round(late, 1) if late is not None else None})
                fired.append(instance_id)
            except _NothingFired:
                passed.add(instance_id)  # type: ignore[arg-type]
            except Exception as exc:
                if on_error is None or instance_id is None:
                    raise
                passed.add(instance_id)
                on_error(instance_id, exc)
        return fired

    def start_linked_case(self, process_id: str, data: dict[str, Any] | None = None,
                          kind: str = "opened", business_key: str | None = None) -> dict[str, Any]:
        """Service for BPMN service tasks: open another case linked from the running one.

        The new case is started in the same transaction by the user whose action ran the step.
        """
        current = self.ctx.current_case.get()
        if current is None:
            raise BadRequest("start_case can only run inside a case")
        case_id, username = current
        actor = self.identity.find(username) or Actor(username, username, frozenset())
        system = Actor(actor.username, actor.display_name, actor.roles | {"__system__"})
        row = self.start(process_id, system, data or {}, business_key, check_role=False)
        self.link(case_id, row.id, kind, username)
        return {"instance_id": row.id, "process_id": process_id}

    def link(self, from_id: int, to_id: int, kind: str, actor: str) -> None:
        """Link two cases; a link already made is left as it is (a step re-run after a return)."""
        with self.ctx.db.transaction() as s:
            for case_id in (from_id, to_id):
                if s.get(ProcessInstance, case_id) is None:
                    raise NotFound(f"unknown case {case_id}")
            if s.scalars(select(CaseLink.id).where(CaseLink.from_instance_id == from_id,
                                                   CaseLink.to_instance_id == to_id,
                                                   CaseLink.kind == kind)).first() is not None:
                return
            s.add(CaseLink(from_instance_id=from_id, to_instance_id=to_id, kind=kind,
                           created_at=self.ctx.now(), created_by=actor))
            self.audit.record(s, actor, "case.linked", instance_id=from_id, data={"to": to_id, "kind": kind})

    def show(self, instance_id: int, actor: Actor | None = None) -> CaseDetail:
        with self.ctx.db.transaction() as s:
            row = s.get(ProcessInstance, instance_id)
            if row is None:
                raise NotFound(f"unknown case {instance_id}")
            tasks = list(s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id)
                                   .order_by(HumanTask.created_at)))
            if actor is not None:
                self.require_read(s, actor, row)
            history = list(s.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id)
                                     .order_by(AuditEvent.id)))
            links = []
            for link in s.scalars(select(CaseLink).where(or_(CaseLink.from_instance_id == instance_id,
                                                             CaseLink.to_instance_id == instance_id))):
                other_id = link.to_instance_id if link.from_instance_id == instance_id else link.from_instance_id
                other = s.get(ProcessInstance, other_id)
                links.append({"kind": link.kind, "direction": "to" if link.from_instance_id == instance_id
                              else "from", "instance_id": other_id,
                              "process_id": other.process_id if other else None,
                              "title": other.title if other else None})
            workflow = self.store.read(s, row)
            definition = self.repository.load(row.definition_id)
            # Answers are shown once, in the record, under the form's labels.
            data = self.ctx.codec.to_plain({k: v for k, v in case_data(workflow).items()
                                            if k not in definition.answer_keys})
            return CaseDetail(row.id, row.process_id, row.definition.name, row.definition.version,
                              row.business_key, row.title, row.status, row.started_by, row.started_at,
                              row.ended_at, data, [t for t in tasks if t.state == "open"], history, links,
                              row.definition_id, approval_record(s, definition, row.id),
                              row.error if row.status == "running" else None)

    def visible_cases(self, actor: Actor, process_id: str | None = None, status: str | None = None,
                      started_by: str | None = None, limit: int = 50,
                      offset: int = 0) -> tuple[list[ProcessInstance], int]:
        """The cases the actor may read (the rule of show()), newest first, and how many there are."""
        query = _case_query(process_id, status, started_by)
        with self.ctx.db.transaction() as s:
            readable = self.access.case_filter(actor, holders_for(s, actor.username, self.ctx.now()))
            if readable is not None:
                query = query.where(readable)
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(s.scalars(query.order_by(ProcessInstance.id.desc()).offset(offset).limit(limit)))
        return rows, total

    def history(self, actor: Actor, instance_id: int | None = None, limit: int = 100,
                offset: int = 0) -> tuple[list[AuditEvent], int]:
        """Audit events of one case its readers may see; of every case, privileged readers only."""
        query = select(AuditEvent)
        with self.ctx.db.transaction() as s:
            if instance_id is None:
                self.access.require(actor, "audit.read_all", "read the whole audit trail; name a case")
            else:
                row = s.get(ProcessInstance, instance_id)
                if row is None:
                    raise NotFound(f"unknown case {instance_id}")
                self.require_read(s, actor, row)
                query = query.where(AuditEvent.instance_id == instance_id)
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            events = list(s.scalars(query.order_by(AuditEvent.id).offset(offset).limit(limit)))
        return events, total

    def require_read(self, s: Any, actor: Actor, row: ProcessInstance) -> None:
        """The one case-reading rule (engine/people/access.py), in the caller's transaction."""
        facts = case_facts(s, row.id, row)
        assert facts is not None
        self.access.require_read(actor, facts, holders_for(s, actor.username, self.ctx.now()))

    def cases(self, process_id: str | None = None, status: str | None = None,
              started_by: str | None = None, limit: int = 50, offset: int = 0) -> list[ProcessInstance]:
        query = _case_query(process_id, status, started_by).order_by(ProcessInstance.id.desc())
        with self.ctx.db.transaction() as s:
            return list(s.scalars(query.offset(offset).limit(limit)))


class _NothingFired(Exception):
    """A claimed case had no timer due by the engine clock after all."""


def _case_query(process_id: str | None, status: str | None, started_by: str | None) -> Any:
    query = select(ProcessInstance)
    if process_id:
        query = query.where(ProcessInstance.process_id == process_id)
    if status:
        query = query.where(ProcessInstance.status == status)
    if started_by:
        query = query.where(ProcessInstance.started_by == started_by)
    return query


def start_data_errors(definition: Any, data: dict[str, Any]) -> list[FieldError]:
    """Start data seeds the case's facts: never a task's answers, a computed field or a type marker."""
    errors = type_marker_errors(data)
    if definition.by_task:
        errors += [FieldError(k, f"“{k}” holds the answers of a task and cannot be set at start")
                   for k in data if k in definition.answer_keys]
        errors += [FieldError(k, f"“{k}” is computed by the process ({definition.computed[k]}) and cannot "
                                 "be set at start") for k in data
                   if k in definition.computed and k not in definition.answer_keys]
    return errors

