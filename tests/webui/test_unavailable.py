"""A database that cannot serve answers 503 with Retry-After (issue 14), never a generic 500, and
`/readyz` fails while a write cannot commit. Real databases only: a PostgreSQL port nobody listens
on, and SQLite's write lock held by another connection."""

from __future__ import annotations

import re
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from engine import ProcessEngine
from tests.conftest import ROOT, make_settings
from webui import create_app

PASSWORD = "Kunlun-2026-pw"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _csrf(client) -> str:  # type: ignore[no-untyped-def]
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)


def _unavailable(response, reason: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.data[:300]
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["code"] == "unavailable"
    assert response.get_json()["error"]["details"] == {"reason": reason, "retry_after": 5}


def test_an_unreachable_database_answers_503_with_retry_after(tmp_path: Path) -> None:
    eng = ProcessEngine(make_settings(f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/opsflow", tmp_path))
    try:
        client = create_app(eng, {"TESTING": True}).test_client()
        _unavailable(client.post("/api/v1/auth/token", json={"username": "li", "password": PASSWORD}), "unreachable")
        _unavailable(client.get("/api/v1/tasks", headers={"Authorization": "Bearer abc"}), "unreachable")
        page = client.post("/login", data={"username": "li", "password": PASSWORD, "csrf_token": _csrf(client)})
        assert page.status_code == 503 and page.headers["Retry-After"] == "5"
        assert "the database is unavailable (unreachable)" in page.text
        assert "<title>503 暂时无法服务" in page.text  # the page says what kind of failure, in Chinese
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["status"] == "unavailable"
        assert client.get("/healthz").status_code == 200  # the process itself is alive
    finally:
        eng.close()


@pytest.fixture
def locked_app(tmp_path: Path) -> Iterator[tuple[ProcessEngine, object, Path]]:
    """A migrated SQLite engine that waits 1 s for the write lock (OPSFLOW_DB_STATEMENT_TIMEOUT)."""
    path = tmp_path / "opsflow.db"
    settings = make_settings(f"sqlite:///{path}", tmp_path)
    eng = ProcessEngine(type(settings)(**{**settings.__dict__, "db_statement_timeout": 1}))
    eng.migrate()
    eng.identity.seed_roles(ROOT / "processes" / "roles.json")
    eng.identity.add_user("li", ["ops_manager"], password=PASSWORD)
    yield eng, create_app(eng, {"TESTING": True}).test_client(), path
    eng.close()


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


def test_a_held_write_lock_answers_503_and_reads_go_on(locked_app) -> None:  # type: ignore[no-untyped-def]
    eng, client, path = locked_app
    token = client.post("/api/v1/auth/token", json={"username": "li", "password": PASSWORD}).get_json()["token"]
    other = _hold_write_lock(path)
    try:
        _unavailable(client.post("/api/v1/auth/token", json={"username": "li", "password": PASSWORD}), "locked")
        # readers do not need the write lock (WAL): the inbox is still served
        assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        other.rollback()
        other.close()
    assert client.post("/api/v1/auth/token", json={"username": "li", "password": PASSWORD}).status_code == 201


def test_readyz_fails_while_a_write_cannot_commit(locked_app) -> None:  # type: ignore[no-untyped-def]
    _eng, client, path = locked_app
    assert client.get("/readyz").status_code == 200
    other = _hold_write_lock(path)
    try:
        ready = client.get("/readyz")
        assert (ready.status_code, ready.get_json()) == (
            503, {"status": "unavailable", "database": "cannot commit a write: locked"})
        assert ready.headers["Retry-After"] == "5"
    finally:
        other.rollback()
        other.close()
    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_json()) == (200, {"status": "ok", "database": "ok"})


def test_readyz_fails_while_postgresql_holds_the_write(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (SQLite: the test above)")
    eng = ProcessEngine(make_settings(database_url, tmp_path))
    eng.migrate()
    other = create_engine(database_url)
    try:
        client = create_app(eng, {"TESTING": True}).test_client()
        with other.begin() as connection:
            connection.exec_driver_sql("LOCK TABLE alembic_version IN EXCLUSIVE MODE")
            ready = client.get("/readyz")
            assert (ready.status_code, ready.get_json()) == (
                503, {"status": "unavailable", "database": "cannot commit a write: locked"})
        assert client.get("/readyz").status_code == 200
    finally:
        other.dispose()
        eng.close()


def test_the_api_document_names_503_for_every_call(locked_app) -> None:  # type: ignore[no-untyped-def]
    _eng, client, _path = locked_app
    doc = client.get("/api/v1/openapi.json").get_json()
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            assert "Retry-After" in operation["responses"]["503"]["description"], (method, path)
