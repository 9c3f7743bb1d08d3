"""The benchmark runs end to end at tiny sizes and reports every figure (not a timing test).

`python -m bench --quick` runs every part for real (raw Spiff vs the engine on the change process,
the sandbox against Spiff's plain script engine, the rework loop, the inbox, gunicorn with a separate
load process, ticker processes, the dashboard), each on a fresh database: PostgreSQL too when
OPSFLOW_TEST_DATABASE_URL is set. Only that the harness works is checked here; the figures
themselves pass or fail nothing.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import subprocess
import sys
from pathlib import Path

from bench.figures import REQUIRED_KEYS

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "figure (latest.json)" in proc.stdout

    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["errors"] == {}
    assert result["parts_run"] == ["engine", "sandbox", "loops", "inbox", "http", "timers", "dashboard"]
    for key in REQUIRED_KEYS:
        value = result.get(key)
        assert isinstance(value, numbers.Real) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value), (key, value)
        if key == "http_errors":
            assert value == 0, result["http"]
        else:
            assert value > 0, (key, value)
        assert key in result["figures_measured_on"], key
    machine = result["machine"]
    assert machine["cores"] > 0
    assert machine["python_version"] and machine["spiffworkflow_version"] and machine["database"]

    # The ratio's reference is the change process, run raw and through the engine along the same path.
    change = result["engine"]["change"]
    assert change["scenario"]["process_id"] == "change"
    assert change["raw"]["user_tasks_per_instance"] == len(change["scenario"]["path"]) > 5
    # The sandbox part timed every workload on both sides; the engine's on/off sides completed every case.
    sandbox = result["sandbox"]
    for workload in ("change", "script", "condition"):
        assert sandbox[workload]["raw"]["seconds"] > 0 and sandbox[workload]["sandbox"]["seconds"] > 0, workload
    for side in ("plain", "budgets_off", "on"):
        assert sandbox["engine"][side]["cases"] > 0, side
    assert result["figures_measured_on"]["engine_budgets_on_vs_off"] == "sqlite"
    # The HTTP load ran in both phases and every timer fired exactly once.
    http = next(iter(result["http"].values()))
    assert http["capacity"]["completions"] > 0 and http["paced"]["completions"] > 0
    assert len(http["memory"]["workers"]) >= 1
    for timers in result["timers"].values():
        assert timers["fired"] == timers["due_timers"] and timers["fired_more_than_once"] == 0, timers

    if os.environ.get("OPSFLOW_BENCH_DATABASE_URL") or os.environ.get("OPSFLOW_TEST_DATABASE_URL"):
        assert result["databases"] == ["sqlite", "postgresql"], result["postgresql_note"]
        assert result["figures_measured_on"]["http_completions_per_s"] == "postgresql"
        pg = change["postgresql"]
        for key in ("instances_per_s", "engine_vs_raw_ratio", "complete_task_ms_median",
                    "complete_task_ms_p95", "start_case_ms_median", "state_bytes_running_max"):
            assert pg[key] > 0, (key, pg[key])
