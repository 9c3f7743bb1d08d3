"""The ticker: one APScheduler 3.11 interval job per process that calls `engine.jobs.tick()`.

Every web worker and `opsflow worker` runs one. The scheduler only keeps time: its job store is
in memory and holds that single job; what is due lives in the database (case timers and the job
table) and is claimed there, so any number of tickers fire every timer exactly once. Never one
APScheduler job per BPMN timer, never a shared APScheduler job store (it double-fires across
processes: measured, spiffworkflow-notes §10).

    from engine.jobs.ticker import start_ticker
    start_ticker(engine)        # in each web worker after it is created (after any fork)
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

log = logging.getLogger("opsflow.ticker")

INTERVAL = 0.5  # seconds: timers fire at most about this late (plus the work of the tick)
JOB_ID = "opsflow-tick"
_started: dict[int, BaseScheduler] = {}
_lock = threading.Lock()


def tick_once(engine: Any) -> None:
    """One scheduled tick: what it fires is recorded as coming from the ticker."""
    try:
        with engine.ctx.acting_from("ticker"):
            report = engine.jobs.tick()
            _log(report)
            # Keep going while a tick hit its limit, so a backlog (after downtime) drains quickly.
            while len(report.timers) >= 100 or len(report.done) + len(report.retrying) + len(report.failed) >= 100:
                report = engine.jobs.tick()
                _log(report)
    except Exception:  # noqa: BLE001 (a failed tick is logged; the next one runs as usual)
        log.exception("tick failed")


def _log(report: Any) -> None:
    if not report.idle:
        log.info("fired timers in %d case(s); jobs: %d done, %d to retry, %d failed", len(report.timers),
                 len(report.done), len(report.retrying), len(report.failed))


def _configure(scheduler: BaseScheduler, engine: Any, interval: float) -> BaseScheduler:
    scheduler.configure(jobstores={"default": MemoryJobStore()},
                        executors={"default": ThreadPoolExecutor(1)}, timezone=UTC)
    scheduler.add_job(tick_once, "interval", args=[engine], id=JOB_ID, seconds=interval,
                      next_run_time=datetime.now(UTC),  # at once: fire what fell due while stopped
                      max_instances=1, coalesce=True, misfire_grace_time=None, replace_existing=True)
    return scheduler


def start_ticker(engine: Any, interval: float = INTERVAL) -> BackgroundScheduler:
    """Start ticking in a background thread of this process (once per engine; later calls return it).

    Call it in every web worker after the worker exists (gunicorn forks: not in a preloaded master).
    """
    with _lock:
        running = _started.get(id(engine))
        if running is not None and running.running:
            return running
        try:
            engine.timers.sync_start_timers()
        except Exception:  # noqa: BLE001 (the ticker starts anyway; the tick retries what it can)
            log.exception("could not schedule timer start events")
        scheduler = _configure(BackgroundScheduler(daemon=True), engine, interval)
        scheduler.start()
        _started[id(engine)] = scheduler
        return scheduler


def stop_ticker(engine: Any, wait: bool = True) -> None:
    with _lock:
        scheduler = _started.pop(id(engine), None)
    if scheduler is not None and scheduler.running:
        scheduler.shutdown(wait=wait)


def run_worker(engine: Any, interval: float = INTERVAL) -> None:
    """`opsflow worker`: tick in the foreground until SIGINT or SIGTERM."""
    engine.timers.sync_start_timers()
    scheduler = _configure(BlockingScheduler(), engine, interval)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping the worker", signum)
        scheduler.shutdown(wait=False)

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        scheduler.start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
