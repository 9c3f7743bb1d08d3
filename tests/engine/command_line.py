"""`opsflow ARGS` run through the CLI's own `main()` in the test's process: its environment, working
directory, stdin, stdout, stderr and exit code are the command's own, without the ~1.5 s a new
interpreter takes to import the whole stack. Tests whose point is the process boundary (the console
script as typed, serve, worker, kill) start real processes instead."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

from engine.cli import main


def run_opsflow(args: tuple[str, ...] | list[str], env: dict[str, str], cwd: Path,
                stdin: str | None = None) -> subprocess.CompletedProcess:
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_stdin = dict(os.environ), os.getcwd(), sys.stdin
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: usage errors exit 2, --help 0
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 (shown the way the interpreter would)
                traceback.print_exc()
                code = 1
    finally:
        sys.stdin = saved_stdin
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    result = subprocess.CompletedProcess(["opsflow", *args], code, out.getvalue(), err.getvalue())
    assert "Traceback" not in result.stderr, result.stderr
    return result
