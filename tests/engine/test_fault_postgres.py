"""PostgreSQL backends killed under load (issue 14): no acknowledged completion is lost, none is half-applied
or applied twice, every failed call says `Unavailable` (or `Conflict`), and the engine serves again after.

Threads complete the tasks of many cases through one engine, as a web server's threads would, while the
test keeps terminating the backends serving that engine's connections (found by an application_name of
the test's own: the suite's other workers share the server).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from engine import ProcessEngine
from engine.errors import Conflict, Unavailable
from engine.people.identity import Actor
from engine.spiff.workflow import ready_manual_tasks
from engine.storage.models import AuditEvent, HumanTask, ProcessInstance
from tests.conftest import PG_URL, deploy_fixture, make_settings

pytestmark = pytest.mark.skipif(not PG_URL, reason="OPSFLOW_TEST_DATABASE_URL not set")

WORKERS = 4
ENOUGH_ACKED = 40  # acknowledged completions, and
ENOUGH_FAILED = 5  # completions the faults made fail, before the test stops killing
GIVE_UP_AFTER = 60.0  # seconds: a stop for a machine too slow to reach both, not an assertion

ANSWERS = {"request": {"title": "故障测试", "system": "清算", "reason": "后端被终止"},
           "approve": {"decision": "approve"}}

TERMINATE = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = %s"""


@dataclass(frozen=True)
class Acked:
    task_id: str
    case_id: int
    bpmn_id: str
    username: str


class Load:
    """What the worker threads saw: completions the engine acknowledged, and every call that failed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: list[Acked] = []
        self.failures: list[tuple[str, BaseException]] = []  # (the call, its error)
        self.stop = threading.Event()

    def failed(self, call: str, error: BaseException) -> None:
        with self.lock:
            self.failures.append((call, error))

    def enough(self) -> bool:
        with self.lock:
            completions_failed = sum(call == "complete" for call, _error in self.failures)
            return len(self.acked) >= ENOUGH_ACKED and completions_failed >= ENOUGH_FAILED


def _next_task(engine: ProcessEngine, people: dict[str, Actor], case_id: int) -> tuple[HumanTask, Actor] | None:
    for actor, scope in ((people["zhang"], "mine"), (people["li"], "group")):
        for task in engine.tasks.inbox(actor, scope, process_id="access_request", limit=500):
            if task.instance_id == case_id:
                return task, actor
    return None


def _work(engine: ProcessEngine, people: dict[str, Actor], load: Load) -> None:
    """Start cases and drive each to its end; after a failed call, read again what is left and go on."""
    case_id: int | None = None
    while not load.stop.is_set():
        call = "start"
        try:
            if case_id is None:
                case_id = engine.runtime.start("access_request", people["zhang"]).id
            call = "inbox"
            found = _next_task(engine, people, case_id)
            if found is None:  # the case has ended
                case_id = None
                continue
            task, actor = found
            call = "complete"
            engine.tasks.complete(task.id, actor, dict(ANSWERS[task.bpmn_id]))
            with load.lock:
                load.acked.append(Acked(task.id, case_id, task.bpmn_id, actor.username))
        except Exception as error:  # noqa: BLE001 (every failure is kept and judged by the test)
            load.failed(call, error)


def _named(url: str, application_name: str) -> str:
    return make_url(url).update_query_dict({"application_name": application_name}) \
        .render_as_string(hide_password=False)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_killed_backends_lose_no_acknowledged_completion(engine: ProcessEngine, people: dict[str, Actor],
                                                        database_url: str, tmp_path: Path) -> None:
    deploy_fixture(engine, "two_lanes.bpmn")
    name = f"opsflow_fault_{uuid.uuid4().hex[:12]}"
    faulted = ProcessEngine(make_settings(_named(database_url, name), tmp_path))
    killer = create_engine(database_url, isolation_level="AUTOCOMMIT")
    load = Load()
    threads = [threading.Thread(target=_work, args=(faulted, people, load), daemon=True) for _ in range(WORKERS)]
    kills = 0
    try:
        for thread in threads:
            thread.start()
        give_up = time.monotonic() + GIVE_UP_AFTER
        with killer.connect() as connection:
            while time.monotonic() < give_up and not load.enough():
                kills += connection.exec_driver_sql(TERMINATE, (name,)).scalar_one()
                time.sleep(0.2)
        load.stop.set()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)

        assert kills > 0 and load.enough(), \
            f"{kills} kills: {len(load.acked)} completions acknowledged, {Counter(c for c, _e in load.failures)} failed"
        # a failed call says what happened, never a raw driver error
        odd = [(call, repr(e)) for call, e in load.failures if not isinstance(e, Unavailable | Conflict)]
        assert not odd, odd

        with engine.ctx.db.read() as s:
            tasks = {t.id: t for t in s.scalars(select(HumanTask))}
            cases = {c.id: c for c in s.scalars(select(ProcessInstance))}
            completions = Counter(s.scalars(select(AuditEvent.task_id).where(AuditEvent.action == "task.completed")))
        # every acknowledged completion is there: the inbox row completed by its user, the case past it
        for done in load.acked:
            row = tasks[done.task_id]
            assert (row.state, row.completed_by) == ("completed", done.username), done
            assert completions[done.task_id] == 1, done
            if done.bpmn_id == "request":
                assert any(t.instance_id == done.case_id and t.bpmn_id == "approve" for t in tasks.values()), done
            else:
                assert cases[done.case_id].status == "completed", done
        # nothing applied twice, nothing half-applied: one event per completed row, and no event without one
        assert max(completions.values()) == 1
        assert set(completions) == {t.id for t in tasks.values() if t.state == "completed"}
        engine.store.cache.clear()
        for case in cases.values():
            workflow = engine.store.read(None, case)
            ready = {str(t.id) for t in ready_manual_tasks(workflow)}
            assert ready == {t.id for t in tasks.values() if t.instance_id == case.id and t.state == "open"}, \
                f"case {case.id} inbox out of step"
            assert (case.status == "completed") == workflow.completed
        assert engine.audit.verify().ok

        # and the engine that took the faults serves again
        case = faulted.runtime.start("access_request", people["zhang"])
        request = _next_task(faulted, people, case.id)
        assert request is not None
        opened = faulted.tasks.complete(request[0].id, people["zhang"], dict(ANSWERS["request"]))
        assert [t.bpmn_id for t in opened] == ["approve"]
    finally:
        load.stop.set()
        killer.dispose()
        faulted.close()
