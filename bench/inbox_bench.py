"""Inbox speed with 100,000 open tasks and 1,000 users: the query, and the whole page (server side).

    .venv/bin/python -m bench.inbox_bench [--tasks 100000] [--users 1000] [--runs 200] [--postgres]

On a fresh database (a SQLite file, or with --postgres a schema of its own on
OPSFLOW_BENCH_DATABASE_URL, dropped afterwards), 100,000 open tasks over 10,000 running change
cases are inserted in bulk (30 % assigned, 12 roles, due times -48..+96 h). Then, for 20 users
taken in turn, p50/p95 in ms of: the inbox query (`engine.tasks.inbox(actor, "all", limit=25)`,
one page sorted by priority), the overdue inbox sorted by due time, the nav counts (mine, group),
and GET / rendered by the Flask app (login via session). Budget: query p95 <= 20 ms, page <= 100 ms.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from bench.common import ROOT, analyze, describe_database, fresh_database, percentile
from engine import ProcessEngine, Settings
from engine.storage.models import HumanTask, ProcessDefinition, ProcessInstance, User, UserRole

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


def timed(fn: Any, runs: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(database_url: str, tmp: Path, tasks: int = 100_000, users: int = 1_000, runs: int = 200,
        page: bool = True) -> dict[str, Any]:
    """Figures on a fresh database (`database_url` empty: the engine migrates it); p50/p95 in ms."""
    processes = tmp / "processes"
    processes.mkdir(exist_ok=True)
    for name in ("change.bpmn", "change_risk.dmn", "roles.json"):
        shutil.copy(ROOT / "processes" / name, processes / name)
    shutil.copytree(ROOT / "processes" / "calendar", processes / "calendar", dirs_exist_ok=True)
    settings = Settings(database_url, processes, ROOT / "forms", "Asia/Shanghai", tmp / "var")
    engine = ProcessEngine(settings)
    try:
        engine.init()
        t0 = time.perf_counter()
        names = build(engine, tasks, users)
        analyze(engine)
        built_s = time.perf_counter() - t0
        rng = random.Random(1)
        actors = [engine.identity.get(n) for n in rng.sample(names, min(20, len(names)))]
        picks = iter(range(10**9))

        def actor() -> Any:
            return actors[next(picks) % len(actors)]

        results = {
            "inbox_query_ms": timed(lambda: engine.tasks.inbox(actor(), "all", limit=25), runs),
            "inbox_query_overdue_ms": timed(lambda: engine.tasks.inbox(actor(), "all", overdue=True, limit=25,
                                                                       order="due"), runs),
            "nav_counts_ms": timed(lambda: [engine.tasks.count(a, scope) for a in [actor()] for scope in
                                            ("mine", "group")], runs),
        }
        if page:
            from webui import create_app

            client = create_app(engine, {"SECRET_KEY": "bench"}).test_client()
            sessions = {a.username: engine.identity.open_session(a.username, "bench", timedelta(hours=1))
                        for a in actors}  # signed in beforehand: the page is what is timed

            def get_page() -> None:
                with client.session_transaction() as session:
                    session["sid"] = sessions[actor().username]
                response = client.get("/")
                assert response.status_code == 200, response.status_code

            results["inbox_page_ms"] = timed(get_page, runs)
        summary: dict[str, Any] = {"database": describe_database(engine), "open_tasks": tasks, "users": users,
                                   "runs": runs, "build_s": round(built_s, 1)}
        for key, values in results.items():
            summary[key.replace("_ms", "_p50_ms")] = round(statistics.median(values), 3)
            summary[key.replace("_ms", "_p95_ms")] = round(percentile(values, 95), 3)
        return summary
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--postgres", action="store_true",
                        help="a fresh schema on OPSFLOW_BENCH_DATABASE_URL instead of a SQLite file")
    args = parser.parse_args(argv)
    with fresh_database("postgresql" if args.postgres else "sqlite", "opsflow-inbox-bench-") as (url, tmp):
        summary = run(url, tmp, args.tasks, args.users, args.runs)
    print(f"{summary['database']}: built {args.tasks:,} open tasks, {args.users:,} users in {summary['build_s']}s")
    for key in ("inbox_query", "inbox_query_overdue", "nav_counts", "inbox_page"):
        print(f"{key + '_ms':<26} p50 {summary[key + '_p50_ms']:7.2f} ms   p95 {summary[key + '_p95_ms']:7.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
