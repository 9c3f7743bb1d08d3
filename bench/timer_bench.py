"""Timer lateness with a real clock, and what a tick's scan costs with 10 or 10,000 timers waiting.

    .venv/bin/python -m bench.timer_bench                 # SQLite file, 10,000 waiting, 300 due, 2 tickers
    .venv/bin/python -m bench.timer_bench --workers 3 --due 500
    OPSFLOW_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.timer_bench

Not a test: it prints figures and writes them to bench/results/timer_latest.json. `python -m bench`
runs the same measurement (`run_one`) as its `timers` part.

1. Scan cost: an idle `engine.jobs.tick()` (nothing due) timed with 10 cases waiting on a timer,
   then with 10,000 (a case cloned by SQL, its timer a day ahead). Indexed, the two are the same:
   `idle_tick_ratio` (median with 10,000 / median with 10) stays near 1.
2. Lateness: `--due` cases through the engine with timers due 2-8 s ahead on the real clock, among
   the 10,000 waiting; `--workers` processes each run the real ticker (`start_ticker`, APScheduler
   interval 0.5 s) until every due timer has fired. Lateness is the engine clock when the timer's
   step was saved minus its due time (`late_ms` of the `timer.fired` audit event). Every timer must
   fire exactly once.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import ROOT, analyze, describe_database, fresh_database, percentile, postgres_url

RESULTS = ROOT / "bench" / "results" / "timer_latest.json"
FIXTURE = ROOT / "tests" / "fixtures" / "timer_catch.bpmn"


def _settings(url: str, var: Path) -> Any:
    from engine import Settings

    return Settings(database_url=url, processes_dir=ROOT / "processes", forms_dir=ROOT / "tests" / "fixtures" / "forms",
                    timezone="Asia/Shanghai", var_dir=var)


def _ticker_process(url: str, var: str, stop, ready) -> None:
    from engine import ProcessEngine
    from engine.jobs.ticker import start_ticker, stop_ticker

    engine = ProcessEngine(_settings(url, Path(var)))
    start_ticker(engine)
    ready.release()
    stop.wait(600)
    stop_ticker(engine)
    engine.close()


def _clone_waiting(engine: Any, template_id: int, count: int, due: datetime) -> None:
    """`count` more cases like the template, each waiting on a timer at `due` (bulk SQL: fast)."""
    from sqlalchemy import insert, select

    from engine.storage.models import ProcessInstance

    with engine.ctx.db.transaction() as s:
        t = s.get(ProcessInstance, template_id)
        state = s.scalars(select(ProcessInstance.state).where(ProcessInstance.id == template_id)).one()
        rows = [{"definition_id": t.definition_id, "process_id": t.process_id, "business_key": None,
                 "title": t.title, "status": "running", "started_by": t.started_by, "started_at": t.started_at,
                 "state": state, "revision": 1, "next_timer_due": due + timedelta(seconds=i % 3600)}
                for i in range(count)]
        for chunk in range(0, len(rows), 1000):
            s.execute(insert(ProcessInstance), rows[chunk:chunk + 1000])
    analyze(engine)


def _idle_tick_ms(engine: Any, n: int = 300) -> dict[str, float]:
    for _ in range(20):
        engine.jobs.tick()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        report = engine.jobs.tick()
        times.append((time.perf_counter() - t0) * 1000)
        assert report.idle
    return {"median": round(statistics.median(times), 3), "p95": round(percentile(times, 95), 3)}


def _query_plan(engine: Any) -> str:
    from sqlalchemy import text

    now = datetime.now(UTC)
    with engine.ctx.db.engine.connect() as conn:
        if engine.ctx.db.is_sqlite:
            rows = conn.execute(text("EXPLAIN QUERY PLAN SELECT id FROM process_instance WHERE status = 'running' "
                                     "AND next_timer_due < :now ORDER BY next_timer_due LIMIT 1"),
                                {"now": now.replace(tzinfo=None)}).all()
            return "; ".join(str(r[-1]) for r in rows)
        rows = conn.execute(text("EXPLAIN SELECT id FROM process_instance WHERE status = 'running' "
                                 "AND next_timer_due < :now ORDER BY next_timer_due LIMIT 1 FOR UPDATE SKIP LOCKED"),
                            {"now": now}).all()
        return "; ".join(r[0].strip() for r in rows)


def run_one(url: str, var: Path, waiting: int, due_count: int, workers: int,
            due_in_s: tuple[float, float] = (2.0, 8.0), idle_ticks: int = 300,
            max_wait_s: float = 60.0) -> dict[str, Any]:
    """Both measurements on one fresh database; `due_in_s`: the due timers' spread ahead of now."""
    from engine import ProcessEngine
    from engine.spiff.parsing import SourceFile

    engine = ProcessEngine(_settings(url, var))
    try:
        engine.migrate()
        engine.identity.seed_roles(ROOT / "processes" / "roles.json")
        actor = engine.identity.add_user("bench", ["ops_engineer"])
        engine.repository.deploy([SourceFile(FIXTURE.name, FIXTURE.read_bytes())], "bench")
        far = datetime.now(UTC) + timedelta(days=1)
        template = engine.runtime.start("timer_catch", actor, {"release_at": far.isoformat()})
        out: dict[str, Any] = {"database": engine.ctx.db.engine.dialect.name,
                               "database_detail": describe_database(engine), "workers": workers}

        _clone_waiting(engine, template.id, 9, far)
        out["idle_tick_ms_10_waiting"] = _idle_tick_ms(engine, idle_ticks)
        _clone_waiting(engine, template.id, waiting - 10, far)
        out["idle_tick_ms_10000_waiting"] = _idle_tick_ms(engine, idle_ticks)
        out["waiting_timers"] = waiting
        few, many = out["idle_tick_ms_10_waiting"]["median"], out["idle_tick_ms_10000_waiting"]["median"]
        out["idle_tick_ratio"] = round(many / few, 3) if few else None
        out["query_plan"] = _query_plan(engine)
        out.update(_lateness(engine, url, var, actor, due_count, workers, due_in_s, max_wait_s))
        return out
    finally:
        engine.close()


def _lateness(engine: Any, url: str, var: Path, actor: Any, due_count: int, workers: int,
              due_in_s: tuple[float, float], max_wait_s: float) -> dict[str, Any]:
    """Due timers `due_in_s` ahead, started through the engine, fired by `workers` ticker processes."""
    from sqlalchemy import select

    from engine.storage.models import AuditEvent

    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Semaphore(0)
    procs = [ctx.Process(target=_ticker_process, args=(url, str(var), stop, ready)) for _ in range(workers)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    try:
        for _ in procs:
            if not ready.acquire(timeout=120):
                raise RuntimeError("a ticker process did not start within 120 s")
        tickers_ready_s = time.monotonic() - t0
        start = datetime.now(UTC)
        rnd = random.Random(7)
        ids = []
        for _ in range(due_count):
            ahead = due_in_s[0] + rnd.random() * (due_in_s[1] - due_in_s[0])
            release = datetime.now(UTC) + timedelta(seconds=ahead)
            ids.append(engine.runtime.start("timer_catch", actor, {"release_at": release.isoformat()}).id)
        started_in = (datetime.now(UTC) - start).total_seconds()
        deadline = time.monotonic() + due_in_s[1] + max_wait_s

        def fired_events() -> list[Any]:
            with engine.ctx.db.transaction() as s:
                return list(s.scalars(select(AuditEvent).where(AuditEvent.action == "timer.fired",
                                                               AuditEvent.instance_id.in_(ids))))

        while time.monotonic() < deadline and len(fired_events()) < due_count:
            time.sleep(0.25)
        time.sleep(1.0)  # would a second ticker fire one again?
        fired = fired_events()
    finally:
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
                p.join(5)
    per_case = Counter(e.instance_id for e in fired)
    late = [e.data["late_ms"] for e in fired]
    return {
        "due_timers": due_count, "due_in_s": list(due_in_s), "tickers_ready_s": round(tickers_ready_s, 2),
        "due_started_within_s": round(started_in, 2),
        "fired": len(per_case), "fired_more_than_once": sum(1 for c in per_case.values() if c > 1),
        "late_ms_median": round(statistics.median(late), 1) if late else None,
        "late_ms_p95": round(percentile(late, 95), 1) if late else None,
        "late_ms_p99": round(percentile(late, 99), 1) if late else None,
        "late_ms_max": round(max(late), 1) if late else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    runs = []
    kinds = ["sqlite"] + (["postgresql"] if postgres_url() and not args.no_postgres else [])
    for kind in kinds:
        print(f"{kind} ...", file=sys.stderr, flush=True)
        with fresh_database(kind, "opsflow-timer-bench-") as (url, tmp):
            runs.append(run_one(url, tmp, args.waiting, args.due, args.workers))

    rows = [("idle tick, 10 waiting, median ms", "idle_tick_ms_10_waiting", "median"),
            ("idle tick, 10 waiting, p95 ms", "idle_tick_ms_10_waiting", "p95"),
            (f"idle tick, {args.waiting:,} waiting, median ms", "idle_tick_ms_10000_waiting", "median"),
            (f"idle tick, {args.waiting:,} waiting, p95 ms", "idle_tick_ms_10000_waiting", "p95"),
            (f"idle tick, {args.waiting:,} / 10 (medians)", "idle_tick_ratio", None),
            ("due timers fired", "fired", None), ("fired more than once", "fired_more_than_once", None),
            ("lateness median ms", "late_ms_median", None), ("lateness p95 ms", "late_ms_p95", None),
            ("lateness p99 ms (budget <= 1000)", "late_ms_p99", None), ("lateness max ms", "late_ms_max", None)]
    print(f"{'':40}" + "".join(f"{r['database']:>14}" for r in runs))
    for label, key, sub in rows:
        cells = [r[key][sub] if sub else r[key] for r in runs]
        print(f"{label:40}" + "".join(f"{c!s:>14}" for c in cells))
    for r in runs:
        print(f"{r['database']} plan: {r['query_plan']}")
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_average_1m_at_end": os.getloadavg()[0]},
              "args": vars(args) | {"out": str(args.out)}, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
