"""The job table: claim, run, retry with back-off, fail with the error recorded; the ticker and CLI."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine import ProcessEngine
from engine.jobs.ticker import JOB_ID, start_ticker, stop_ticker
from engine.storage.models import AuditEvent, Job, ProcessInstance, User
from tests.conftest import Clock, deploy_fixture, make_settings


def job_row(engine: ProcessEngine, job_id: int) -> Job:
    with engine.ctx.db.transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_a_job_runs_when_due_and_is_marked_done(engine: ProcessEngine, clock: Clock) -> None:
    ran: list[dict[str, Any]] = []
    engine.jobs.register("probe", lambda s, job: ran.append(job.payload))
    job = engine.jobs.schedule("probe", clock.now + timedelta(minutes=5), {"n": 1})
    assert engine.jobs.tick().idle
    clock.advance(minutes=5)
    assert engine.jobs.tick().done == [job.id]
    assert ran == [{"n": 1}]
    row = job_row(engine, job.id)
    assert (row.state, row.done_at, row.lock_owner, row.lock_expires_at) == ("done", clock.now, None, None)
    assert engine.jobs.tick().idle


def test_jobs_run_in_due_order(engine: ProcessEngine, clock: Clock) -> None:
    ran: list[int] = []
    engine.jobs.register("probe", lambda s, job: ran.append(job.payload["n"]))
    for n in (3, 1, 2):
        engine.jobs.schedule("probe", clock.now + timedelta(seconds=n), {"n": n})
    clock.advance(seconds=10)
    engine.jobs.tick()
    assert ran == [1, 2, 3]


def test_a_failing_job_backs_off_exponentially_then_fails_with_its_error(engine: ProcessEngine,
                                                                         clock: Clock) -> None:
    def broken(s, job) -> None:
        raise ConnectionError("CMDB unreachable")

    engine.jobs.register("broken", broken)
    job = engine.jobs.schedule("broken", clock.now, instance_id=None, retries=4)
    delays = []
    for _ in range(3):
        before = clock.now
        report = engine.jobs.tick()
        assert report.retrying == [job.id]
        row = job_row(engine, job.id)
        assert (row.state, row.last_error) == ("pending", "ConnectionError: CMDB unreachable")
        delays.append((row.due_at - before).total_seconds())
        clock.now = row.due_at
    assert delays == [30, 60, 120]
    assert engine.jobs.tick().failed == [job.id]
    row = job_row(engine, job.id)
    assert (row.state, row.retries_left, row.payload["_attempts"]) == ("failed", 0, 4)
    [event] = [e for e in engine.audit.events() if e.action == "job.failed"]
    assert event.data == {"job": job.id, "kind": "broken", "attempts": 4, "error": "ConnectionError: CMDB unreachable"}
    clock.advance(days=1)
    assert engine.jobs.tick().idle  # a failed job stays failed

    engine.jobs.register("broken", lambda s, job: None)  # an operator fixed the cause
    engine.jobs.retry(job.id, actor="admin")
    assert engine.jobs.tick().done == [job.id]
    assert engine.jobs.jobs(state="failed") == []


def test_a_transactional_handler_that_fails_leaves_nothing_behind(engine: ProcessEngine, clock: Clock) -> None:
    def half_done(s, job) -> None:
        engine.audit.record(s, "system", "test.half_done")
        raise RuntimeError("failed after writing")

    engine.jobs.register("half", half_done)
    engine.jobs.schedule("half", clock.now)
    before = engine.audit.events()
    engine.jobs.tick()
    assert [e.id for e in engine.audit.events()] == [e.id for e in before]


def test_unknown_kinds_cannot_be_scheduled(engine: ProcessEngine, clock: Clock) -> None:
    with pytest.raises(ValueError, match="no handler"):
        engine.jobs.schedule("nonsense", clock.now)


# case timers that fail --------------------------------------------------------------------------------
@pytest.fixture
def flaky_engine(database_url: str, tmp_path: Path, clock: Clock, engine: ProcessEngine, people):
    """An engine whose `probe()` script function fails while `failures` is non-empty."""
    failures = ["probe timed out", "probe timed out"]

    def probe() -> str:
        if failures:
            raise TimeoutError(failures.pop())
        return "ok"

    eng = ProcessEngine(make_settings(database_url, tmp_path), clock=clock, functions={"probe": probe})
    deploy_fixture(eng, "timer_script.bpmn")
    yield eng, failures
    eng.close()


def test_a_timer_whose_step_fails_is_parked_and_retried_until_it_fires(flaky_engine, people, clock: Clock) -> None:
    engine, failures = flaky_engine
    case = engine.runtime.start("timer_script", people["wang"])
    clock.advance(hours=1, seconds=1)
    other = engine.runtime.start("timer_script", people["wang"])  # a healthy case behind it in the queue

    report = engine.jobs.tick()
    assert report.timers == []  # the failing case does not block the tick
    with engine.ctx.db.transaction() as s:
        row = s.get(ProcessInstance, case.id)
        assert row.next_timer_due is None and "probe timed out" in row.error and row.status == "running"
    [retry] = engine.jobs.jobs(kind="timer")
    assert retry.instance_id == case.id and retry.due_at == clock.now + timedelta(seconds=30)
    assert engine.jobs.tick().idle  # parked: not claimed again on every tick

    clock.advance(seconds=30)
    assert engine.jobs.tick().retrying == [retry.id]  # fails once more, backs off
    clock.advance(seconds=30)
    assert engine.jobs.tick().done == [retry.id]
    detail = engine.runtime.show(case.id)
    assert [t.bpmn_id for t in detail.open_tasks] == ["review"] and detail.data["health"] == "ok"
    with engine.ctx.db.transaction() as s:
        assert s.get(ProcessInstance, case.id).error is None
    actions = [e.action for e in engine.audit.events(case.id)]
    assert actions.count("timer.failed") == 1 and actions.count("timer.fired") == 1
    assert failures == []
    clock.advance(hours=1, seconds=1)
    assert engine.jobs.tick().timers == [other.id]


def test_without_on_error_fire_due_timers_raises_as_before(flaky_engine, people, clock: Clock) -> None:
    from engine.errors import ProcessError

    engine, _failures = flaky_engine
    engine.runtime.start("timer_script", people["wang"])
    clock.advance(hours=2)
    with pytest.raises(ProcessError, match="probe timed out"):
        engine.runtime.fire_due_timers()


# the ticker ---------------------------------------------------------------------------------------
def test_the_ticker_is_one_interval_job_in_a_memory_store(engine: ProcessEngine) -> None:
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.triggers.interval import IntervalTrigger

    scheduler = start_ticker(engine, interval=3600)  # its first tick runs at once, then hourly
    try:
        assert start_ticker(engine) is scheduler  # once per engine
        [job] = scheduler.get_jobs()
        assert job.id == JOB_ID and isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval == timedelta(hours=1)
        assert isinstance(scheduler._lookup_jobstore("default"), MemoryJobStore)
        assert list(scheduler._jobstores) == ["default"]
    finally:
        stop_ticker(engine)
    assert not scheduler.running


def test_opsflow_tick_and_jobs_commands(engine: ProcessEngine, people, clock: Clock, database_url: str,
                                        tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.conftest import FIXTURES, ROOT
    from tests.engine.command_line import run_opsflow

    deploy_fixture(engine, "timer_catch.bpmn")
    clock.advance(hours=-2)  # the CLI runs on the real clock: this case's timer fell due an hour ago
    engine.runtime.start("timer_catch", people["wang"], {"release_at": (clock.now + timedelta(hours=1)).isoformat()})
    engine.jobs.register("broken", lambda s, job: 1 / 0)
    job = engine.jobs.schedule("broken", clock.now - timedelta(hours=1), retries=1)
    env = {**os.environ, "OPSFLOW_DATABASE_URL": database_url, "OPSFLOW_VAR_DIR": str(tmp_path / "var"),
           "OPSFLOW_PROCESSES_DIR": str(ROOT / "processes"), "OPSFLOW_FORMS_DIR": str(FIXTURES / "forms")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return run_opsflow(args, env, ROOT)  # main() in this process, with an engine of its own

    out = run("tick")
    assert out.returncode == 0, out.stderr
    assert "fired timers in 1 case(s)" in out.stdout
    assert "1 failed" in out.stdout  # the CLI's engine has no handler for 'broken': recorded, not raised
    listed = run("jobs", "--state", "failed")
    assert f"{job.id}" in listed.stdout and "no handler for job kind 'broken'" in listed.stdout
    assert run("jobs", "--retry", str(job.id)).returncode == 0
    assert run("user", "email", "wang", "wang@firm.cn").returncode == 0
    with engine.ctx.db.transaction() as s:
        assert s.scalars(select(User.email).where(User.username == "wang")).one() == "wang@firm.cn"
    assert job_row(engine, job.id).state == "pending"
    with engine.ctx.db.transaction() as s:
        assert s.scalars(select(AuditEvent.action).where(AuditEvent.action == "job.retried")).all() == ["job.retried"]
