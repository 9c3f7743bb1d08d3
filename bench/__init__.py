"""OpsFlow benchmarks: figures to read, not pass/fail tests. Run them all with `python -m bench`."""
