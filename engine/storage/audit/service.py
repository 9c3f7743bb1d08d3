"""AuditService: append an event within the caller's transaction, read events, and prove the chain.

Each event is signed (HMAC-SHA256, engine/storage/audit/chain.py) over its content and the previous event's
signature; the one-row head names the last event and is signed too, so neither a rewritten event nor
a chain cut short with its head stepped back passes `verify` without the key. What the database
alone cannot show (an old head restored with the events after it) a checkpoint kept outside shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from engine.context import EngineContext
from engine.errors import BadRequest, Conflict, OpsFlowError
from engine.storage.audit.archive import Archived, Retention, write_archive
from engine.storage.audit.chain import (
    AuditKey,
    AuditKeyError,
    AuditUnavailable,
    ChainWalk,
    Head,
    Problem,
    event_body,
    head_body,
    head_signed,
    load_key,
    make_checkpoint,
    read_checkpoint,
    span,
)
from engine.storage.db import Sql
from engine.storage.models import AuditEvent, AuditHead

_HEAD = Sql("SELECT last_id, last_hash, keyed_from, key_id, archived_to, archived_hash FROM audit_head WHERE id = 1",
            lock="FOR UPDATE")
_APPEND_SQL = ("INSERT INTO audit_event (id, at, actor, action, instance_id, task_id, data, source, prev_hash, hash) "
               "VALUES (:id, :at, :actor, :action, :instance_id, :task_id, :data, :source, :prev_hash, :hash)")
# The head stays locked from here to COMMIT, so every append waits on it: on PostgreSQL the event
# and the head move go in one round trip (a data-modifying CTE; SQLite has none, and no round trips).
_APPEND = Sql(_APPEND_SQL, postgresql="WITH moved AS (UPDATE audit_head SET last_id = :id, last_hash = :hash, "
              "mac = :head_mac WHERE id = 1) " + _APPEND_SQL)
_HEAD_MOVE = Sql("UPDATE audit_head SET last_id = :id, last_hash = :hash, mac = :head_mac WHERE id = 1")
_HEAD_SIGN = Sql("UPDATE audit_head SET key_id = :key_id, mac = :mac WHERE id = 1")
SOURCE_LENGTH = 128


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events: int  # in the database (archived ones not counted)
    first_bad_id: int | None = None
    reason: str | None = None
    legacy: int = 0  # events from before keying began: SHA-256 linked, not signed
    keyed_from: int | None = None
    archived_to: int = 0
    last_id: int = 0
    last_hash: str = ""
    note: str | None = None  # what was not checked, said plainly

    def summary(self) -> str:
        if not self.ok:
            return f"audit chain broken: {self.reason}"
        parts = [f"audit chain intact: {self.events} events"]
        if self.archived_to:
            parts.append(f"events up to {self.archived_to} archived")
        if self.legacy:
            parts.append(f"{self.legacy} from before keying began at event {self.keyed_from} are hash-linked "
                         "but not signed")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


class AuditService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._key: AuditKey | None = None

    def key(self) -> AuditKey:
        """The audit key (loaded once; never created here: only `opsflow init` makes one)."""
        if self._key is None:
            self._key = load_key(self.ctx.settings.var_dir)
        return self._key

    def retention(self) -> Retention:
        return Retention.parse(self.ctx.settings.audit_retention)

    # writing ----------------------------------------------------------------------------------------
    def record(self, session: Session, actor: str, action: str, *, instance_id: int | None = None,
               task_id: str | None = None, data: dict[str, Any] | None = None) -> int:
        """Append within the caller's transaction and return the event's id; the head row lock
        serialises appends. The source (web address, API, CLI, ticker) comes from the context.

        Driver-level statements (engine/storage/db.py `Sql`): this runs on every action.
        """
        db = self.ctx.db
        head = db.run(session, _HEAD).first()
        if head is None:
            raise AuditUnavailable("the audit head is missing, so nothing can be recorded: run 'opsflow audit "
                                   "verify'")
        last_id, prev, keyed_from, key_id, archived_to, archived_hash = head
        key = self.key()
        if key_id != key.id:
            raise AuditUnavailable("the audit head is not signed, so nothing can be recorded: run 'opsflow audit "
                                   "verify'" if key_id is None else
                                   f"the audit key ({key.where}, id {key.id}) is not the one that signed this "
                                   f"chain ({key_id}): restore that key")
        at = self.ctx.now().astimezone(UTC)  # signed as stored: a clock in another zone must not break the chain
        payload = self.ctx.codec.to_plain(data or {})
        source = self.ctx.source.get()[:SOURCE_LENGTH]
        event_id = last_id + 1
        digest = key.sign(event_body(prev, event_id, at, actor, action, instance_id, task_id, payload, source, True))
        head_mac = key.sign(head_body(event_id, digest, keyed_from, key_id, archived_to, archived_hash))
        db.run(session, _APPEND, {"id": event_id, "at": db.time_in(at), "actor": actor, "action": action,
                                  "instance_id": instance_id, "task_id": task_id, "data": db.json_in(payload),
                                  "source": source, "prev_hash": prev, "hash": digest, "head_mac": head_mac})
        if db.is_sqlite:
            db.run(session, _HEAD_MOVE, {"id": event_id, "hash": digest, "head_mac": head_mac})
        return event_id

    def anchor(self, connection: Connection) -> None:
        """Revision 0006 calls this once, in its own transaction: sign the head with the key (made now,
        0600, when there is none) and record where keying began. Never at run time, so nothing can
        get an edited, unsigned head signed afterwards."""
        key = self._key = load_key(self.ctx.settings.var_dir, create=True)
        db = self.ctx.db
        with Session(bind=connection) as s:
            head = db.run(s, _HEAD).first()
            if head is None or head[2] is None:
                raise OpsFlowError("revision 0006 found no audit head to sign")
            last_id, last_hash, keyed_from, _key_id, archived_to, archived_hash = head
            db.run(s, _HEAD_SIGN, {"key_id": key.id, "mac": key.sign(head_body(
                last_id, last_hash, keyed_from, key.id, archived_to, archived_hash))})
            self.record(s, "system", "audit.keyed", data={"keyed_from": keyed_from, "key_id": key.id,
                                                           "legacy_events": keyed_from - 1 - archived_to})

    # reading ----------------------------------------------------------------------------------------
    def events(self, instance_id: int | None = None, limit: int = 1000, offset: int = 0) -> list[AuditEvent]:
        with self.ctx.db.transaction() as s:
            query = select(AuditEvent).order_by(AuditEvent.id)
            if instance_id is not None:
                query = query.where(AuditEvent.instance_id == instance_id)
            return list(s.scalars(query.offset(offset).limit(limit)))

    @contextmanager
    def _snapshot(self) -> Iterator[Session]:
        """One consistent view for a long read that holds no write lock (SQLite: a read transaction
        under WAL; PostgreSQL: REPEATABLE READ), so appends go on while the chain is checked."""
        db = self.ctx.db
        if db.is_sqlite:
            with db.read() as s:
                yield s
            return
        with Session(db.engine.execution_options(isolation_level="REPEATABLE READ")) as s, s.begin():
            yield s

    @staticmethod
    def _head(s: Session) -> Head | None:
        row = s.get(AuditHead, 1)
        if row is None:
            return None
        return Head(row.last_id, row.last_hash, row.keyed_from, row.key_id, row.archived_to, row.archived_hash,
                    row.mac)

    def verify(self, checkpoint: Mapping[str, Any] | None = None, batch: int = 5000) -> ChainReport:
        """Check every event and the signed head; name the first bad event or the missing range.

        With a checkpoint (from `checkpoint()`, kept outside): also prove that the event it names is
        still there, unchanged.
        """
        key = self.key()
        watch = read_checkpoint(key, checkpoint) if checkpoint is not None else None
        with self._snapshot() as s:
            head = self._head(s)
            head_problem = self._head_problem(s, head, key)
            if head is None:
                first = s.scalars(select(AuditEvent).order_by(AuditEvent.id).limit(1)).first()
                walk = ChainWalk(key, first.id - 1 if first else 0, first.prev_hash if first else "", None)
            else:
                walk = ChainWalk(key, head.archived_to, head.archived_hash, head.keyed_from,
                                 watch[0] if watch else None)
            last = walk.last_id
            while walk.problem is None:
                rows = list(s.scalars(select(AuditEvent).where(AuditEvent.id > last).order_by(AuditEvent.id)
                                      .limit(batch)))
                if not rows:
                    break
                for row in rows:
                    if not walk.feed(row):
                        break
                last = rows[-1].id
        problem = walk.problem or head_problem or walk.end(head)
        if walk.problem is not None and head_problem is not None:  # the row first, but never hide the head
            problem = Problem(walk.problem.first_bad_id, f"{walk.problem.reason}; and {head_problem.reason}")
        note = None
        if problem is None and watch is not None and head is not None:
            problem, note = _against_checkpoint(walk, head, *watch, checkpoint.get("at", "?") if checkpoint else "?")
        return ChainReport(problem is None, walk.count, first_bad_id=problem.first_bad_id if problem else None,
                           reason=problem.reason if problem else None, legacy=walk.legacy,
                           keyed_from=head.keyed_from if head else None, archived_to=head.archived_to if head else 0,
                           last_id=walk.last_id, last_hash=walk.prev, note=note)

    @staticmethod
    def _head_problem(s: Session, head: Head | None, key: AuditKey) -> Problem | None:
        if head is None:
            return None  # the walk's end names it, with what is present
        if head.key_id is None:
            return Problem(head.last_id + 1, "the audit head is not signed (keying never began, or its "
                                             "signature was removed)")
        if head.key_id != key.id:
            if _signs_the_events(s, head, key):
                return Problem(head.last_id + 1, f"the audit head names key {head.key_id}, but the events are "
                                                 "signed with this key: the head was edited")
            raise AuditKeyError(f"the audit key ({key.where}, id {key.id}) is not the one that signed this chain "
                                f"({head.key_id}), or the chain was rewritten without a key")
        if not head_signed(head, key):
            return Problem(head.last_id + 1, "the audit head's signature does not match: it was edited, or "
                                             f"stepped back (it names event {head.last_id} as the last)")
        return None

    # checkpoints and archives ---------------------------------------------------------------------
    def checkpoint(self, publish: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """The verified head as a signed statement to keep outside the system; `publish` sends it
        (the webhook) before the checkpoint itself is recorded. Refused on a broken chain."""
        report = self.verify()
        if not report.ok:
            raise OpsFlowError(f"no checkpoint of a broken chain: {report.reason}")
        checkpoint = make_checkpoint(self.key(), report.last_id, report.last_hash, self.ctx.now())
        if publish is not None:
            publish(checkpoint)
        with self.ctx.db.transaction() as s:
            self.record(s, "system", "audit.checkpoint", data={"last_id": report.last_id,
                                                                "last_hash": report.last_hash,
                                                                "published": publish is not None})
        return checkpoint

    def archive(self, out: Path, before: datetime | None = None) -> Archived | None:
        """Move the events older than the retention period (or than `before`, if earlier) into a
        signed archive file, and only once it is written and read back, out of the database; the
        head keeps the last archived event's hash so the rest still verifies. None: nothing to move."""
        cutoff = self.retention().cutoff(self.ctx.now(), self.ctx.zone)
        if before is None:
            before = cutoff
        elif before.tzinfo is None:
            raise BadRequest("--before needs a date or a time with its zone")
        elif before > cutoff:
            raise BadRequest(f"events after {cutoff.astimezone(self.ctx.zone):%Y-%m-%d} are within the retention "
                             f"period ({self.ctx.settings.audit_retention}) and are kept")
        report = self.verify()
        if not report.ok:
            raise OpsFlowError(f"nothing archived from a broken chain: {report.reason}")
        key = self.key()
        with self._snapshot() as s:
            head = self._head(s)
            assert head is not None  # verified just now
            rows = s.scalars(select(AuditEvent).where(AuditEvent.id > head.archived_to, AuditEvent.at < before)
                             .order_by(AuditEvent.id).execution_options(yield_per=2000))
            archived = write_archive(out, key, head, before, self.ctx.now(), rows)
        if archived is None:
            return None
        with self.ctx.db.transaction() as s:
            locked = self.ctx.db.run(s, _HEAD).first()
            kept = s.scalar(select(AuditEvent.hash).where(AuditEvent.id == archived.last_id))
            if locked is None or locked[4] != archived.first_id - 1 or kept != archived.last_hash:
                raise Conflict("the chain changed while it was being archived; nothing was removed (run again)")
            s.execute(delete(AuditEvent).where(AuditEvent.id >= archived.first_id,
                                               AuditEvent.id <= archived.last_id))
            row = s.get(AuditHead, 1)
            assert row is not None
            row.archived_to, row.archived_hash = archived.last_id, archived.last_hash
            s.flush()
            self.record(s, "system", "audit.archived", data={
                "first_id": archived.first_id, "last_id": archived.last_id, "events": archived.count,
                "before": before.isoformat(), "file": out.name, "sha256": archived.sha256})
        return archived


def _signs_the_events(s: Session, head: Head, key: AuditKey) -> bool:
    """Does this key sign the first keyed event still in the database (the head's key id aside)?"""
    row = s.scalars(select(AuditEvent).where(AuditEvent.id >= max(head.keyed_from or 1, head.archived_to + 1))
                    .order_by(AuditEvent.id).limit(1)).first()
    return row is not None and key.signed(event_body(row.prev_hash, row.id, row.at, row.actor, row.action,
                                                     row.instance_id, row.task_id, row.data, row.source, True),
                                          row.hash)


def _against_checkpoint(walk: ChainWalk, head: Head, last_id: int, last_hash: str,
                        taken: str) -> tuple[Problem | None, str | None]:
    """Is the event a checkpoint names still in the chain, unchanged?"""
    if last_id <= head.archived_to:
        if last_id == head.archived_to and last_hash != head.archived_hash:
            return Problem(last_id, f"event {last_id} is not the one the checkpoint of {taken} names"), None
        return None, (f"the checkpoint's event {last_id} is archived: check it against the archive file "
                      "('opsflow audit verify-archive')")
    if walk.watched is None:
        return Problem(walk.last_id + 1, f"{span(walk.last_id + 1, last_id)} missing: the checkpoint of {taken} "
                                         f"names event {last_id}, the chain ends at event {walk.last_id}"), None
    if walk.watched != last_hash:
        return Problem(last_id, f"event {last_id} is not the one the checkpoint of {taken} names: the chain was "
                                "rewritten"), None
    return None, f"checkpoint of {taken} (event {last_id}) confirmed"
