"""The audit chain: every action recorded with where it came from, each tamper caught and located.

The tampering here is what someone with write access to the database but without the audit key
can do: edit rows, recompute every plain hash, delete rows, move or delete the head row.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update

from engine import ProcessEngine
from engine.definitions.calendar import CalendarService
from engine.errors import BadRequest, OpsFlowError
from engine.jobs.ticker import tick_once
from engine.storage.audit import AuditKeyError, AuditUnavailable, Retention, load_key, read_archive
from engine.storage.audit.chain import event_body, legacy_digest
from engine.storage.migrations import upgrade
from engine.storage.models import AuditEvent, AuditHead
from tests.conftest import ROOT, Clock, deploy_fixture, make_settings


def _walk(engine: ProcessEngine, people) -> int:
    deploy_fixture(engine, "two_lanes.bpmn")
    case = engine.runtime.start("access_request", people["zhang"])
    task = engine.tasks.inbox(people["zhang"])[0]
    engine.tasks.complete(task.id, people["zhang"], {"title": "权限", "system": "清算", "reason": "日终清算排查"})
    approval = engine.tasks.inbox(people["li"])[0]
    engine.tasks.claim(approval.id, people["li"])
    engine.tasks.complete(approval.id, people["li"], {"decision": "approve"})
    return case.id


def _trail(engine: ProcessEngine, people, steps: int = 8) -> list[int]:
    """A case start and a few more events; returns the ids of every event in the chain."""
    deploy_fixture(engine, "two_lanes.bpmn")
    engine.runtime.start("access_request", people["zhang"])
    for n in range(steps):
        with engine.ctx.db.transaction() as s:
            engine.audit.record(s, "zhang", "test.step", data={"n": n, "说明": "第" + str(n) + "步"})
    return [e.id for e in engine.audit.events(limit=100_000)]


def _sql(engine: ProcessEngine, *statements) -> None:
    with engine.ctx.db.transaction() as s:
        for statement in statements:
            s.execute(statement)


def _rehash_from(engine: ProcessEngine, first_id: int, upto: int | None = None, keyed_from: int | None = None) -> None:
    """What an attacker without the key can do after editing: recompute the plain SHA-256 links from
    `first_id` on (to the end, pointing the head at it, or `upto`), optionally claiming keying began later."""
    with engine.ctx.db.transaction() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.id >= first_id, AuditEvent.id <= (upto or 2**62))
                              .order_by(AuditEvent.id)))
        prev = s.scalar(select(AuditEvent.hash).where(AuditEvent.id == first_id - 1)) or "0" * 64
        for row in rows:
            digest = legacy_digest(event_body(prev, row.id, row.at, row.actor, row.action, row.instance_id,
                                              row.task_id, row.data, row.source, keyed=False))
            row.prev_hash, row.hash, prev = prev, digest, digest
        if upto is None:
            head = s.get(AuditHead, 1)
            head.last_id, head.last_hash = rows[-1].id, prev
            if keyed_from is not None:
                head.keyed_from = keyed_from


def _broken(engine: ProcessEngine, first_bad_id: int | None, *words: str, checkpoint=None) -> str:
    report = engine.audit.verify(checkpoint)
    assert not report.ok, report
    if first_bad_id is not None:
        assert report.first_bad_id == first_bad_id, report
    for word in words:
        assert word in report.reason, report.reason
    return report.reason


# recording --------------------------------------------------------------------------------------
def test_every_action_is_recorded_with_actor_and_data(engine: ProcessEngine, people) -> None:
    case_id = _walk(engine, people)
    history = engine.runtime.show(case_id).history
    assert [(e.actor, e.action) for e in history] == [
        ("zhang", "case.started"), ("zhang", "task.completed"), ("li", "task.claimed"), ("li", "task.completed")]
    assert history[1].data["data"]["system"] == "清算"
    assert engine.audit.verify().ok


def test_a_new_chain_is_signed_from_its_first_event_with_a_private_key_file(engine: ProcessEngine, people) -> None:
    first = engine.audit.events()[0]
    assert (first.id, first.action, first.data["keyed_from"]) == (1, "audit.keyed", 1)
    key_file = engine.ctx.settings.var_dir / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().strip() not in json.dumps([e.data for e in engine.audit.events()])
    report = engine.audit.verify()
    assert (report.ok, report.legacy, report.keyed_from) == (True, 0, 1)
    assert report.summary() == f"audit chain intact: {report.events} events"


def test_every_event_says_where_it_came_from(engine: ProcessEngine, people) -> None:
    with engine.ctx.acting_from("cli alice"), engine.ctx.db.transaction() as s:
        engine.audit.record(s, "cli", "test.from_cli")
    with engine.ctx.db.transaction() as s:
        engine.audit.record(s, "system", "test.by_itself")
    assert [(e.action, e.source) for e in engine.audit.events()[-2:]] == [
        ("test.from_cli", "cli alice"), ("test.by_itself", "system")]
    with engine.ctx.db.transaction() as s:  # the source is signed like the rest of the event
        s.execute(update(AuditEvent).where(AuditEvent.action == "test.from_cli").values(source="web 10.0.0.9"))
    _broken(engine, None, "does not match its signature")


def test_a_ticker_run_records_its_events_as_from_the_ticker(engine: ProcessEngine, people, clock: Clock) -> None:
    deploy_fixture(engine, "timer_catch.bpmn")
    release = clock.now + timedelta(minutes=10)
    case = engine.runtime.start("timer_catch", people["wang"], {"release_at": release.isoformat()})
    clock.advance(minutes=11)
    tick_once(engine)
    fired = [e for e in engine.audit.events(case.id) if e.action == "timer.fired"]
    assert [e.source for e in fired] == ["ticker"]
    assert engine.ctx.source.get() == "system"


def test_user_role_token_and_address_changes_are_audited(engine: ProcessEngine, people) -> None:
    engine.identity.add_user("ma", ["staff"], "马", "pw-1234567890", by="admin")
    engine.identity.set_roles("ma", ["staff", "cab"], by="admin")
    token = engine.identity.create_token("ma")
    engine.identity.revoke_token(token)
    engine.identity.create_token("ma", by="admin")
    engine.identity.set_password("ma", "new-pw-123456", by="admin")
    engine.notify.set_email("ma", "ma@firm.cn", by="admin")
    assert engine.identity.set_active("ma", False, by="admin") == 1
    engine.identity.set_active("ma", True, by="admin")
    engine.identity.add_role("dba", "数据库管理员", "Database administrator", by="admin")
    events = [(e.actor, e.action, e.data) for e in engine.audit.events() if e.action.split(".")[0] in
              ("user", "token", "role")][-10:]
    assert [(actor, action) for actor, action, _ in events] == [
        ("admin", "user.added"), ("admin", "user.roles_set"), ("ma", "token.created"), ("ma", "token.revoked"),
        ("admin", "token.created"), ("admin", "user.password_set"), ("admin", "user.email_set"),
        ("admin", "user.deactivated"), ("admin", "user.activated"), ("admin", "role.added")]
    assert events[0][2] == {"username": "ma", "display_name": "马", "roles": ["staff"], "password": True}
    assert events[1][2] == {"username": "ma", "roles": ["staff", "cab"], "before": ["staff"]}
    assert events[7][2] == {"username": "ma", "tokens_revoked": 1, "sessions_revoked": 0}
    assert "pw-1234567890" not in json.dumps([d for _, _, d in events]) and token not in json.dumps(events, default=str)
    assert engine.identity.actor_for_token(token) is None


def test_a_holiday_import_is_audited_with_the_days_it_added(engine: ProcessEngine, tmp_path: Path) -> None:
    directory = tmp_path / "calendar"
    shutil.copytree(ROOT / "processes" / "calendar", directory)
    calendar = CalendarService(directory, engine.audit)
    calendar.import_holidays("2031-02-03,春节\n2031-02-04\n", "holidays-2031.txt", by="admin")
    event = engine.audit.events()[-1]
    assert (event.actor, event.action) == ("admin", "calendar.holidays_imported")
    assert (event.data["file"], event.data["added"]) == ("holidays-2031.txt", ["2031-02-03", "2031-02-04"])
    before = (directory / "holidays.json").read_text(encoding="utf-8")
    os.remove(engine.ctx.settings.var_dir / "audit.key")
    keyless = ProcessEngine(engine.ctx.settings)
    try:
        with pytest.raises(AuditKeyError):
            CalendarService(directory, keyless.audit).import_holidays("2032-02-11\n", "more.txt")
    finally:
        keyless.close()
    assert (directory / "holidays.json").read_text(encoding="utf-8") == before  # not recorded: not changed


# tampering --------------------------------------------------------------------------------------
def test_an_edited_event_is_named(engine: ProcessEngine, people) -> None:
    ids = _trail(engine, people)
    _sql(engine, update(AuditEvent).where(AuditEvent.id == ids[-4]).values(actor="someone_else"))
    _broken(engine, ids[-4], f"event {ids[-4]} does not match its signature")


def test_an_edited_event_rehashed_onward_is_named(engine: ProcessEngine, people) -> None:
    ids = _trail(engine, people)
    _sql(engine, update(AuditEvent).where(AuditEvent.id == ids[-5]).values(data={"n": 99}))
    _rehash_from(engine, ids[-5])
    _broken(engine, ids[-5], "does not match its signature")


def test_a_chain_rehashed_as_if_keying_never_began_is_caught(engine: ProcessEngine, people) -> None:
    ids = _trail(engine, people)
    _sql(engine, update(AuditEvent).where(AuditEvent.id == ids[3]).values(actor="someone_else"))
    _rehash_from(engine, 1, keyed_from=ids[-1] + 1)  # every event passes as an unkeyed one now
    _broken(engine, None, "the audit head's signature does not match")
    _sql(engine, update(AuditHead).values(key_id=None, mac=None))
    _broken(engine, None, "the audit head is not signed")


def test_a_head_naming_another_key_is_caught_not_blamed_on_the_key(engine: ProcessEngine, people) -> None:
    _trail(engine, people)
    _sql(engine, update(AuditHead).values(key_id="0123456789abcdef"))
    _broken(engine, None, "the audit head names key 0123456789abcdef, but the events are signed with this key")


def test_a_truncated_tail_with_the_head_stepped_back_is_caught(engine: ProcessEngine, people) -> None:
    ids = _trail(engine, people)
    with engine.ctx.db.transaction() as s:
        new_end = s.get(AuditEvent, ids[-4])
        s.execute(delete(AuditEvent).where(AuditEvent.id > new_end.id))
        s.execute(update(AuditHead).values(last_id=new_end.id, last_hash=new_end.hash))
    _broken(engine, ids[-3], "the audit head's signature does not match", f"names event {ids[-4]}")


def test_a_truncated_tail_under_an_unmoved_head_names_the_missing_range(engine: ProcessEngine, people) -> None:
    ids = _trail(engine, people)
    _sql(engine, delete(AuditEvent).where(AuditEvent.id > ids[-4]))
    _broken(engine, ids[-3], f"events {ids[-3]}–{ids[-1]} are missing", f"ends at event {ids[-4]}")


def test_deleted_middle_events_name_the_missing_range(engine: ProcessEngine, people) -> None:
    ids = _trail(engine, people)
    _sql(engine, delete(AuditEvent).where(AuditEvent.id.in_(ids[4:7])))
    _broken(engine, ids[4], f"events {ids[4]}–{ids[6]} are missing")
    _sql(engine, delete(AuditEvent).where(AuditEvent.id == ids[1]))
    _broken(engine, ids[1], f"event {ids[1]} is missing")


def test_a_deleted_head_is_reported_and_nothing_more_is_recorded(engine: ProcessEngine, people) -> None:
    ids = _trail(engine, people)
    _sql(engine, delete(AuditHead))
    _broken(engine, ids[-1] + 1, "the audit head is missing", f"events up to {ids[-1]} are present")
    with pytest.raises(AuditUnavailable, match="head is missing"):
        engine.identity.add_user("late", ["staff"])
    assert engine.identity.find("late") is None  # the action went with it


def test_rows_added_behind_the_heads_back_are_caught(engine: ProcessEngine, people) -> None:
    ids = _trail(engine, people)
    with engine.ctx.db.transaction() as s:
        last = s.get(AuditEvent, ids[-1])
        s.add(AuditEvent(id=last.id + 1, at=last.at, actor="ghost", action="test.forged", data={},
                         prev_hash=last.hash, hash="f" * 64))
    _broken(engine, ids[-1] + 1, "does not match its signature")


# checkpoints ------------------------------------------------------------------------------------
def test_a_checkpoint_proves_a_truncation_the_database_alone_cannot(engine: ProcessEngine, people) -> None:
    ids = _trail(engine, people)
    with engine.ctx.db.transaction() as s:  # a copy of the head as it was (from a backup, say)
        old = s.get(AuditHead, 1)
        saved = {c: getattr(old, c) for c in ("last_id", "last_hash", "mac")}
        engine.audit.record(s, "li", "test.later")
        engine.audit.record(s, "li", "test.later")
    checkpoint = engine.audit.checkpoint()
    taken = ids[-1] + 2
    assert checkpoint["last_id"] == taken
    assert engine.audit.verify(checkpoint).note == f"checkpoint of {checkpoint['at']} (event {taken}) confirmed"
    _sql(engine, delete(AuditEvent).where(AuditEvent.id > ids[-1]), update(AuditHead).values(**saved))
    assert engine.audit.verify().ok  # an old, genuinely signed head: the database alone cannot tell
    _broken(engine, ids[-1] + 1, f"events {ids[-1] + 1}–{taken} are missing", f"names event {taken}",
            f"ends at event {ids[-1]}", checkpoint=checkpoint)


def test_a_forged_checkpoint_is_refused(engine: ProcessEngine, people) -> None:
    _trail(engine, people)
    checkpoint = engine.audit.checkpoint()
    with pytest.raises(OpsFlowError, match="signature does not match"):
        engine.audit.verify({**checkpoint, "last_id": checkpoint["last_id"] - 3})
    with pytest.raises(AuditKeyError, match="signed with audit key 0000"):
        engine.audit.verify({**checkpoint, "key_id": "0000"})
    with pytest.raises(OpsFlowError, match="not an OpsFlow audit checkpoint"):
        engine.audit.verify({"last_id": 1})


def test_no_checkpoint_of_a_broken_chain(engine: ProcessEngine, people) -> None:
    ids = _trail(engine, people)
    _sql(engine, update(AuditEvent).where(AuditEvent.id == ids[2]).values(action="test.other"))
    with pytest.raises(OpsFlowError, match=f"no checkpoint of a broken chain: event {ids[2]}"):
        engine.audit.checkpoint()


# the key ----------------------------------------------------------------------------------------
def test_a_missing_key_is_a_clear_error_and_stops_recording(engine: ProcessEngine, people) -> None:
    _trail(engine, people, steps=1)
    os.remove(engine.ctx.settings.var_dir / "audit.key")
    keyless = ProcessEngine(engine.ctx.settings)
    try:
        with pytest.raises(AuditKeyError, match="no audit key: set OPSFLOW_AUDIT_KEY or restore"):
            keyless.audit.verify()
        with pytest.raises(AuditKeyError, match="no audit key"):
            keyless.identity.add_user("late", ["staff"])
        assert keyless.identity.find("late") is None
    finally:
        keyless.close()


def test_a_wrong_key_is_a_clear_error(engine: ProcessEngine, people, monkeypatch: pytest.MonkeyPatch) -> None:
    _trail(engine, people, steps=1)
    monkeypatch.setenv("OPSFLOW_AUDIT_KEY", "another-key-of-at-least-32-characters")
    other = ProcessEngine(engine.ctx.settings)
    try:
        with pytest.raises(AuditKeyError, match="is not the one that signed this chain"):
            other.audit.verify()
        with pytest.raises(AuditUnavailable, match="is not the one that signed this chain"):
            other.identity.add_user("late", ["staff"])
    finally:
        other.close()
    monkeypatch.setenv("OPSFLOW_AUDIT_KEY", "short")
    with pytest.raises(AuditKeyError, match="shorter than 32"):
        load_key(engine.ctx.settings.var_dir)


def test_events_from_before_keying_are_reported_as_unsigned(database_url: str, tmp_path: Path) -> None:
    """A database from before revision 0006: its events keep their SHA-256 links, and say so."""
    legacy = ProcessEngine(make_settings(database_url, tmp_path))
    try:
        upgrade(legacy.ctx.db.engine, "0005")
        at, prev = legacy.ctx.now(), "0" * 64
        with legacy.ctx.db.engine.begin() as conn:
            for event_id in (1, 2, 3):
                digest = legacy_digest(event_body(prev, event_id, at, "zhang", "case.started", event_id, None, {},
                                                  None, keyed=False))
                conn.execute(text("INSERT INTO audit_event (id, at, actor, action, instance_id, data, prev_hash, "
                                  "hash) VALUES (:id, :at, 'zhang', 'case.started', :id, '{}', :prev, :hash)"),
                             {"id": event_id, "at": legacy.ctx.db.time_in(at), "prev": prev, "hash": digest})
                prev = digest
            conn.execute(text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 3, :hash)"), {"hash": prev})
        legacy.migrate()
        with legacy.ctx.db.transaction() as s:
            legacy.audit.record(s, "zhang", "test.after")
        report = legacy.audit.verify()
        assert (report.ok, report.events, report.legacy, report.keyed_from) == (True, 5, 3, 4)
        assert "3 from before keying began at event 4 are hash-linked but not signed" in report.summary()
        assert legacy.audit.events()[3].data == {"keyed_from": 4, "key_id": legacy.audit.key().id,
                                                 "legacy_events": 3}
        # An unkeyed event rewritten and re-hashed up to keying is caught at the first signed event.
        _sql(legacy, update(AuditEvent).where(AuditEvent.id == 2).values(actor="someone_else"))
        _broken(legacy, 2, "event 2 does not match its hash")
        _rehash_from(legacy, 2, upto=3)
        _broken(legacy, 4, "event 4 does not link to event 3")
    finally:
        legacy.close()


# retention and archives -------------------------------------------------------------------------
def test_retention_is_a_period_of_at_least_six_months() -> None:
    assert (Retention.parse("P20Y").months, Retention.parse("P6M").months) == (240, 6)
    assert Retention.parse("400").days == 400 and Retention.parse("P7Y6M").months == 90
    for too_short in ("P5M", "P182D", "150", "P26W"):
        with pytest.raises(BadRequest, match="under the minimum of six months"):
            Retention.parse(too_short)
    for nonsense in ("20 years", "P", "PT4H", ""):
        with pytest.raises(BadRequest, match="is not a period"):
            Retention.parse(nonsense)


def _old_trail(engine: ProcessEngine, people, clock: Clock) -> tuple[list[int], list[int]]:
    """Events from 21 years ago, then today's."""
    ids = _trail(engine, people, steps=3)
    clock.advance(days=21 * 366)
    with engine.ctx.db.transaction() as s:
        recent = [engine.audit.record(s, "zhang", "test.recent", data={"n": n}) for n in range(3)]
    return ids, recent


def test_archive_moves_old_events_to_a_signed_file_and_the_rest_still_verifies(
        engine: ProcessEngine, people, clock: Clock, tmp_path: Path) -> None:
    old, recent = _old_trail(engine, people, clock)
    out = tmp_path / "audit-old.jsonl.gz"
    archived = engine.audit.archive(out)
    assert (archived.first_id, archived.last_id, archived.count) == (1, old[-1], len(old))
    assert read_archive(out, engine.audit.key()).sha256 == archived.sha256
    assert [e.id for e in engine.audit.events()][:3] == recent
    event = engine.audit.events()[-1]
    assert (event.action, event.data["last_id"], event.data["sha256"]) == ("audit.archived", old[-1], archived.sha256)
    report = engine.audit.verify()
    assert (report.ok, report.archived_to, report.events) == (True, old[-1], len(recent) + 1)
    assert engine.audit.archive(tmp_path / "again.jsonl") is None  # nothing more is old enough

    # The archive anchor is signed: moving it to hide deleted events needs the key.
    _sql(engine, delete(AuditEvent).where(AuditEvent.id == recent[0]))
    _broken(engine, recent[0], f"event {recent[0]} is missing")
    _sql(engine, update(AuditHead).values(archived_to=recent[0]))
    _broken(engine, None, "the audit head's signature does not match")


def test_an_edited_archive_is_refused(engine: ProcessEngine, people, clock: Clock, tmp_path: Path) -> None:
    _old_trail(engine, people, clock)
    out = tmp_path / "audit-old.jsonl"
    engine.audit.archive(out)
    lines = out.read_text(encoding="utf-8").splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "actor": "someone_else"}, ensure_ascii=False)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(OpsFlowError, match="event 2 does not match its signature"):
        read_archive(out, engine.audit.key())
    out.write_text("\n".join(lines[:2]) + "\n", encoding="utf-8")
    with pytest.raises(OpsFlowError, match="cut short"):
        read_archive(out, engine.audit.key())


def test_nothing_leaves_the_database_unless_the_archive_was_written_and_read_back(
        engine: ProcessEngine, people, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _old_trail(engine, people, clock)
    count = len(engine.audit.events())
    existing = tmp_path / "kept.jsonl"
    existing.write_text("an operator's file\n")
    with pytest.raises(BadRequest, match="never overwritten"):
        engine.audit.archive(existing)
    assert existing.read_text() == "an operator's file\n"

    def unreadable(path: Path, key) -> None:
        raise OpsFlowError(f"{path.name} could not be read back")

    monkeypatch.setattr("engine.storage.audit.archive.read_archive", unreadable)
    with pytest.raises(OpsFlowError, match="could not be read back"):
        engine.audit.archive(tmp_path / "bad.jsonl")
    assert len(engine.audit.events()) == count and engine.audit.verify().ok
    assert not (tmp_path / "bad.jsonl").exists() and not (tmp_path / "bad.jsonl.partial").exists()


def test_archive_keeps_what_retention_protects_and_refuses_a_broken_chain(
        engine: ProcessEngine, people, clock: Clock, tmp_path: Path) -> None:
    old, recent = _old_trail(engine, people, clock)
    with pytest.raises(BadRequest, match="within the retention period"):
        engine.audit.archive(tmp_path / "a.jsonl", before=clock.now - timedelta(days=30))
    _sql(engine, update(AuditEvent).where(AuditEvent.id == old[1]).values(actor="someone_else"))
    with pytest.raises(OpsFlowError, match=f"nothing archived from a broken chain: event {old[1]}"):
        engine.audit.archive(tmp_path / "b.jsonl")
    assert not (tmp_path / "b.jsonl").exists()
