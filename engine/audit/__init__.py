"""The audit trail: one append-only row per action, each hashing the previous (tamper-evident)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.context import EngineContext
from engine.db import Sql
from engine.models import AuditEvent, AuditHead

GENESIS = "0" * 64
_HEAD = Sql("SELECT last_id, last_hash FROM audit_head WHERE id = 1", lock="FOR UPDATE")
_HEAD_CREATE = Sql("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, :hash)")
_APPEND_SQL = ("INSERT INTO audit_event (id, at, actor, action, instance_id, task_id, data, prev_hash, hash) "
               "VALUES (:id, :at, :actor, :action, :instance_id, :task_id, :data, :prev_hash, :hash)")
# The head stays locked from here to COMMIT, so every append waits on it: on PostgreSQL the event
# and the head move go in one round trip (a data-modifying CTE; SQLite has none, and no round trips).
_APPEND = Sql(_APPEND_SQL, postgresql="WITH moved AS (UPDATE audit_head SET last_id = :id, last_hash = :hash "
              "WHERE id = 1) " + _APPEND_SQL)
_HEAD_MOVE = Sql("UPDATE audit_head SET last_id = :id, last_hash = :hash WHERE id = 1")


def _digest(prev_hash: str, event_id: int, at: datetime, actor: str, action: str,
            instance_id: int | None, task_id: str | None, data: dict[str, Any]) -> str:
    body = json.dumps([prev_hash, event_id, at.isoformat(timespec="microseconds"), actor, action,
                       instance_id, task_id, data], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events: int
    first_bad_id: int | None = None
    reason: str | None = None


class AuditService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def record(self, session: Session, actor: str, action: str, *, instance_id: int | None = None,
               task_id: str | None = None, data: dict[str, Any] | None = None) -> int:
        """Append within the caller's transaction and return the event's id; the head row lock
        serialises appends.

        Driver-level statements (engine/db.py `Sql`): this runs on every action.
        """
        db = self.ctx.db
        head = db.run(session, _HEAD).first()
        if head is None:
            db.run(session, _HEAD_CREATE, {"hash": GENESIS})
            last_id, prev = 0, GENESIS
        else:
            last_id, prev = head
        at = self.ctx.now().astimezone(UTC)  # hashed as stored: a clock in another zone must not break the chain
        payload = self.ctx.codec.to_plain(data or {})
        event_id = last_id + 1
        digest = _digest(prev, event_id, at, actor, action, instance_id, task_id, payload)
        db.run(session, _APPEND, {"id": event_id, "at": db.time_in(at), "actor": actor, "action": action,
                                  "instance_id": instance_id, "task_id": task_id, "data": db.json_in(payload),
                                  "prev_hash": prev, "hash": digest})
        if db.is_sqlite:
            db.run(session, _HEAD_MOVE, {"id": event_id, "hash": digest})
        return event_id

    def events(self, instance_id: int | None = None, limit: int = 1000, offset: int = 0) -> list[AuditEvent]:
        with self.ctx.db.transaction() as s:
            query = select(AuditEvent).order_by(AuditEvent.id)
            if instance_id is not None:
                query = query.where(AuditEvent.instance_id == instance_id)
            return list(s.scalars(query.offset(offset).limit(limit)))

    def verify(self, batch: int = 5000) -> ChainReport:
        """Recompute the chain from the first row; name the first row that does not match."""
        prev, expected_id, count = GENESIS, 1, 0
        with self.ctx.db.transaction() as s:
            last_id = 0
            while True:
                rows = list(s.scalars(select(AuditEvent).where(AuditEvent.id > last_id)
                                      .order_by(AuditEvent.id).limit(batch)))
                if not rows:
                    break
                for row in rows:
                    if row.id != expected_id:
                        return ChainReport(False, count, expected_id, f"event {expected_id} is missing")
                    if row.prev_hash != prev:
                        return ChainReport(False, count, row.id, "previous-hash link broken")
                    if _digest(prev, row.id, row.at, row.actor, row.action, row.instance_id,
                               row.task_id, row.data) != row.hash:
                        return ChainReport(False, count, row.id, "content does not match its hash")
                    prev, expected_id, count, last_id = row.hash, row.id + 1, count + 1, row.id
            head = s.get(AuditHead, 1)
            if head is not None and head.last_id != count:
                return ChainReport(False, count, count + 1, f"event {count + 1} is missing (chain ends early)")
        return ChainReport(True, count)
