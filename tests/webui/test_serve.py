"""Serving (issue 14): a restarted `opsflow serve` starts on the port while the old one still runs
and drains, and the old one stops within its short grace period."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import FIXTURES, ROOT
from tests.engine.local_servers import free_port
from tests.engine.test_cli import eventually, http_get
from webui.serve import gunicorn_options


def _serve(env: dict[str, str], port: int, log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--workers", "1"],
                                env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def _stop(server: subprocess.Popen[bytes]) -> int:
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=30)
    finally:
        if server.returncode is None:
            server.kill()
            server.wait()


def test_a_second_serve_starts_on_the_same_port_while_the_first_runs(tmp_path: Path) -> None:
    processes = tmp_path / "processes"
    processes.mkdir()
    shutil.copy(ROOT / "processes" / "roles.json", processes)
    env = {**os.environ, "OPSFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'opsflow.db'}",
           "OPSFLOW_VAR_DIR": str(tmp_path / "var"), "OPSFLOW_PROCESSES_DIR": str(processes),
           "OPSFLOW_FORMS_DIR": str(FIXTURES / "forms")}
    env.pop("OPSFLOW_AUDIT_KEY", None)
    subprocess.run([sys.executable, "-m", "engine.cli", "init"], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    old_log, new_log = tmp_path / "old.log", tmp_path / "new.log"
    old = _serve(env, port, old_log, tmp_path)
    new = None
    try:
        assert eventually(lambda: http_get(f"{base}/readyz")) == (200, {"status": "ok", "database": "ok"})
        new = _serve(env, port, new_log, tmp_path)
        assert eventually(lambda: f"OpsFlow is serving at {base}" in new_log.read_text(encoding="utf-8") or None)
        assert new.poll() is None, new_log.read_text(encoding="utf-8")
        started = time.monotonic()
        assert _stop(old) == 0, old_log.read_text(encoding="utf-8")
        assert time.monotonic() - started < 15  # the old one drains within its grace period
        # the new one answers alone on the same port
        assert eventually(lambda: http_get(f"{base}/readyz")) == (200, {"status": "ok", "database": "ok"})
        assert _stop(new) == 0
    finally:
        for server in (old, new):
            if server is not None and server.poll() is None:
                _stop(server)
    output = new_log.read_text(encoding="utf-8")
    assert "Address already in use" not in output and "Traceback" not in output, output


def test_serving_options_overlap_restarts_and_close_idle_connections_soon() -> None:
    options = gunicorn_options("127.0.0.1", 8000, 2)
    assert options["reuse_port"] is True
    assert options["graceful_timeout"] <= 10 < options["timeout"]
    assert options["keepalive"] <= 2
    assert options.get("max_requests", 0) == 0  # recycling reset connections clients were reusing
