"""Dashboard speed with 100,000 cases (10,000 of them with open tasks), server side.

    .venv/bin/python -m bench.dashboard_bench [--cases 100000] [--runs 20] [--postgres]

On a fresh database with the library and the demo cast: 100,000 open tasks over 10,000 running
cases (bench/inbox_bench.py's `build`), plus finished cases up to `--cases`; then the supervisor's
`engine.reports.dashboard(days=28)` is timed `--runs` times. Budget (issue 5): <= 200 ms.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from bench.common import ROOT, analyze, describe_database, fresh_database, percentile
from bench.inbox_bench import build


def run(database_url: str, tmp: Path, cases: int = 100_000, runs: int = 20, tasks: int = 100_000) -> dict[str, Any]:
    import time

    from engine import ProcessEngine, Settings
    from engine.storage.models import ProcessDefinition, ProcessInstance

    engine = ProcessEngine(Settings(database_url, ROOT / "processes", ROOT / "forms", "Asia/Shanghai", tmp / "var"))
    try:
        engine.init(demo=True)
        build(engine, tasks=tasks, users=min(1000, max(tasks // 100, 10)))  # tasks // 10 running cases
        now = datetime.now(UTC)
        with engine.ctx.db.transaction() as s:
            definition_id = s.scalars(select(ProcessDefinition.id)).first()
            first = (s.scalar(select(ProcessInstance.id).order_by(ProcessInstance.id.desc())) or 0) + 1
            rows = [{"id": first + i, "definition_id": definition_id, "process_id": "problem", "title": f"历史 {i}",
                     "status": "cancelled", "started_by": "zhangwei", "started_at": now - timedelta(hours=i % 2000),
                     "ended_at": now - timedelta(hours=i % 2000 - 1), "state": "{}", "revision": 1}
                    for i in range(max(cases - tasks // 10, 0))]
            for k in range(0, len(rows), 5000):
                s.execute(insert(ProcessInstance), rows[k:k + 5000])
        analyze(engine)
        supervisor = engine.identity.get("zhuhong")
        engine.reports.dashboard(supervisor, days=28)  # warm
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            engine.reports.dashboard(supervisor, days=28)
            samples.append((time.perf_counter() - start) * 1000)
        return {"database": describe_database(engine), "cases": cases, "open_tasks": tasks, "runs": runs,
                "dashboard_ms_p50": round(statistics.median(samples), 3),
                "dashboard_ms_p95": round(percentile(samples, 95), 3)}
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="a fresh schema on OPSFLOW_BENCH_DATABASE_URL")
    args = parser.parse_args(argv)
    with fresh_database("postgresql" if args.postgres else "sqlite", "opsflow-dash-") as (url, tmp):
        result = run(url, tmp, args.cases, args.runs)
    print(f"dashboard_ms  p50 {result['dashboard_ms_p50']:.1f}  p95 {result['dashboard_ms_p95']:.1f}"
          f"  ({args.cases:,} cases, {result['database']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
