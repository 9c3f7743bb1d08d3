"""BPMN timers through the job service's tick, with a controllable clock (no test sleeps).

Boundary (interrupting and not), intermediate catch, timer start events with cycles; durations,
dates and cycles from ISO literals or case data; a restart with timers due; several processes
ticking at once fire every timer exactly once.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from engine import ProcessEngine
from engine.errors import LintFailed
from engine.spiff.parsing import SourceFile
from engine.storage.models import AuditEvent, HumanTask, Job, ProcessInstance
from tests.conftest import FIXTURES, Clock, deploy_fixture, make_settings

SHANGHAI = ZoneInfo("Asia/Shanghai")


def open_tasks(engine: ProcessEngine, case_id: int) -> list[str]:
    return sorted(t.bpmn_id for t in engine.runtime.show(case_id).open_tasks)


def actions(engine: ProcessEngine, action: str, instance_id: int | None = None) -> list[AuditEvent]:
    return [e for e in engine.audit.events(instance_id) if e.action == action]


def complete(engine: ProcessEngine, case_id: int, bpmn_id: str, actor, data=None) -> None:
    task = next(t for t in engine.runtime.show(case_id).open_tasks if t.bpmn_id == bpmn_id)
    if task.assignee is None:
        engine.tasks.claim(task.id, actor)
    engine.tasks.complete(task.id, actor, data or {"decision": "approve"})


def deploy_start_timer(engine: ProcessEngine, expression: str, element: str = "timeCycle",
                       actor: str = "owner") -> None:
    """The drill reminder with another timer (the BPMN text is a Python expression: quote literals)."""
    xml = (FIXTURES / "timer_start.bpmn").read_text(encoding="utf-8")
    xml = xml.replace('<bpmn:timeCycle>"R/2027-03-01T09:00:00+08:00/P1Y"</bpmn:timeCycle>',
                      f"<bpmn:{element}>{expression}</bpmn:{element}>")
    engine.repository.deploy([SourceFile("timer_start.bpmn", xml.encode())], actor)


def start_jobs(engine: ProcessEngine, state: str = "pending") -> list[Job]:
    return engine.jobs.jobs(state=state, kind="start_case")


# boundary and intermediate timers -------------------------------------------------------------------
def test_boundary_cycle_reminds_without_interrupting_and_deadline_from_data_interrupts(
        engine: ProcessEngine, people, clock: Clock) -> None:
    deploy_fixture(engine, "timer_boundary.bpmn")
    case = engine.runtime.start("timer_boundary", people["wang"], {"work_within": "PT3H"})
    row = engine.runtime.cases()[0]
    assert row.next_timer_due == clock.now + timedelta(hours=1)

    clock.advance(minutes=59)
    assert engine.jobs.tick().timers == []
    assert open_tasks(engine, case.id) == ["work"]

    clock.advance(minutes=1, seconds=1)  # the first reminder: the work stays open
    assert engine.jobs.tick().timers == [case.id]
    assert open_tasks(engine, case.id) == ["chase", "work"]
    clock.advance(hours=1)  # the second (and last: R2) reminder
    engine.jobs.tick()
    assert open_tasks(engine, case.id) == ["chase", "chase", "work"]

    clock.advance(hours=1)  # the deadline from the case data interrupts the work
    assert engine.jobs.tick().timers == [case.id]
    assert open_tasks(engine, case.id) == ["chase", "chase", "handle_timeout"]
    with engine.ctx.db.transaction() as s:
        work = s.scalars(select(HumanTask).where(HumanTask.bpmn_id == "work")).one()
        assert work.state == "cancelled"
    fired = actions(engine, "timer.fired", case.id)
    assert len(fired) == 3
    assert all(e.data["late_ms"] == 1000.0 for e in fired)  # due + 1 s each time on this clock
    clock.advance(days=30)
    assert engine.jobs.tick().idle  # nothing is left waiting


def test_completing_the_task_in_time_cancels_its_boundary_timers(engine: ProcessEngine, people,
                                                                  clock: Clock) -> None:
    deploy_fixture(engine, "timer_boundary.bpmn")
    case = engine.runtime.start("timer_boundary", people["wang"], {"work_within": "PT3H"})
    clock.advance(minutes=30)
    complete(engine, case.id, "work", people["wang"])
    assert engine.runtime.show(case.id).status == "completed"
    assert engine.runtime.cases()[0].next_timer_due is None
    clock.advance(days=1)
    assert engine.jobs.tick().timers == []


def test_intermediate_catch_waits_for_a_date_from_data_then_a_literal_duration(
        engine: ProcessEngine, people, clock: Clock) -> None:
    deploy_fixture(engine, "timer_catch.bpmn")
    release = (clock.now + timedelta(hours=2)).astimezone(SHANGHAI).replace(microsecond=0)
    case = engine.runtime.start("timer_catch", people["wang"], {"release_at": release.isoformat()})
    assert open_tasks(engine, case.id) == []
    assert engine.runtime.cases()[0].next_timer_due == release

    clock.now = release - timedelta(seconds=1)
    assert engine.jobs.tick().timers == []
    clock.now = release + timedelta(seconds=1)
    assert engine.jobs.tick().timers == [case.id]
    assert open_tasks(engine, case.id) == ["go"]

    complete(engine, case.id, "go", people["wang"])
    assert open_tasks(engine, case.id) == []
    clock.advance(minutes=30, seconds=1)
    engine.jobs.tick()
    assert open_tasks(engine, case.id) == ["finish"]


def test_a_date_already_past_fires_at_the_first_tick(engine: ProcessEngine, people, clock: Clock) -> None:
    deploy_fixture(engine, "timer_catch.bpmn")
    case = engine.runtime.start("timer_catch", people["wang"], {"release_at": "2020-01-01T09:00:00+08:00"})
    assert open_tasks(engine, case.id) == ["go"]  # fired in the starting step itself


def test_fire_due_timers_still_works_for_callers_of_the_runtime(engine: ProcessEngine, people,
                                                                 clock: Clock) -> None:
    deploy_fixture(engine, "timer_catch.bpmn")
    release = clock.now + timedelta(minutes=5)
    case = engine.runtime.start("timer_catch", people["wang"], {"release_at": release.isoformat()})
    clock.advance(minutes=6)
    assert engine.runtime.fire_due_timers() == [case.id]
    assert open_tasks(engine, case.id) == ["go"]


def test_a_tick_ahead_of_the_engine_clock_leaves_the_timer_for_later(engine: ProcessEngine, people,
                                                                     clock: Clock) -> None:
    deploy_fixture(engine, "timer_catch.bpmn")
    case = engine.runtime.start("timer_catch", people["wang"],
                                {"release_at": (clock.now + timedelta(minutes=5)).isoformat()})
    revision = engine.runtime.cases()[0].revision
    assert engine.jobs.tick(now=clock.now + timedelta(hours=1)).timers == []  # Spiff follows the engine clock
    assert engine.runtime.cases()[0].revision == revision  # nothing was written
    clock.advance(minutes=6)
    assert engine.jobs.tick().timers == [case.id]


# timer start events -----------------------------------------------------------------------------------
def test_yearly_drill_reminder_starts_a_case_each_year_and_catches_up_once(engine: ProcessEngine,
                                                                          clock: Clock) -> None:
    clock.now = datetime(2027, 2, 1, 10, 0, tzinfo=SHANGHAI)
    deploy_fixture(engine, "timer_start.bpmn")
    [job] = start_jobs(engine)
    assert job.due_at == datetime(2027, 3, 1, 9, 0, tzinfo=SHANGHAI)

    clock.now = datetime(2027, 3, 1, 8, 59, tzinfo=SHANGHAI)
    assert engine.jobs.tick().idle
    clock.now = datetime(2027, 3, 1, 9, 0, 1, tzinfo=SHANGHAI)
    assert len(engine.jobs.tick().done) == 1
    [case] = engine.runtime.cases(process_id="drill_reminder")
    assert case.started_by == "system" and case.business_key == "drill_reminder-202703010900"
    [task] = engine.runtime.show(case.id).open_tasks
    assert task.bpmn_id == "plan_drill" and task.role == "emergency_lead"
    assert task.due_at == datetime(2027, 3, 15, 9, 0, 1, tzinfo=SHANGHAI)  # 10 trading days
    [fired] = actions(engine, "timer.fired", case.id)
    assert fired.data["start_event"] == "start" and fired.data["late_ms"] == 1000.0
    [job] = start_jobs(engine)
    assert job.due_at == datetime(2028, 3, 1, 9, 0, tzinfo=SHANGHAI)  # on its date across the leap day

    # Down for three years: the missed years start one case at the next tick, not three.
    clock.now = datetime(2030, 6, 1, 12, 0, tzinfo=SHANGHAI)
    engine.jobs.tick()
    assert len(engine.runtime.cases(process_id="drill_reminder")) == 2
    [job] = start_jobs(engine)
    assert job.due_at == datetime(2031, 3, 1, 9, 0, tzinfo=SHANGHAI)
    assert engine.jobs.tick().idle


def test_redeploying_keeps_an_unchanged_start_timer_and_replaces_a_changed_one(engine: ProcessEngine,
                                                                              clock: Clock) -> None:
    clock.now = datetime(2027, 2, 1, 10, 0, tzinfo=SHANGHAI)
    deploy_fixture(engine, "timer_start.bpmn")
    deploy_start_timer(engine, '"R/2027-03-01T09:00:00+08:00/P1Y"', actor="someone-else")  # same timer
    assert len(start_jobs(engine)) == 1
    deploy_start_timer(engine, '"R/2027-04-01T09:00:00+08:00/P1Y"')  # v2 moves it to April
    [job] = start_jobs(engine)
    assert job.due_at == datetime(2027, 4, 1, 9, 0, tzinfo=SHANGHAI)
    assert [j.payload["outcome"] for j in start_jobs(engine, "cancelled")] == ["replaced by a new version"]


@pytest.mark.parametrize(("element", "expression", "starts"), [
    ("timeCycle", '"R2/PT1H"', [1, 2]),  # two cycles, the first one hour after deployment
    ("timeDuration", '"PT1H"', [1]),  # a duration: once, one hour after deployment
    ("timeDate", '"2020-01-01T09:00:00+08:00"', []),  # a date already past when deployed: never
])
def test_start_timer_cycles_durations_and_dates(engine: ProcessEngine, clock: Clock, element: str,
                                                expression: str, starts: list[int]) -> None:
    deployed_at = clock.now
    deploy_start_timer(engine, expression, element)
    started = []
    for hour in range(1, 5):
        clock.now = deployed_at + timedelta(hours=hour, seconds=1)
        if engine.jobs.tick().done:
            started.append(hour)
    assert started == starts
    assert len(engine.runtime.cases(process_id="drill_reminder")) == len(starts)


def test_start_timer_date_in_the_future_starts_once(engine: ProcessEngine, clock: Clock) -> None:
    at = (clock.now + timedelta(days=3)).astimezone(SHANGHAI).replace(microsecond=0)
    deploy_start_timer(engine, repr(at.isoformat()), "timeDate")
    clock.now = at + timedelta(seconds=1)
    engine.jobs.tick()
    clock.advance(days=400)
    engine.jobs.tick()
    assert len(engine.runtime.cases(process_id="drill_reminder")) == 1


def test_start_timer_must_be_a_literal(engine: ProcessEngine) -> None:
    with pytest.raises(LintFailed) as refused:
        deploy_start_timer(engine, "drill_cycle")
    assert "start event has no case data" in str(refused.value.problems[0])
    assert engine.jobs.jobs() == []


def test_a_process_that_no_longer_starts_on_a_timer_cancels_its_start(engine: ProcessEngine, clock: Clock) -> None:
    clock.now = datetime(2027, 2, 1, 10, 0, tzinfo=SHANGHAI)
    deploy_fixture(engine, "timer_start.bpmn")
    xml = (FIXTURES / "timer_start.bpmn").read_text(encoding="utf-8")
    start = xml.index("<bpmn:timerEventDefinition>")
    xml = xml[:start] + xml[xml.index("</bpmn:timerEventDefinition>") + len("</bpmn:timerEventDefinition>"):]
    engine.repository.deploy([SourceFile("timer_start.bpmn", xml.encode())], "owner")
    assert start_jobs(engine) == []


def test_sync_start_timers_schedules_what_a_database_lacks_and_only_once(engine: ProcessEngine,
                                                                       clock: Clock) -> None:
    clock.now = datetime(2027, 2, 1, 10, 0, tzinfo=SHANGHAI)
    deploy_fixture(engine, "timer_start.bpmn")
    with engine.ctx.db.transaction() as s:  # as if deployed before the job table knew about starts
        for job in s.scalars(select(Job)):
            s.delete(job)
    assert engine.timers.sync_start_timers() == 1
    assert engine.timers.sync_start_timers() == 0
    assert len(start_jobs(engine)) == 1


# restart and several processes --------------------------------------------------------------------
def test_timers_due_while_no_process_ran_fire_on_the_first_tick_after_a_restart(
        database_url: str, tmp_path: Path, engine: ProcessEngine, people, clock: Clock) -> None:
    deploy_fixture(engine, "timer_catch.bpmn")
    release = clock.now + timedelta(minutes=10)
    cases = [engine.runtime.start("timer_catch", people["wang"], {"release_at": release.isoformat()}).id
             for _ in range(3)]
    engine.close()  # the process stops; the timers fall due while nothing runs

    later = Clock(clock.now + timedelta(hours=5))
    restarted = ProcessEngine(make_settings(database_url, tmp_path), clock=later)
    try:
        assert sorted(restarted.jobs.tick().timers) == cases
        assert restarted.jobs.tick().idle
        for case_id in cases:
            assert open_tasks(restarted, case_id) == ["go"]
            assert len(actions(restarted, "timer.fired", case_id)) == 1
    finally:
        restarted.close()


def _tick_until_idle(database_url: str, tmp: str, now: datetime, barrier, results) -> None:
    from engine import ProcessEngine
    from tests.conftest import Clock, make_settings

    engine = ProcessEngine(make_settings(database_url, Path(tmp)), clock=Clock(now))

    def count(s, job) -> None:  # a job's side effect, in the transaction that marks it done
        engine.audit.record(s, "worker", "test.job_ran", data={"job": job.id})

    engine.jobs.register("count", count)
    barrier.wait()
    fired, done, idle = 0, 0, 0
    try:
        while idle < 3:
            report = engine.jobs.tick(limit=10)
            fired, done = fired + len(report.timers), done + len(report.done)
            idle = idle + 1 if report.idle else 0
        results.put((fired, done, None))
    except Exception as exc:  # noqa: BLE001
        results.put((fired, done, repr(exc)))
    finally:
        engine.close()


def test_three_processes_ticking_at_once_fire_every_timer_and_job_exactly_once(
        engine: ProcessEngine, people, clock: Clock, database_url: str, tmp_path: Path) -> None:
    deploy_fixture(engine, "timer_catch.bpmn")
    n_cases, n_jobs = 300, 200
    for i in range(n_cases):
        release = clock.now + timedelta(seconds=i)
        engine.runtime.start("timer_catch", people["wang"], {"release_at": release.isoformat()})
    for i in range(n_jobs):
        with engine.ctx.db.transaction() as s:
            s.add(Job(kind="count", due_at=clock.now + timedelta(seconds=i), payload={}, state="pending",
                      retries_left=1, created_at=clock.now))

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    later = clock.now + timedelta(hours=1)
    procs = [ctx.Process(target=_tick_until_idle, args=(database_url, str(tmp_path), later, barrier, results))
             for _ in range(3)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert [o[2] for o in outcomes] == [None, None, None]
    assert sum(o[0] for o in outcomes) == n_cases
    assert sum(o[1] for o in outcomes) == n_jobs

    with engine.ctx.db.transaction() as s:
        fired = Counter(s.scalars(select(AuditEvent.instance_id).where(AuditEvent.action == "timer.fired")))
        ran = Counter(e["job"] for e in s.scalars(select(AuditEvent.data).where(AuditEvent.action == "test.job_ran")))
        waiting = s.scalars(select(ProcessInstance.id).where(ProcessInstance.next_timer_due.is_not(None))).all()
        open_go = s.scalars(select(HumanTask.instance_id).where(HumanTask.bpmn_id == "go",
                                                                HumanTask.state == "open")).all()
        states = Counter(s.scalars(select(Job.state)))
    assert len(fired) == n_cases and set(fired.values()) == {1}
    assert len(ran) == n_jobs and set(ran.values()) == {1}
    assert waiting == [] and len(open_go) == n_cases
    assert states == {"done": n_jobs}
    assert engine.audit.verify().ok


def test_a_job_claimed_by_a_process_that_died_is_run_by_another_after_its_lease(
        engine: ProcessEngine, clock: Clock) -> None:
    ran = []
    engine.jobs.register("probe", lambda s, job: ran.append(job.id))
    job = engine.jobs.schedule("probe", clock.now)
    assert engine.jobs._claim(clock.now, "dead-process", 10) == [job.id]  # claimed, then the process died
    assert engine.jobs.tick(owner="alive").idle  # still leased to the dead one
    clock.now += engine.jobs.lease + timedelta(seconds=1)
    assert engine.jobs.tick(owner="alive").done == [job.id]
    assert ran == [job.id]
    assert engine.jobs._run(job.id, "dead-process") is False  # a late finish by the first is refused


def test_timestamps_are_utc_aware(engine: ProcessEngine, clock: Clock) -> None:
    job = engine.jobs.schedule("escalation", datetime(2027, 1, 1, 9, 0, tzinfo=SHANGHAI))
    assert engine.jobs.jobs()[0].due_at == datetime(2027, 1, 1, 1, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="zone"):
        engine.jobs.schedule("escalation", datetime(2027, 1, 1, 9, 0))
    assert job.id
