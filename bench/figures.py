"""The figures bench/results/latest.json promises at its top level (issue 8), and their targets."""

from __future__ import annotations

# Every key is a number (times in ms); tests/test_bench_smoke.py checks each after a --quick run.
REQUIRED_KEYS = (
    "raw_spiff_instances_per_s",
    "engine_instances_per_s",
    "engine_vs_raw_ratio",
    "sandbox_vs_raw_spiff_change",
    "engine_sandbox_vs_plain",
    "engine_budgets_on_vs_off",
    "complete_task_ms_median",
    "complete_task_ms_p95",
    "start_case_ms_median",
    "state_bytes_change_case",
    "state_bytes_after_100_loops",
    "inbox_query_ms_p95_100k",
    "http_completions_per_s",
    "http_p95_ms",
    "http_errors",
    "timer_lateness_ms_p99",
    "ticker_scan_ms_10_vs_10k",
    "rss_mb_per_worker",
)

# Targets for the table (issue 8): figures to read against, not checks; the bench never fails on them.
TARGETS = {
    "engine_vs_raw_ratio": ">= 0.5",
    "engine_budgets_on_vs_off": "<= 1.1",
    "complete_task_ms_median": "<= 1",
    "start_case_ms_median": "<= 1.5",
    "inbox_query_ms_p95_100k": "<= 20",
    "http_completions_per_s": ">= 300",
    "http_p95_ms": "<= 100",
    "http_errors": "0",
    "timer_lateness_ms_p99": "<= 1000",
    "ticker_scan_ms_10_vs_10k": "~1 (flat)",
    "dashboard_ms_p95": "<= 200",
}
