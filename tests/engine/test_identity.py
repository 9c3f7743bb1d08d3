"""Users, roles and tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import ProcessEngine
from engine.errors import Conflict, NotFound
from engine.storage.models import ApiToken, User


def test_password_is_stored_hashed_and_verified(engine: ProcessEngine) -> None:
    engine.identity.add_user("lina", ["ops_engineer"], "李娜", "s3cret-pass")
    with engine.ctx.db.transaction() as s:
        stored = s.scalars(select(User.password_hash).where(User.username == "lina")).one()
    assert "s3cret-pass" not in stored and stored.startswith("$argon2")
    assert engine.identity.authenticate("lina", "s3cret-pass").display_name == "李娜"
    assert engine.identity.authenticate("lina", "wrong") is None
    assert engine.identity.authenticate("nobody", "s3cret-pass") is None


def test_roles_by_key_or_chinese_name_and_unknown_role_is_refused(engine: ProcessEngine) -> None:
    actor = engine.identity.add_user("x", ["运维工程师", "cab"])
    assert actor.roles == {"ops_engineer", "cab"}
    with pytest.raises(NotFound, match="unknown role 'wizard'"):
        engine.identity.add_user("y", ["wizard"])
    assert engine.identity.set_roles("x", ["督导"]).roles == {"supervisor"}


def test_admin_can_add_a_role_without_code(engine: ProcessEngine) -> None:
    engine.identity.add_role("dba", "数据库管理员", "Database administrator")
    assert engine.identity.resolve_role("数据库管理员") == "dba"
    assert engine.identity.add_user("dba1", ["dba"]).roles == {"dba"}
    with pytest.raises(Conflict):
        engine.identity.add_role("dba", "数据库管理员2", "x")


def test_duplicate_user_is_a_conflict(engine: ProcessEngine) -> None:
    engine.identity.add_user("a", ["staff"])
    with pytest.raises(Conflict):
        engine.identity.add_user("a", ["staff"])


def test_tokens_are_stored_hashed_expire_and_can_be_revoked(engine: ProcessEngine, clock) -> None:
    engine.identity.add_user("api", ["staff"])
    token = engine.identity.create_token("api", valid_for=timedelta(days=1))
    with engine.ctx.db.transaction() as s:
        assert token not in {t.token_hash for t in s.scalars(select(ApiToken))}
    assert engine.identity.actor_for_token(token).username == "api"
    assert engine.identity.actor_for_token(token + "x") is None
    clock.advance(days=2)
    assert engine.identity.actor_for_token(token) is None
    other = engine.identity.create_token("api")
    assert engine.identity.revoke_token(other)
    assert engine.identity.actor_for_token(other) is None
