"""Users with a lifecycle: the password policy, the login throttle in the database, web sessions that
end, deactivation, who may manage users, the demo seed, and revision 0007."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, inspect, select

from engine import ProcessEngine, Settings
from engine.config import ConfigError
from engine.errors import Conflict, Forbidden, LoginLocked, WeakPassword, WrongPassword
from engine.people.identity import Actor
from engine.people.passwords import HASH_COST_VARIABLE, check_policy, failures_since_success, locked_until
from engine.storage.migrations import upgrade
from engine.storage.models import LoginAttempt, User, WebSession
from tests.conftest import FIXTURES, ROOT, Clock, make_settings
from tests.engine.command_line import run_opsflow

GOOD = "Kunlun-2026-pw"
DAY = timedelta(hours=10)
ADMIN = Actor("root", "管理员", frozenset({"admin"}))


def actions(engine: ProcessEngine, prefix: str = "user.") -> list[tuple[str, str]]:
    return [(e.action, e.actor) for e in engine.audit.events(limit=100_000) if e.action.startswith(prefix)]


# the password policy ----------------------------------------------------------------------------
@pytest.mark.parametrize(("password", "rule"), [
    ("Ab1-short", "length"),
    ("onlyletters-here", "letters_and_digits"),
    ("1234567890-12", "letters_and_digits"),
    ("my-zhangsan-2026", "username"),
    ("Password123", "common"),
    ("QWERTY123456", "common"),
])
def test_a_weak_password_is_refused_naming_the_rule(password: str, rule: str) -> None:
    with pytest.raises(WeakPassword) as refused:
        check_policy("zhangsan", password)
    assert refused.value.rule == rule and refused.value.details == {"rule": rule}
    check_policy("zhangsan", GOOD)  # letters, digits, 14 characters, not the name, not common


def test_a_short_user_name_does_not_forbid_its_letters() -> None:
    check_policy("li", "Li-river-2026")  # "li" in it: a two-letter name would refuse nearly everything


def test_every_way_of_setting_a_password_applies_the_policy(engine: ProcessEngine) -> None:
    with pytest.raises(WeakPassword, match="at least 10 characters"):
        engine.identity.add_user("zhangsan", ["staff"], password="abc123")
    assert engine.identity.find("zhangsan") is None  # nothing added
    engine.identity.add_user("zhangsan", ["staff"], password=GOOD)
    with pytest.raises(WeakPassword, match="may not contain the user name"):
        engine.identity.set_password("zhangsan", "ZhangSan-2026", by="cli")
    with pytest.raises(WeakPassword, match="common passwords"):
        engine.identity.change_password("zhangsan", GOOD, "password123", "10.0.0.1", DAY)
    assert engine.identity.authenticate("zhangsan", GOOD) is not None  # unchanged


def test_only_the_demo_seed_skips_the_policy_and_the_trail_says_so(engine: ProcessEngine) -> None:
    engine.identity.add_user("demo1", ["staff"], password="opsflow", password_policy=False)
    added = [e for e in engine.audit.events() if e.action == "user.added"][-1]
    assert added.data["password_policy"] == "not applied (demo)"
    assert engine.identity.authenticate("demo1", "opsflow") is not None


def test_init_demo_adds_demo_users_only_to_a_database_without_users(database_url: str, tmp_path: Path) -> None:
    eng = ProcessEngine(make_settings(database_url, tmp_path, processes_dir=_roles_only(tmp_path)))
    try:
        first = eng.init(demo=True)
        assert "admin" in first["demo_users"] and not first["demo_skipped"]
        eng.identity.set_active("lina", False, by="cli")  # a leaver stays gone
        again = eng.init(demo=True)
        assert again["demo_users"] == [] and again["demo_skipped"]
        assert eng.identity.find("lina") is None
    finally:
        eng.close()


# the login throttle -----------------------------------------------------------------------------
def test_lockout_arithmetic() -> None:
    t = Clock().now
    window = timedelta(minutes=15)
    fails = [t + timedelta(minutes=m) for m in (0, 1, 2, 3, 4)]
    assert locked_until(fails[:4], 5, window) is None
    assert locked_until(fails, 5, window) == fails[0] + window
    assert locked_until([*fails, t + timedelta(minutes=6)], 5, window) == fails[1] + window
    assert failures_since_success([(fails[0], False), (fails[1], True), (fails[2], False)]) == [fails[2]]


def test_five_failures_lock_the_name_even_for_the_right_password_until_the_window_passes(
        engine: ProcessEngine, clock: Clock) -> None:
    engine.identity.add_user("lina", ["ops_engineer"], password=GOOD)
    for _ in range(5):
        assert engine.identity.login("lina", "wrong-1234567", "10.0.0.9") is None
    with pytest.raises(LoginLocked) as locked:
        engine.identity.login("lina", GOOD, "10.0.0.9")
    assert locked.value.retry_after == 15 * 60 and "try again in 15 minute(s)" in locked.value.message
    clock.advance(minutes=14)
    with pytest.raises(LoginLocked) as still:
        engine.identity.login("lina", GOOD, "10.0.0.1")  # from another address too
    assert still.value.retry_after == 60
    clock.advance(minutes=1, seconds=1)
    assert engine.identity.login("lina", GOOD, "10.0.0.1").username == "lina"
    trail = actions(engine, "user.login")
    assert trail == [("user.login_failed", "lina")] * 5 + [("user.login_locked", "lina")] * 2 + [("user.login", "lina")]
    failed = [e for e in engine.audit.events() if e.action == "user.login_failed"]
    assert failed[0].data["reason"] == "wrong password" and "locked_until" in failed[4].data
    assert "locked_until" not in failed[3].data


def test_a_successful_login_clears_the_count(engine: ProcessEngine) -> None:
    engine.identity.add_user("lina", ["ops_engineer"], password=GOOD)
    for _ in range(4):
        engine.identity.login("lina", "wrong-1234567", "10.0.0.9")
    assert engine.identity.login("lina", GOOD, "10.0.0.9") is not None
    for _ in range(4):
        engine.identity.login("lina", "wrong-1234567", "10.0.0.9")
    assert engine.identity.login("lina", GOOD, "10.0.0.9") is not None


def test_unknown_names_lock_the_same_way_and_the_count_is_shared_between_processes(
        engine: ProcessEngine, database_url: str, tmp_path: Path, clock: Clock) -> None:
    other = ProcessEngine(make_settings(database_url, tmp_path), clock=clock)  # another worker's engine
    try:
        for eng in (engine, other, engine, other, engine):
            assert eng.identity.login("ghost", "wrong-1234567", "10.0.0.9") is None
        with pytest.raises(LoginLocked):
            other.identity.login("ghost", "wrong-1234567", "10.0.0.9")
    finally:
        other.close()
    failed = [e for e in engine.audit.events() if e.action == "user.login_failed"]
    assert failed[0].data["reason"] == "unknown user"


def test_one_address_failing_across_many_names_is_locked_too(engine: ProcessEngine) -> None:
    engine.identity.add_user("lina", ["ops_engineer"], password=GOOD)
    engine.ctx.settings = _with(engine.ctx.settings, login_max_failures=1)  # the address limit is 6 x 1
    for name in ("a1", "a2", "a3", "a4", "a5", "a6"):
        assert engine.identity.login(name, "wrong-1234567", "10.0.0.66") is None
    with pytest.raises(LoginLocked):
        engine.identity.login("lina", GOOD, "10.0.0.66")
    assert engine.identity.login("lina", GOOD, "10.0.0.1") is not None  # another address is not


def test_a_deactivated_user_cannot_log_in_even_with_the_right_password(engine: ProcessEngine) -> None:
    engine.identity.add_user("lina", ["ops_engineer"], password=GOOD)
    engine.identity.set_active("lina", False, by="cli")
    assert engine.identity.login("lina", GOOD, "10.0.0.9") is None
    failed = [e for e in engine.audit.events() if e.action == "user.login_failed"][-1]
    assert failed.data["reason"] == "deactivated"


def test_old_attempts_are_pruned(engine: ProcessEngine, clock: Clock) -> None:
    engine.identity.login("ghost", "wrong-1234567", "10.0.0.9")
    clock.advance(minutes=16)
    engine.identity.login("ghost2", "wrong-1234567", "10.0.0.9")
    with engine.ctx.db.transaction() as s:
        assert [a.username for a in s.scalars(select(LoginAttempt))] == ["ghost2"]


def test_the_limits_come_from_the_environment() -> None:
    settings = Settings.from_env(OPSFLOW_LOGIN_MAX_FAILURES="3", OPSFLOW_LOGIN_WINDOW="PT1H")
    assert (settings.login_max_failures, settings.login_window) == (3, timedelta(hours=1))
    assert Settings.from_env(OPSFLOW_LOGIN_WINDOW="30").login_window == timedelta(minutes=30)
    defaults = Settings.from_env(OPSFLOW_LOGIN_MAX_FAILURES="", OPSFLOW_LOGIN_WINDOW="")
    assert (defaults.login_max_failures, defaults.login_window) == (5, timedelta(minutes=15))
    with pytest.raises(ConfigError, match="OPSFLOW_LOGIN_WINDOW"):
        Settings.from_env(OPSFLOW_LOGIN_WINDOW="P2D")
    with pytest.raises(ConfigError, match="OPSFLOW_LOGIN_MAX_FAILURES"):
        Settings.from_env(OPSFLOW_LOGIN_MAX_FAILURES="0")


# sessions ---------------------------------------------------------------------------------------
def test_a_session_ends_at_sign_out_and_expires(engine: ProcessEngine, clock: Clock) -> None:
    engine.identity.add_user("lina", ["ops_engineer"])
    sid = engine.identity.open_session("lina", "10.0.0.9", DAY)
    assert engine.identity.actor_for_session(sid).username == "lina"
    assert engine.identity.close_session(sid)
    assert engine.identity.actor_for_session(sid) is None
    assert not engine.identity.close_session(sid)
    later = engine.identity.open_session("lina", "10.0.0.9", DAY)
    clock.advance(hours=10)
    assert engine.identity.actor_for_session(later) is None
    with engine.ctx.db.transaction() as s:
        assert sid not in {w.session_hash for w in s.scalars(select(WebSession))}  # stored as SHA-256 only
    assert ("user.logout", "lina") in actions(engine)


def test_the_session_check_is_one_statement(engine: ProcessEngine) -> None:
    engine.identity.add_user("lina", ["ops_engineer", "cab"])
    sid = engine.identity.open_session("lina", "10.0.0.9", DAY)
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine.ctx.db.engine, "before_cursor_execute", listener)
    try:
        assert engine.identity.actor_for_session(sid).roles == {"ops_engineer", "cab"}
    finally:
        event.remove(engine.ctx.db.engine, "before_cursor_execute", listener)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
    indexes = {tuple(i["column_names"]) for i in inspect(engine.ctx.db.engine).get_indexes("web_session")}
    uniques = {tuple(u["column_names"]) for u in inspect(engine.ctx.db.engine).get_unique_constraints("web_session")}
    assert ("session_hash",) in indexes | uniques


def test_changing_ones_password_ends_every_other_session_and_keeps_tokens(engine: ProcessEngine) -> None:
    engine.identity.add_user("lina", ["ops_engineer"], password=GOOD)
    here, elsewhere = (engine.identity.open_session("lina", "10.0.0.9", DAY) for _ in range(2))
    token = engine.identity.create_token("lina")
    with pytest.raises(WrongPassword):
        engine.identity.change_password("lina", "not-it-12345", "Taishan-2027", "10.0.0.9", DAY)
    assert engine.identity.actor_for_session(elsewhere) is not None  # a refused change ends nothing
    fresh = engine.identity.change_password("lina", GOOD, "Taishan-2027", "10.0.0.9", DAY)
    assert engine.identity.actor_for_session(here) is None and engine.identity.actor_for_session(elsewhere) is None
    assert engine.identity.actor_for_session(fresh).username == "lina"
    assert engine.identity.actor_for_token(token).username == "lina"
    assert engine.identity.authenticate("lina", "Taishan-2027") is not None
    changed = [e for e in engine.audit.events() if e.action == "user.password_set"][-1]
    assert (changed.actor, changed.data) == ("lina", {"username": "lina", "sessions_revoked": 2, "own": True})


def test_guessing_the_current_password_is_throttled_like_a_login(engine: ProcessEngine) -> None:
    engine.identity.add_user("lina", ["ops_engineer"], password=GOOD)
    for _ in range(5):
        with pytest.raises(WrongPassword):
            engine.identity.change_password("lina", "not-it-12345", "Taishan-2027", "10.0.0.9", DAY)
    with pytest.raises(LoginLocked):
        engine.identity.change_password("lina", GOOD, "Taishan-2027", "10.0.0.9", DAY)
    assert engine.identity.authenticate("lina", GOOD) is not None


def test_an_admin_reset_ends_the_users_sessions_and_keeps_tokens(engine: ProcessEngine) -> None:
    engine.identity.add_user("lina", ["ops_engineer"], password=GOOD)
    sid = engine.identity.open_session("lina", "10.0.0.9", DAY)
    token = engine.identity.create_token("lina")
    assert engine.identity.set_password("lina", "Taishan-2027", by=ADMIN) == 1
    assert engine.identity.actor_for_session(sid) is None
    assert engine.identity.actor_for_token(token) is not None
    assert actions(engine)[-1] == ("user.password_set", "root")


def test_deactivation_ends_sessions_and_tokens_and_reactivation_brings_back_neither(engine: ProcessEngine) -> None:
    engine.identity.add_user("lina", ["ops_engineer"], password=GOOD)
    sid = engine.identity.open_session("lina", "10.0.0.9", DAY)
    token = engine.identity.create_token("lina")
    assert engine.identity.set_active("lina", False, by=ADMIN) == 1
    assert engine.identity.actor_for_session(sid) is None and engine.identity.actor_for_token(token) is None
    engine.identity.set_active("lina", True, by=ADMIN)
    assert engine.identity.actor_for_session(sid) is None and engine.identity.actor_for_token(token) is None
    assert engine.identity.login("lina", GOOD, "10.0.0.9") is not None
    deactivated = [e for e in engine.audit.events() if e.action == "user.deactivated"][-1]
    assert (deactivated.actor, deactivated.data) == ("root", {"username": "lina", "tokens_revoked": 1,
                                                              "sessions_revoked": 1})


# who manages users ------------------------------------------------------------------------------
def test_only_an_admin_manages_users_from_the_web(engine: ProcessEngine) -> None:
    engine.identity.add_user("lina", ["ops_engineer"])
    clerk = Actor("lina", "李娜", frozenset({"ops_engineer", "supervisor"}))
    refusals = [lambda: engine.identity.accounts(by=clerk),
                lambda: engine.identity.add_user("mole", ["admin"], password=GOOD, by=clerk),
                lambda: engine.identity.set_roles("lina", ["admin"], by=clerk),
                lambda: engine.identity.set_active("lina", False, by=clerk),
                lambda: engine.identity.set_password("lina", "Taishan-2027", by=clerk)]
    for refused in refusals:
        with pytest.raises(Forbidden) as why:
            refused()
        assert why.value.rule == "users.manage"
    assert engine.identity.get("lina").roles == {"ops_engineer"} and engine.identity.find("mole") is None
    assert [a.username for a in engine.identity.accounts(by=ADMIN)] == ["lina"]


def test_an_admin_cannot_lock_themselves_out(engine: ProcessEngine) -> None:
    engine.identity.add_user("root", ["admin"])
    with pytest.raises(Conflict, match="cannot deactivate yourself"):
        engine.identity.set_active("root", False, by=ADMIN)
    with pytest.raises(Conflict, match="roles that let you manage users"):
        engine.identity.set_roles("root", ["staff"], by=ADMIN)
    assert engine.identity.find("root").roles == {"admin"}


# the Argon2 cost --------------------------------------------------------------------------------
def test_passwords_are_stored_at_the_full_argon2_cost_and_a_cheap_hash_still_verifies(
        engine: ProcessEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine.identity.add_user("cheap", ["staff"], password=GOOD)  # the suite's minimal cost (tests/conftest.py)
    monkeypatch.delenv(HASH_COST_VARIABLE)  # as in production: the variable unset
    engine.identity.add_user("lina", ["ops_engineer"], password=GOOD)
    with engine.ctx.db.read() as s:
        stored = {name: hashed for name, hashed in s.execute(select(User.username, User.password_hash))}
    assert stored["lina"].startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert stored["cheap"].startswith("$argon2id$v=19$m=8,t=1,p=1$")
    # a hash carries its parameters: one made at another cost still signs in, and still refuses
    assert engine.identity.login("cheap", GOOD, "10.0.0.9").username == "cheap"
    assert engine.identity.login("cheap", GOOD + "x", "10.0.0.9") is None
    assert engine.identity.login("lina", GOOD, "10.0.0.9").username == "lina"
    monkeypatch.setenv(HASH_COST_VARIABLE, "cheapest")
    with pytest.raises(ConfigError, match="OPSFLOW_PASSWORD_HASH_COST must be one of default, minimal, not 'cheapest'"):
        engine.identity.set_password("lina", "Taishan-2027")
    with engine.ctx.db.read() as s:
        assert s.scalars(select(User.password_hash).where(User.username == "lina")).one() == stored["lina"]


# the command line -------------------------------------------------------------------------------
@pytest.fixture
def opsflow(database_url: str, tmp_path: Path):
    env = {**os.environ, "OPSFLOW_DATABASE_URL": database_url, "OPSFLOW_VAR_DIR": str(tmp_path / "var"),
           "OPSFLOW_PROCESSES_DIR": str(_roles_only(tmp_path)), "OPSFLOW_FORMS_DIR": str(FIXTURES / "forms")}
    env.pop("OPSFLOW_AUDIT_KEY", None)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return run_opsflow(args, env, tmp_path, stdin)  # in this process (tests/engine/command_line.py)

    return run


def test_cli_refuses_weak_passwords_naming_the_rule_and_signs_out_on_passwd(
        opsflow, database_url: str, tmp_path: Path) -> None:
    assert opsflow("init").returncode == 0
    weak = opsflow("user", "add", "ma", "--role", "staff", "--password-stdin", stdin="short1\n")
    assert (weak.returncode, weak.stderr) == (1, "error: a password needs at least 10 characters\n")
    assert opsflow("user", "add", "ma", "--role", "staff", "--password-stdin", stdin=GOOD + "\n").returncode == 0
    weak = opsflow("user", "passwd", "ma", "--password-stdin", stdin="onlyletters-here\n")
    assert (weak.returncode, weak.stderr) == (1, "error: a password needs both letters and digits\n")
    eng = ProcessEngine(make_settings(database_url, tmp_path, processes_dir=tmp_path / "processes"))
    try:
        sid = eng.identity.open_session("ma", "10.0.0.9", DAY)
        done = opsflow("user", "passwd", "ma", "--password-stdin", stdin="Taishan-2027\n")
        assert done.returncode == 0 and "1 web session(s) signed out" in done.stdout
        assert eng.identity.actor_for_session(sid) is None
        sid = eng.identity.open_session("ma", "10.0.0.9", DAY)
        token = eng.identity.create_token("ma")
        done = opsflow("user", "deactivate", "ma")
        assert done.stdout == "user ma deactivated: signed out everywhere; 1 token(s) revoked\n"
        assert eng.identity.actor_for_session(sid) is None and eng.identity.actor_for_token(token) is None
        assert opsflow("user", "activate", "ma").stdout == "user ma activated\n"
    finally:
        eng.close()
    usage = opsflow("user", "passwd", "ma")
    assert usage.returncode == 2 and "--password-stdin" in usage.stderr


def test_cli_init_demo_says_the_policy_is_skipped_and_leaves_existing_users(opsflow) -> None:
    first = opsflow("init", "--demo")
    assert first.returncode == 0
    assert "demo password 'opsflow', which the password policy would refuse (--demo only" in first.stdout
    again = opsflow("init", "--demo")
    assert again.returncode == 0 and "demo users added" not in again.stdout
    assert "demo users not added: this database has users already, left as they are" in again.stdout


def test_a_bad_login_setting_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = run_opsflow(["tick"], {**os.environ, "OPSFLOW_LOGIN_MAX_FAILURES": "many",
                                    "OPSFLOW_VAR_DIR": str(tmp_path / "var")}, tmp_path)
    assert result.returncode == 1
    assert result.stderr == "error: OPSFLOW_LOGIN_MAX_FAILURES must be a whole number from 1 to 1000, not 'many'\n"


# revision 0007 ----------------------------------------------------------------------------------
def test_revision_0007_adds_the_tables_to_a_database_with_users_and_downgrades(
        database_url: str, tmp_path: Path) -> None:
    eng = ProcessEngine(make_settings(database_url, tmp_path))
    try:
        upgrade(eng.ctx.db.engine, "0006", audit_anchor=eng.audit.anchor)
        eng.identity.seed_roles(ROOT / "processes" / "roles.json")
        eng.identity.add_user("lina", ["ops_engineer"], password=GOOD)
        assert not {"login_attempt", "web_session"} & set(inspect(eng.ctx.db.engine).get_table_names())
        eng.migrate()
        assert eng.identity.login("lina", GOOD, "10.0.0.9").username == "lina"
        sid = eng.identity.open_session("lina", "10.0.0.9", DAY)
        assert eng.identity.actor_for_session(sid).username == "lina"
        upgrade_down(eng, "0006")
        assert not {"login_attempt", "web_session"} & set(inspect(eng.ctx.db.engine).get_table_names())
        eng.migrate()
        with eng.ctx.db.transaction() as s:
            assert s.scalars(select(User.username)).all() == ["lina"]
        assert eng.identity.actor_for_session(sid) is None  # sessions do not survive a downgrade
    finally:
        eng.close()


def upgrade_down(eng: ProcessEngine, revision: str) -> None:
    from alembic import command

    from engine.storage.migrations import config

    command.downgrade(config(eng.ctx.db.engine), revision)
    eng.ctx.db.engine.dispose()  # SQLite caches the schema per connection


def _roles_only(tmp_path: Path) -> Path:
    processes = tmp_path / "processes"
    processes.mkdir(exist_ok=True)
    shutil.copy(ROOT / "processes" / "roles.json", processes)
    if (ROOT / "processes" / "access.json").exists():
        shutil.copy(ROOT / "processes" / "access.json", processes)
    # init --demo seeds the demo register, whose items name markets of the trading calendar
    shutil.copytree(ROOT / "processes" / "calendar", processes / "calendar", dirs_exist_ok=True)
    return processes


def _with(settings: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)  # type: ignore[arg-type]
