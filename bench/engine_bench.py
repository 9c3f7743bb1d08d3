"""Raw SpiffWorkflow in memory against the OpsFlow engine on a database, in one run.

(a) raw: SpiffBpmnParser + BpmnWorkflow, default script engine, no serialisation, no database;
(b) the engine on a fresh SQLite file in a temporary directory;
(c) the engine on PostgreSQL, in a schema of its own, when OPSFLOW_BENCH_DATABASE_URL or
    OPSFLOW_TEST_DATABASE_URL is set.

Every side runs the same BPMN with the same data to completion. Apart from that, one change case
(processes/change.bpmn, the library's biggest everyday process) is driven to its end on SQLite to
see how large a running case's stored state grows. `run()` returns the figures as a dict;
`bench.__main__` prints them and writes bench/results/latest.json.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# The figures every run must produce (times in ms); the smoke test checks each is a positive number.
REQUIRED_KEYS = (
    "raw_spiff_instances_per_s",
    "engine_instances_per_s",
    "engine_vs_raw_ratio",
    "complete_task_ms_median",
    "complete_task_ms_p95",
    "start_case_ms_median",
    "state_bytes_change_case",
)


# sizes --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    raw_instances: int = 2000     # raw SpiffWorkflow runs, timed together
    engine_instances: int = 400   # engine cases per database, each started and completed
    warmup: int = 20              # untimed cases first (spec cache, compiled snippets, SQL caches)
    profile_instances: int = 200  # cases whose complete() calls the profiler watches

    @classmethod
    def quick(cls) -> Sizes:
        return cls(raw_instances=20, engine_instances=5, warmup=2, profile_instances=3)

    @classmethod
    def from_env(cls, quick: bool = False) -> Sizes:
        """OPSFLOW_BENCH_RAW_N / _ENGINE_N / _WARMUP / _PROFILE_N override the defaults."""
        base = cls.quick() if quick else cls()

        def pick(name: str, default: int) -> int:
            value = os.environ.get(f"OPSFLOW_BENCH_{name}")
            return int(value) if value else default

        return cls(raw_instances=pick("RAW_N", base.raw_instances),
                   engine_instances=pick("ENGINE_N", base.engine_instances),
                   warmup=pick("WARMUP", base.warmup),
                   profile_instances=pick("PROFILE_N", base.profile_instances))


# the scenario -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """A BPMN file, its forms, and the data and performer of each user task."""

    bpmn: Path
    forms_dir: Path
    process_id: str
    start_data: dict[str, Any]
    task_data: dict[str, dict[str, Any]]          # bpmn id -> data the form submits
    users: dict[str, list[str]]                   # username -> roles
    starter: str
    performers: dict[str, str] = field(default_factory=dict)  # bpmn id -> username


# The largest BPMN in the repository today (processes/ holds no BPMN yet): a two-lane access
# request, staff fills the request (assigned to the starter), an ops manager approves it.
ACCESS_REQUEST = Scenario(
    bpmn=FIXTURES / "two_lanes.bpmn",
    forms_dir=FIXTURES / "forms",
    process_id="access_request",
    start_data={"title": "开通清算系统只读权限"},
    task_data={
        "request": {"title": "开通清算系统只读权限", "system": "清算",
                    "reason": "季度对账需要查询清算结果", "days": 30},
        "approve": {"decision": "approve", "comment": "同意, 期满自动回收"},
    },
    users={"bench_requester": ["staff"], "bench_manager": ["ops_manager"]},
    starter="bench_requester",
    performers={"request": "bench_requester", "approve": "bench_manager"},
)


# helpers ------------------------------------------------------------------------------------------
def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _call(_label: str, call: Callable[[], Any]) -> Any:
    return call()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# (a) raw SpiffWorkflow ----------------------------------------------------------------------------
def run_raw(scenario: Scenario, n: int, warmup: int) -> dict[str, Any]:
    """Parse once, then run n instances to completion in memory with the default script engine."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
    from SpiffWorkflow.util.task import TaskState

    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(scenario.bpmn))
    spec = parser.get_spec(scenario.process_id)
    subprocess_specs = parser.get_subprocess_specs(scenario.process_id)

    def one() -> int:
        workflow = BpmnWorkflow(spec, subprocess_specs)
        workflow.task_tree.data.update(scenario.start_data)
        workflow.do_engine_steps()
        completed = 0
        while not workflow.completed:
            ready = workflow.get_tasks(state=TaskState.READY, manual=True)
            if not ready:
                raise RuntimeError("raw workflow stalled before completion")
            for task in ready:
                task.set_data(**scenario.task_data[task.task_spec.bpmn_id])
                task.run()
                completed += 1
            workflow.do_engine_steps()
        return completed

    for _ in range(warmup):
        one()
    tasks = 0
    cpu_started, started = time.thread_time(), time.perf_counter()
    for _ in range(n):
        tasks += one()
    elapsed, cpu_elapsed = time.perf_counter() - started, time.thread_time() - cpu_started
    return {"instances": n, "user_tasks": tasks, "seconds": round(elapsed, 4),
            "instances_per_s": round(n / elapsed, 1), "ms_per_instance": _ms(elapsed / n),
            "cpu_ms_per_instance": _ms(cpu_elapsed / n)}


# (b)/(c) the engine -------------------------------------------------------------------------------
@contextmanager
def sqlite_database() -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="opsflow-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}", Path(tmp)


def postgres_url() -> str | None:
    return os.environ.get("OPSFLOW_BENCH_DATABASE_URL") or os.environ.get("OPSFLOW_TEST_DATABASE_URL")


def _pg_schema_url(url: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


@contextmanager
def postgres_database(url: str) -> Iterator[tuple[str, Path]]:
    """A fresh schema (like tests/conftest.py), dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_pg_schema_url(url, "public"))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        with tempfile.TemporaryDirectory(prefix="opsflow-bench-") as tmp:
            yield _pg_schema_url(url, schema), Path(tmp)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def state_bytes(engine: Any, case_id: int) -> tuple[str, int]:
    """A case's status and the UTF-8 size of its stored state, as read back from the database."""
    from sqlalchemy import select

    from engine.models import ProcessInstance

    with engine.ctx.db.transaction() as s:
        status, state = s.execute(select(ProcessInstance.status, ProcessInstance.state)
                                  .where(ProcessInstance.id == case_id)).one()
    return status, len(state.encode("utf-8"))


class EngineRig:
    """A migrated engine with roles, the scenario's users and its BPMN deployed."""

    def __init__(self, scenario: Scenario, database_url: str, tmp: Path) -> None:
        from engine import ProcessEngine, Settings
        from engine.spiff.parsing import SourceFile

        self.scenario = scenario
        settings = Settings(database_url=database_url, processes_dir=ROOT / "processes",
                            forms_dir=scenario.forms_dir, timezone="Asia/Shanghai", var_dir=tmp / "var")
        self.engine = ProcessEngine(settings)
        self.engine.migrate()
        self.engine.identity.seed_roles(ROOT / "processes" / "roles.json")
        self.actors = {name: self.engine.identity.add_user(name, roles)
                       for name, roles in scenario.users.items()}
        self.engine.repository.deploy([SourceFile(scenario.bpmn.name, scenario.bpmn.read_bytes())], "bench")

    def run_case(self, around: Callable[[str, Callable[[], Any]], Any] | None = None,
                 after_step: Callable[[int], None] | None = None) -> int:
        """Start a case, find its first task in the starter's inbox, complete every task in turn.

        `around(label, call)` wraps each engine call ("start", then each task's bpmn id) and must
        return call(); `after_step(case_id)` runs after each, outside the wrapped call.
        """
        sc, eng = self.scenario, self.engine
        wrap = around or _call
        starter = self.actors[sc.starter]
        case = wrap("start", lambda: eng.runtime.start(sc.process_id, starter, dict(sc.start_data)))
        if after_step:
            after_step(case.id)
        queue = [t for t in eng.tasks.inbox(starter, scope="all", process_id=sc.process_id)
                 if t.instance_id == case.id]
        while queue:
            task = queue.pop(0)
            actor = self.actors[sc.performers[task.bpmn_id]]
            data = dict(sc.task_data[task.bpmn_id])
            created = wrap(task.bpmn_id, lambda t=task, a=actor, d=data: eng.tasks.complete(t.id, a, d))
            if after_step:
                after_step(case.id)
            queue.extend(created)
        return case.id

    @contextmanager
    def count_statements(self) -> Iterator[list[str]]:
        """SQL statements sent to the database (first line of each) while the block runs."""
        from sqlalchemy import event

        seen: list[str] = []

        def listener(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            seen.append(statement.split("\n", 1)[0][:60])

        target = self.engine.ctx.db.engine
        event.listen(target, "before_cursor_execute", listener)
        try:
            yield seen
        finally:
            event.remove(target, "before_cursor_execute", listener)

    def state_bytes(self, case_id: int) -> tuple[str, int]:
        return state_bytes(self.engine, case_id)

    def describe_database(self) -> str:
        from sqlalchemy import text

        db = self.engine.ctx.db
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

    def close(self) -> None:
        self.engine.close()


def run_engine(scenario: Scenario, database_url: str, tmp: Path, sizes: Sizes) -> dict[str, Any]:
    rig = EngineRig(scenario, database_url, tmp)
    try:
        starts: list[float] = []
        completes: list[float] = []
        by_task: dict[str, list[float]] = {}
        # CPU time of this thread per call: what the call costs when other work shares the cores.
        start_cpu: list[float] = []
        complete_cpu: list[float] = []

        def timed(label: str, call: Callable[[], Any]) -> Any:
            c0, t0 = time.thread_time(), time.perf_counter()
            result = call()
            seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
            if label == "start":
                starts.append(seconds)
                start_cpu.append(cpu)
            else:
                completes.append(seconds)
                complete_cpu.append(cpu)
                by_task.setdefault(label, []).append(seconds)
            return result

        first_start = time.perf_counter()
        rig.run_case()  # the very first case: spec restored from the database, snippets compiled
        cold_case_s = time.perf_counter() - first_start
        for _ in range(max(0, sizes.warmup - 1)):
            rig.run_case()

        n = sizes.engine_instances
        cpu_started, started = time.thread_time(), time.perf_counter()
        for _ in range(n):
            rig.run_case(around=timed)
        elapsed, cpu_elapsed = time.perf_counter() - started, time.thread_time() - cpu_started

        # One more case, untimed: SQL statements per call, and the state size after every step.
        statements: dict[str, int] = {}
        sizes_seen: list[tuple[str, int]] = []
        with rig.count_statements() as seen:

            def counted(label: str, call: Callable[[], Any]) -> Any:
                before = len(seen)
                result = call()
                statements[label] = len(seen) - before
                return result

            rig.run_case(around=counted, after_step=lambda case_id: sizes_seen.append(rig.state_bytes(case_id)))
        running = [size for status, size in sizes_seen if status == "running"]
        return {
            "database": rig.describe_database(),
            "instances": n,
            "user_tasks": len(completes),
            "seconds": round(elapsed, 4),
            "instances_per_s": round(n / elapsed, 1),
            "ms_per_instance": _ms(elapsed / n),
            "start_case_ms_median": _ms(statistics.median(starts)),
            "start_case_ms_p95": _ms(percentile(starts, 95)),
            "complete_task_ms_median": _ms(statistics.median(completes)),
            "complete_task_ms_p95": _ms(percentile(completes, 95)),
            "complete_task_ms_max": _ms(max(completes)),
            "start_case_cpu_ms_median": _ms(statistics.median(start_cpu)),
            "complete_task_cpu_ms_median": _ms(statistics.median(complete_cpu)),
            "cpu_ms_per_instance": _ms(cpu_elapsed / n),
            "complete_task_ms_median_by_task": {k: _ms(statistics.median(v)) for k, v in by_task.items()},
            "first_case_cold_ms": _ms(cold_case_s),
            "sql_statements_per_call": statements,
            "state_bytes_running_max": max(running),
            "state_bytes_by_step": [size for _status, size in sizes_seen],
        }
    finally:
        rig.close()


# the change case's state size ---------------------------------------------------------------------
# A major change (processes/change.bpmn) on its longest happy path: request, two CAB votes, the head
# of IT, the wait for the change window (a timer), implement, review, two verifications, close. The
# data follows tests/processes/test_change.py and the demo cast of processes/demo_users.json.
CHANGE_START = "2026-11-20T18:00:00+08:00"   # a Friday evening; the window opens Saturday 10:00
CHANGE_WINDOW = ("2026-11-21T10:00:00+08:00", "2026-11-21T14:00:00+08:00")
APPROVE = {"decision": "approve", "comment": "同意"}
SUCCESS = {"result": "success"}
CHANGE_STEPS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("request", "zhangwei", {
        "title": "集中交易系统参数调整", "change_type": "major",
        "affected_systems": [{"name": "集中交易", "core": True, "markets": ["SSE", "SZSE"]}],
        "purpose": "调整会话超时参数", "window_start": CHANGE_WINDOW[0], "window_end": CHANGE_WINDOW[1],
        "plan": "1. 备份参数 2. 修改 3. 重启", "rollback_plan": "恢复备份的参数文件并重启",
        "rollback_tested": True, "implementer": "lina", "reviewer": "wangqiang",
        "business_verifier": "zhoujie",
        "test_report": {"name": "测试报告.pdf", "sha256": "a" * 64, "signed_by": "huangmin"}}),
    ("cab_review", "chenjing", APPROVE),
    ("cab_review", "yangfan", APPROVE),
    ("approve_it_head", "zhaolei", APPROVE),
    ("implement", "lina", {"steps": [{"at": "2026-11-21T10:05:00+08:00", "action": "停止服务并更新参数",
                                      "result": "完成"}], "finished_at": "2026-11-21T10:40:00+08:00"}),
    ("review", "wangqiang", SUCCESS),
    ("verify_tech", "lina", SUCCESS),
    ("verify_business", "zhoujie", SUCCESS),
    ("close", "liuyang", {"outcome": "成功", "config_items_updated": True, "config_items": ["JY-参数-会话超时"]}),
)


def change_case_state(database_url: str, tmp: Path) -> dict[str, Any]:
    """Drive a change case twice (cold, then warm) with the library deployed; state bytes after each step.

    The library is edited independently of this bench: a step the process no longer accepts ends
    the walk, and the result says where and why (`stopped_at`, `error`) instead of failing the run.
    """
    from datetime import datetime, timedelta

    from engine import ProcessEngine, Settings

    now = [datetime.fromisoformat(CHANGE_START)]
    settings = Settings(database_url=database_url, processes_dir=ROOT / "processes", forms_dir=ROOT / "forms",
                        timezone="Asia/Shanghai", var_dir=tmp / "var")
    eng = ProcessEngine(settings, clock=lambda: now[0])
    steps: list[dict[str, Any]] = []
    result: dict[str, Any] = {"process": "processes/change.bpmn", "steps": steps}
    try:
        eng.migrate()
        eng.identity.seed_roles(ROOT / "processes" / "roles.json")
        eng.repository.deploy_directory(ROOT / "processes", "bench")
        for user in json.loads((ROOT / "processes" / "demo_users.json").read_text(encoding="utf-8")):
            eng.identity.add_user(user["username"], user["roles"], user["display_name"])
        starter = eng.identity.get("zhangwei")
        for round_ in ("cold", "warm"):  # the first case pays for first use of every task, DMN and form
            steps.clear()
            now[0] = datetime.fromisoformat(CHANGE_START)
            t0 = time.perf_counter()
            case_id = eng.runtime.start("change", starter, {"title": "变更"}).id
            status, size = state_bytes(eng, case_id)
            steps.append({"step": "start", "ms": _ms(time.perf_counter() - t0), "status": status, "bytes": size})
            for bpmn_id, username, data in CHANGE_STEPS:
                result["stopped_at"] = f"{bpmn_id} ({round_} case)"
                open_tasks = eng.runtime.show(case_id).open_tasks
                if not open_tasks and bpmn_id == "implement":  # waiting for the change window to open
                    now[0] = datetime.fromisoformat(CHANGE_WINDOW[0]) + timedelta(seconds=1)
                    eng.runtime.fire_due_timers()
                    open_tasks = eng.runtime.show(case_id).open_tasks
                mine = [t for t in open_tasks if t.bpmn_id == bpmn_id and t.assignee in (None, username)]
                if not mine:
                    raise RuntimeError(f"no open {bpmn_id!r} for {username}; open: "
                                       f"{sorted(t.bpmn_id for t in open_tasks)}")
                actor = eng.identity.get(username)
                if mine[0].assignee is None:
                    eng.tasks.claim(mine[0].id, actor)
                t0 = time.perf_counter()
                eng.tasks.complete(mine[0].id, actor, dict(data))
                elapsed = time.perf_counter() - t0
                status, size = state_bytes(eng, case_id)
                steps.append({"step": bpmn_id, "ms": _ms(elapsed), "status": status, "bytes": size})
            if round_ == "cold":
                result["cold_case_ms"] = round(sum(step["ms"] for step in steps), 3)
        result.pop("stopped_at")
    except Exception as exc:  # noqa: BLE001 (reported in the figures, see the docstring)
        result["error"] = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        eng.close()
    running = [step["bytes"] for step in steps if step["status"] == "running"]
    result["completed"] = bool(steps) and steps[-1]["status"] == "completed" and "error" not in result
    result["state_bytes_running_max"] = max(running, default=0)
    completes = [step["ms"] for step in steps if step["step"] != "start"]
    if "error" not in result and completes:
        result["complete_task_ms_median_warm"] = round(statistics.median(completes), 3)
    return result


# profile ------------------------------------------------------------------------------------------
# Functions whose cumulative time per complete() call the profile summary reports: (label, file
# suffix or "~" for C functions, function name). Generator context managers (transaction, open)
# count only their own frames: set-up and tear-down, not the body of the `with`.
PROFILE_MARKERS = (
    ("TaskService.complete (whole call)", "engine/tasks.py", "complete"),
    ("  db.transaction enter/exit (BEGIN, COMMIT, close)", "engine/db.py", "transaction"),
    ("  _lock_open (SELECT task, lock case, refresh)", "engine/tasks.py", "_lock_open"),
    ("  CaseStore.open enter/exit (lock, cache take, flush)", "engine/casestore.py", "open"),
    ("  _check (may-act, performers query)", "engine/tasks.py", "_check"),
    ("  field_errors (JSON Schema)", "engine/forms.py", "field_errors"),
    ("  spiff Task.run", "SpiffWorkflow/task.py", "run"),
    ("  run_engine (do_engine_steps)", "engine/casestore.py", "run_engine"),
    ("  CaseStore.save", "engine/casestore.py", "save"),
    ("    _sync_inbox", "engine/casestore.py", "_sync_inbox"),
    ("    dump_state (state JSON)", "engine/spiff/serializer.py", "dump_state"),
    ("    _sync_subscriptions", "engine/casestore.py", "_sync_subscriptions"),
    ("  audit.record", "engine/audit.py", "record"),
    ("  SQLAlchemy commit (flush + COMMIT)", "sqlalchemy/orm/session.py", "commit"),
    ("  SQLAlchemy flush (every flush)", "sqlalchemy/orm/session.py", "flush"),
    ("  SQLAlchemy statement execution (all)", "sqlalchemy/engine/base.py", "_execute_context"),
    ("  sqlite3 Cursor.execute (driver)", "~", "<method 'execute' of 'sqlite3.Cursor' objects>"),
    ("  sqlite3 Connection.commit (driver)", "~", "<method 'commit' of 'sqlite3.Connection' objects>"),
    ("  psycopg Cursor.execute (driver)", "psycopg/cursor.py", "execute"),
)


def profile_complete(scenario: Scenario, database_url: str, tmp: Path, sizes: Sizes,
                     top: int = 25) -> dict[str, Any]:
    """cProfile only the engine.tasks.complete calls; summary in ms per call plus a pstats listing."""
    rig = EngineRig(scenario, database_url, tmp)
    try:
        for _ in range(sizes.warmup):
            rig.run_case()
        profiler = cProfile.Profile()
        calls = 0

        def around(label: str, call: Callable[[], Any]) -> Any:
            nonlocal calls
            if label == "start":
                return call()
            calls += 1
            profiler.enable()
            try:
                return call()
            finally:
                profiler.disable()

        for _ in range(sizes.profile_instances):
            rig.run_case(around=around)
        stats = pstats.Stats(profiler)
        raw = stats.stats  # type: ignore[attr-defined]
        total = sum(tt for (_cc, _nc, tt, _ct, _callers) in raw.values())
        summary: dict[str, float] = {}
        for label, file_suffix, func in PROFILE_MARKERS:
            cum = max((ct for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in raw.items()
                       if name == func and filename.replace(os.sep, "/").endswith(file_suffix)), default=0.0)
            if cum:
                summary[label] = round(cum / calls * 1000, 3)
        listing = io.StringIO()
        pstats.Stats(profiler, stream=listing).strip_dirs().sort_stats("tottime").print_stats(top)
        return {"database": rig.describe_database(), "complete_calls": calls,
                "profiled_ms_per_call": round(total / calls * 1000, 3), "cumulative_ms_per_call": summary,
                "top_by_own_time": listing.getvalue()}
    finally:
        rig.close()


# the whole run ------------------------------------------------------------------------------------
def code_revision() -> str:
    """The commit the figures belong to, marked "+dirty" when the working tree has changes."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count() or 0,
        "cpu": cpu,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "spiffworkflow_version": metadata.version("SpiffWorkflow"),
        "sqlalchemy_version": metadata.version("SQLAlchemy"),
        # Other work on the machine skews every figure; a 1-minute load near 0 is a clean run.
        "load_average_1m_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def run(sizes: Sizes | None = None, scenario: Scenario = ACCESS_REQUEST, postgres: bool = True,
        profile: bool = False, log: Callable[[str], None] = lambda _msg: None) -> dict[str, Any]:
    """Every figure of one run; the top-level keys are the SQLite engine's against raw Spiff."""
    sizes = sizes or Sizes()
    machine = machine_info()
    log(f"raw SpiffWorkflow: {sizes.raw_instances} instances of {scenario.bpmn.name} ...")
    raw = run_raw(scenario, sizes.raw_instances, sizes.warmup)
    log(f"engine on SQLite: {sizes.engine_instances} cases ...")
    with sqlite_database() as (url, tmp):
        sqlite = run_engine(scenario, url, tmp, sizes)
    pg_url = postgres_url() if postgres else None
    pg = None
    if pg_url:
        log(f"engine on PostgreSQL: {sizes.engine_instances} cases ...")
        with postgres_database(pg_url) as (url, tmp):
            pg = run_engine(scenario, url, tmp, sizes)
            pg["engine_vs_raw_ratio"] = round(pg["instances_per_s"] / raw["instances_per_s"], 4)
    sqlite["engine_vs_raw_ratio"] = round(sqlite["instances_per_s"] / raw["instances_per_s"], 4)
    log("change case (processes/change.bpmn) on SQLite: state size after every step ...")
    with sqlite_database() as (url, tmp):
        change = change_case_state(url, tmp)
    if change.get("error"):
        log(f"change case stopped at {change.get('stopped_at')!r}: {change['error']}")
    # The change case's state, or (should the library refuse the walk at its start) the scenario's.
    state_bytes = change["state_bytes_running_max"] or sqlite["state_bytes_running_max"]
    change["state_bytes_source"] = ("processes/change.bpmn" if change["state_bytes_running_max"]
                                    else f"{scenario.bpmn.name} (the change case did not start)")

    result: dict[str, Any] = {
        "raw_spiff_instances_per_s": raw["instances_per_s"],
        "engine_instances_per_s": sqlite["instances_per_s"],
        "engine_vs_raw_ratio": sqlite["engine_vs_raw_ratio"],
        "complete_task_ms_median": sqlite["complete_task_ms_median"],
        "complete_task_ms_p95": sqlite["complete_task_ms_p95"],
        "start_case_ms_median": sqlite["start_case_ms_median"],
        "state_bytes_change_case": state_bytes,
        "scenario": {"bpmn": str(scenario.bpmn.relative_to(ROOT)), "process_id": scenario.process_id,
                     "user_tasks_per_instance": raw["user_tasks"] // max(1, sizes.raw_instances)},
        "sizes": {"raw_instances": sizes.raw_instances, "engine_instances": sizes.engine_instances,
                  "warmup": sizes.warmup},
        "machine": {**machine, "database": sqlite["database"],
                    **({"database_postgresql": pg["database"]} if pg else {})},
        "raw": raw,
        "sqlite": sqlite,
        "postgresql": pg,
        "change_case": change,
        "code_revision": code_revision(),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if profile:
        log(f"profiling complete() over {sizes.profile_instances} cases on SQLite ...")
        with sqlite_database() as (url, tmp):
            result["profile_sqlite"] = profile_complete(scenario, url, tmp, sizes)
    return result
