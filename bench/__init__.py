"""OpsFlow benchmarks: figures to read, not pass/fail tests. Run them with `python -m bench`."""

from bench.engine_bench import REQUIRED_KEYS, Sizes, run

__all__ = ["REQUIRED_KEYS", "Sizes", "run"]
