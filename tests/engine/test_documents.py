"""Forms, the trading calendar and registers as versioned rows in the database (issue 16, item 5): seeded
from the files at init, each save a new version audited with who and its sha256, and every node (an
engine object of its own on the same database) reads a save at once."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from engine import ProcessEngine
from engine.definitions.forms import read_form
from engine.errors import BadRequest, Conflict, Forbidden
from engine.people.identity import Actor
from tests.conftest import FIXTURES, ROOT, Clock, make_settings
from webui import create_app

DECEMBER_7 = date(2026, 12, 7)  # a Monday the shipped calendar trades on


def library(tmp_path: Path) -> tuple[Path, Path]:
    """A processes dir (the two-lane fixture, the calendar, the emergency plans) and a copy of the fixture forms."""
    processes, forms = tmp_path / "processes", tmp_path / "forms"
    processes.mkdir()
    for name in ("roles.json", "emergency_plans.json"):
        shutil.copy(ROOT / "processes" / name, processes / name)
    shutil.copy(FIXTURES / "two_lanes.bpmn", processes / "two_lanes.bpmn")
    shutil.copytree(ROOT / "processes" / "calendar", processes / "calendar")
    shutil.copytree(FIXTURES / "forms", forms)
    return processes, forms


def node(database_url: str, tmp_path: Path, clock: Clock) -> ProcessEngine:
    """An engine on the shared database and the shared files, as each app process of a cluster builds one."""
    processes, forms = tmp_path / "processes", tmp_path / "forms"
    return ProcessEngine(make_settings(database_url, tmp_path, forms_dir=forms, processes_dir=processes), clock=clock)


@pytest.fixture
def nodes(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[tuple[ProcessEngine, ProcessEngine]]:
    """Node A initialised the database (`opsflow init`); node B only connects to it."""
    library(tmp_path)
    a = node(database_url, tmp_path, clock)
    a.init()
    b = node(database_url, tmp_path, clock)
    yield a, b
    a.close()
    b.close()


def edited(name: str, title: str) -> dict[str, object]:
    schema = json.loads((FIXTURES / "forms" / name).read_text(encoding="utf-8"))
    schema["title"] = title
    return schema


def test_init_seeds_each_form_the_calendar_and_the_registers_from_their_files(database_url: str, tmp_path: Path,
                                                                             clock: Clock) -> None:
    library(tmp_path)
    engine = node(database_url, tmp_path, clock)
    try:
        result = engine.init()
        assert set(result["documents_seeded"]) == {
            "form:access_request.json", "form:approval.json", "form:pruning_step.json", "form:retest.json",
            "calendar:sessions", "calendar:holidays", "register:emergency_plans"}  # broken_schema.json: left out
        approval = engine.documents.latest("form", "approval.json")
        text = (FIXTURES / "forms" / "approval.json").read_text(encoding="utf-8")
        assert approval is not None and (approval.version, approval.text, approval.seeded_from) == (
            1, text, "forms/approval.json")
        assert approval.sha256 == hashlib.sha256(text.encode()).hexdigest()
        seeded = [e for e in engine.audit.events() if e.action == "document.saved"]
        assert len(seeded) == 7 and {e.actor for e in seeded} == {"system"}
        # the deploy read its forms from the database
        assert engine.repository.definition("access_request").forms["approval.json"] == json.loads(text)
        assert engine.init()["documents_seeded"] == []  # nothing changed, nothing added
    finally:
        engine.close()


def test_a_save_is_the_next_version_audited_with_who_and_its_sha256(nodes: tuple[ProcessEngine, ProcessEngine]) -> None:
    a, _b = nodes
    text = json.dumps(edited("approval.json", "审批（新版）"), ensure_ascii=False, indent=2) + "\n"
    saved = a.documents.save("form", "approval.json", text, "maqing")
    assert (saved.version, saved.created_by, saved.seeded_from) == (2, "maqing", None)
    event = a.audit.events()[-1]
    assert (event.actor, event.action) == ("maqing", "document.saved")
    assert event.data == {"kind": "form", "key": "approval.json", "version": 2,
                          "sha256": hashlib.sha256(text.encode()).hexdigest(), "previous_version": 1,
                          "seeded_from": None}
    assert [(d.version, d.created_by) for d in a.documents.history("form", "approval.json")] == [
        (2, "maqing"), (1, "system")]
    assert a.documents.save("form", "approval.json", text, "maqing").version == 2  # the same text: no version 3


@pytest.mark.parametrize(("kind", "key", "text", "message"), [
    ("register", "emergency_plans", "{", "not valid JSON"),
    ("register", "emergency_plans", '{"entries": [{"name": "无编号"}]}', "each with an \"id\""),
    ("calendar", "holidays", '{"closed": {"2027": ["not a date"]}}', "calendar holidays: not in the format"),
    ("form", "approval.json", '{"type": "nonsense"}', "not a valid JSON Schema"),
    ("form", "../approval.json", "{}", "not a form file name"),
])
def test_a_bad_document_is_refused_and_nothing_is_saved(nodes: tuple[ProcessEngine, ProcessEngine], kind: str,
                                                        key: str, text: str, message: str) -> None:
    a, _b = nodes
    before = len(a.audit.events())
    with pytest.raises(BadRequest, match=message):
        a.documents.save(kind, key, text, "maqing")
    assert len(a.audit.events()) == before
    assert a.documents.versions(kind).get(key.split("/")[-1], 1) == 1


def test_a_file_changed_after_a_browser_edit_does_not_replace_the_edit(nodes: tuple[ProcessEngine, ProcessEngine],
                                                                       tmp_path: Path) -> None:
    a, _b = nodes
    a.versions.save_form(_owner(a), "approval.json", edited("approval.json", "浏览器中改的"))
    (tmp_path / "forms" / "approval.json").write_text(json.dumps(edited("approval.json", "文件中改的")),
                                                      encoding="utf-8")
    (tmp_path / "forms" / "retest.json").write_text(json.dumps(edited("retest.json", "新版本的文件")),
                                                    encoding="utf-8")
    result = a.init()
    assert result["documents_kept"] == ["form:approval.json"]
    assert result["documents_seeded"] == ["form:retest.json"]  # never edited in the browser: the file's new version
    approval, _ = read_form(a.ctx.settings.forms_dir, "approval.json", a.documents)
    assert approval is not None and approval["title"] == "浏览器中改的"
    assert a.repository.definition("access_request").forms["approval.json"]["title"] == "浏览器中改的"
    retest = a.documents.latest("form", "retest.json")
    assert retest is not None and (retest.version, retest.data()["title"]) == (2, "新版本的文件")


def _owner(engine: ProcessEngine) -> Actor:
    engine.identity.add_user("owner", ["process_owner"], "流程负责人")
    return engine.identity.get("owner")


def test_a_holiday_saved_on_one_node_closes_the_market_on_the_other_at_once(
        nodes: tuple[ProcessEngine, ProcessEngine]) -> None:
    a, b = nodes
    assert b.calendar.calendar().is_trading_day(DECEMBER_7)  # B has read (and cached) the calendar
    a.calendar.import_holidays("2026-12-07,临时休市\n", "closure.txt", by="maqing")
    assert not b.calendar.calendar().is_trading_day(DECEMBER_7)
    assert b.calendar.check_window("2026-12-07T10:00:00+08:00", "2026-12-07T11:00:00+08:00",
                                   ["SSE"])["window_class"] == "non_trading_day"
    holidays = b.documents.latest("calendar", "holidays")
    assert holidays is not None and (holidays.version, holidays.created_by) == (2, "maqing")
    assert "2026-12-07" not in (a.ctx.settings.processes_dir / "calendar" / "holidays.json").read_text(encoding="utf-8")
    assert [e.action for e in a.audit.events()[-2:]] == ["document.saved", "calendar.holidays_imported"]


def test_a_form_and_a_plan_saved_on_one_node_are_what_the_other_uses_at_once(
        nodes: tuple[ProcessEngine, ProcessEngine]) -> None:
    a, b = nodes
    owner = _owner(a)
    b.identity.add_user("zhangwei", ["staff"], "张伟")
    a.versions.save_form(owner, "access_request.json", edited("access_request.json", "权限申请（第二版）"))

    schema, reason = read_form(b.ctx.settings.forms_dir, "access_request.json", b.documents)
    assert reason is None and schema is not None and schema["title"] == "权限申请（第二版）"
    b.repository.deploy_directory()  # a deploy on B lints and freezes the database's form, not B's file
    assert b.repository.definition("access_request").forms["access_request.json"]["title"] == "权限申请（第二版）"
    case = b.runtime.start("access_request", b.identity.get("zhangwei"))
    task = next(t for t in b.runtime.show(case.id).open_tasks if t.bpmn_id == "request")
    client: FlaskClient = create_app(b, {"SECRET_KEY": "documents-test", "TESTING": True}).test_client()
    with client.session_transaction() as session:
        session["sid"] = b.identity.open_session("zhangwei", "127.0.0.1", timedelta(days=1))
    page = client.get(f"/tasks/{task.id}")
    assert page.status_code == 200 and "权限申请（第二版）" in page.text

    plans = json.loads((ROOT / "processes" / "emergency_plans.json").read_text(encoding="utf-8"))
    plans["entries"].append({"id": "EP-NEW-01", "name": "新增的应急预案", "active": True})
    a.documents.save("register", "emergency_plans", json.dumps(plans, ensure_ascii=False), "maqing")
    entries = b.ctx.environment.services["register_entries"]("emergency_plans")
    assert entries[-1]["id"] == "EP-NEW-01"
    assert b.ctx.environment.services["register_entry"]("emergency_plans", "EP-NEW-01")["ok"] is True


def test_two_nodes_saving_one_document_at_once_the_second_is_told_to_reload(
        nodes: tuple[ProcessEngine, ProcessEngine], database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: its saves never overlap")
    a, b = nodes
    plans = json.loads((ROOT / "processes" / "emergency_plans.json").read_text(encoding="utf-8"))
    saving, release = threading.Event(), threading.Event()

    def save_on_a() -> None:
        with a.ctx.db.transaction():
            a.documents.save("register", "emergency_plans", json.dumps({**plans, "description": "A"}), "maqing")
            saving.set()
            release.wait(10)

    first = threading.Thread(target=save_on_a)
    first.start()
    assert saving.wait(10)
    threading.Timer(0.5, release.set).start()  # B's insert waits on A's uncommitted version 2, then fails
    with pytest.raises(Conflict, match="saved by someone else meanwhile"):
        b.documents.save("register", "emergency_plans", json.dumps({**plans, "description": "B"}), "lina")
    first.join()
    latest = b.documents.latest("register", "emergency_plans")
    assert latest is not None and (latest.version, latest.data()["description"]) == (2, "A")


def test_only_registers_edit_saves_a_register_whatever_the_caller(nodes: tuple[ProcessEngine, ProcessEngine]) -> None:
    """The page checks the grant, and so does the engine: an API or CLI caller cannot go around it."""
    a, _b = nodes
    staff = a.identity.add_user("zhangwei", ["staff"], "张伟")
    owner = a.identity.add_user("maqing", ["process_owner"], "马青")
    before = a.documents.history("register", "emergency_plans")
    with pytest.raises(Forbidden):
        a.documents.edit(staff, "register", "emergency_plans", '{"entries": []}')
    assert a.documents.history("register", "emergency_plans") == before
    with pytest.raises(BadRequest):  # forms go through the form editor, which redeploys their processes
        a.documents.edit(owner, "form", "approval.json", "{}")
    assert a.documents.edit(owner, "register", "emergency_plans", '{"entries": []}').version == before[0].version + 1
