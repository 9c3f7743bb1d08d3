"""`opsflow serve` (which runs `python -m webui.serve`): the Flask app under gunicorn, each worker with its
own timer ticker.

Workers build their engine after the fork and start the ticker there (engine/jobs/ticker.py): one
APScheduler interval job per process that claims due rows in the database, so any number of
workers and `opsflow worker` processes tick side by side and each timer fires exactly once.
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


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 2) -> int:
    def when_ready(server: Any) -> None:
        print(f"OpsFlow is serving at http://{host}:{port}", flush=True)

    _Server({"bind": f"{host}:{port}", "workers": max(workers, 1), "worker_class": "gthread", "threads": 8,
             "accesslog": "-", "when_ready": when_ready, "timeout": 60}).run()
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
