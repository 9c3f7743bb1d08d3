"""Dashboard speed with 100,000 cases (10,000 of them with open tasks), server side.

    .venv/bin/python -m bench.dashboard_bench [--cases 100000] [--runs 20]

Budget (issue 5): the dashboard renders in <= 200 ms.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select

from bench.inbox_bench import build
from engine import ProcessEngine, Settings
from engine.config import ROOT
from engine.models import ProcessDefinition, ProcessInstance


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="opsflow-dash-"))
    try:
        engine = ProcessEngine(Settings(f"sqlite:///{tmp / 'd.db'}", ROOT / "processes", ROOT / "forms",
                                        "Asia/Shanghai", tmp))
        engine.init(demo=True)
        build(engine, tasks=100_000, users=1000)  # 10,000 running cases with open tasks
        now = datetime.now(UTC)
        with engine.ctx.db.transaction() as s:
            definition_id = s.scalars(select(ProcessDefinition.id)).first()
            first = (s.scalar(select(ProcessInstance.id).order_by(ProcessInstance.id.desc())) or 0) + 1
            rows = [{"id": first + i, "definition_id": definition_id, "process_id": "problem", "title": f"历史 {i}",
                     "status": "cancelled", "started_by": "zhangwei", "started_at": now - timedelta(hours=i % 2000),
                     "ended_at": now - timedelta(hours=i % 2000 - 1), "state": "{}", "revision": 1}
                    for i in range(max(args.cases - 10_000, 0))]
            for k in range(0, len(rows), 5000):
                s.execute(insert(ProcessInstance), rows[k:k + 5000])
        supervisor = engine.identity.get("zhuhong")
        samples = []
        for _ in range(args.runs):
            start = time.perf_counter()
            engine.reports.dashboard(supervisor, days=28)
            samples.append((time.perf_counter() - start) * 1000)
        samples.sort()
        print(f"dashboard_ms  p50 {statistics.median(samples):.1f}  p95 {samples[int(len(samples) * 0.95) - 1]:.1f}"
              f"  ({args.cases:,} cases)")
        engine.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
