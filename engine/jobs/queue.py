"""The job table and the tick that makes time pass (docs/ARCHITECTURE.md, "Timers, deadlines").

Two kinds of due work, both claimed from the database so any number of processes may tick at once:

* **case timers**: `process_instance.next_timer_due` (computed on every save) is the truth for
  BPMN timers; the tick first lets the case timers fire (engine/jobs/timers.py).
* **jobs**: `job` rows (escalations, notifications, timer start events, timer retries), every one
  built by `schedule_job`. A tick takes the due rows one at a time (`FOR UPDATE SKIP LOCKED` on
  PostgreSQL, SQLite's write lock otherwise), runs the handler for the kind, and marks the row done;
  a failure is retried with exponential back-off, and when the retries run out the row is `failed`
  with its last error (Camunda 7's job model).

Handlers are transactional or not, and a worker that dies mid-job frees it accordingly:

* **transactional** (escalations, case starts, timer retries): the row is taken, the handler run
  (in a savepoint) and the row marked done in ONE transaction, so their writes and the job's
  completion commit together. A worker that dies rolls back: its row lock goes with its connection
  (its write lock, on SQLite) and the next tick of any process runs the job at once. No lease. (A
  machine that vanishes closes no connection: PostgreSQL ends its transaction after the idle
  timeout, OPSFLOW_DB_IDLE_TIMEOUT, 60 s.)
* **not transactional** (e-mail and webhook sends: they talk to the outside world, which no
  rollback recalls): the row is leased to the worker (`lock_owner`, `lock_expires_at`, `lease` =
  30 s) and the count of runs started (`_started` in the payload) is committed before the handler
  runs outside any transaction; a heartbeat thread pushes the expiry on every `lease / 3` while it
  runs, so a long send keeps its job and a dead worker's job is free again within `lease`. A run
  that starts after an interrupted one is logged as a repeat; notifications carry an idempotency key
  so the receiver can drop the duplicate (engine/people/notify.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, or_, select, update
from sqlalchemy.orm import Session

from engine.context import EngineContext
from engine.errors import Conflict, NotFound
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


def _due(now: datetime) -> Select[Job]:
    """Pending jobs due by now that no live worker holds a lease on, in due order."""
    return (select(Job).where(Job.state == "pending", Job.due_at <= now,
                              or_(Job.lock_expires_at.is_(None), Job.lock_expires_at < now))
            .order_by(Job.due_at, Job.id))


class JobService:
    # A job run outside a transaction is another process's this long after its worker's last
    # heartbeat (renewed every lease / 3 while the handler runs).
    lease = timedelta(seconds=30)
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

    def retry(self, job_id: int, actor: str = "system", retries: int = DEFAULT_RETRIES,
              pending_too: bool = False) -> Job:
        """Give a failed job new retries, due now (an operator fixed the cause). A done or cancelled job
        ran its course and a pending one still retries on its own: refused, unless `pending_too` (a stuck
        case's retry job brought forward, engine/jobs/failures.py). Checked under the row lock."""
        with self.ctx.db.transaction() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None:
                raise NotFound(f"unknown job {job_id}")
            if job.state != "failed" and not (pending_too and job.state == "pending"):
                raise Conflict(f"job {job_id} is {job.state}, not failed: nothing to retry")
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
        """Run up to `limit` due jobs, one at a time; jobs they queue (an escalation's e-mails) go out too."""
        report = report or TickReport()
        owner = owner or self.owner
        for _n in range(limit):
            taken = self._run_next(now or self.ctx.now(), owner)
            if taken is None:
                break
            job_id, outcome = taken
            if outcome == "leased":  # not transactional: run outside the transaction that leased it
                try:
                    outcome = "done" if self._run(job_id, owner) else "lost"
                except Exception as exc:  # noqa: BLE001 (any failure is retried, never raised to the ticker)
                    outcome = "failed" if self._job_failed(job_id, owner, exc) else "retrying"
            if outcome in ("done", "retrying", "failed"):
                getattr(report, outcome).append(job_id)
        return report

    def _run_next(self, now: datetime, owner: str) -> tuple[int, str] | None:
        """Take the next due job: run a transactional one here and now, lease any other to owner.

        Returns the job and `done`, `retrying`, `failed` or `leased`; None when nothing is due.
        """
        job_id: int | None = None
        try:
            with self.ctx.db.transaction() as s:
                job = s.scalars(_due(now).limit(1).with_for_update(skip_locked=True)).first()
                if job is None:
                    return None
                job_id = job.id
                handler = self.handlers.get(job.kind)
                if handler is not None and not handler.transactional:
                    self._lease(job, owner, now)
                    return job_id, "leased"
                return job_id, self._run_here(s, job, handler)
        except Exception as exc:
            if job_id is None:
                raise
            # The transaction itself broke (the connection dropped under the handler, say): the
            # job is counted as failed like any other, so it backs off instead of running every tick.
            return job_id, "failed" if self._job_failed(job_id, None, exc) else "retrying"

    def _run_here(self, s: Session, job: Job, handler: Registered | None) -> str:
        """Run a transactional job in the taking transaction; a failure is counted in it too."""
        callbacks = list(s.info.get("after_commit", []))
        try:
            with s.begin_nested():  # a failing handler's writes go; the row lock and the count stay
                if handler is None:
                    raise LookupError(f"no handler for job kind {job.kind!r}")
                handler.run(s, job)
        except Exception as exc:  # noqa: BLE001 (any failure is retried, never raised to the ticker)
            s.info["after_commit"] = callbacks  # nor does what it meant to do after the commit happen
            return "failed" if self._count_failure(s, job, exc) else "retrying"
        self._done(job)
        return "done"

    def _lease(self, job: Job, owner: str, now: datetime) -> None:
        """Lease a job to owner and count the run, in the caller's transaction (committed before it runs)."""
        started = int(job.payload.get("_started", 0))
        if started > int(job.payload.get("_attempts", 0)):  # a run neither finished nor failed
            log.warning("job %s (%s): run %d starts after run %d was interrupted (worker %s died?); "
                        "what it sent may be sent again", job.id, job.kind, started + 1, started, job.lock_owner)
        job.payload = {**job.payload, "_started": started + 1}
        job.lock_owner, job.lock_expires_at = owner, now + self.lease

    def _claim(self, now: datetime, owner: str, limit: int) -> list[int]:
        """Lease up to `limit` due jobs to owner without running them (`_run` runs one)."""
        with self.ctx.db.transaction() as s:
            rows = list(s.scalars(_due(now).limit(limit).with_for_update(skip_locked=True)))
            for job in rows:
                self._lease(job, owner, now)
            return [job.id for job in rows]

    def _locked(self, s: Session, job_id: int, owner: str | None) -> Job | None:
        """The job, locked, if this owner still holds its lease (with owner None: if nobody does)."""
        job = s.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None or job.state != "pending" or job.lock_owner != owner:
            return None  # done, cancelled, or leased again by another process after our lease ran out
        return job

    def _run(self, job_id: int, owner: str) -> bool:
        """Run a job leased to owner; False when the lease was lost. A handler's failure is raised."""
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
        with self._heartbeat(job_id, owner):
            handler.run(job)
        with self.ctx.db.transaction() as s:
            job = self._locked(s, job_id, owner)
            if job is None:
                log.warning("job %s (%s) finished after its lease went to another worker", job_id, owner)
                return False
            self._done(job)
        return True

    @contextmanager
    def _heartbeat(self, job_id: int, owner: str) -> Iterator[None]:
        """Renew owner's lease every lease / 3 while the body runs, each renewal its own transaction.

        The body runs outside any transaction, so on SQLite the renewal never waits for it (and it
        waits for no renewal: the thread is stopped before the job is marked done).
        """
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.lease.total_seconds() / 3):
                try:
                    if not self._renew(job_id, owner):
                        log.warning("job %s: the lease of %s is gone; no more renewals", job_id, owner)
                        return
                except Exception:  # noqa: BLE001 (the next beat tries again; the lease still has time)
                    log.exception("job %s: could not renew the lease of %s", job_id, owner)

        thread = threading.Thread(target=beat, name=f"opsflow-job-{job_id}-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _renew(self, job_id: int, owner: str) -> bool:
        with self.ctx.db.transaction() as s:
            result = s.execute(update(Job).where(Job.id == job_id, Job.state == "pending", Job.lock_owner == owner)
                               .values(lock_expires_at=self.ctx.now() + self.lease))
            return (cast(CursorResult[Any], result).rowcount or 0) > 0

    def _done(self, job: Job) -> None:
        job.state, job.done_at = "done", self.ctx.now()
        job.lock_owner = job.lock_expires_at = None

    def _job_failed(self, job_id: int, owner: str | None, exc: Exception) -> bool:
        """Count a failure in a transaction of its own. True when the retries ran out."""
        with self.ctx.db.transaction() as s:
            job = self._locked(s, job_id, owner)
            if job is None:
                log.warning("job %s failed: %s", job_id, exc)
                return False
            return self._count_failure(s, job, exc)

    def _count_failure(self, s: Session, job: Job, exc: Exception) -> bool:
        """Retry later with back-off, or mark failed and record it. True when the retries ran out."""
        error = f"{exc.__class__.__name__}: {exc}"[:4000]
        log.warning("job %s failed: %s", job.id, error)
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
