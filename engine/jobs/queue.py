"""The job table and the tick that makes time pass (docs/ARCHITECTURE.md, "Timers, deadlines").

Two kinds of due work, both claimed from the database so any number of processes may tick at once:

* **case timers**: `process_instance.next_timer_due` (computed on every save) is the truth for
  BPMN timers; the tick first lets the case timers fire (engine/jobs/timers.py).
* **jobs**: `job` rows (escalations, notifications, timer start events, timer retries), every one
  built by `schedule_job`. A tick claims due rows with a lock owner and a lock expiry (`FOR UPDATE
  SKIP LOCKED` on PostgreSQL, SQLite's write lock otherwise), runs the handler for the kind, and
  marks the row done; a failure is retried with exponential back-off, and when the retries run out
  the row is `failed` with its last error (Camunda 7's job model). A process that dies mid-job
  loses its lock when it expires.

Handlers are transactional (they run in the transaction that marks the job done, so their writes
and the job's completion commit together: escalations, case starts) or not (they talk to the
outside world first and the job is marked done afterwards: e-mail and webhook sends).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine.context import EngineContext
from engine.errors import NotFound
from engine.storage.audit import AuditService
from engine.storage.models import Job

log = logging.getLogger("opsflow.jobs")

DEFAULT_RETRIES = 5

JobHandler = Callable[..., Any]
# Fires the case timers due by a moment (the engine clock when None), at most so many cases;
# returns the cases fired.
CaseTimers = Callable[[datetime | None, int], list[int]]


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


def schedule_job(s: Session, kind: str, due_at: datetime, *, created_at: datetime,
                 payload: dict[str, Any] | None = None, instance_id: int | None = None,
                 task_id: str | None = None, retries: int = DEFAULT_RETRIES) -> Job:
    """Add a pending job in the caller's transaction: it commits (or not) with what caused it.

    The one place a job row is built.
    """
    if due_at.tzinfo is None:
        raise ValueError("a job's due time must carry its zone")
    job = Job(kind=kind, due_at=due_at, payload=dict(payload or {}), instance_id=instance_id, task_id=task_id,
              state="pending", retries_left=retries, created_at=created_at)
    s.add(job)
    return job


class JobService:
    lease = timedelta(minutes=5)  # a claimed job is another process's after this
    backoff_base = timedelta(seconds=30)  # 30 s, 1 min, 2 min, 4 min ... after each failure
    backoff_max = timedelta(hours=1)

    def __init__(self, ctx: EngineContext, audit: AuditService) -> None:
        self.ctx = ctx
        self.audit = audit
        self.owner = default_owner()
        self.handlers: dict[str, Registered] = {}
        self.case_timers: CaseTimers | None = None  # set by the timer service (engine/jobs/timers.py)
        self._tick_lock = threading.Lock()

    # scheduling ----------------------------------------------------------------------------------
    def register(self, kind: str, handler: JobHandler, transactional: bool = True) -> None:
        """handler(session, job) when transactional, else handler(job) outside any transaction."""
        self.handlers[kind] = Registered(handler, transactional)

    def schedule(self, kind: str, due_at: datetime, payload: dict[str, Any] | None = None,
                 instance_id: int | None = None, task_id: str | None = None,
                 retries: int = DEFAULT_RETRIES) -> Job:
        """Add a job of a registered kind; inside another service's transaction it commits (or not) with it."""
        if kind not in self.handlers:
            raise ValueError(f"no handler for job kind {kind!r}")
        with self.ctx.db.transaction() as s:
            job = schedule_job(s, kind, due_at, created_at=self.ctx.now(), payload=payload,
                               instance_id=instance_id, task_id=task_id, retries=retries)
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

    def backoff(self, attempt: int) -> timedelta:
        """How long to wait before the next attempt after this many failures."""
        return min(self.backoff_base * (2 ** max(attempt - 1, 0)), self.backoff_max)

    # the tick ------------------------------------------------------------------------------------
    def tick(self, now: datetime | None = None, owner: str | None = None, limit: int = 100) -> TickReport:
        """Fire the case timers and run the jobs due by now (the engine clock unless given)."""
        report = TickReport()
        with self._tick_lock:  # one tick at a time per process; other processes are kept off by the claims
            if self.case_timers is not None:
                report.timers = self.case_timers(now, limit)
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
                job.due_at = now + self.backoff(attempts)
                return False
            job.state, job.done_at = "failed", now
            self.audit.record(s, "system", "job.failed", instance_id=job.instance_id, task_id=job.task_id,
                              data={"job": job.id, "kind": job.kind, "attempts": attempts, "error": error,
                                    **({"channel": job.payload.get("channel")} if job.kind == "notification"
                                       else {})})
            return True
