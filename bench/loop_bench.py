"""A case's stored state under a rework loop: 100 rounds of one user task through the engine.

    .venv/bin/python -m bench.loop_bench [--loops 100] [--postgres]

tests/fixtures/loop.bpmn (`rework_loop`): a script task sets up the round counter, then the user
task `fix` (ops_engineer) loops back to itself through the gateway `again` for as long as the
submitted form says `defects_remaining`. Each round is one `engine.tasks.complete` call with
`defects_remaining: true`; after the last round the case is still running with a fresh `fix`
open, and its stored state (`process_instance.state`, UTF-8 bytes, read back from the database)
is the figure. The reference beside it is the same case's state after one round: a state bounded
by the open work stays flat; one that keeps history grows by about the same amount every round.
The case is then finished (`defects_remaining: false`) to prove the loop still ends.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import FIXTURES, ROOT, describe_database, fresh_database, ms, state_bytes

FIXTURE = FIXTURES / "loop.bpmn"


def run(database_url: str, tmp: Path, loops: int = 100) -> dict[str, Any]:
    from engine import ProcessEngine, Settings
    from engine.spiff.parsing import SourceFile

    engine = ProcessEngine(Settings(database_url=database_url, processes_dir=ROOT / "processes",
                                    forms_dir=FIXTURES / "forms", timezone="Asia/Shanghai", var_dir=tmp / "var"))
    try:
        engine.migrate()
        engine.identity.seed_roles(ROOT / "processes" / "roles.json")
        actor = engine.identity.add_user("bench_engineer", ["ops_engineer"])
        engine.repository.deploy([SourceFile(FIXTURE.name, FIXTURE.read_bytes())], "bench")
        case_id = engine.runtime.start("rework_loop", actor, {"target": 1, "rounds": 0}).id
        _status, at_start = state_bytes(engine, case_id)
        open_tasks = [t for t in engine.tasks.inbox(actor, "all", process_id="rework_loop") if t.instance_id == case_id]
        sizes: list[int] = []
        completes: list[float] = []
        for _round in range(loops):
            fix = next(t for t in open_tasks if t.bpmn_id == "fix")
            t0 = time.perf_counter()
            open_tasks = engine.tasks.complete(fix.id, actor, {"defects_remaining": True})
            completes.append(time.perf_counter() - t0)
            status, size = state_bytes(engine, case_id)
            if status != "running":
                raise RuntimeError(f"rework_loop ended after round {_round + 1}; expected it to loop")
            sizes.append(size)
        fix = next(t for t in open_tasks if t.bpmn_id == "fix")
        engine.tasks.complete(fix.id, actor, {"defects_remaining": False})
        final_status, final_size = state_bytes(engine, case_id)
        if final_status != "completed":
            raise RuntimeError(f"rework_loop is {final_status} after the last round; expected completed")
        head, tail = completes[:10], completes[-10:]
        return {
            "process": "tests/fixtures/loop.bpmn (rework_loop, user task `fix` looping on itself)",
            "database": describe_database(engine),
            "loops": loops,
            "state_bytes_at_start": at_start,
            "state_bytes_after_1_loop": sizes[0],
            "state_bytes_after_10_loops": sizes[min(9, loops - 1)],
            f"state_bytes_after_{loops}_loops": sizes[-1],
            "growth_bytes_per_loop": round((sizes[-1] - sizes[0]) / max(loops - 1, 1), 1),
            "state_bytes_by_loop": sizes,
            "state_bytes_completed": final_size,
            "complete_ms_median_first_10": ms(statistics.median(head)),
            "complete_ms_median_last_10": ms(statistics.median(tail)),
        }
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=100)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL (OPSFLOW_BENCH_DATABASE_URL) not SQLite")
    args = parser.parse_args(argv)
    with fresh_database("postgresql" if args.postgres else "sqlite") as (url, tmp):
        result = run(url, tmp, args.loops)
    result.pop("state_bytes_by_loop")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
