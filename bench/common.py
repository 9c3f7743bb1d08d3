"""What every part of the benchmark shares: fresh databases, percentiles, the machine, the revision."""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
RESULTS_DIR = ROOT / "bench" / "results"


# numbers ------------------------------------------------------------------------------------------
def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    """Median, p95, p99 and max in ms of a list of durations in seconds."""
    if not seconds:
        return {"n": 0}
    return {"n": len(seconds), "median": ms(statistics.median(seconds)), "p95": ms(percentile(seconds, 95)),
            "p99": ms(percentile(seconds, 99)), "max": ms(max(seconds))}


# databases ----------------------------------------------------------------------------------------
def postgres_url() -> str | None:
    """OPSFLOW_BENCH_DATABASE_URL, else OPSFLOW_TEST_DATABASE_URL (the server's database: a schema of
    its own is created per part and dropped afterwards; nothing is written to the named schema)."""
    return os.environ.get("OPSFLOW_BENCH_DATABASE_URL") or os.environ.get("OPSFLOW_TEST_DATABASE_URL")


def pg_schema_url(url: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


def postgres_problem(url: str) -> str | None:
    """Why PostgreSQL at `url` cannot be used (None: it answers)."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(pg_schema_url(url, "public"), connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 (any failure: report it and run on SQLite)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


@contextmanager
def sqlite_database(prefix: str = "opsflow-bench-") -> Iterator[tuple[str, Path]]:
    """A fresh SQLite file in a temporary directory (removed afterwards) and that directory."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}", Path(tmp)


@contextmanager
def postgres_database(url: str, prefix: str = "opsflow-bench-") -> Iterator[tuple[str, Path]]:
    """A fresh schema (as tests/conftest.py makes), dropped afterwards, and a temporary directory."""
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_schema_url(url, "public"))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield pg_schema_url(url, schema), Path(tmp)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def fresh_database(kind: str, prefix: str = "opsflow-bench-") -> Iterator[tuple[str, Path]]:
    """`kind` "sqlite" or "postgresql" (needs postgres_url())."""
    if kind == "sqlite":
        with sqlite_database(prefix) as pair:
            yield pair
        return
    url = postgres_url()
    if not url:
        raise RuntimeError("PostgreSQL asked for but neither OPSFLOW_BENCH_DATABASE_URL nor "
                           "OPSFLOW_TEST_DATABASE_URL is set")
    with postgres_database(url, prefix) as pair:
        yield pair


def describe_database(engine: Any) -> str:
    """`engine` is a ProcessEngine: the database's kind, version and settings in one line."""
    from sqlalchemy import text

    db = engine.ctx.db
    with db.engine.connect() as conn:
        if db.is_sqlite:
            version = conn.execute(text("select sqlite_version()")).scalar()
            mode = conn.execute(text("pragma journal_mode")).scalar()
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                conn.execute(text("pragma synchronous")).scalar(), "?")
            return f"SQLite {version} file (journal_mode={mode}, synchronous={sync})"
        version = conn.execute(text("show server_version")).scalar()
        host = db.engine.url.host or "local socket"
        return f"PostgreSQL {version} ({host})"


def analyze(engine: Any) -> None:
    """PostgreSQL: fresh planner statistics after a bulk load, as autovacuum would gather in service
    (a table of 100,000 new rows is analysed within a minute or so); SQLite: nothing."""
    from sqlalchemy import text

    if not engine.ctx.db.is_sqlite:
        with engine.ctx.db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def state_bytes(engine: Any, case_id: int) -> tuple[str, int]:
    """A case's status and the UTF-8 size of its stored state, as read back from the database."""
    from sqlalchemy import select

    from engine.storage.models import ProcessInstance

    with engine.ctx.db.transaction() as s:
        status, state = s.execute(select(ProcessInstance.status, ProcessInstance.state)
                                  .where(ProcessInstance.id == case_id)).one()
    return status, len(state.encode("utf-8"))


# the machine and the code -------------------------------------------------------------------------
def code_revision() -> str:
    """The commit the figures belong to; with uncommitted changes to the code under test (engine/,
    webui/, processes/, forms/), "+dirty." and a short hash of those changes (diff and new files)."""
    paths = ["engine", "webui", "processes", "forms"]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30,
                              check=True).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        if not git("status", "--porcelain", "--", *paths).strip():
            return head
        digest = hashlib.sha1(git("diff", "HEAD", "--", *paths).encode())
        for name in sorted(git("ls-files", "--others", "--exclude-standard", "--", *paths).split()):
            digest.update(name.encode())
            try:
                digest.update((ROOT / name).read_bytes())
            except OSError:
                pass
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty.{digest.hexdigest()[:8]}"


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_mb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = round(int(line.split()[1]) / 1024)
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count() or 0,
        "cpu": cpu,
        "memory_mb": memory_mb,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "spiffworkflow_version": metadata.version("SpiffWorkflow"),
        "sqlalchemy_version": metadata.version("SQLAlchemy"),
        # Other work on the machine skews every figure; a 1-minute load near 0 is a clean run.
        "load_average_1m_at_start": load_average(),
    }


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None

