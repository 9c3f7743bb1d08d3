"""HTTP load: N concurrent clients completing tasks through the REST API, served by gunicorn.

    .venv/bin/python -m bench.http_bench [--clients 50] [--tasks 3000] [--workers 2] [--threads 8]
                                         [--rate PER_CLIENT_PER_S] [--max-seconds 60] [--out PATH]

Sets up a fresh PostgreSQL schema (OPSFLOW_BENCH_DATABASE_URL or OPSFLOW_TEST_DATABASE_URL; SQLite
in a temporary file otherwise), deploys tests/fixtures/two_lanes.bpmn, starts one case per task
(untimed) so every client has its own open `request` tasks, starts gunicorn on 127.0.0.1, then
runs the clients in this process (threads, one keep-alive connection each) against it. Closed loop
by default (each client sends its next request when the last one answers); `--rate` paces each
client instead (open loop). Bounded by --tasks and --max-seconds. Prints and writes JSON figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.engine_bench import ACCESS_REQUEST, ROOT, postgres_database, postgres_url

RESULTS = Path(__file__).resolve().parent / "results" / "http_latest.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(url: str, tmp: Path, clients: int, tasks: int) -> list[tuple[str, list[str]]]:
    """Schema, process, one user per client with a token, and `tasks` open request tasks shared out."""
    from engine import ProcessEngine, Settings
    from engine.spiff.parsing import SourceFile

    eng = ProcessEngine(Settings(database_url=url, processes_dir=ROOT / "processes",
                                 forms_dir=ACCESS_REQUEST.forms_dir, timezone="Asia/Shanghai", var_dir=tmp))
    try:
        eng.migrate()
        eng.identity.seed_roles(ROOT / "processes" / "roles.json")
        eng.repository.deploy([SourceFile(ACCESS_REQUEST.bpmn.name, ACCESS_REQUEST.bpmn.read_bytes())])
        plan = []
        for i in range(clients):
            actor = eng.identity.add_user(f"load{i:03d}", ["staff"])
            plan.append((eng.identity.create_token(actor.username), []))
        for n in range(tasks):
            token, ids = plan[n % clients]
            actor = eng.identity.get(f"load{n % clients:03d}")
            case = eng.runtime.start(ACCESS_REQUEST.process_id, actor, ACCESS_REQUEST.start_data)
            ids.append(eng.runtime.show(case.id).open_tasks[0].id)
        return plan
    finally:
        eng.close()


def serve(url: str, tmp: Path, port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPSFLOW_DATABASE_URL": url, "OPSFLOW_FORMS_DIR": str(ACCESS_REQUEST.forms_dir),
           "OPSFLOW_VAR_DIR": str(tmp), "OPSFLOW_SECRET_KEY": "bench"}
    cmd = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread", "--threads", str(threads),
           "-b", f"127.0.0.1:{port}", "--log-level", "warning", "--keep-alive", "30", "webui:create_app()"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gunicorn did not come up")


def run_clients(port: int, plan: list[tuple[str, list[str]]], rate: float | None,
                max_seconds: float) -> dict[str, Any]:
    body = json.dumps({"data": ACCESS_REQUEST.task_data["request"]}).encode()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(len(plan) + 1)
    stop_at: list[float] = [0.0]

    def client(token: str, ids: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        mine: list[float] = []
        failed: list[str] = []
        start_gate.wait()
        began = time.perf_counter()
        for n, task_id in enumerate(ids):
            if time.perf_counter() >= stop_at[0]:
                break
            if rate:
                delay = began + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            t0 = time.perf_counter()
            try:
                conn.request("POST", f"/api/v1/tasks/{task_id}/complete", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                if response.status != 200:
                    failed.append(f"{response.status} {payload[:200]!r}")
            except (OSError, http.client.HTTPException) as exc:
                failed.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    workers = [threading.Thread(target=client, args=item, daemon=True) for item in plan]
    for w in workers:
        w.start()
    stop_at[0] = time.perf_counter() + max_seconds
    t0 = time.perf_counter()
    start_gate.wait()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2) if ordered else 0.0

    done = len(latencies) - len(errors)
    return {"requests": len(latencies), "completions": done, "errors": len(errors), "error_samples": errors[:5],
            "wall_s": round(wall, 3), "completions_per_s": round(done / wall, 1) if wall else 0.0,
            "latency_ms_median": round(statistics.median(ordered) * 1000, 2) if ordered else 0.0,
            "latency_ms_p95": pct(0.95), "latency_ms_p99": pct(0.99), "latency_ms_max": pct(1.0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=3000, help="completions in total (the bound)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed completions first")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="gunicorn gthread threads per worker")
    parser.add_argument("--rate", type=float, default=None, help="requests/s per client (open loop)")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    url = postgres_url()
    with ExitStack() as stack:
        if url:
            db_url, tmp = stack.enter_context(postgres_database(url))
        else:
            import tempfile

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opsflow-http-")))
            db_url = f"sqlite:///{tmp / 'bench.db'}"
        print(f"preparing {args.tasks + args.warmup} open tasks for {args.clients} clients ...", file=sys.stderr)
        warm = prepare(db_url, tmp, args.clients, args.warmup + args.tasks)
        warmup_plan = [(token, ids[:args.warmup // args.clients]) for token, ids in warm]
        timed_plan = [(token, ids[args.warmup // args.clients:]) for token, ids in warm]
        port = _free_port()
        server = serve(db_url, tmp, port, args.workers, args.threads)
        try:
            run_clients(port, warmup_plan, None, args.max_seconds)
            result = run_clients(port, timed_plan, args.rate, args.max_seconds)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    result.update({"database": "postgresql" if url else "sqlite", "clients": args.clients,
                   "gunicorn": f"{args.workers} workers x {args.threads} threads (gthread)",
                   "mode": f"open loop, {args.rate}/s per client" if args.rate else "closed loop",
                   "cpus": os.cpu_count(), "load_average_1m_at_end": round(os.getloadavg()[0], 2)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for key, value in result.items():
        print(f"{key:28} {value}")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
