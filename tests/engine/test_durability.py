"""Durable by default (issue 14): SQLite syncs every commit, PostgreSQL sessions carry connect,
statement and idle-in-transaction timeouts from the settings, and a database that cannot serve
raises `Unavailable` while a bug stays a bug."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from engine import ProcessEngine, Settings
from engine.config import ConfigError
from engine.errors import Unavailable


def _engine(database_url: str, tmp_path: Path, **env: str) -> ProcessEngine:
    return ProcessEngine(Settings.from_env(OPSFLOW_DATABASE_URL=database_url, OPSFLOW_VAR_DIR=str(tmp_path / "var"),
                                           **env))


def test_sqlite_syncs_every_commit_and_waits_the_statement_timeout_for_the_lock(tmp_path: Path) -> None:
    eng = _engine(f"sqlite:///{tmp_path / 'opsflow.db'}", tmp_path, OPSFLOW_DB_STATEMENT_TIMEOUT="7")
    try:
        with eng.ctx.db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7000
    finally:
        eng.close()


def test_postgresql_sessions_carry_the_three_timeouts(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    eng = _engine(database_url, tmp_path, OPSFLOW_DB_CONNECT_TIMEOUT="7", OPSFLOW_DB_STATEMENT_TIMEOUT="11",
                  OPSFLOW_DB_IDLE_TIMEOUT="13")
    try:
        with eng.ctx.db.engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "11s"
            assert connection.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == "13s"
            dbapi = connection.connection.dbapi_connection
            assert dbapi.info.get_parameters()["connect_timeout"] == "7"  # type: ignore[union-attr]
            # the URL's own options (the test schema's search_path) are kept beside ours
            assert connection.exec_driver_sql("SHOW search_path").scalar().startswith("t_")
    finally:
        eng.close()


def test_a_statement_over_the_timeout_is_cancelled_as_unavailable(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    eng = _engine(database_url, tmp_path, OPSFLOW_DB_STATEMENT_TIMEOUT="1")
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised, eng.ctx.db.transaction() as session:
            session.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 4
        assert raised.value.reason == "timeout" and raised.value.retry_after == 5
    finally:
        eng.close()


def test_a_transaction_left_idle_is_ended_by_the_server(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    eng = _engine(database_url, tmp_path, OPSFLOW_DB_IDLE_TIMEOUT="1")
    try:
        with pytest.raises(Unavailable), eng.ctx.db.transaction() as session:
            session.execute(text("SELECT 1"))
            time.sleep(2.5)  # the server ends the session after 1 s idle in the transaction
            session.execute(text("SELECT 1"))
        with eng.ctx.db.transaction() as session:  # the pool hands out a live connection again
            assert session.execute(text("SELECT 1")).scalar() == 1
    finally:
        eng.close()


def test_a_bug_in_a_statement_is_not_reported_as_unavailable(database_url: str, tmp_path: Path) -> None:
    eng = _engine(database_url, tmp_path)
    try:
        with pytest.raises(Exception) as raised, eng.ctx.db.transaction() as session:
            session.execute(text("SELECT * FROM no_such_table"))
        assert not isinstance(raised.value, Unavailable)
        if database_url.startswith("sqlite"):  # SQLite calls this an OperationalError too
            assert isinstance(raised.value, OperationalError)
    finally:
        eng.close()


@pytest.mark.parametrize("name", ["OPSFLOW_DB_CONNECT_TIMEOUT", "OPSFLOW_DB_STATEMENT_TIMEOUT",
                                  "OPSFLOW_DB_IDLE_TIMEOUT"])
def test_a_timeout_that_is_not_whole_seconds_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(**{name: "5s"})
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(**{name: "-1"})
    assert getattr(Settings.from_env(**{name: "0"}), name.removeprefix("OPSFLOW_").lower()) == 0


def test_migrations_run_without_the_statement_timeout(database_url: str, tmp_path: Path) -> None:
    """A request gets 1 s here; `opsflow init` upgrading a large table must not be cancelled by that."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    eng = _engine(database_url, tmp_path, OPSFLOW_DB_STATEMENT_TIMEOUT="1", OPSFLOW_DB_IDLE_TIMEOUT="1")
    try:
        with eng.ctx.db.maintenance() as unbounded, unbounded.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
            connection.exec_driver_sql("SELECT pg_sleep(1.5)")  # longer than a request may take: not cancelled
        eng.migrate()
        assert eng.schema_is_current()
    finally:
        eng.close()
