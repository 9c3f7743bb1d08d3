"""Users, roles, sign-ins, web sessions and API tokens. Passwords are Argon2-hashed; session ids and
tokens are stored as SHA-256.

Every change to who may do what is in the audit trail (`by`: who made it; the CLI passes "cli",
the admin page the admin's Actor, which must hold the admin role). Every password check (the login
page, `POST /api/v1/auth/token`, a password change) goes through `login`'s throttle, counted in the
database so every worker and process sees the same failures (the rules: engine/people/passwords.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import CursorResult, Result, delete, select, update
from sqlalchemy.orm import Session

from engine.context import EngineContext
from engine.errors import BadRequest, Conflict, LoginLocked, NotFound, WrongPassword
from engine.people.passwords import check_policy, failures_since_success, locked_until, password_hasher, retry_after
from engine.storage.audit import AuditService
from engine.storage.db import Sql
from engine.storage.models import ApiToken, LoginAttempt, Role, User, UserRole, WebSession

if TYPE_CHECKING:  # access.py reads Actor from here
    from engine.people.access import AccessPolicy

MANAGE_USERS = "users.manage"  # the grant (processes/access.json) an Actor needs to change users
# One address may fail this many times the per-name limit (password spraying across names); looser,
# since many people can share an address behind a proxy.
ADDRESS_FACTOR = 6


@dataclass(frozen=True)
class Actor:
    """A user as the services see them: who, and which roles they hold."""

    username: str
    display_name: str
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Account:
    """A user as the admin page lists them, deactivated ones included."""

    username: str
    display_name: str
    roles: frozenset[str]
    active: bool
    has_password: bool
    created_at: datetime


# Who changes a user: an Actor from the web (must be an admin), or a name the CLI or engine gives.
By = Actor | str


class IdentityService:
    def __init__(self, ctx: EngineContext, audit: AuditService, access: AccessPolicy) -> None:
        self.ctx = ctx
        self.audit = audit
        self.access = access
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

    def role_name(self, key: str) -> str:
        """A role as users know it: its Chinese name (运维负责人), or the key of a role not seeded."""
        names = {r.key: r.name_zh for r in self.roles()}
        return names.get(key) or key

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
                 password: str | None = None, by: By = "system", password_policy: bool = True) -> Actor:
        """`password_policy=False` only for `opsflow init --demo`'s known demo password."""
        who = self._manager(by)
        username = username.strip()
        if not username or len(username) > 64 or any(c.isspace() for c in username):
            raise BadRequest("a username is 1-64 characters without spaces")
        if password is not None and password_policy:
            check_policy(username, password)
        hashed = password_hasher().hash(password) if password else None  # before the write lock: Argon2 is slow
        with self.ctx.db.transaction() as s:
            if s.scalars(select(User).where(User.username == username)).first() is not None:
                raise Conflict(f"user {username!r} already exists")
            keys = self._check_roles(s, roles)
            user = User(username=username, display_name=(display_name or "").strip() or username,
                        password_hash=hashed,
                        created_at=self.ctx.now(), roles=[UserRole(role_key=k) for k in keys])
            s.add(user)
            s.flush()
            data: dict[str, Any] = {"username": username, "display_name": user.display_name, "roles": keys,
                                    "password": password is not None}
            if password is not None and not password_policy:
                data["password_policy"] = "not applied (demo)"
            self.audit.record(s, who, "user.added", data=data)
            return self._actor(user)

    def set_roles(self, username: str, roles: list[str], by: By = "system") -> Actor:
        who = self._manager(by)
        with self.ctx.db.transaction() as s:
            user = self._user(s, username)
            before = sorted(user.role_keys)
            keys = self._check_roles(s, roles)
            if who == username and not self.access.allows(Actor(username, "", frozenset(keys)), MANAGE_USERS):
                raise Conflict("you cannot take from yourself the roles that let you manage users "
                               "(another admin can)")
            user.roles = [UserRole(user_id=user.id, role_key=k) for k in keys]
            s.flush()
            self.audit.record(s, who, "user.roles_set", data={"username": username, "roles": keys, "before": before})
            return self._actor(user)

    def set_active(self, username: str, active: bool, by: By = "system") -> int:
        """Deactivate (every web session and API token revoked: signed out at the next request) or
        reactivate a user. Returns how many tokens were revoked."""
        who = self._manager(by)
        if who == username and not active:
            raise Conflict("you cannot deactivate yourself (another admin can)")
        with self.ctx.db.transaction() as s:
            user = self._user(s, username)
            user.active = active
            tokens = sessions = 0
            if not active:
                now = self.ctx.now()
                tokens = _changed(s.execute(update(ApiToken).where(ApiToken.user_id == user.id,
                                                                   ApiToken.revoked_at.is_(None))
                                            .values(revoked_at=now)))
                sessions = self._end_sessions(s, user.id, now)
            self.audit.record(s, who, "user.activated" if active else "user.deactivated",
                              data={"username": username, "tokens_revoked": tokens, "sessions_revoked": sessions})
            return tokens

    def set_password(self, username: str, password: str, by: By = "system") -> int:
        """An admin's (or the CLI's) new password for a user: held to the policy; every web session of
        the user ends (they sign in again with it). API tokens stay. Returns how many sessions ended."""
        who = self._manager(by)
        check_policy(username, password)
        hashed = password_hasher().hash(password)
        with self.ctx.db.transaction() as s:
            user = self._user(s, username)
            user.password_hash = hashed
            sessions = self._end_sessions(s, user.id, self.ctx.now())
            self.audit.record(s, who, "user.password_set", data={"username": username, "sessions_revoked": sessions})
            return sessions

    def change_password(self, username: str, current: str, new: str, address: str,
                        valid_for: timedelta) -> str:
        """The user's own change: the current password is checked (throttled like a login), the new one
        held to the policy; every session of theirs ends and the one returned (an id for this browser's
        cookie, valid for `valid_for`) starts. API tokens stay."""
        check_policy(username, new)
        if self.login(username, current, address, purpose="password change") is None:
            raise WrongPassword()
        hashed = password_hasher().hash(new)
        with self.ctx.db.transaction() as s:
            user = self._user(s, username)
            user.password_hash = hashed
            now = self.ctx.now()
            sessions = self._end_sessions(s, user.id, now)
            session_id = self._new_session(s, user, address, now, valid_for)
            self.audit.record(s, username, "user.password_set",
                              data={"username": username, "sessions_revoked": sessions, "own": True})
            return session_id

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

    def has_users(self) -> bool:
        with self.ctx.db.read() as s:
            return s.scalars(select(User.id).limit(1)).first() is not None

    def accounts(self, by: By = "system") -> list[Account]:
        """Every user, deactivated ones too (the admin page)."""
        self._manager(by)
        with self.ctx.db.read() as s:
            return [_account(u) for u in s.scalars(select(User).order_by(User.username))]

    def account(self, username: str, by: By = "system") -> Account:
        self._manager(by)
        with self.ctx.db.read() as s:
            return _account(self._user(s, username))

    def authenticate(self, username: str, password: str) -> Actor | None:
        """The user if the password matches; None otherwise, in the same time either way. Not
        throttled and not recorded: sign-ins go through `login`."""
        return self._verify(username, password)[0]

    # signing in -------------------------------------------------------------------------------
    def login(self, username: str, password: str, address: str, purpose: str = "login") -> Actor | None:
        """Every password check from outside: the user, or None for a wrong name or password.

        Raises LoginLocked (whatever the password) once the name has failed
        `OPSFLOW_LOGIN_MAX_FAILURES` times within `OPSFLOW_LOGIN_WINDOW` since its last success, or
        the address several times that across names. Failures, lockouts and successes are recorded
        (login_attempt, and the audit trail: user.login_failed, user.login_locked, user.login).
        """
        name, address = username.strip()[:64], (address or "-")[:64]
        until = self._locked_until(name.lower(), address)
        if until is not None:
            with self.ctx.db.transaction() as s:
                self.audit.record(s, name or "-", "user.login_locked",
                                  data={"username": name, "address": address, "purpose": purpose,
                                        "locked_until": until})
            raise LoginLocked(retry_after(until, self.ctx.now()))
        actor, reason = self._verify(name, password)  # Argon2 outside any transaction: it takes ~0.4 s
        now = self.ctx.now()
        with self.ctx.db.transaction() as s:
            s.execute(delete(LoginAttempt).where(LoginAttempt.at < now - self.ctx.settings.login_window))
            s.add(LoginAttempt(username=name.lower(), address=address, at=now, ok=actor is not None))
            s.flush()
            data: dict[str, Any] = {"username": name, "address": address, "purpose": purpose}
            if actor is None:
                until = self._locked_until(name.lower(), address)
                data.update(reason=reason, **({"locked_until": until} if until else {}))
            self.audit.record(s, name or "-", "user.login" if actor else "user.login_failed", data=data)
        return actor

    def _locked_until(self, name: str, address: str) -> datetime | None:
        settings, now = self.ctx.settings, self.ctx.now()
        since = now - settings.login_window
        with self.ctx.db.read() as s:
            by_name = s.execute(select(LoginAttempt.at, LoginAttempt.ok).where(
                LoginAttempt.username == name, LoginAttempt.at > since)).all()
            by_address = s.scalars(select(LoginAttempt.at).where(
                LoginAttempt.address == address, LoginAttempt.at > since, LoginAttempt.ok.is_(False))).all()
        locks = [locked_until(failures_since_success([(at, ok) for at, ok in by_name]), settings.login_max_failures,
                              settings.login_window),
                 locked_until(by_address, settings.login_max_failures * ADDRESS_FACTOR, settings.login_window)]
        return max((t for t in locks if t is not None and t > now), default=None)

    def _verify(self, username: str, password: str) -> tuple[Actor | None, str]:
        """(the user, "") if the password matches, else (None, why), in the same time either way."""
        with self.ctx.db.read() as s:
            user = s.scalars(select(User).where(User.username == username)).first()
            actor = self._actor(user) if user else None
            stored, active = (user.password_hash, user.active) if user else (None, False)
        try:
            password_hasher().verify(stored or _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            return None, "unknown user" if actor is None else "wrong password"
        if actor is None or stored is None:
            return None, "unknown user" if actor is None else "no password set"
        if not active:
            return None, "deactivated"
        return actor, ""

    # web sessions -----------------------------------------------------------------------------
    def open_session(self, username: str, address: str, valid_for: timedelta) -> str:
        """A signed-in browser: the id for its cookie (only its SHA-256 is stored)."""
        with self.ctx.db.transaction() as s:
            return self._new_session(s, self._user(s, username), (address or "-")[:64], self.ctx.now(), valid_for)

    def actor_for_session(self, session_id: str) -> Actor | None:
        """Every page request starts here: one indexed statement for the session, user and roles.
        None once the session was ended (sign-out, password change, deactivation) or expired."""
        return self._actor_by_secret(_SESSION_ACTOR, session_id)

    def close_session(self, session_id: str) -> bool:
        """Sign-out: the session ends for good (a copy of the cookie no longer works)."""
        with self.ctx.db.transaction() as s:
            row = s.scalars(select(WebSession).where(WebSession.session_hash == _token_hash(session_id),
                                                     WebSession.revoked_at.is_(None))).first()
            if row is None:
                return False
            row.revoked_at = self.ctx.now()
            username = s.scalar(select(User.username).where(User.id == row.user_id)) or "?"
            self.audit.record(s, username, "user.logout", data={"username": username})
            return True

    def _new_session(self, s: Session, user: User, address: str, now: datetime, valid_for: timedelta) -> str:
        session_id = secrets.token_urlsafe(32)
        s.add(WebSession(user_id=user.id, session_hash=_token_hash(session_id), address=address, created_at=now,
                         expires_at=now + valid_for))
        s.flush()
        return session_id

    @staticmethod
    def _end_sessions(s: Session, user_id: int, now: datetime) -> int:
        return _changed(s.execute(update(WebSession).where(WebSession.user_id == user_id,
                                                           WebSession.revoked_at.is_(None), WebSession.expires_at > now)
                                  .values(revoked_at=now)))

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
        return self._actor_by_secret(_TOKEN_ACTOR, token)

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
    def _actor_by_secret(self, sql: Sql, secret: str) -> Actor | None:
        """The active user a session id or token belongs to, unless it was revoked or has expired."""
        with self.ctx.db.read() as s:
            rows = self.ctx.db.run(s, sql, {"hash": _token_hash(secret), "active": True}).all()
        if not rows:
            return None
        revoked_at, expires = rows[0][3], self.ctx.db.time_out(rows[0][4])
        if revoked_at is not None or (expires is not None and expires <= self.ctx.now()):
            return None
        return _actor_of_rows(rows)

    def _manager(self, by: By) -> str:
        """Who makes a change to users: an Actor needs the users.manage grant; the CLI (the operator
        at the shell) and the engine name themselves."""
        if isinstance(by, Actor):
            self.access.require(by, MANAGE_USERS, "manage users")
            return by.username
        return by

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
_SESSION_ACTOR = Sql(
    "SELECT u.username, u.display_name, r.role_key, w.revoked_at, w.expires_at FROM web_session w "
    "JOIN app_user u ON u.id = w.user_id AND u.active = :active LEFT JOIN user_role r ON r.user_id = u.id "
    "WHERE w.session_hash = :hash")


def _actor_of_rows(rows: Sequence[Any]) -> Actor | None:
    """(username, display name, role, ...) rows, one per role, as one Actor."""
    if not rows:
        return None
    return Actor(rows[0][0], rows[0][1], frozenset(r[2] for r in rows if r[2] is not None))


def _changed(result: Result[Any]) -> int:
    """The rows an UPDATE changed (an UPDATE's result is a CursorResult)."""
    return cast("CursorResult[Any]", result).rowcount


def _account(user: User) -> Account:
    return Account(user.username, user.display_name, frozenset(user.role_keys), user.active,
                   user.password_hash is not None, user.created_at)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so timing does not reveal who exists (made on
    first use: an Argon2 hash is ~150 ms that every command would pay at import)."""
    return password_hasher().hash("opsflow-no-such-user")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


