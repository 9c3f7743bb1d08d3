"""`opsflow serve`: the Flask app under gunicorn, and a timer ticker beside it.

Workers each build their own engine (after the fork); the ticker runs in the master process and
fires due timers every `TICK_SECONDS` (every ticker is safe to run alongside others).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from gunicorn.app.base import BaseApplication

TICK_SECONDS = 5.0
log = logging.getLogger("opsflow.serve")


def run_ticker(stop: threading.Event, interval: float = TICK_SECONDS) -> None:
    from engine import ProcessEngine

    engine = ProcessEngine.from_env()
    try:
        while not stop.wait(interval):
            try:
                jobs = getattr(engine, "jobs", None)  # timers, escalations and notifications when present
                jobs.tick() if jobs is not None else engine.runtime.fire_due_timers()
            except Exception:  # noqa: BLE001 (a failing tick is logged; the next one tries again)
                log.exception("timer tick failed")
    finally:
        engine.close()


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from webui import create_app

        return create_app()


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 2) -> int:
    stop = threading.Event()

    def when_ready(server: Any) -> None:
        threading.Thread(target=run_ticker, args=(stop,), name="opsflow-ticker", daemon=True).start()
        print(f"OpsFlow is serving at http://{host}:{port}", flush=True)

    def on_exit(server: Any) -> None:
        stop.set()

    _Server({"bind": f"{host}:{port}", "workers": max(workers, 1), "worker_class": "gthread", "threads": 8,
             "accesslog": "-", "when_ready": when_ready, "on_exit": on_exit, "timeout": 60}).run()
    return 0
