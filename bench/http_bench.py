"""HTTP load: N concurrent clients completing tasks through the REST API, served by gunicorn.

    .venv/bin/python -m bench.http_bench [--clients 50] [--tasks 3000] [--warmup 200] [--workers 2]
                                         [--threads 8] [--rate PER_CLIENT_PER_S] [--max-seconds 60]
                                         [--sqlite] [--out PATH]

Sets up a fresh PostgreSQL schema (OPSFLOW_BENCH_DATABASE_URL or OPSFLOW_TEST_DATABASE_URL; with
--sqlite, or when neither is set, a SQLite file), deploys tests/fixtures/two_lanes.bpmn, adds one
user (staff) with an API token per client and starts one case per task through the engine
(untimed), so every client has its own open `request` tasks. Then gunicorn serves the app on
127.0.0.1 (`-k gthread`, `--workers` x `--threads`, as `opsflow serve` runs it, without the access
log and the ticker), and the load comes from a separate process: `python -m bench.http_load`
(asyncio, one keep-alive connection per client), in three phases:

1. warm-up: --warmup completions, untimed;
2. capacity: --tasks completions, closed loop (each client sends its next request when the last
   one answers): completions/s is what the server sustains;
3. paced: --rate completions/s offered in all (open loop, each client at rate/clients) for
   --paced-seconds: the latency at that load, p95 counted from when each request was due.

Each phase is bounded by its number of tasks and by --max-seconds. After the load, the resident
memory (VmRSS in /proc/<pid>/status) of every gunicorn worker is read. Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, describe_database, fresh_database, postgres_url
from bench.engine_bench import ACCESS_REQUEST

RESULTS = Path(__file__).resolve().parent / "results" / "http_latest.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(url: str, tmp: Path, clients: int, tasks: int) -> tuple[list[tuple[str, list[str]]], str]:
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
        actors = []
        for i in range(clients):
            actor = eng.identity.add_user(f"load{i:03d}", ["staff"])
            actors.append(actor)
            plan.append((eng.identity.create_token(actor.username), []))
        for n in range(tasks):
            actor = actors[n % clients]
            case = eng.runtime.start(ACCESS_REQUEST.process_id, actor, ACCESS_REQUEST.start_data)
            plan[n % clients][1].append(_first_task(eng, actor, case.id))
        return plan, describe_database(eng)
    finally:
        eng.close()


def _first_task(eng: Any, actor: Any, case_id: int) -> str:
    for task in eng.tasks.inbox(actor, "mine", process_id=ACCESS_REQUEST.process_id, limit=1000):
        if task.instance_id == case_id and task.bpmn_id == "request":
            return task.id
    raise RuntimeError(f"case {case_id} has no open request task for {actor.username}")


def serve(url: str, tmp: Path, port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPSFLOW_DATABASE_URL": url, "OPSFLOW_FORMS_DIR": str(ACCESS_REQUEST.forms_dir),
           "OPSFLOW_VAR_DIR": str(tmp), "OPSFLOW_SECRET_KEY": "bench"}
    cmd = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread", "--threads", str(threads),
           "-b", f"127.0.0.1:{port}", "--log-level", "warning", "--keep-alive", "30", "--timeout", "60",
           "webui:create_app()"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200 and len(worker_pids(proc.pid)) >= workers:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gunicorn did not come up within 60 s")


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's child processes (its workers), from /proc/<pid>/stat."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            pids.append(int(entry.name))
    return sorted(pids)


def rss_mb(pid: int) -> dict[str, float | None]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MiB."""
    out: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
            elif line.startswith("VmHWM:"):
                out["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def load(port: int, plan: list[tuple[str, list[str]]], counts: dict[str, int], rate: float | None,
         max_seconds: float, tmp: Path) -> dict[str, Any]:
    """Run `python -m bench.http_load` as a process of its own; its JSON figures per phase.

    `counts`: tasks per client for each phase, in order (warmup, capacity, paced)."""
    clients = []
    for token, ids in plan:
        lists, at = {}, 0
        for key, count in counts.items():
            lists[key], at = ids[at:at + count], at + count
        clients.append({"token": token, **lists})
    phases = [{"key": "warmup", "rate": None, "gated": False}, {"key": "capacity", "rate": None}]
    if counts.get("paced"):
        phases.append({"key": "paced", "rate": rate})
    plan_path = tmp / "http_plan.json"
    plan_path.write_text(json.dumps({
        "host": "127.0.0.1", "port": port, "max_seconds": max_seconds, "timeout_s": 30,
        "body": {"data": ACCESS_REQUEST.steps[0].data}, "phases": phases, "clients": clients}), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "bench.http_load", str(plan_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=max_seconds * len(phases) + 120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise RuntimeError(f"bench.http_load failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(kind: str, clients: int = 50, tasks: int = 3000, warmup: int = 200, workers: int = 2, threads: int = 8,
        rate: float | None = 300.0, max_seconds: float = 60.0, paced_seconds: float = 10.0,
        log: Any = lambda _msg: None) -> dict[str, Any]:
    """Everything on a fresh database of `kind` ("postgresql" or "sqlite").

    Phases: warm-up (`warmup` completions, untimed), capacity (`tasks` completions, closed loop),
    then paced (`rate` completions/s offered in all, open loop, for `paced_seconds`; rate None: no
    paced phase). The figures: completions/s from the capacity phase; p95 latency from the paced
    phase (counted from when each request was due); errors from both."""
    per_client = {"warmup": -(-warmup // clients) if warmup else 0, "capacity": -(-tasks // clients),
                  "paced": -(-round(rate * paced_seconds) // clients) if rate else 0}
    total = sum(per_client.values()) * clients
    with fresh_database(kind, "opsflow-http-") as (db_url, tmp):
        log(f"  http: preparing {total} open tasks for {clients} clients ...")
        t0 = time.perf_counter()
        plan, database = prepare(db_url, tmp, clients, total)
        prepared_s = time.perf_counter() - t0
        port = _free_port()
        server = serve(db_url, tmp, port, workers, threads)
        try:
            log(f"  http: gunicorn {workers}x{threads} on 127.0.0.1:{port}; load from a separate process: "
                f"closed loop, then {rate or 0:g}/s offered ...")
            generated = load(port, plan, per_client, rate / clients if rate else None, max_seconds, tmp)
            phases = generated["phases"]
            master = server.pid
            pids = worker_pids(master)
            memory = {"master": rss_mb(master), "workers": {str(pid): rss_mb(pid) for pid in pids}}
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
    rss = [m["rss_mb"] for m in memory["workers"].values() if m["rss_mb"] is not None]
    capacity, paced = phases["capacity"], phases.get("paced")
    errors = sum(p["errors"] for p in phases.values())
    return {
        "completions_per_s": capacity["completions_per_s"],
        "latency_ms_p95": paced["latency_from_schedule_ms_p95"] if paced else capacity["latency_ms_p95"],
        "latency_ms_p95_source": (f"paced phase, {rate:g}/s offered, from when each request was due" if paced
                                  else "capacity phase (closed loop)"),
        "errors": errors,
        "error_samples": [e for p in phases.values() for e in p["error_samples"]][:5],
        "rss_mb_per_worker": round(sum(rss) / len(rss), 1) if rss else None,
        **phases,
        "database": database, "clients": clients, "tasks_per_client": per_client, "offered_rate_per_s": rate,
        "max_seconds_per_phase": max_seconds, "prepare_s": round(prepared_s, 1),
        "gunicorn": f"{workers} workers x {threads} threads (gthread)",
        "load_generator": "python -m bench.http_load (asyncio, separate process)",
        "load_generator_cpu_s": generated["cpu_s"],
        "memory": memory,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=3000, help="closed-loop completions in total (the bound)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed completions first")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="gunicorn gthread threads per worker")
    parser.add_argument("--rate", type=float, default=300.0,
                        help="completions/s offered in all in the paced phase (0: no paced phase)")
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="length of the paced phase")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time bound of each phase")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    kind = "sqlite" if args.sqlite or not postgres_url() else "postgresql"
    result = run(kind, args.clients, args.tasks, args.warmup, args.workers, args.threads, args.rate or None,
                 args.max_seconds, args.paced_seconds, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for key, value in result.items():
        print(f"{key:28} {json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value}")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
