"""`python -m bench`: every benchmark in one run, each part on a fresh database; a table and a JSON file.

    python -m bench [--quick] [--only PART[,PART]] [--skip PART[,PART]] [--profile] [--no-postgres] [--out PATH]

Parts, in order: engine (raw SpiffWorkflow vs the engine on the change process, SQLite and
PostgreSQL), sandbox (the same workloads through Spiff's plain script engine and through the sandbox;
the engine with its budgets on and off), loops (state bytes after 100 rework rounds), inbox (100,000 open tasks), http
(gunicorn on PostgreSQL, load from a separate process, RSS per worker), timers (lateness with
ticker processes, idle tick scan with 10 vs 10,000 waiting), dashboard (100,000 cases).
PostgreSQL comes from OPSFLOW_BENCH_DATABASE_URL or OPSFLOW_TEST_DATABASE_URL (a schema of its
own per part, dropped afterwards); without it every part runs on SQLite and the JSON says so.
Figures to read, not a test: the exit status is 0 unless a part failed to run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS_DIR,
    code_revision,
    fresh_database,
    load_average,
    machine_info,
    postgres_problem,
    postgres_url,
)
from bench.figures import REQUIRED_KEYS, TARGETS

RESULTS = RESULTS_DIR / "latest.json"
PARTS = ("engine", "sandbox", "loops", "inbox", "http", "timers", "dashboard")

# Which database a top-level figure is taken from when both ran (the other is in the detail and in
# the table's last column): the engine's own costs on SQLite, as its budget is stated ("2 cores,
# SQLite file, durable commit"); what a server does for many users (the inbox at scale, HTTP,
# ticker processes) on PostgreSQL, the production database. Without PostgreSQL, SQLite for all.
PRIMARY = {"engine": "sqlite", "sandbox": "sqlite", "loops": "sqlite", "inbox": "postgresql",
           "http": "postgresql", "timers": "postgresql", "dashboard": "sqlite"}


@dataclass(frozen=True)
class Plan:
    """Sizes of every part (defaults: the real run; quick(): a smoke run that measures nothing)."""

    raw: int = 2000
    engine: int = 500
    warmup: int = 20
    rounds: int = 5
    profile_cases: int = 100
    reference_raw: int = 1000
    reference_engine: int = 200
    sandbox_change: int = 1000
    sandbox_script: int = 300
    sandbox_conditions: int = 20_000
    sandbox_engine: int = 150
    loops: int = 100
    inbox_tasks: int = 100_000
    inbox_users: int = 1000
    inbox_runs: int = 200
    http_clients: int = 50
    http_tasks: int = 3000
    http_warmup: int = 200
    http_seconds: float = 60.0
    http_rate: float = 300.0
    http_paced_seconds: float = 10.0
    http_workers: int = 2
    http_threads: int = 8
    timer_waiting: int = 10_000
    timer_due: int = 300
    timer_workers: int = 2
    timer_due_in_s: tuple[float, float] = (2.0, 8.0)
    timer_idle_ticks: int = 300
    dashboard_cases: int = 100_000
    dashboard_tasks: int = 100_000
    dashboard_runs: int = 20

    @classmethod
    def quick(cls) -> Plan:
        """The smallest sizes at which every part still runs each of its steps and yields every figure
        (tests/test_bench_smoke.py runs it in the suite). Loops stays at 100: its figure is named for it."""
        return cls(raw=10, engine=3, warmup=1, rounds=1, profile_cases=2, reference_raw=5, reference_engine=2,
                   sandbox_change=2, sandbox_script=2, sandbox_conditions=20, sandbox_engine=1,
                   loops=100, inbox_tasks=200, inbox_users=10, inbox_runs=5,
                   http_clients=2, http_tasks=16, http_warmup=2, http_seconds=30.0, http_rate=40.0,
                   http_paced_seconds=0.25,
                   timer_waiting=20, timer_due=4, timer_due_in_s=(0.3, 0.8), timer_idle_ticks=10,
                   dashboard_cases=200, dashboard_tasks=100, dashboard_runs=2)


# the parts ----------------------------------------------------------------------------------------
def part_engine(plan: Plan, dbs: list[str], args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from bench.engine_bench import Sizes, run

    sizes = Sizes(raw_instances=plan.raw, engine_instances=plan.engine, warmup=plan.warmup, rounds=plan.rounds,
                  profile_instances=plan.profile_cases, reference_raw=plan.reference_raw,
                  reference_engine=plan.reference_engine)
    profile_on = args.profile_database if args.profile_database in dbs else dbs[0]
    return run(sizes, dbs, profile=args.profile, log=log, profile_database=profile_on)


def part_sandbox(plan: Plan, _dbs: list[str], _args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from bench.sandbox_bench import Sizes, run

    return run(Sizes(change=plan.sandbox_change, script=plan.sandbox_script, conditions=plan.sandbox_conditions,
                     engine=plan.sandbox_engine, warmup=max(1, plan.warmup // 2), rounds=plan.rounds), log=log)


def part_loops(plan: Plan, dbs: list[str], _args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from bench.loop_bench import run

    kind = _primary("loops", dbs)
    log(f"loops: {plan.loops} rounds of a user task in a rework loop on {kind} ...")
    with fresh_database(kind) as (url, tmp):
        return {kind: run(url, tmp, plan.loops)}


def part_inbox(plan: Plan, dbs: list[str], _args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from bench.inbox_bench import run

    out = {}
    for kind in dbs:
        log(f"inbox: {plan.inbox_tasks:,} open tasks, {plan.inbox_users:,} users on {kind} ...")
        with fresh_database(kind, "opsflow-inbox-bench-") as (url, tmp):
            out[kind] = run(url, tmp, plan.inbox_tasks, plan.inbox_users, plan.inbox_runs)
    return out


def part_http(plan: Plan, dbs: list[str], _args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from bench.http_bench import run

    kind = _primary("http", dbs)
    log(f"http: {plan.http_clients} clients, {plan.http_tasks} closed-loop completions, then {plan.http_rate:g}/s "
        f"for {plan.http_paced_seconds:g} s ({plan.http_seconds:g} s at most each), gunicorn on {kind} ...")
    return {kind: run(kind, plan.http_clients, plan.http_tasks, plan.http_warmup, plan.http_workers,
                      plan.http_threads, plan.http_rate or None, plan.http_seconds, plan.http_paced_seconds,
                      log=log)}


def part_timers(plan: Plan, dbs: list[str], _args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from bench.timer_bench import run_one

    out = {}
    for kind in dbs:
        log(f"timers: {plan.timer_due} due among {plan.timer_waiting:,} waiting, {plan.timer_workers} ticker "
            f"processes on {kind} ...")
        with fresh_database(kind, "opsflow-timer-bench-") as (url, tmp):
            out[kind] = run_one(url, tmp, plan.timer_waiting, plan.timer_due, plan.timer_workers,
                                plan.timer_due_in_s, plan.timer_idle_ticks)
    return out


def part_dashboard(plan: Plan, dbs: list[str], _args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from bench.dashboard_bench import run

    kind = _primary("dashboard", dbs)
    log(f"dashboard: {plan.dashboard_cases:,} cases on {kind} ...")
    with fresh_database(kind, "opsflow-dash-") as (url, tmp):
        return {kind: run(url, tmp, plan.dashboard_cases, plan.dashboard_runs, plan.dashboard_tasks)}


PART_RUNNERS = {"engine": part_engine, "sandbox": part_sandbox, "loops": part_loops, "inbox": part_inbox,
                "http": part_http,
                "timers": part_timers, "dashboard": part_dashboard}


def _primary(part: str, dbs: list[str]) -> str:
    return PRIMARY[part] if PRIMARY[part] in dbs else dbs[0]


# the top-level figures ----------------------------------------------------------------------------
def _other(dbs: list[str], kind: str) -> str | None:
    return next((d for d in dbs if d != kind), None)


def figures(result: dict[str, Any], dbs: list[str]) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """(top-level values, where each was measured, the other database's value where one ran)."""
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    other: dict[str, Any] = {}

    def put(key: str, pick: Callable[[dict[str, Any]], Any], per_db: dict[str, Any] | None, kind: str) -> None:
        if not per_db or kind not in per_db:
            return
        values[key], where[key] = pick(per_db[kind]), kind
        alt = _other(dbs, kind)
        if alt and alt in per_db and per_db[alt] is not None:
            other[key] = pick(per_db[alt])

    engine = result.get("engine")
    if engine:
        change, kind = engine["change"], _primary("engine", dbs)
        values["raw_spiff_instances_per_s"] = change["raw"]["instances_per_s"]
        where["raw_spiff_instances_per_s"] = "memory"
        per_db = {d: change[d] for d in dbs if d in change}
        put("engine_instances_per_s", lambda r: r["instances_per_s"], per_db, kind)
        put("engine_vs_raw_ratio", lambda r: r["engine_vs_raw_ratio"], per_db, kind)
        put("complete_task_ms_median", lambda r: r["complete_task_ms_median"], per_db, kind)
        put("complete_task_ms_p95", lambda r: r["complete_task_ms_p95"], per_db, kind)
        put("start_case_ms_median", lambda r: r["start_case_ms_median"], per_db, kind)
        put("state_bytes_change_case", lambda r: r["state_bytes_running_max"], per_db, kind)
    if result.get("sandbox"):
        sandbox = result["sandbox"]
        values["sandbox_vs_raw_spiff_change"] = sandbox["change"]["sandbox_vs_raw"]
        where["sandbox_vs_raw_spiff_change"] = "memory"
        for key, name in (("engine_budgets_on_vs_off", "on_vs_budgets_off"),
                          ("engine_sandbox_vs_plain", "on_vs_plain")):
            values[key], where[key] = sandbox["engine"][name], sandbox["engine"]["database"]
    if result.get("loops"):
        loops = result["loops"]
        kind = next(iter(loops))
        put("state_bytes_after_100_loops", lambda r: r[f"state_bytes_after_{r['loops']}_loops"], loops, kind)
    if result.get("inbox"):
        put("inbox_query_ms_p95_100k", lambda r: r["inbox_query_p95_ms"], result["inbox"],
            _primary("inbox", dbs))
    if result.get("http"):
        http = result["http"]
        kind = next(iter(http))
        put("http_completions_per_s", lambda r: r["completions_per_s"], http, kind)
        put("http_p95_ms", lambda r: r["latency_ms_p95"], http, kind)
        put("http_errors", lambda r: r["errors"], http, kind)
        put("rss_mb_per_worker", lambda r: r["rss_mb_per_worker"], http, kind)
    if result.get("timers"):
        kind = _primary("timers", dbs)
        put("timer_lateness_ms_p99", lambda r: r["late_ms_p99"], result["timers"], kind)
        put("ticker_scan_ms_10_vs_10k", lambda r: r["idle_tick_ratio"], result["timers"], kind)
    if result.get("dashboard"):
        dash = result["dashboard"]
        put("dashboard_ms_p95", lambda r: r["dashboard_ms_p95"], dash, next(iter(dash)))
    return values, where, other


# printing -----------------------------------------------------------------------------------------
DB_LABEL = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "memory": "memory"}


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1 else f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def render(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(padded).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *map(line, rows)]


def summary_table(result: dict[str, Any]) -> list[str]:
    where, other = result["figures_measured_on"], result["figures_other_database"]
    rows = []
    loops = next(iter((result.get("loops") or {}).values()), None)
    for key in (*REQUIRED_KEYS, "dashboard_ms_p95"):
        target = TARGETS.get(key, "")
        if key == "state_bytes_after_100_loops" and loops:
            target = f"~{loops['state_bytes_after_1_loop']:,} (flat)"
        value = result.get(key)
        on = DB_LABEL.get(where.get(key, ""), "") if key in result else "(not run)"
        alt = other.get(key)
        alt_db = _other(result["databases"], where.get(key, ""))
        rows.append([key, fmt(value), target, on,
                     f"{fmt(alt)} ({DB_LABEL[alt_db]})" if alt is not None and alt_db else ""])
    lines = render(["figure (latest.json)", "value", "target", "measured on", "other database"], rows)
    engine = result.get("engine")
    if engine:
        change = engine["change"]
        lines.append(f"engine figures: {change['scenario']['bpmn']} along one path ({len(change['scenario']['path'])} "
                     f"user tasks, a timer), raw SpiffWorkflow the same in memory, in alternating rounds")
    http = next(iter((result.get("http") or {}).values()), None)
    if http:
        lines.append(f"http_completions_per_s: closed loop, {http['clients']} clients; http_p95_ms: "
                     f"{http['latency_ms_p95_source']}; rss_mb_per_worker: mean VmRSS of the "
                     f"{len(http['memory']['workers'])} gunicorn workers after the load (MiB)")
    timers = next(iter((result.get("timers") or {}).values()), None)
    if timers:
        lines.append(f"ticker_scan_ms_10_vs_10k: median idle tick with {timers['waiting_timers']:,} timers waiting "
                     f"/ with 10 (1 = the scan does not grow with waiting timers)")
    return lines


def engine_table(change: dict[str, Any], dbs: list[str]) -> list[str]:
    raw = change["raw"]
    sides = [d for d in dbs if d in change]
    headers = ["change scenario", "raw Spiff (memory)", *(f"engine {DB_LABEL[d]}" for d in sides)]
    rows = [["cases/s end to end", fmt(raw["instances_per_s"]), *(fmt(change[d]["instances_per_s"]) for d in sides)],
            ["ms per case", fmt(raw["ms_per_instance"]), *(fmt(change[d]["ms_per_instance"]) for d in sides)],
            ["CPU ms per case (this process)", fmt(raw["cpu_ms_per_instance"]),
             *(fmt(change[d]["cpu_ms_per_instance"]) for d in sides)],
            ["engine / raw", "", *(fmt(change[d]["engine_vs_raw_ratio"]) for d in sides)],
            ["start, median ms", fmt(raw["start_ms_median"]), *(fmt(change[d]["start_case_ms_median"]) for d in sides)],
            ["complete (raw: run + engine steps), median ms", fmt(raw["step_ms_median"]),
             *(fmt(change[d]["complete_task_ms_median"]) for d in sides)],
            ["complete, p95 ms", fmt(raw["step_ms_p95"]), *(fmt(change[d]["complete_task_ms_p95"]) for d in sides)],
            ["complete, max ms", "", *(fmt(change[d]["complete_task_ms_max"]) for d in sides)],
            ["complete, median CPU ms", "", *(fmt(change[d]["complete_task_cpu_ms_median"]) for d in sides)],
            ["fire_due_timers (the window), median ms", "",
             *(fmt((change[d]["fire_due_timers_ms"] or {}).get("median")) for d in sides)],
            ["first case, cold ms", "", *(fmt(change[d]["first_case_cold_ms"]) for d in sides)],
            ["state bytes, running (max)", "", *(fmt(change[d]["state_bytes_running_max"]) for d in sides)]]
    first = change[sides[0]] if sides else {"complete_task_ms_median_by_task": {}, "sql_statements_per_call": {}}
    for bpmn_id in first["complete_task_ms_median_by_task"]:
        rows.append([f"  complete {bpmn_id!r}, median ms", "",
                     *(fmt(change[d]["complete_task_ms_median_by_task"].get(bpmn_id)) for d in sides)])
    for label in first["sql_statements_per_call"]:
        rows.append([f"  SQL statements, {label}", "", *(fmt(change[d]["sql_statements_per_call"].get(label))
                                                         for d in sides)])
    return render(headers, rows)


def detail_lines(result: dict[str, Any]) -> list[str]:
    out: list[str] = []
    dbs = result["databases"]
    engine = result.get("engine")
    if engine:
        change = engine["change"]
        out += ["", *engine_table(change, dbs)]
        out.append(f"path: {', '.join(change['scenario']['path'])}; timer before "
                   f"{', '.join(change['scenario']['timers'])}; raw n={change['raw']['instances']}, engine "
                   f"n={change[dbs[0]]['instances'] if dbs[0] in change else '?'} per database, "
                   f"{change['rounds']} alternating rounds after {change['warmup']} warm-up cases")
        ref = engine["access_request"]
        cells = [f"raw {fmt(ref['raw']['instances_per_s'])}/s"]
        for d in dbs:
            if d in ref:
                cells.append(f"{DB_LABEL[d]} {fmt(ref[d]['instances_per_s'])}/s (ratio "
                             f"{fmt(ref[d]['engine_vs_raw_ratio'])}, complete median "
                             f"{fmt(ref[d]['complete_task_ms_median'])} ms)")
        out.append("access_request reference (tests/fixtures/two_lanes.bpmn): " + "; ".join(cells))
    if result.get("sandbox"):
        from bench.sandbox_bench import report as sandbox_report

        sandbox = result["sandbox"]
        out += ["", *sandbox_report(sandbox),
                f"ratio = sandbox / raw time (engine: as shipped / the other engine), same run, "
                f"{sandbox['change']['rounds']} alternating rounds; load average {sandbox['load_average_1m']}"]
    for kind, loops in (result.get("loops") or {}).items():
        last = loops[f"state_bytes_after_{loops['loops']}_loops"]
        out += ["", f"loops ({DB_LABEL[kind]}): state bytes at start {fmt(loops['state_bytes_at_start'])}, after 1 "
                    f"round {fmt(loops['state_bytes_after_1_loop'])}, 10 {fmt(loops['state_bytes_after_10_loops'])}, "
                    f"{loops['loops']} {fmt(last)} "
                    f"({loops['growth_bytes_per_loop']:+,.1f} per round); complete median ms: first 10 rounds "
                    f"{fmt(loops['complete_ms_median_first_10'])}, last 10 {fmt(loops['complete_ms_median_last_10'])}"]
    if result.get("inbox"):
        rows = [[DB_LABEL[k], fmt(v["open_tasks"]), fmt(v["inbox_query_p50_ms"]), fmt(v["inbox_query_p95_ms"]),
                 fmt(v["inbox_query_overdue_p95_ms"]), fmt(v["nav_counts_p95_ms"]), fmt(v.get("inbox_page_p95_ms"))]
                for k, v in result["inbox"].items()]
        out += ["", *render(["inbox", "open tasks", "query p50 ms", "query p95 ms", "overdue p95 ms",
                             "nav counts p95 ms", "page GET / p95 ms"], rows)]
    for kind, http in (result.get("http") or {}).items():
        workers = ", ".join(f"{m['rss_mb']} MiB (peak {m['peak_rss_mb']})" for m in http["memory"]["workers"].values())
        out += ["", f"http ({DB_LABEL[kind]}, {http['gunicorn']}, {http['clients']} clients, "
                    f"{http['load_generator']}; errors {http['errors']}"
                    + (f", e.g. {http['error_samples'][:2]}" if http["errors"] else "") + "):"]
        for phase in ("capacity", "paced"):
            p = http.get(phase)
            if not p:
                continue
            line = (f"  {phase} ({p['mode']}): {fmt(p['completions'])} completions in {p['wall_s']} s = "
                    f"{fmt(p['completions_per_s'])}/s; latency ms median {p['latency_ms_median']}, p95 "
                    f"{p['latency_ms_p95']}, p99 {p['latency_ms_p99']}, max {p['latency_ms_max']}")
            if "latency_from_schedule_ms_p95" in p:
                line += (f"; from when due: median {p['latency_from_schedule_ms_median']}, p95 "
                         f"{p['latency_from_schedule_ms_p95']}, p99 {p['latency_from_schedule_ms_p99']}")
            out.append(line + ("; stopped by the time bound" if p.get("stopped_by_time") else ""))
        out.append(f"  RSS per worker after the load: {workers}; master {http['memory']['master']['rss_mb']} MiB")
    if result.get("timers"):
        rows = [[DB_LABEL[k], fmt(v["idle_tick_ms_10_waiting"]["median"]),
                 fmt(v["idle_tick_ms_10000_waiting"]["median"]), fmt(v["idle_tick_ratio"]),
                 f"{v['fired']}/{v['due_timers']}", fmt(v["fired_more_than_once"]), fmt(v["late_ms_median"]),
                 fmt(v["late_ms_p95"]), fmt(v["late_ms_p99"]), fmt(v["late_ms_max"])]
                for k, v in result["timers"].items()]
        first = next(iter(result["timers"].values()))
        out += ["", *render(["timers", "idle tick 10 ms", f"idle tick {first['waiting_timers']:,} ms", "ratio",
                             "fired", "twice", "late p50 ms", "p95", "p99", "max"], rows),
                f"{first['due_timers']} timers due {first['due_in_s'][0]:g}-{first['due_in_s'][1]:g} s ahead, "
                f"{first['workers']} ticker processes; idle tick times are medians"]
    for kind, dash in (result.get("dashboard") or {}).items():
        out += ["", f"dashboard ({DB_LABEL[kind]}, {dash['cases']:,} cases): p50 {fmt(dash['dashboard_ms_p50'])} ms, "
                    f"p95 {fmt(dash['dashboard_ms_p95'])} ms"]
    return out


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [*summary_table(result), *detail_lines(result), "",
             f"code {result['code_revision']}; {result['generated_at']}; parts {', '.join(result['parts_run'])}"
             f"{' (--quick: tiny sizes, not a measurement)' if result['quick'] else ''}; wall {result['wall_s']} s "
             f"({', '.join(f'{k} {v} s' for k, v in result['part_seconds'].items())})",
             f"machine: {m['cores']} cores ({m['cpu']}), {m['memory_mb']} MiB, Python {m['python_version']}, "
             f"SpiffWorkflow {m['spiffworkflow_version']}, SQLAlchemy {m['sqlalchemy_version']}; load average "
             f"{m['load_average_1m_at_start']} at start, {m['load_average_1m_at_end']} at end",
             f"databases: {m['database']}"]
    if result.get("postgresql_note"):
        lines.append(f"PostgreSQL: {result['postgresql_note']}")
    for part, error in result["errors"].items():
        lines.append(f"FAILED {part}: {error.strip().splitlines()[-1]}")
    return "\n".join(lines)


# main ---------------------------------------------------------------------------------------------
def _parts(value: str | None) -> list[str]:
    names = [p.strip() for p in (value or "").split(",") if p.strip()]
    unknown = [p for p in names if p not in PARTS]
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}; parts: {', '.join(PARTS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes in every part (a smoke run, not a measurement)")
    parser.add_argument("--only", help=f"run only these parts, comma-separated ({', '.join(PARTS)})")
    parser.add_argument("--skip", help="leave these parts out, comma-separated")
    parser.add_argument("--raw", type=int, help="raw SpiffWorkflow change instances (OPSFLOW_BENCH_RAW_N)")
    parser.add_argument("--engine", type=int, help="engine change cases per database (OPSFLOW_BENCH_ENGINE_N)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up cases per side (OPSFLOW_BENCH_WARMUP)")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile engine.tasks.complete on the change scenario and print where the time goes")
    parser.add_argument("--profile-cases", type=int, help="change cases to profile (OPSFLOW_BENCH_PROFILE_N)")
    parser.add_argument("--profile-database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the database the profile runs on (default sqlite)")
    parser.add_argument("--http-clients", type=int, help="concurrent HTTP clients (default 50)")
    parser.add_argument("--http-tasks", type=int, help="closed-loop (capacity) HTTP completions (default 3000)")
    parser.add_argument("--http-seconds", type=float, help="time bound of each HTTP phase in s (default 60)")
    parser.add_argument("--http-rate", type=float,
                        help="completions/s offered in the paced HTTP phase (default 300; 0: no paced phase)")
    parser.add_argument("--inbox-tasks", type=int, help="open tasks for the inbox part (default 100000)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only, even if a PostgreSQL URL is set")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args(argv)

    only, skip = _parts(args.only), _parts(args.skip)
    parts = [p for p in PARTS if (not only or p in only) and p not in skip]
    base = Plan.quick() if args.quick else Plan()
    from bench.engine_bench import Sizes

    env = Sizes.from_env(quick=args.quick)  # OPSFLOW_BENCH_* environment overrides
    plan = dataclasses.replace(
        base, raw=args.raw or env.raw_instances, engine=args.engine or env.engine_instances,
        warmup=args.warmup if args.warmup is not None else env.warmup,
        profile_cases=args.profile_cases or env.profile_instances,
        http_clients=args.http_clients or base.http_clients, http_tasks=args.http_tasks or base.http_tasks,
        http_seconds=args.http_seconds or base.http_seconds,
        http_rate=args.http_rate if args.http_rate is not None else base.http_rate,
        inbox_tasks=args.inbox_tasks or base.inbox_tasks)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    dbs, note = ["sqlite"], None
    url = None if args.no_postgres else postgres_url()
    if args.no_postgres:
        note = "skipped (--no-postgres)"
    elif not url:
        note = "skipped: set OPSFLOW_BENCH_DATABASE_URL (or OPSFLOW_TEST_DATABASE_URL); HTTP ran on SQLite"
    else:
        problem = postgres_problem(url)
        if problem:
            note = f"unreachable ({problem}); every part ran on SQLite"
        else:
            dbs.append("postgresql")
    if note:
        log(f"PostgreSQL {note}")

    started = time.perf_counter()
    machine = machine_info()
    result: dict[str, Any] = {}
    part_seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    for part in parts:
        t0 = time.perf_counter()
        try:
            result[part] = PART_RUNNERS[part](plan, dbs, args, log)
        except Exception:  # noqa: BLE001 (reported, the other parts still run; exit status 1)
            errors[part] = traceback.format_exc()
            log(f"part {part} FAILED:\n{errors[part]}")
        part_seconds[part] = round(time.perf_counter() - t0, 1)
        log(f"{part}: {part_seconds[part]} s")

    values, where, other = figures(result, dbs)
    described = _databases(result)
    machine.update({"load_average_1m_at_end": load_average(),
                    "database": "; ".join(f"{DB_LABEL[k]}: {v}" for k, v in described.items()) or "-",
                    "databases": described})
    out: dict[str, Any] = {
        **values,
        "figures_measured_on": where,
        "figures_other_database": other,
        "machine": machine,
        "databases": dbs,
        "postgresql_note": note,
        "code_revision": code_revision(),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "parts_run": parts,
        "part_seconds": part_seconds,
        "wall_s": round(time.perf_counter() - started, 1),
        "plan": dataclasses.asdict(plan),
        "errors": errors,
        **result,
    }
    print(report(out))
    profile = (result.get("engine") or {}).get("profile")
    if profile:
        from bench.engine_bench import profile_report

        print()
        print(profile_report(profile))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 1 if errors else 0


def _databases(result: dict[str, Any]) -> dict[str, str]:
    """The server behind each database kind, as the parts described it."""
    found: dict[str, str] = {}
    for part in result.values():
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key in ("sqlite", "postgresql") and isinstance(value, dict) and "database" in value:
                found.setdefault(key, str(value.get("database_detail") or value["database"]))
            elif isinstance(value, dict):
                for sub_key, sub in value.items():
                    if sub_key in ("sqlite", "postgresql") and isinstance(sub, dict) and "database" in sub:
                        found.setdefault(sub_key, str(sub["database"]))
    return found


if __name__ == "__main__":
    raise SystemExit(main())
