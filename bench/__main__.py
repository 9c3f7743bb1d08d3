"""`python -m bench [--quick] [--profile] [--no-postgres] [--out PATH]`: run, print a table, write JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.engine_bench import Sizes, postgres_url, run

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"

# docs/ARCHITECTURE.md, "Performance budget (2 cores, SQLite file, durable commit)".
BUDGET = {"start_case_ms_median": "<= 1.5", "complete_task_ms_median": "<= 1"}

# Figures only the engine has: (label, key in the per-database dict).
ENGINE_ROWS = (
    ("engine / raw throughput", "engine_vs_raw_ratio"),
    ("start case, median ms", "start_case_ms_median"),
    ("start case, p95 ms", "start_case_ms_p95"),
    ("complete task, median ms", "complete_task_ms_median"),
    ("complete task, p95 ms", "complete_task_ms_p95"),
    ("complete task, max ms", "complete_task_ms_max"),
    ("start case, median CPU ms", "start_case_cpu_ms_median"),
    ("complete task, median CPU ms", "complete_task_cpu_ms_median"),
    ("first case, cold ms", "first_case_cold_ms"),
    ("state bytes, running (max)", "state_bytes_running_max"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1 else f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(result: dict[str, Any]) -> str:
    raw, sqlite, pg = result["raw"], result["sqlite"], result["postgresql"]
    headers = ["figure", "raw Spiff (memory)", "engine SQLite", *(["engine PostgreSQL"] if pg else []), "budget"]
    rows = [["instances/s end to end", _fmt(raw["instances_per_s"]), _fmt(sqlite["instances_per_s"]),
             *([_fmt(pg["instances_per_s"])] if pg else []), ""],
            ["ms per instance", _fmt(raw["ms_per_instance"]), _fmt(sqlite["ms_per_instance"]),
             *([_fmt(pg["ms_per_instance"])] if pg else []), ""],
            ["CPU ms per instance (this process)", _fmt(raw["cpu_ms_per_instance"]),
             _fmt(sqlite["cpu_ms_per_instance"]), *([_fmt(pg["cpu_ms_per_instance"])] if pg else []), ""]]
    for label, key in ENGINE_ROWS:
        rows.append([label, "", _fmt(sqlite.get(key)), *([_fmt(pg.get(key))] if pg else []),
                     BUDGET.get(key, "")])
    for label, count in sqlite["sql_statements_per_call"].items():
        name = "start" if label == "start" else f"complete {label!r}"
        rows.append([f"  SQL statements, {name}", "", _fmt(count),
                     *([_fmt(pg["sql_statements_per_call"].get(label))] if pg else []), ""])
    for bpmn_id in sqlite["complete_task_ms_median_by_task"]:
        rows.append([f"  complete {bpmn_id!r}, median ms", "",
                     _fmt(sqlite["complete_task_ms_median_by_task"][bpmn_id]),
                     *([_fmt(pg["complete_task_ms_median_by_task"].get(bpmn_id))] if pg else []), ""])
    change = result["change_case"]
    rows.append(["state bytes, change case (max running)", "",
                 _fmt(result["state_bytes_change_case"]), *([""] if pg else []), ""])
    if change.get("complete_task_ms_median_warm"):
        rows.append([f"  change case: complete, median ms ({len(change['steps']) - 1} steps, 1 case)", "",
                     _fmt(change["complete_task_ms_median_warm"]), *([""] if pg else []), ""])
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(padded).rstrip()

    m = result["machine"]
    out = [line(headers), "  ".join("-" * w for w in widths), *map(line, rows), "",
           f"scenario: {result['scenario']['bpmn']} ({result['scenario']['process_id']}, "
           f"{result['scenario']['user_tasks_per_instance']} user tasks per instance); "
           f"raw n={result['sizes']['raw_instances']}, engine n={result['sizes']['engine_instances']} "
           f"per database after {result['sizes']['warmup']} warm-up cases; code {result['code_revision']}",
           f"machine: {m['cores']} cores ({m['cpu']}), Python {m['python_version']}, "
           f"SpiffWorkflow {m['spiffworkflow_version']}, SQLAlchemy {m['sqlalchemy_version']}, "
           f"load average {m['load_average_1m_at_start']} at start",
           f"databases: {m['database']}" + (f"; {m['database_postgresql']}" if pg else "")]
    if change.get("error"):
        out.append(f"change case: stopped at {change.get('stopped_at')}: {change['error']} "
                   f"(state bytes from {change['state_bytes_source']})")
    if not pg:
        out.append("PostgreSQL: skipped (set OPSFLOW_BENCH_DATABASE_URL or OPSFLOW_TEST_DATABASE_URL)")
    return "\n".join(out)


def profile_report(profile: dict[str, Any]) -> str:
    lines = [f"cProfile of {profile['complete_calls']} engine.tasks.complete calls on {profile['database']} "
             f"(profiled time {profile['profiled_ms_per_call']} ms per call; the profiler inflates it):",
             "cumulative ms per complete() call:"]
    width = max(len(k) for k in profile["cumulative_ms_per_call"])
    lines += [f"  {k.ljust(width)}  {v:8.3f}" for k, v in profile["cumulative_ms_per_call"].items()]
    lines += ["", profile["top_by_own_time"].rstrip()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, not a measurement)")
    parser.add_argument("--raw", type=int, help="raw SpiffWorkflow instances (OPSFLOW_BENCH_RAW_N)")
    parser.add_argument("--engine", type=int, help="engine cases per database (OPSFLOW_BENCH_ENGINE_N)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up cases (OPSFLOW_BENCH_WARMUP)")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile engine.tasks.complete on SQLite and print where the time goes")
    parser.add_argument("--profile-cases", type=int, help="cases to profile (OPSFLOW_BENCH_PROFILE_N)")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL even if a URL is set")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args(argv)

    base = Sizes.from_env(quick=args.quick)
    sizes = Sizes(raw_instances=args.raw or base.raw_instances,
                  engine_instances=args.engine or base.engine_instances,
                  warmup=args.warmup if args.warmup is not None else base.warmup,
                  profile_instances=args.profile_cases or base.profile_instances)
    use_pg = not args.no_postgres and postgres_url() is not None
    result = run(sizes, postgres=use_pg, profile=args.profile,
                 log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(table(result))
    if "profile_sqlite" in result:
        print()
        print(profile_report(result["profile_sqlite"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
