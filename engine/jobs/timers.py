"""Time in cases: BPMN timers of running cases, and processes that start on a timer.

* **case timers**: every tick first fires the cases whose `next_timer_due` has come, one case per
  transaction (RuntimeService.fire_due_timers); a case whose timer fails is parked and retried as a
  `timer` job with back-off.
* **timer start events**: deploying a process that starts on a timer schedules its next start as a
  `start_case` job (a redeploy with another timer replaces it); each start of a cycle schedules the
  next one. Exactly one chain of starts per process, guarded by locking its definition rows.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.cases.runtime import RuntimeService
from engine.cases.store import CaseStore
from engine.context import EngineContext
from engine.definitions.deadlines import add_duration, parse_duration, parse_moment
from engine.definitions.repository import RepositoryService
from engine.errors import LintFailed
from engine.jobs.queue import JobService, schedule_job
from engine.people.identity import Actor
from engine.spiff.parsing import Problem
from engine.spiff.timers import StartTimer, fire_start_timer, start_timer
from engine.storage.audit import AuditService
from engine.storage.models import Job, ProcessDefinition, ProcessInstance

log = logging.getLogger("opsflow.jobs")

SYSTEM = Actor("system", "系统", frozenset({"__system__"}))


class TimerService:
    def __init__(self, ctx: EngineContext, jobs: JobService, repository: RepositoryService,
                 runtime: RuntimeService, store: CaseStore, audit: AuditService) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.repository = repository
        self.runtime = runtime
        self.store = store
        self.audit = audit
        jobs.register("timer", self._run_timer)
        jobs.register("start_case", self._start_case)
        jobs.case_timers = self.fire_due
        repository.on_deployed.append(self._deployed)

    # case timers ---------------------------------------------------------------------------------
    def fire_due(self, now: datetime | None = None, limit: int = 100) -> list[int]:
        """The tick's first step: fire the case timers due by now; a failure is retried as a job."""
        return self.runtime.fire_due_timers(now, limit, on_error=self._timer_failed)

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
                now = self.ctx.now()
                schedule_job(s, "timer", now + self.jobs.backoff(1), created_at=now, instance_id=instance_id)
            self.audit.record(s, "system", "timer.failed", instance_id=instance_id, data={"error": error})

    def schedule_retry(self, s: Session, instance_id: int) -> Job:
        """Fire a parked case's timer again now (its retries ran out, or none is waiting)."""
        now = self.ctx.now()
        return schedule_job(s, "timer", now, created_at=now, instance_id=instance_id)

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
        schedule_job(s, "start_case", due, created_at=self.ctx.now(), payload=schedule)
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
        schedule_job(s, "start_case", occurrence(start, payload["duration"], index), created_at=now,
                     payload={k: v for k, v in payload.items() if not k.startswith("_") and k != "outcome"}
                     | {"index": index})


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
