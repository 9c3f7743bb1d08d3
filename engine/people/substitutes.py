"""Substitutes (A/B角): a holder names a colleague who sees and may act on their tasks for a while.

What the substitute does is recorded as done by them, acting for the holder (HumanTask.acting_for).
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.context import EngineContext
from engine.errors import BadRequest, Forbidden, NotFound
from engine.people.access import AccessPolicy
from engine.people.identity import Actor, IdentityService
from engine.storage.audit import AuditService
from engine.storage.models import Substitute

MAX_SPAN = timedelta(days=366)


def holders_for(s: Session, username: str, now: datetime) -> list[str]:
    """The holders whose tasks `username` may act on at `now`, within the caller's transaction."""
    rows = s.scalars(select(Substitute.holder).where(Substitute.substitute == username,
                                                     Substitute.starts_at <= now, Substitute.ends_at > now))
    return sorted(set(rows))


class SubstituteService:
    def __init__(self, ctx: EngineContext, identity: IdentityService, audit: AuditService,
                 access: AccessPolicy) -> None:
        self.ctx = ctx
        self.access = access
        self.identity = identity
        self.audit = audit

    def create(self, actor: Actor, substitute: str, starts_at: datetime, ends_at: datetime,
               reason: str = "", holder: str | None = None) -> Substitute:
        """Name a substitute for a window; the holder themselves, or substitutes.manage (an admin)."""
        holder = holder or actor.username
        if holder != actor.username:
            self.access.require(actor, "substitutes.manage", f"name a substitute for {holder}")
        if starts_at.tzinfo is None or ends_at.tzinfo is None:
            raise BadRequest("substitute windows need times with a zone")
        if ends_at <= starts_at:
            raise BadRequest("the substitute window must end after it starts")
        if ends_at - starts_at > MAX_SPAN:
            raise BadRequest("a substitute window is at most one year")
        if substitute == holder:
            raise BadRequest("a user cannot be their own substitute")
        principal, stand_in = self.identity.find(holder), self.identity.find(substitute)
        if principal is None:
            raise NotFound(f"unknown user {holder!r}")
        if stand_in is None:
            raise NotFound(f"unknown user {substitute!r}")
        if not principal.roles & stand_in.roles:
            # A/B角: the B role must be qualified for the A role's work; they act only on tasks of a
            # role they hold themselves (engine/definitions/assignment.py)
            raise Forbidden(f"{substitute} holds none of {holder}'s roles ({', '.join(sorted(principal.roles))}) "
                            f"and cannot stand in for them (A/B角须具备相同岗位角色)", rule="substitute")
        with self.ctx.db.transaction() as s:
            row = Substitute(holder=holder, substitute=substitute, starts_at=starts_at, ends_at=ends_at,
                             reason=reason.strip(), created_by=actor.username, created_at=self.ctx.now())
            s.add(row)
            s.flush()
            self.audit.record(s, actor.username, "substitute.created",
                              data={"id": row.id, "holder": holder, "substitute": substitute,
                                    "starts_at": starts_at, "ends_at": ends_at, "reason": row.reason})
            return row

    def end(self, substitute_id: int, actor: Actor) -> Substitute:
        """End a window now (the holder, the substitute or an admin)."""
        with self.ctx.db.transaction() as s:
            row = s.get(Substitute, substitute_id)
            if row is None:
                raise NotFound(f"unknown substitute entry {substitute_id}")
            if actor.username not in (row.holder, row.substitute):
                self.access.require(actor, "substitutes.manage", f"end substitute entry {substitute_id}")
            now = self.ctx.now()
            if row.ends_at > now:
                row.ends_at = max(now, row.starts_at)
                self.audit.record(s, actor.username, "substitute.ended", data={"id": row.id})
            return row

    def list(self, username: str | None = None, include_past: bool = False) -> list[Substitute]:
        """Entries where the user is holder or substitute (every entry when username is None)."""
        with self.ctx.db.transaction() as s:
            query = select(Substitute).order_by(Substitute.starts_at.desc(), Substitute.id.desc())
            if username is not None:
                query = query.where((Substitute.holder == username) | (Substitute.substitute == username))
            if not include_past:  # ended before it began: a window of no length is gone too
                query = query.where(Substitute.ends_at > self.ctx.now(), Substitute.ends_at > Substitute.starts_at)
            return list(s.scalars(query))

    def active_for(self, username: str, now: datetime | None = None) -> builtins.list[str]:  # `list`: a method
        """The holders `username` stands in for right now."""
        with self.ctx.db.transaction() as s:
            return holders_for(s, username, now or self.ctx.now())
