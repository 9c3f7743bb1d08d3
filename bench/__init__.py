"""OpsFlow benchmarks: figures to read, not pass/fail tests. Run them all with `python -m bench`."""

from bench.figures import REQUIRED_KEYS, TARGETS

__all__ = ["REQUIRED_KEYS", "TARGETS"]
