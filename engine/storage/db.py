"""Database engine and units of work.

Every write runs in one transaction that takes the write lock up front: `BEGIN IMMEDIATE` on
SQLite (WAL mode, so readers are not blocked), row locks (`FOR UPDATE`) on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # Writers take the write lock up front; a read (Database.read) takes none and, in WAL
            # mode, neither waits for writers nor holds them up.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("opsflow_read") else "BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Sql:
    """A hot-path statement, written once in SQLite's `:name` style and translated for psycopg.

    The actions users repeat all day (complete, start, the audit append) send these straight to the
    driver: building, caching and coercing an ORM or Core statement costs several times the
    statement itself (bench/README.md has the profile).
    """

    def __init__(self, text: str, lock: str = "", postgresql: str | None = None) -> None:
        """`lock`: PostgreSQL's row-lock clause (`FOR UPDATE ...`); SQLite's BEGIN IMMEDIATE already locks.
        `postgresql`: the statement PostgreSQL runs instead, when it can do more in one round trip."""
        self.sqlite = " ".join(text.split())
        self.pyformat = _pyformat(" ".join((postgresql or text).split()))
        if lock:
            self.pyformat += " " + lock


def _pyformat(text: str) -> str:
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", text.replace("%", "%%"))


Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]


class Result(Protocol):
    """What `run` returns: `Rows` over the driver's cursor, or SQLAlchemy's CursorResult (rows of any width)."""

    @property
    def rowcount(self) -> int: ...

    def first(self) -> Any: ...

    def all(self) -> Sequence[Any]: ...

    def scalar_one(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class Rows:
    """The few result methods the hot path uses, over a DBAPI cursor."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def first(self) -> Any:
        return self._cursor.fetchone()

    def all(self) -> list[Any]:
        return self._cursor.fetchall()

    def scalar_one(self) -> Any:
        row = self._cursor.fetchone()
        if row is None:
            raise LookupError("no row")
        return row[0]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor.fetchall())


def run(session: Session, sql: Sql, params: Params = ()) -> Result:
    """Execute a hot-path statement on the session's connection (one row of params, or many).

    Straight to the driver's cursor, half the cost of `exec_driver_sql`; when someone listens
    for statements (the bench counts them) it goes through SQLAlchemy so they see it.
    """
    connection = session.connection()
    text = sql.sqlite if connection.dialect.name == "sqlite" else sql.pyformat
    if connection.dispatch.before_cursor_execute:
        return connection.exec_driver_sql(text, params)
    dbapi_connection = connection.connection.dbapi_connection
    cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if isinstance(params, Mapping) or not params:
            cursor.execute(text, params or {})
        else:
            cursor.executemany(text, params)
    except connection.dialect.loaded_dbapi.Error as exc:
        # Raised as SQLAlchemy would (IntegrityError, OperationalError...), and a lost connection is
        # dropped from the pool, exactly as for any other statement.
        lost = connection.dialect.is_disconnect(exc, dbapi_connection, cursor)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(text, params, exc, connection.dialect.loaded_dbapi.Error,
                                  connection_invalidated=lost, dialect=connection.dialect) from exc
    return Rows(cursor)


# SQLAlchemy's storage format for DateTime on SQLite, so rows written here read back through the ORM.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL reads run in autocommit (no BEGIN/COMMIT round trips); SQLite's begin a deferred
        # transaction. Either way a read sees committed data and locks nothing.
        reader = (self.engine.execution_options(opsflow_read=True) if self.is_sqlite
                  else self.engine.execution_options(isolation_level="AUTOCOMMIT"))
        self._reads = sessionmaker(reader, expire_on_commit=False)
        self._current: ContextVar[Session | None] = ContextVar(f"opsflow_session_{id(self)}", default=None)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back everything on any error.

        Re-entrant: a service called inside another's transaction joins it, so one request is
        one transaction (and SQLite never waits on its own write lock).
        """
        current = self._current.get()
        if current is not None:
            yield current
            return
        session = self._sessions()
        token = self._current.set(session)
        try:
            with session.begin():
                yield session
        finally:
            self._current.reset(token)
            session.close()
        for callback in session.info.pop("after_commit", []):
            callback()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work, for what runs on every request (token check, inbox lists).

        Inside a transaction it joins it (and sees its uncommitted writes).
        """
        current = self._current.get()
        if current is not None:
            yield current
            return
        session = self._reads()
        try:
            yield session
        finally:
            session.close()

    def run(self, session: Session, sql: Sql, params: Params = ()) -> Result:
        return run(session, sql, params)

    def time_in(self, value: datetime | None) -> Any:
        """An aware datetime as the column stores it (UTC; naive text on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are never stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None).strftime(_SQLITE_TIME) if self.is_sqlite else value

    @staticmethod
    def time_out(value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @staticmethod
    def json_in(value: Any) -> str:
        return json.dumps(value)

    def dispose(self) -> None:
        self.engine.dispose()
