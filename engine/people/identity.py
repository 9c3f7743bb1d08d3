"""Users, roles and API tokens. Passwords are Argon2-hashed; tokens are stored as SHA-256.

Every change to who may do what is in the audit trail (`by`: who made it; the CLI passes "cli").
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.context import EngineContext
from engine.errors import BadRequest, Conflict, NotFound
from engine.storage.audit import AuditService
from engine.storage.db import Sql
from engine.storage.models import ApiToken, Role, User, UserRole

_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal who exists.
_DUMMY_HASH = _hasher.hash("opsflow-no-such-user")


@dataclass(frozen=True)
class Actor:
    """A user as the services see them: who, and which roles they hold."""

    username: str
    display_name: str
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        return role in self.roles


class IdentityService:
    def __init__(self, ctx: EngineContext, audit: AuditService) -> None:
        self.ctx = ctx
        self.audit = audit
        self._role_names: dict[str, str] | None = None

    # roles ------------------------------------------------------------------------------------
    def seed_roles(self, path: Path, by: str = "system") -> int:
        """Add the roles of a JSON file that are not there yet (admins may add more later)."""
        roles = json.loads(path.read_text(encoding="utf-8"))
        added = []
        with self.ctx.db.transaction() as s:
            existing = {r.key for r in s.scalars(select(Role))}
            for r in roles:
                if r["key"] not in existing:
                    s.add(Role(key=r["key"], name_zh=r["name_zh"], name_en=r["name_en"],
                               description=r.get("description", "")))
                    added.append(r["key"])
            if added:
                self.audit.record(s, by, "roles.seeded", data={"file": path.name, "roles": added})
        self._role_names = None
        return len(added)

    def add_role(self, key: str, name_zh: str, name_en: str, description: str = "", by: str = "system") -> None:
        with self.ctx.db.transaction() as s:
            if s.get(Role, key) is not None:
                raise Conflict(f"role {key!r} already exists")
            s.add(Role(key=key, name_zh=name_zh, name_en=name_en, description=description))
            self.audit.record(s, by, "role.added", data={"role": key, "name_zh": name_zh, "name_en": name_en})
        self._role_names = None

    def roles(self) -> list[Role]:
        with self.ctx.db.transaction() as s:
            return list(s.scalars(select(Role).order_by(Role.key)))

    def resolve_role(self, lane: str | None) -> str | None:
        """A lane names a role by key (`ops_engineer`) or by its Chinese name (`运维工程师`)."""
        if not lane:
            return None
        if self._role_names is None:
            names: dict[str, str] = {}
            for role in self.roles():
                names[role.key.lower()] = role.key
                names[role.name_zh] = role.key
            self._role_names = names
        return self._role_names.get(lane.strip()) or self._role_names.get(lane.strip().lower())

    # users ------------------------------------------------------------------------------------
    def add_user(self, username: str, roles: list[str], display_name: str | None = None,
                 password: str | None = None, by: str = "system") -> Actor:
        username = username.strip()
        if not username or len(username) > 64 or any(c.isspace() for c in username):
            raise BadRequest("a username is 1-64 characters without spaces")
        with self.ctx.db.transaction() as s:
            if s.scalars(select(User).where(User.username == username)).first() is not None:
                raise Conflict(f"user {username!r} already exists")
            keys = self._check_roles(s, roles)
            user = User(username=username, display_name=display_name or username,
                        password_hash=_hasher.hash(password) if password else None,
                        created_at=self.ctx.now(), roles=[UserRole(role_key=k) for k in keys])
            s.add(user)
            s.flush()
            self.audit.record(s, by, "user.added", data={"username": username, "display_name": user.display_name,
                                                          "roles": keys, "password": password is not None})
            return self._actor(user)

    def set_roles(self, username: str, roles: list[str], by: str = "system") -> Actor:
        with self.ctx.db.transaction() as s:
            user = self._user(s, username)
            before = sorted(user.role_keys)
            keys = self._check_roles(s, roles)
            user.roles = [UserRole(user_id=user.id, role_key=k) for k in keys]
            s.flush()
            self.audit.record(s, by, "user.roles_set", data={"username": username, "roles": keys, "before": before})
            return self._actor(user)

    def set_active(self, username: str, active: bool, by: str = "system") -> int:
        """Deactivate (signed out at the next request; every token revoked) or reactivate a user.
        Returns how many tokens were revoked."""
        with self.ctx.db.transaction() as s:
            user = self._user(s, username)
            user.active = active
            revoked = 0
            if not active:
                now = self.ctx.now()
                for token in s.scalars(select(ApiToken).where(ApiToken.user_id == user.id,
                                                              ApiToken.revoked_at.is_(None))):
                    token.revoked_at = now
                    revoked += 1
            self.audit.record(s, by, "user.activated" if active else "user.deactivated",
                              data={"username": username, "tokens_revoked": revoked})
            return revoked

    def set_password(self, username: str, password: str, by: str = "system") -> None:
        with self.ctx.db.transaction() as s:
            self._user(s, username).password_hash = _hasher.hash(password)
            self.audit.record(s, by, "user.password_set", data={"username": username})

    def locale(self, username: str) -> str | None:
        """The UI language the user chose (zh_CN unless they switched)."""
        with self.ctx.db.transaction() as s:
            return s.scalars(select(User.locale).where(User.username == username)).first()

    def set_locale(self, username: str, locale: str) -> None:
        with self.ctx.db.transaction() as s:
            self._user(s, username).locale = locale

    def get(self, username: str) -> Actor:
        with self.ctx.db.transaction() as s:
            return self._actor(self._user(s, username))

    def find(self, username: str) -> Actor | None:
        """An active user, or None. One statement: cases name users in forms on every step."""
        with self.ctx.db.transaction() as s:
            rows = self.ctx.db.run(s, _ACTIVE_USER, {"username": username, "active": True}).all()
        return _actor_of_rows(rows)

    def users(self, role: str | None = None) -> list[Actor]:
        with self.ctx.db.transaction() as s:
            query = select(User).where(User.active.is_(True)).order_by(User.username)
            if role:
                query = query.join(UserRole).where(UserRole.role_key == role)
            return [self._actor(u) for u in s.scalars(query)]

    def authenticate(self, username: str, password: str) -> Actor | None:
        """The user if the password matches; None otherwise, in the same time either way."""
        with self.ctx.db.transaction() as s:
            user = s.scalars(select(User).where(User.username == username, User.active.is_(True))).first()
            stored = user.password_hash if user and user.password_hash else _DUMMY_HASH
            try:
                _hasher.verify(stored, password)
            except (VerificationError, InvalidHashError):
                return None
            return self._actor(user) if user and user.password_hash else None

    # tokens -----------------------------------------------------------------------------------
    def create_token(self, username: str, valid_for: timedelta | None = timedelta(days=90),
                     by: str | None = None) -> str:
        """A new API token for the user (`by`: who asked; the user themselves unless given)."""
        token = "ofl_" + secrets.token_urlsafe(32)
        with self.ctx.db.transaction() as s:
            user = self._user(s, username)
            now = self.ctx.now()
            row = ApiToken(user_id=user.id, token_hash=_token_hash(token), created_at=now,
                           expires_at=now + valid_for if valid_for else None)
            s.add(row)
            s.flush()
            self.audit.record(s, by or username, "token.created",
                              data={"username": username, "token_id": row.id, "expires_at": row.expires_at})
        return token

    def actor_for_token(self, token: str) -> Actor | None:
        """Every API call starts here: one statement (engine/storage/db.py `Sql`) for the token, user and roles."""
        with self.ctx.db.read() as s:
            rows = self.ctx.db.run(s, _TOKEN_ACTOR, {"hash": _token_hash(token), "active": True}).all()
        if not rows:
            return None
        revoked_at, expires = rows[0][3], self.ctx.db.time_out(rows[0][4])
        if revoked_at is not None or (expires is not None and expires <= self.ctx.now()):
            return None
        return _actor_of_rows(rows)

    def revoke_token(self, token: str) -> bool:
        with self.ctx.db.transaction() as s:
            row = s.scalars(select(ApiToken).where(ApiToken.token_hash == _token_hash(token))).first()
            if row is None:
                return False
            row.revoked_at = self.ctx.now()
            username = s.scalar(select(User.username).where(User.id == row.user_id)) or "?"
            self.audit.record(s, username, "token.revoked", data={"username": username, "token_id": row.id})
            return True

    # helpers ----------------------------------------------------------------------------------
    def _check_roles(self, s: Session, roles: list[str]) -> list[str]:
        keys = []
        for name in roles:
            key = self.resolve_role(name)
            if key is None:
                known = ", ".join(r.key for r in s.scalars(select(Role).order_by(Role.key)))
                raise NotFound(f"unknown role {name!r} (known roles: {known})")
            if key not in keys:
                keys.append(key)
        return keys

    @staticmethod
    def _user(s: Session, username: str) -> User:
        user = s.scalars(select(User).where(User.username == username)).first()
        if user is None:
            raise NotFound(f"unknown user {username!r}")
        return user

    @staticmethod
    def _actor(user: User) -> Actor:
        return Actor(user.username, user.display_name, frozenset(user.role_keys))


_ACTIVE_USER = Sql("SELECT u.username, u.display_name, r.role_key FROM app_user u "
                   "LEFT JOIN user_role r ON r.user_id = u.id WHERE u.username = :username AND u.active = :active")
_TOKEN_ACTOR = Sql(
    "SELECT u.username, u.display_name, r.role_key, t.revoked_at, t.expires_at FROM api_token t "
    "JOIN app_user u ON u.id = t.user_id AND u.active = :active LEFT JOIN user_role r ON r.user_id = u.id "
    "WHERE t.token_hash = :hash")


def _actor_of_rows(rows: Sequence[Any]) -> Actor | None:
    """(username, display name, role, ...) rows, one per role, as one Actor."""
    if not rows:
        return None
    return Actor(rows[0][0], rows[0][1], frozenset(r[2] for r in rows if r[2] is not None))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


