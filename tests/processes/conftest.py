"""Scenario tests of the process library: the real processes/ and forms/, the demo cast, a fixed clock.

SpiffWorkflow reads the wall clock for timers; here its timers follow the test clock, so a test
moves time (clock.advance) and calls engine.runtime.fire_due_timers() instead of sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine import ProcessEngine
from engine.people.identity import Actor
from engine.storage.models import HumanTask
from tests.conftest import ROOT, Clock, copy_database, make_settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Friday 2026-11-20 18:00 in Shanghai: after the day session, before the night session.
START = datetime(2026, 11, 20, 18, 0, tzinfo=SHANGHAI)


@pytest.fixture
def clock() -> Clock:
    """A fixed start; SpiffWorkflow's timers follow the engine clock (engine/spiff/patches.py)."""
    return Clock(START)


def library_engine(database_url: str, tmp_path: Path, clock: Clock, template: Path | None = None) -> ProcessEngine:
    """A migrated engine with the library deployed, the demo users (processes/demo_users.json) and the
    demo register; on SQLite copied from `template`, a database made the same way at the same START."""
    copied = template is not None and copy_database(template, database_url, tmp_path)
    eng = ProcessEngine(make_settings(database_url, tmp_path, forms_dir=ROOT / "forms"), clock=clock)
    if not copied:
        eng.migrate()
        eng.identity.seed_roles(ROOT / "processes" / "roles.json")
        eng.repository.deploy_directory(ROOT / "processes")
        for u in json.loads((ROOT / "processes" / "demo_users.json").read_text(encoding="utf-8")):
            eng.identity.add_user(u["username"], u["roles"], u["display_name"])
        eng.seed_demo_register()
    return eng


_TEMPLATE: list[Path] = []  # the SQLite library template of this test process, once made


def library_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library set up once per test process (~1.5 s a test otherwise), on the clock every test
    here starts from, so a copy holds exactly what setting it up in the test would. (A function, not
    a session fixture: modules elsewhere import `engine` from here, and a fixture would not follow.)"""
    if not _TEMPLATE:
        where = tmp_path_factory.mktemp("library")
        library_engine(f"sqlite:///{where / 'opsflow.db'}", where, Clock(START)).close()
        _TEMPLATE.append(where)
    return _TEMPLATE[0]


@pytest.fixture
def engine(database_url: str, tmp_path: Path, clock: Clock,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessEngine]:
    """A migrated engine with the library deployed, the demo users and the demo register."""
    eng = library_engine(database_url, tmp_path, clock, library_template(tmp_path_factory))
    yield eng
    eng.close()


def system_ids(engine: ProcessEngine, *names: str) -> list[int]:
    ids = {i.name: i.id for i in engine.configuration.list_items()}
    return [ids[n] for n in names]


class Flow:
    """Drives cases the way users do: look at the inbox, claim, complete."""

    def __init__(self, engine: ProcessEngine) -> None:
        self.engine = engine

    def user(self, username: str) -> Actor:
        return self.engine.identity.get(username)

    def systems(self, *names: str) -> list[int]:
        """The register ids of the demo systems named (processes/demo_config_items.json)."""
        return system_ids(self.engine, *names)

    def start(self, process_id: str, username: str, data: dict[str, Any] | None = None) -> int:
        return self.engine.runtime.start(process_id, self.user(username), data or {}).id

    def open_tasks(self, case_id: int) -> list[HumanTask]:
        return self.engine.runtime.show(case_id).open_tasks

    def open_names(self, case_id: int) -> list[str]:
        return sorted(t.bpmn_id for t in self.open_tasks(case_id))

    def task(self, case_id: int, bpmn_id: str, assignee: str | None = None) -> HumanTask:
        found = [t for t in self.open_tasks(case_id) if t.bpmn_id == bpmn_id
                 and (assignee is None or t.assignee == assignee)]
        assert len(found) == 1, f"expected one open {bpmn_id!r}, case has {self.open_names(case_id)}"
        return found[0]

    def inbox(self, username: str) -> list[HumanTask]:
        return self.engine.tasks.inbox(self.user(username))

    def do(self, case_id: int, bpmn_id: str, username: str, data: dict[str, Any],
           assignee: str | None = None) -> list[HumanTask]:
        """The user finds the task in their inbox, claims it if it is in a queue, and completes it."""
        task = self.task(case_id, bpmn_id, assignee)
        actor = self.user(username)
        assert task.id in {t.id for t in self.inbox(username)}, f"{bpmn_id} is not in {username}'s inbox"
        self.assert_not_prefilled_by_others(case_id, task)
        if task.assignee is None:
            self.engine.tasks.claim(task.id, actor)
        return self.engine.tasks.complete(task.id, actor, data)

    def prefill(self, case_id: int, bpmn_id: str, assignee: str | None = None) -> dict[str, Any]:
        """What the task's form opens with."""
        return self.engine.tasks.get(self.task(case_id, bpmn_id, assignee).id).data

    def assert_not_prefilled_by_others(self, case_id: int, task: HumanTask) -> None:
        """No form opens with another step's outcome (decision, result) or comment (issue 12)."""
        opening = self.engine.tasks.get(task.id).data
        for entry in self.record(case_id):
            if entry.bpmn_id == task.bpmn_id:
                continue
            given = [(a["field"], a["value"]) for a in entry.answers if a["field"] in ("comment", "conditions")]
            given += [("decision", entry.outcome), ("result", entry.outcome)] if entry.outcome is not None else []
            for field, value in given:
                assert not (field in opening and opening[field] == value), (
                    f"{task.bpmn_id} opens with {field}={value!r} from {entry.bpmn_id} ({entry.completed_by})")

    def record(self, case_id: int) -> list[Any]:
        """The approval record (审批记录): completed steps with who, when, outcome and answers."""
        return self.engine.runtime.show(case_id).record

    def data(self, case_id: int) -> dict[str, Any]:
        """The case data; while a task is open, that task's view of it.

        runtime.case_data may pick an internal join (EndJoin, WAITING, empty data) after a parallel
        split whose branch ended: see the engine note in the process-library report.
        """
        case = self.engine.runtime.show(case_id)
        if case.open_tasks:
            return self.engine.tasks.get(case.open_tasks[0].id).case_data
        return case.data

    def status(self, case_id: int) -> str:
        return self.engine.runtime.show(case_id).status

    def links(self, case_id: int) -> list[dict[str, Any]]:
        return self.engine.runtime.show(case_id).links


@pytest.fixture
def flow(engine: ProcessEngine) -> Flow:
    return Flow(engine)
