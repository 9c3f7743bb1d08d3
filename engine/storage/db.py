"""Database engine and units of work.

Every write runs in one transaction that takes the write lock up front: `BEGIN IMMEDIATE` on
SQLite (WAL mode, so readers are not blocked), row locks (`FOR UPDATE`) on PostgreSQL.

Durable by default (issue 14): SQLite syncs the WAL on every commit (`synchronous=FULL`; with
NORMAL a filesystem fault lost completions the API had answered 200), and PostgreSQL sessions have
connect, statement and idle-in-transaction timeouts, so a network stall fails fast instead of
committing after the client gave up. A database that cannot be reached or written raises
`Unavailable` (HTTP 503 with Retry-After), never a bare driver error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import Unavailable


@dataclass(frozen=True)
class Timeouts:
    """Seconds; 0 turns a limit off (OPSFLOW_DB_CONNECT_TIMEOUT, _STATEMENT_TIMEOUT, _IDLE_TIMEOUT).

    `statement` is also how long a SQLite write waits for the write lock (its busy timeout)."""

    connect: int = 5
    statement: int = 30
    idle: int = 60


def make_engine(url: str, timeouts: Timeouts = Timeouts()) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        busy_ms = (timeouts.statement or 30) * 1000  # SQLite's 0 would mean "never wait"
        engine = create_engine(url, connect_args={"timeout": busy_ms / 1000, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged commit survives a power or disk fault
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # Writers take the write lock up front; a read (Database.read) takes none and, in WAL
            # mode, neither waits for writers nor holds them up.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("opsflow_read") else "BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "postgresql":
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    # Server-side limits ride on libpq's `options`; the URL's own options come after ours, so they win.
    options = f"-c statement_timeout={timeouts.statement * 1000} " \
              f"-c idle_in_transaction_session_timeout={timeouts.idle * 1000}"
    if own := parsed.query.get("options"):
        options += " " + (own if isinstance(own, str) else " ".join(own))
        parsed = parsed.difference_update_query(["options"])
    connect_args: dict[str, Any] = {"options": options}
    if timeouts.connect:
        connect_args["connect_timeout"] = timeouts.connect
    # The pool waits no longer for a free connection than a statement may run.
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args=connect_args,
                         pool_timeout=timeouts.statement or 30)


# SQLite's messages for a database that is there but cannot be used right now (the rest of its
# OperationalErrors, "no such table" or a syntax error, are bugs and stay 500s).
_SQLITE_UNAVAILABLE = {"locked": "locked", "busy": "locked", "unable to open": "unreachable",
                       "disk i/o": "i/o error", "readonly": "read-only", "read-only": "read-only",
                       "disk is full": "disk full"}


def unavailable(error: BaseException) -> Unavailable | None:
    """The `Unavailable` a driver error means (unreachable, locked, timed out, read-only), or None for a bug."""
    if isinstance(error, sa_exc.TimeoutError):  # no free connection in the pool
        return Unavailable("busy")
    if not isinstance(error, DBAPIError):
        return None
    orig = error.orig
    reason = None
    if type(orig).__module__.startswith("sqlite3"):
        if isinstance(error, sa_exc.OperationalError):
            message = str(orig).lower()
            reason = next((r for key, r in _SQLITE_UNAVAILABLE.items() if key in message), None)
    else:
        sqlstate = getattr(orig, "sqlstate", None) or ""
        reason = _PG_UNAVAILABLE.get(sqlstate) or _PG_UNAVAILABLE.get(sqlstate[:2])
        if reason is None and isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
            reason = "unreachable"  # psycopg's connection failures carry no SQLSTATE
    if reason is None and error.connection_invalidated:
        reason = "unreachable"
    return Unavailable(reason) if reason else None


# PostgreSQL's SQLSTATEs (or their class) for a server that cannot serve right now.
_PG_UNAVAILABLE = {"08": "unreachable", "57P01": "unreachable", "57P02": "unreachable", "57P03": "unreachable",
                   "25P03": "idle timeout", "57014": "timeout", "55P03": "locked", "40001": "locked",
                   "40P01": "locked", "25006": "read-only", "53": "disk full or too many connections"}


_DRIVER_ERRORS = (DBAPIError, sa_exc.TimeoutError)


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


class Database:
    def __init__(self, url: str, timeouts: Timeouts = Timeouts()) -> None:
        self.url = url
        self.timeouts = timeouts
        self.engine = make_engine(url, timeouts)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL reads run in autocommit (no BEGIN/COMMIT round trips); SQLite's begin a deferred
        # transaction. Either way a read sees committed data and locks nothing.
        self.reader = (self.engine.execution_options(opsflow_read=True) if self.is_sqlite
                       else self.engine.execution_options(isolation_level="AUTOCOMMIT"))
        self._reads = sessionmaker(self.reader, expire_on_commit=False)
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
        except _DRIVER_ERRORS as error:
            if (down := unavailable(error)) is None:
                raise
            raise down from error
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
        except _DRIVER_ERRORS as error:
            if (down := unavailable(error)) is None:
                raise
            raise down from error
        finally:
            session.close()

    @contextmanager
    def maintenance(self) -> Iterator[Engine]:
        """An engine without the statement and idle limits, for schema migrations (`opsflow init`), which
        may rewrite a large table for longer than a request may take. SQLite has no such limits."""
        if self.is_sqlite:
            yield self.engine
            return
        unbounded = make_engine(self.url, Timeouts(self.timeouts.connect, 0, 0))
        try:
            yield unbounded
        finally:
            unbounded.dispose()

    def check_write(self, wait: float = 2.0) -> None:
        """Commit one real write, waiting at most `wait` seconds for locks (`/readyz`): raises `Unavailable`
        when a write cannot commit (locked, read-only, unreachable, disk full).

        The write re-stores Alembic's version row as it is: no table of its own, and a migration in
        progress (which holds that row) reads as not ready, which it is."""
        update = "UPDATE alembic_version SET version_num = version_num"
        try:
            with self.engine.connect() as connection:
                if self.is_sqlite:
                    # on the driver's connection: through SQLAlchemy a PRAGMA would begin a transaction
                    dbapi: Any = connection.connection.dbapi_connection
                    dbapi.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
                    try:
                        with connection.begin():  # BEGIN IMMEDIATE: the write lock itself
                            connection.exec_driver_sql(update)
                    finally:
                        dbapi.execute(f"PRAGMA busy_timeout={(self.timeouts.statement or 30) * 1000}")
                else:
                    with connection.begin():
                        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(wait * 1000)}")
                        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(wait * 2000)}")
                        connection.exec_driver_sql(update)
        except _DRIVER_ERRORS as error:
            if (down := unavailable(error)) is None:
                raise
            raise down from error

    def run(self, session: Session, sql: Sql, params: Params = ()) -> Result:
        return run(session, sql, params)

    def time_in(self, value: datetime | None) -> Any:
        """An aware datetime as the column stores it (UTC; naive text on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are never stored")
        value = value.astimezone(UTC)
        # SQLAlchemy's storage format for DateTime on SQLite, so rows written here read back through the
        # ORM; isoformat, not strftime: glibc's %Y writes year 405 as "405", which no reader parses back
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds") if self.is_sqlite else value

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
