"""Shared fixtures: a real engine on SQLite, and on PostgreSQL when OPSFLOW_TEST_DATABASE_URL is set.

Each PostgreSQL test gets a schema of its own, so tests run in parallel without seeing each other.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine import ProcessEngine, Settings
from engine.people.identity import Actor
from engine.people.passwords import HASH_COST_VARIABLE
from engine.spiff.parsing import SourceFile

# Fixture users are hashed at Argon2's cheapest cost: at the production cost (~0.2 s a hash) they took
# minutes of the suite. Subprocesses the tests start inherit it. tests/engine/test_identity_lifecycle.py
# proves the production default. (engine/people/passwords.py)
os.environ[HASH_COST_VARIABLE] = "minimal"

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PG_URL = os.environ.get("OPSFLOW_TEST_DATABASE_URL")

DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="OPSFLOW_TEST_DATABASE_URL not set"))]


class Clock:
    """A controllable clock: tests move time instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def _pg_schema_url(schema: str) -> str:
    url = make_url(PG_URL)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return str(url.update_query_dict({"options": f"-csearch_path={schema}"})
               .render_as_string(hide_password=False))


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'opsflow.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_pg_schema_url("public"))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def make_settings(database_url: str, tmp_path: Path, forms_dir: Path | None = None,
                  processes_dir: Path | None = None) -> Settings:
    return Settings(database_url=database_url, processes_dir=processes_dir or ROOT / "processes",
                    forms_dir=forms_dir or FIXTURES / "forms", timezone="Asia/Shanghai",
                    var_dir=tmp_path / "var")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def copy_database(template: Path, database_url: str, tmp_path: Path) -> bool:
    """On SQLite, put a template's database file and its var/ (the audit key its chain is signed with)
    where this test's `database_url` and `make_settings` point; False on PostgreSQL (nothing done)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return False
    shutil.copyfile(template / "opsflow.db", url.database)
    shutil.copytree(template / "var", tmp_path / "var", dirs_exist_ok=True)
    return True


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database and its var/, made once per test process: copying it takes ~5 ms,
    the migrations ~0.3 s a test. (Its one event, audit.keyed, is dated by the real clock.)"""
    where = tmp_path_factory.mktemp("migrated")
    eng = ProcessEngine(make_settings(f"sqlite:///{where / 'opsflow.db'}", where))
    try:
        eng.migrate()
    finally:
        eng.close()
    return where


@pytest.fixture
def engine(database_url: str, tmp_path: Path, clock: Clock, migrated_sqlite: Path) -> Iterator[ProcessEngine]:
    """A migrated engine with the roles seeded and no processes deployed."""
    copied = copy_database(migrated_sqlite, database_url, tmp_path)
    eng = ProcessEngine(make_settings(database_url, tmp_path), clock=clock)
    if not copied:
        eng.migrate()
    eng.identity.seed_roles(ROOT / "processes" / "roles.json")
    yield eng
    eng.close()


def deploy_fixture(engine: ProcessEngine, *names: str, actor: str = "owner") -> None:
    engine.repository.deploy([SourceFile(n, (FIXTURES / n).read_bytes()) for n in names], actor)


@pytest.fixture
def people(engine: ProcessEngine) -> dict[str, Actor]:
    """A small cast: a requester, two managers, an engineer pair, a supervisor."""
    cast = {
        "zhang": ["staff"], "li": ["ops_manager"], "zhou": ["ops_manager"],
        "wang": ["ops_engineer"], "chen": ["ops_engineer"], "du": ["supervisor"],
    }
    return {name: engine.identity.add_user(name, roles, password="Kunlun-2026-pw")
            for name, roles in cast.items()}
