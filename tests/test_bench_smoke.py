"""The benchmark runs end to end at tiny sizes and reports every figure (not a timing test)."""

from __future__ import annotations

import json
import numbers
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The figures bench/results/latest.json promises (times in ms).
REQUIRED_KEYS = ("raw_spiff_instances_per_s", "engine_instances_per_s", "engine_vs_raw_ratio",
                 "complete_task_ms_median", "complete_task_ms_p95", "start_case_ms_median",
                 "state_bytes_change_case")


def test_bench_quick_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "complete task, median ms" in proc.stdout

    result = json.loads(out.read_text(encoding="utf-8"))
    for key in REQUIRED_KEYS:
        value = result[key]
        assert isinstance(value, numbers.Real) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)
    machine = result["machine"]
    assert machine["cores"] > 0
    assert machine["python_version"] and machine["spiffworkflow_version"] and machine["database"]
    if os.environ.get("OPSFLOW_BENCH_DATABASE_URL") or os.environ.get("OPSFLOW_TEST_DATABASE_URL"):
        pg = result["postgresql"]
        for key in ("instances_per_s", "engine_vs_raw_ratio", "complete_task_ms_median",
                    "complete_task_ms_p95", "start_case_ms_median", "state_bytes_running_max"):
            assert pg[key] > 0, (key, pg[key])
