"""`opsflow serve` (which runs `python -m webui.serve`): the Flask app under gunicorn, each worker with its
own timer ticker.

Workers build their engine after the fork and start the ticker there (engine/jobs/ticker.py): one
APScheduler interval job per process that claims due rows in the database, so any number of
workers and `opsflow worker` processes tick side by side and each timer fires exactly once.

Restarts overlap: a new `opsflow serve` binds the same port while the old one drains (reuse_port).
"""

from __future__ import annotations

import argparse
from typing import Any

from gunicorn.app.base import BaseApplication


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:  # runs in each worker (no preload)
        from webui import create_app

        app = create_app()
        app.extensions["opsflow"].start_ticker()
        return app


def gunicorn_options(host: str = "127.0.0.1", port: int = 8000, workers: int = 2) -> dict[str, Any]:
    def when_ready(server: Any) -> None:
        print(f"OpsFlow is serving at http://{host}:{port}", flush=True)

    return {"bind": f"{host}:{port}", "workers": max(workers, 1), "worker_class": "gthread", "threads": 8,
            "accesslog": "-", "when_ready": when_ready, "timeout": 60,
            # A restarted `opsflow serve` binds the port while the old master or its orphaned workers still
            # hold it (SO_REUSEPORT), instead of retrying for seconds and giving up; the old ones drain.
            "reuse_port": True,
            # Old workers get 10 s (not 30) to finish their requests on stop: under the 60 s worker timeout,
            # above any request the statement timeout (OPSFLOW_DB_STATEMENT_TIMEOUT) lets finish normally.
            "graceful_timeout": 10,
            # An idle kept-alive connection is closed after 2 s, so a client's next burst is accepted anew
            # by whichever worker is free (20 clients x 5 requests measured 45/55 and 30/70 over two
            # workers). Recycling workers with max_requests was tried and rejected: it reset connections
            # clients were reusing (ConnectionResetError mid-request).
            "keepalive": 2}


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 2) -> int:
    _Server(gunicorn_options(host, port, workers)).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="opsflow serve", description="serve the web UI and API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    return serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    raise SystemExit(main())
