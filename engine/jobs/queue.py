"""The job table and the tick that makes time pass (docs/ARCHITECTURE.md, "Timers, deadlines").

Two kinds of due work, both claimed from the database so any number of processes may tick at once:

* **case timers**: `process_instance.next_timer_due` (computed on every save) is the truth for
  BPMN timers; `tick` claims due cases one at a time and fires them through the runtime.
* **jobs**: `job` rows (escalations, notifications, timer start events, timer retries). A tick
  claims due rows with a lock owner and a lock expiry (`FOR UPDATE SKIP LOCKED` on PostgreSQL,
  SQLite's write lock otherwise), runs the handler for the kind, and marks the row done; a failure
  is retried with exponential back-off, and when the retries run out the row is `failed` with its
  last error (Camunda 7's job model). A process that dies mid-job loses its lock when it expires.

Handlers are transactional (they run in the transaction that marks the job done, so their writes
and the job's completion commit together: escalations, case starts) or not (they talk to the
outside world first and the job is marked done afterwards: e-mail and webhook sends).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine.cases.runtime import RuntimeService
from engine.cases.store import CaseStore, OpenCase
from engine.context import EngineContext
from engine.definitions.deadlines import add_duration, manager_role, parse_duration, parse_escalation, parse_moment
from engine.definitions.repository import RepositoryService
from engine.errors import LintFailed, NotFound
from engine.people.identity import Actor, IdentityService
from engine.people.notify import Message, NotifyService
from engine.spiff.parsing import Problem
from engine.spiff.timers import StartTimer, fire_start_timer, start_timer
from engine.storage.audit import AuditService
from engine.storage.models import HumanTask, Job, ProcessDefinition, ProcessInstance

log = logging.getLogger("opsflow.jobs")

SYSTEM = Actor("system", "系统", frozenset({"__system__"}))
DEFAULT_RETRIES = 5

JobHandler = Callable[..., Any]


@dataclass(frozen=True)
class Registered:
    run: JobHandler
    transactional: bool


@dataclass
class TickReport:
    timers: list[int] = field(default_factory=list)  # cases whose timers fired
    done: list[int] = field(default_factory=list)  # jobs done
    retrying: list[int] = field(default_factory=list)  # jobs that failed and will be retried
    failed: list[int] = field(default_factory=list)  # jobs whose retries ran out

    @property
    def idle(self) -> bool:
        return not (self.timers or self.done or self.retrying or self.failed)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobService:
    lease = timedelta(minutes=5)  # a claimed job is another process's after this
    backoff_base = timedelta(seconds=30)  # 30 s, 1 min, 2 min, 4 min ... after each failure
    backoff_max = timedelta(hours=1)

    def __init__(self, ctx: EngineContext, repository: RepositoryService, runtime: RuntimeService,
                 store: CaseStore, identity: IdentityService, audit: AuditService, notify: NotifyService) -> None:
        self.ctx = ctx
        self.repository = repository
        self.runtime = runtime
        self.store = store
        self.identity = identity
        self.audit = audit
        self.notify = notify
        self.owner = default_owner()
        self.handlers: dict[str, Registered] = {}
        self._tick_lock = threading.Lock()
        self.register("timer", self._run_timer)
        self.register("escalation", self._escalate)
        self.register("start_case", self._start_case)
        self.register("notification", self._send, transactional=False)
        store.on_tasks_created.append(self._schedule_escalations)
        repository.on_deployed.append(self._deployed)

    # scheduling ----------------------------------------------------------------------------------
    def register(self, kind: str, handler: JobHandler, transactional: bool = True) -> None:
        """handler(session, job) when transactional, else handler(job) outside any transaction."""
        self.handlers[kind] = Registered(handler, transactional)

    def schedule(self, kind: str, due_at: datetime, payload: dict[str, Any] | None = None,
                 instance_id: int | None = None, task_id: str | None = None,
                 retries: int = DEFAULT_RETRIES) -> Job:
        """Add a job; inside another service's transaction it commits (or not) with it."""
        if kind not in self.handlers:
            raise ValueError(f"no handler for job kind {kind!r}")
        if due_at.tzinfo is None:
            raise ValueError("a job's due time must carry its zone")
        with self.ctx.db.transaction() as s:
            job = Job(kind=kind, due_at=due_at, payload=dict(payload or {}), instance_id=instance_id,
                      task_id=task_id, state="pending", retries_left=retries, created_at=self.ctx.now())
            s.add(job)
            s.flush()
            return job

    def jobs(self, state: str | None = None, kind: str | None = None, instance_id: int | None = None,
             limit: int = 100) -> list[Job]:
        with self.ctx.db.transaction() as s:
            query = select(Job)
            if state:
                query = query.where(Job.state == state)
            if kind:
                query = query.where(Job.kind == kind)
            if instance_id is not None:
                query = query.where(Job.instance_id == instance_id)
            return list(s.scalars(query.order_by(Job.due_at, Job.id).limit(limit)))

    def retry(self, job_id: int, actor: str = "system", retries: int = DEFAULT_RETRIES) -> Job:
        """Give a failed job new retries, due now (an operator fixed the cause)."""
        with self.ctx.db.transaction() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None:
                raise NotFound(f"unknown job {job_id}")
            job.state, job.retries_left, job.due_at, job.done_at = "pending", retries, self.ctx.now(), None
            job.lock_owner = job.lock_expires_at = None
            self.audit.record(s, actor, "job.retried", instance_id=job.instance_id, task_id=job.task_id,
                              data={"job": job.id, "kind": job.kind})
            return job

    # the tick ------------------------------------------------------------------------------------
    def tick(self, now: datetime | None = None, owner: str | None = None, limit: int = 100) -> TickReport:
        """Fire the case timers and run the jobs due by now (the engine clock unless given)."""
        report = TickReport()
        with self._tick_lock:  # one tick at a time per process; other processes are kept off by the claims
            report.timers = self.runtime.fire_due_timers(now, limit, on_error=self._timer_failed)
            self.run_due_jobs(now, owner, limit, report)
        return report

    def run_due_jobs(self, now: datetime | None = None, owner: str | None = None, limit: int = 100,
                     report: TickReport | None = None) -> TickReport:
        report = report or TickReport()
        owner = owner or self.owner
        budget = limit
        for _round in range(10):  # jobs queue jobs (an escalation, its e-mails): they go out in this tick
            claimed = self._claim(now or self.ctx.now(), owner, budget)
            for job_id in claimed:
                try:
                    if self._run(job_id, owner):
                        report.done.append(job_id)
                except Exception as exc:  # noqa: BLE001 (any failure is retried, never raised to the ticker)
                    if self._job_failed(job_id, owner, exc):
                        report.failed.append(job_id)
                    else:
                        report.retrying.append(job_id)
            budget -= len(claimed)
            if not claimed or budget <= 0:
                break
        return report

    def _claim(self, now: datetime, owner: str, limit: int) -> list[int]:
        with self.ctx.db.transaction() as s:
            rows = list(s.scalars(
                select(Job).where(Job.state == "pending", Job.due_at <= now,
                                  or_(Job.lock_expires_at.is_(None), Job.lock_expires_at < now))
                .order_by(Job.due_at, Job.id).limit(limit).with_for_update(skip_locked=True)))
            for job in rows:
                job.lock_owner, job.lock_expires_at = owner, now + self.lease
            return [job.id for job in rows]

    def _locked(self, s: Session, job_id: int, owner: str) -> Job | None:
        """The job, locked, if this owner still holds its claim."""
        job = s.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None or job.state != "pending" or job.lock_owner != owner:
            return None  # done, cancelled, or claimed again by another process after our lease ran out
        return job

    def _run(self, job_id: int, owner: str) -> bool:
        with self.ctx.db.transaction() as s:
            job = self._locked(s, job_id, owner)
            if job is None:
                return False
            handler = self.handlers.get(job.kind)
            if handler is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            if handler.transactional:
                handler.run(s, job)
                self._done(job)
                return True
            s.expunge(job)  # a detached copy for the handler, which runs outside any transaction
        handler.run(job)
        with self.ctx.db.transaction() as s:
            job = self._locked(s, job_id, owner)
            if job is None:
                return False
            self._done(job)
        return True

    def _done(self, job: Job) -> None:
        job.state, job.done_at = "done", self.ctx.now()
        job.lock_owner = job.lock_expires_at = None

    def _backoff(self, attempt: int) -> timedelta:
        return min(self.backoff_base * (2 ** max(attempt - 1, 0)), self.backoff_max)

    def _job_failed(self, job_id: int, owner: str, exc: Exception) -> bool:
        """Count a failure: retry later with back-off, or mark failed. True when the retries ran out."""
        error = f"{exc.__class__.__name__}: {exc}"[:4000]
        log.warning("job %s failed: %s", job_id, error)
        with self.ctx.db.transaction() as s:
            job = self._locked(s, job_id, owner)
            if job is None:
                return False
            now = self.ctx.now()
            attempts = int(job.payload.get("_attempts", 0)) + 1
            job.payload = {**job.payload, "_attempts": attempts}
            job.retries_left -= 1
            job.last_error = error
            job.lock_owner = job.lock_expires_at = None
            if job.retries_left > 0:
                job.due_at = now + self._backoff(attempts)
                return False
            job.state, job.done_at = "failed", now
            self.audit.record(s, "system", "job.failed", instance_id=job.instance_id, task_id=job.task_id,
                              data={"job": job.id, "kind": job.kind, "attempts": attempts, "error": error,
                                    **({"channel": job.payload.get("channel")} if job.kind == "notification"
                                       else {})})
            return True

    # case timers ---------------------------------------------------------------------------------
    def _timer_failed(self, instance_id: int, exc: Exception) -> None:
        """A case's due timer failed to fire: park the case and retry it through the job table."""
        error = f"{exc.__class__.__name__}: {getattr(exc, 'message', None) or exc}"[:4000]
        log.warning("timer of case %s failed: %s", instance_id, error)
        with self.ctx.db.transaction() as s:
            row = self.store.lock(s, instance_id)
            row.next_timer_due, row.error = None, error
            waiting = s.scalars(select(Job.id).where(Job.kind == "timer", Job.instance_id == instance_id,
                                                     Job.state == "pending")).first()
            if waiting is None:
                s.add(Job(kind="timer", due_at=self.ctx.now() + self._backoff(1), instance_id=instance_id,
                          payload={}, state="pending", retries_left=DEFAULT_RETRIES, created_at=self.ctx.now()))
            self.audit.record(s, "system", "timer.failed", instance_id=instance_id, data={"error": error})

    def _run_timer(self, s: Session, job: Job) -> None:
        assert job.instance_id is not None
        with self.store.open(s, job.instance_id) as case:
            if case.row.status != "running":
                return
            self.store.run_engine(case.workflow, job.instance_id, "system", refresh_timers=True)
            self.store.save(s, case)
            case.row.error = None
            self.audit.record(s, "system", "timer.fired", instance_id=job.instance_id,
                              data={"retry_of_job": job.id})

    # escalation ----------------------------------------------------------------------------------
    def _schedule_escalations(self, s: Session, case: OpenCase, created: list[HumanTask]) -> None:
        """on_tasks_created: one job per escalation rule of each new task, at its threshold."""
        for task in created:
            rules = case.definition.rules.get(task.bpmn_id)
            text = rules.properties.get("escalation") if rules else None
            if not text:
                continue
            try:
                parsed = parse_escalation(text)
            except ValueError as exc:  # deployed before the lint knew the property
                log.warning("case %s task %s: bad escalation ignored: %s", task.instance_id, task.bpmn_id, exc)
                continue
            for index, rule in enumerate(parsed):
                at = rule.fires_at(task.created_at, task.due_at)
                if at is None:
                    continue
                s.add(Job(kind="escalation", due_at=at, instance_id=task.instance_id, task_id=task.id,
                          payload={"rule": rule.text, "index": index, "bpmn_id": task.bpmn_id},
                          state="pending", retries_left=DEFAULT_RETRIES, created_at=task.created_at))

    def _escalate(self, s: Session, job: Job) -> None:
        task = s.get(HumanTask, job.task_id) if job.task_id else None
        if task is None:
            return
        case_row = self.store.lock(s, task.instance_id)  # every writer locks the case first
        s.refresh(task)
        if task.state != "open":
            job.payload = {**job.payload, "outcome": f"task {task.state}"}
            return
        rule = parse_escalation(job.payload["rule"])[0]
        now = self.ctx.now()
        audit: dict[str, Any] = {"rule": rule.text, "action": rule.action, "due_at": task.due_at}
        if rule.action == "reassign":
            audit.update(self._reassign(task, rule.targets[0], now))
            recipients = [task.assignee] if task.assignee else self._holders(task.role)
            channels: tuple[str, ...] = ("inapp", "email")
        else:
            recipients = self._recipients(rule.targets, task, case_row)
            channels = rule.channels
        message = self._message(task, case_row, rule.label, now, reassigned=rule.action == "reassign")
        queued = self.notify.notify(s, recipients, message, channels)
        audit.update(recipients=recipients, channels=list(channels), email=queued["email"],
                     webhook=queued["webhook"])
        self.audit.record(s, "system", "task.escalated", instance_id=task.instance_id, task_id=task.id, data=audit)
        job.payload = {**job.payload, "outcome": rule.action, "recipients": recipients}

    def _reassign(self, task: HumanTask, target: str, now: datetime) -> dict[str, Any]:
        before = {"from_role": task.role, "from_assignee": task.assignee}
        if target.startswith("@"):
            user = self.identity.find(target[1:])
            if user is None:
                return {**before, "outcome": f"unknown user {target[1:]!r}: not reassigned"}
            task.assignee, task.claimed_at = user.username, now
        else:
            role = (manager_role(task.role) if target == "manager" else
                    "supervisor" if target == "supervisor" else self.identity.resolve_role(target) or target)
            task.role, task.assignee, task.claimed_at = role, None, None
        return {**before, "to_role": task.role, "to_assignee": task.assignee}

    def _holders(self, role: str) -> list[str]:
        return [a.username for a in self.identity.users(role)]

    def _recipients(self, targets: tuple[str, ...], task: HumanTask, case_row: ProcessInstance) -> list[str]:
        out: list[str] = []
        for target in targets:
            if target == "assignee":
                out += [task.assignee] if task.assignee else self._holders(task.role)
            elif target == "manager":
                out += self._holders(manager_role(task.role))
            elif target == "supervisor":
                out += self._holders("supervisor")
            elif target == "starter":
                out.append(case_row.started_by)
            elif target.startswith("@"):
                out.append(target[1:])
            else:
                out += self._holders(self.identity.resolve_role(target) or target)
        return sorted(set(out))

    def _message(self, task: HumanTask, case_row: ProcessInstance, label: str, now: datetime,
                 reassigned: bool = False) -> Message:
        zone = self.ctx.zone
        due = task.due_at
        if due is None:
            state = f"已等待 {_span(now - task.created_at)}"
        elif now >= due:
            state = f"已超期 {_span(now - due)}"
        else:
            state = f"距截止还有 {_span(due - now)}"
        who = task.assignee or f"{task.role} 队列（未认领）"
        title = f"【{'任务转派' if reassigned else '督办'}】{task.name}：{state}"
        body = "\n".join([
            f"案件：#{case_row.id} {case_row.title}",
            f"任务：{task.name}（{task.bpmn_id}）",
            f"处理人：{who}",
            f"截止时间：{due.astimezone(zone).strftime('%Y-%m-%d %H:%M') if due else '未设定'}",
            f"督办规则：{label}",
        ])
        return Message(title, body, "escalation", task.instance_id, task.id)

    # notifications -------------------------------------------------------------------------------
    def _send(self, job: Job) -> None:
        self.notify.send(job.payload)

    # timer start events --------------------------------------------------------------------------
    def _deployed(self, s: Session, row: ProcessDefinition, spec: Any) -> None:
        """on_deployed: schedule (or re-schedule, or cancel) the process's timer start."""
        self._lock_process(s, row.process_id)
        try:
            self._sync_start(s, row.process_id, spec)
        except ValueError as exc:
            raise LintFailed([Problem(row.source_name, 1, f"timer start event: {exc}")]) from None

    def sync_start_timers(self) -> int:
        """Make sure every deployed process with a timer start event has its next start scheduled
        (for databases deployed before this existed); returns how many were scheduled."""
        added = 0
        for definition in self.repository.definitions():
            loaded = self.repository.load(definition.id)
            if start_timer(loaded.spec) is None:
                continue
            with self.ctx.db.transaction() as s:
                self._lock_process(s, definition.process_id)
                try:
                    added += self._sync_start(s, definition.process_id, loaded.spec)
                except ValueError as exc:
                    log.warning("%s: timer start event not scheduled: %s", definition.process_id, exc)
        return added

    @staticmethod
    def _lock_process(s: Session, process_id: str) -> None:
        """Serialise start-timer bookkeeping of one process across processes (its definition rows)."""
        s.execute(select(ProcessDefinition.id).where(ProcessDefinition.process_id == process_id)
                  .with_for_update())

    def _pending_starts(self, s: Session, process_id: str) -> list[Job]:
        rows = s.scalars(select(Job).where(Job.kind == "start_case", Job.state == "pending").with_for_update())
        return [j for j in rows if j.payload.get("process_id") == process_id]

    def _sync_start(self, s: Session, process_id: str, spec: Any) -> int:
        pending = self._pending_starts(s, process_id)
        found = start_timer(spec)
        schedule = self._first_start(process_id, found) if found else None
        if schedule is not None and any(j.payload.get("expression") == schedule["expression"] for j in pending):
            return 0  # unchanged timer: keep the start already scheduled
        for job in pending:
            job.state, job.done_at = "cancelled", self.ctx.now()
            job.payload = {**job.payload, "outcome": "replaced by a new version"}
        if schedule is None:
            return 0
        due = schedule.pop("due")
        s.add(Job(kind="start_case", due_at=due, payload=schedule, state="pending",
                  retries_left=DEFAULT_RETRIES, created_at=self.ctx.now()))
        return 1

    def _first_start(self, process_id: str, timer: StartTimer) -> dict[str, Any] | None:
        """The first start at or after now, or None (a date already past, or no cycles left)."""
        text = self._timer_text(timer.expression)
        now, zone = self.ctx.now(), self.ctx.zone
        base = {"process_id": process_id, "expression": text}
        if timer.kind == "cycle":
            cycles, start, duration = parse_cycle(text, now, zone)
            index = first_index_after(start, duration, now, inclusive=True)
            if cycles != -1 and index >= cycles:
                return None
            return {**base, "type": "cycle", "start": start.isoformat(), "duration": duration, "cycles": cycles,
                    "index": index, "due": occurrence(start, duration, index)}
        if timer.kind == "duration":
            return {**base, "type": "duration", "due": add_duration(now, parse_duration(text))}
        due = parse_moment(text, zone)
        return {**base, "type": "date", "due": due} if due >= now else None

    def _timer_text(self, expression: str) -> str:
        try:
            value = self.ctx.environment.evaluate(expression, {})
        except Exception as exc:  # noqa: BLE001 (a start event has no case data: literals only)
            raise ValueError(f"{expression!r} must be a quoted ISO 8601 literal "
                             f"(a start event has no case data): {exc}") from None
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value).strip()

    def _start_case(self, s: Session, job: Job) -> None:
        payload = job.payload
        process_id = payload["process_id"]
        self._lock_process(s, process_id)
        found = start_timer(self.repository.load(self.repository.latest_id(process_id)).spec)
        if found is None:
            job.payload = {**payload, "outcome": "the process no longer starts on a timer"}
            return
        # Exactly one chain of starts per process: any other pending start is a stray duplicate.
        for other in self._pending_starts(s, process_id):
            if other.id != job.id:
                other.state, other.done_at = "cancelled", self.ctx.now()
        now, due = self.ctx.now(), job.due_at
        key = f"{process_id}-{due.astimezone(self.ctx.zone):%Y%m%d%H%M}"
        started = s.scalars(select(ProcessInstance.id).where(ProcessInstance.process_id == process_id,
                                                             ProcessInstance.business_key == key)).first()
        if started is None:
            case = self.runtime.start(process_id, SYSTEM, {}, business_key=key, check_role=False,
                                      prepare=fire_start_timer)
            started = case.id
            late = (now - due).total_seconds() * 1000
            self.audit.record(s, "system", "timer.fired", instance_id=case.id,
                              data={"due": due, "late_ms": round(late, 1), "start_event": found.element})
        job.payload = {**payload, "outcome": "started", "instance_id": started}
        if payload.get("type") != "cycle":
            return
        start = datetime.fromisoformat(payload["start"])
        index = max(first_index_after(start, payload["duration"], now, inclusive=False), payload["index"] + 1)
        if payload["cycles"] != -1 and index >= payload["cycles"]:
            return
        s.add(Job(kind="start_case", due_at=occurrence(start, payload["duration"], index),
                  payload={k: v for k, v in payload.items() if not k.startswith("_") and k != "outcome"}
                  | {"index": index}, state="pending", retries_left=DEFAULT_RETRIES, created_at=now))


# timer start events: helpers ---------------------------------------------------------------------
_CYCLE = re.compile(r"^R(\d*)/([^/]+)(?:/([^/]+))?$", re.I)


def parse_cycle(text: str, now: datetime, zone: Any) -> tuple[int, datetime, str]:
    """'R[n]/start/duration' or 'R[n]/duration' (first at now + duration): (cycles or -1, start, duration)."""
    m = _CYCLE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a cycle such as R/2027-03-01T09:00:00+08:00/P1Y or R3/PT1H")
    cycles = int(m.group(1)) if m.group(1) else -1
    first, second = m.group(2).strip(), (m.group(3) or "").strip()
    if second:
        if first.upper().startswith("P"):
            raise ValueError(f"{text!r}: write R[n]/start/duration (R[n]/duration/end is not supported here)")
        duration = second.upper()
        parse_duration(duration)
        return cycles, parse_moment(first, zone), duration
    duration = first.upper()
    return cycles, add_duration(now, parse_duration(duration)), duration


def occurrence(start: datetime, duration: str, index: int) -> datetime:
    """start + index x duration, calendar-correct (a yearly cycle stays on its date across leap years)."""
    return add_duration(start, parse_duration(duration), index) if index else start


def first_index_after(start: datetime, duration: str, now: datetime, inclusive: bool) -> int:
    """The first occurrence index at (inclusive) or after now; missed occurrences are skipped."""
    step = (occurrence(start, duration, 1) - start).total_seconds()
    if step <= 0:
        raise ValueError(f"cycle duration {duration!r} must be positive")
    index = max(0, int((now - start).total_seconds() // step) - 2)
    while occurrence(start, duration, index) < now or (not inclusive and occurrence(start, duration, index) == now):
        index += 1
    return index


def _span(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}天" if days else "", f"{hours}小时" if hours else "", f"{minutes}分钟" if minutes or not
             (days or hours) else ""]
    return "".join(parts)
