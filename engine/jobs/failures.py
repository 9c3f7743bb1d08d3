"""What failed without a user there to see it, for the process owner (Camunda's incidents): cases parked
because their timer could not fire, and jobs whose retries ran out; and retrying one once the cause is
fixed (a new version migrated to, a service back up). Both need the grant `process.deploy`.

A parked case keeps its status `running` (so the tick, a retry and `opsflow cancel` treat it as any
running case) with `error` set and no timer due; the timer job retrying it carries the attempts and
the latest error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from engine.context import EngineContext
from engine.errors import BadRequest, Conflict, NotFound
from engine.jobs.queue import JobService
from engine.jobs.timers import TimerService
from engine.people.access import AccessPolicy
from engine.people.identity import Actor
from engine.storage.audit import AuditService
from engine.storage.models import AuditEvent, Job, ProcessInstance

GRANT = "process.deploy"


@dataclass(frozen=True)
class Failure:
    """A stuck case (instance_id set, its timer job if any) or a failed job of no stuck case."""

    instance_id: int | None
    process_id: str | None
    title: str | None
    error: str  # the latest error: the retry job's when it ran again, else the case's
    since: datetime | None  # when it first failed
    attempts: int  # failed runs so far (the first firing counts as one)
    job_id: int | None
    kind: str | None  # the job's kind: timer, start_case, notification, escalation...
    state: str  # parked: waiting for a retry | retrying: a retry is scheduled | failed: retries ran out


class FailureService:
    def __init__(self, ctx: EngineContext, jobs: JobService, timers: TimerService, audit: AuditService,
                 access: AccessPolicy) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.timers = timers
        self.audit = audit
        self.access = access

    def failures(self, actor: Actor, limit: int = 200) -> list[Failure]:
        """Stuck cases first (longest stuck first), then failed jobs of no stuck case."""
        self.access.require(actor, GRANT, "see the failed cases and jobs")
        out: list[Failure] = []
        with self.ctx.db.read() as s:
            parked = list(s.scalars(select(ProcessInstance).where(ProcessInstance.status == "running",
                                                                  ProcessInstance.error.is_not(None))
                                    .order_by(ProcessInstance.id).limit(limit)))
            for row in parked:
                job = s.scalars(select(Job).where(Job.kind == "timer", Job.instance_id == row.id)
                                .order_by(Job.id.desc()).limit(1)).first()
                # stuck since the failure that scheduled its retry job (else since its latest failure)
                first = job.created_at if job is not None else s.scalars(
                    select(AuditEvent.at).where(AuditEvent.instance_id == row.id, AuditEvent.action == "timer.failed")
                    .order_by(AuditEvent.id.desc()).limit(1)).first()
                attempts = 1 + (int(job.payload.get("_attempts", 0)) if job is not None else 0)
                state = "parked" if job is None or job.state not in ("pending", "failed") else (
                    "retrying" if job.state == "pending" else "failed")
                out.append(Failure(row.id, row.process_id, row.title,
                                   (job.last_error if job is not None and job.last_error else row.error) or "",
                                   first, attempts, job.id if job is not None else None, "timer", state))
            stuck = {f.instance_id for f in out}
            for job in s.scalars(select(Job).where(Job.state == "failed").order_by(Job.done_at.desc())
                                 .limit(limit)):
                if job.instance_id in stuck:
                    continue
                case = s.get(ProcessInstance, job.instance_id) if job.instance_id is not None else None
                if case is not None and case.status != "running":
                    continue  # the case ended meanwhile: nothing left to retry
                out.append(Failure(job.instance_id, case.process_id if case else job.payload.get("process_id"),
                                   case.title if case else None, job.last_error or "", job.created_at,
                                   int(job.payload.get("_attempts", 0)), job.id, job.kind, "failed"))
        return out[:limit]

    def retry(self, by: Actor | str, *, instance_id: int | None = None, job_id: int | None = None) -> int:
        """Run a stuck case's timer, or a failed job, again now; returns the job that will run it.

        `by` is a user, held to the grant, or the name of the operator at the shell (`opsflow jobs
        --retry` without --as), who runs the installation. A case that is not stuck and a job that is
        not failed are refused, nothing changed. The job service records `job.retried` with the actor;
        a stuck case with no job left waiting gets a new timer job (recorded as `timer.retry_scheduled`).
        """
        if isinstance(by, Actor):
            self.access.require(by, GRANT, "retry a failed case or job")
        actor = by.username if isinstance(by, Actor) else by
        if (instance_id is None) == (job_id is None):
            raise BadRequest("name either a case or a job to retry")
        if job_id is not None:
            return self.jobs.retry(job_id, actor).id  # refuses a job that is not failed
        assert instance_id is not None
        with self.ctx.db.transaction() as s:
            row = s.get(ProcessInstance, instance_id)
            if row is None:
                raise NotFound(f"unknown case {instance_id}")
            if row.status != "running" or row.error is None:
                raise Conflict(f"case {instance_id} is {row.status} and not stuck: nothing to retry")
            waiting = s.scalars(select(Job.id).where(Job.kind == "timer", Job.instance_id == instance_id,
                                                     Job.state.in_(("pending", "failed")))
                                .order_by(Job.id.desc()).limit(1)).first()
            if waiting is None:
                job = self.timers.schedule_retry(s, instance_id)
                s.flush()
                self.audit.record(s, actor, "timer.retry_scheduled", instance_id=instance_id, data={"job": job.id})
                return job.id
        return self.jobs.retry(waiting, actor, pending_too=True).id  # a retry due later: brought forward
