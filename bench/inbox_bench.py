"""Inbox speed with 100,000 open tasks and 1,000 users: the query, and the whole page (server side).

    .venv/bin/python -m bench.inbox_bench [--tasks 100000] [--users 1000] [--runs 200] [--database-url URL]

Prints p50/p95 in ms for: the inbox query (one page, sorted), the nav counts, and GET / rendered by
the Flask app (login via session, CSRF as in production). Budget: query p95 <= 20 ms, page <= 100 ms.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from engine import ProcessEngine, Settings
from engine.config import ROOT
from engine.models import HumanTask, ProcessDefinition, ProcessInstance, User, UserRole

ROLES = ["staff", "ops_engineer", "ops_manager", "cab", "it_head", "test_lead", "business_verifier",
         "duty_officer", "emergency_lead", "compliance", "process_owner", "supervisor"]


def build(engine: ProcessEngine, tasks: int, users: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    names = [f"user{i:04d}" for i in range(users)]
    with engine.ctx.db.transaction() as s:
        definition_id = s.scalars(select(ProcessDefinition.id)).first()
        s.execute(insert(User), [{"username": n, "display_name": n, "password_hash": None, "active": True,
                                  "locale": "zh_CN", "created_at": now} for n in names])
        ids = dict(s.execute(select(User.username, User.id)).all())
        s.execute(insert(UserRole), [{"user_id": ids[n], "role_key": ROLES[i % len(ROLES)]}
                                     for i, n in enumerate(names)])
        cases = max(tasks // 10, 1)
        first = (s.scalar(select(ProcessInstance.id).order_by(ProcessInstance.id.desc())) or 0) + 1
        s.execute(insert(ProcessInstance), [
            {"id": first + i, "definition_id": definition_id, "process_id": "change", "title": f"变更 {i}",
             "status": "running", "started_by": rng.choice(names), "started_at": now, "state": "{}",
             "revision": 1} for i in range(cases)])
        batch: list[dict[str, Any]] = []
        for i in range(tasks):
            role = rng.choice(ROLES)
            assigned = rng.random() < 0.3
            batch.append({"id": f"bench-{i:08d}", "instance_id": first + i % cases, "process_id": "change",
                          "bpmn_id": "approve_ops", "name": "运维负责人审批", "role": role,
                          "assignee": rng.choice(names) if assigned else None, "state": "open",
                          "priority": rng.randint(1, 4), "created_at": now - timedelta(minutes=i % 5000),
                          "due_at": now + timedelta(hours=rng.randint(-48, 96))})
            if len(batch) == 5000:
                s.execute(insert(HumanTask), batch)
                batch = []
        if batch:
            s.execute(insert(HumanTask), batch)
    return names


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def timed(fn: Any, runs: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="opsflow-inbox-bench-"))
    processes = tmp / "processes"
    processes.mkdir()
    for name in ("change.bpmn", "change_risk.dmn", "roles.json"):
        shutil.copy(ROOT / "processes" / name, processes / name)
    shutil.copytree(ROOT / "processes" / "calendar", processes / "calendar")
    settings = Settings(args.database_url or f"sqlite:///{tmp / 'bench.db'}", processes, ROOT / "forms",
                        "Asia/Shanghai", tmp / "var")
    engine = ProcessEngine(settings)
    engine.init()
    t0 = time.perf_counter()
    names = build(engine, args.tasks, args.users)
    print(f"built {args.tasks:,} open tasks, {args.users:,} users in {time.perf_counter() - t0:.1f}s")

    from webui import create_app

    app = create_app(engine, {"SECRET_KEY": "bench"})
    client = app.test_client()
    rng = random.Random(1)
    actors = [engine.identity.get(n) for n in rng.sample(names, 20)]
    picks = iter(range(10**9))

    def actor() -> Any:
        return actors[next(picks) % len(actors)]

    results = {
        "inbox_query_ms": timed(lambda: engine.tasks.inbox(actor(), "all", limit=25), args.runs),
        "inbox_query_overdue_ms": timed(lambda: engine.tasks.inbox(actor(), "all", overdue=True, limit=25,
                                                                   order="due"), args.runs),
        "nav_counts_ms": timed(lambda: [engine.tasks.count(a, scope) for a in [actor()] for scope in
                                        ("mine", "group")], args.runs),
    }

    def page() -> None:
        with client.session_transaction() as session:
            session["user"] = actor().username
        response = client.get("/")
        assert response.status_code == 200, response.status_code

    results["inbox_page_ms"] = timed(page, args.runs)
    summary = {}
    for key, values in results.items():
        summary[key.replace("_ms", "_p50_ms")] = statistics.median(values)
        summary[key.replace("_ms", "_p95_ms")] = percentile(values, 95)
        print(f"{key:<26} p50 {statistics.median(values):7.2f} ms   p95 {percentile(values, 95):7.2f} ms")
    engine.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return summary


if __name__ == "__main__":
    main()
