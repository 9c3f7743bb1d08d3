"""A worker killed (SIGKILL) in the middle of a job: another process runs it promptly, and once.

The killed workers are real processes on the same database (a SQLite file, or PostgreSQL when
OPSFLOW_TEST_DATABASE_URL is set). A transactional job dies with its transaction and is free at
once; a send (not transactional) is leased for `JobService.lease` past its worker's last heartbeat,
and its repeat carries the notification's idempotency key, so the receiver can drop it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine import ProcessEngine
from engine.people.notify import Message
from engine.storage.models import Job
from tests.conftest import FIXTURES, ROOT, Clock

# One tick whose `effect` job writes its effect (an in-app notification to wang) in the job's
# transaction, says so, and hangs there: the test kills the process before the commit.
BLOCKING_WORKER = """
import sys, time
from pathlib import Path
from engine import ProcessEngine
from engine.people.notify import Message
from tests.conftest import make_settings
engine = ProcessEngine(make_settings(sys.argv[1], Path(sys.argv[2])))

def effect(s, job):
    engine.notify.notify(s, ["wang"], Message(f"job {job.id}", "effect"), channels=("inapp",))
    s.flush()
    Path(sys.argv[3] + ".part").write_text(str(job.id))
    Path(sys.argv[3] + ".part").rename(sys.argv[3])  # whole: the test reads it as soon as it exists
    time.sleep(600)

engine.jobs.register("effect", effect)
engine.jobs.tick()
"""


def job_row(engine: ProcessEngine, job_id: int) -> Job:
    with engine.ctx.db.transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def wait_for(condition: Callable[[], bool], worker: subprocess.Popen, what: str) -> None:
    """Until the worker got there (it starts a Python process with the engine: a few seconds)."""
    deadline = time.monotonic() + 120
    while not condition():
        if worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}) before {what}: {worker.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"the worker never got to {what}")
        time.sleep(0.05)


def kill(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)


def test_a_killed_workers_transactional_job_runs_at_once_elsewhere_and_takes_effect_once(
        engine: ProcessEngine, people, clock: Clock, database_url: str, tmp_path: Path) -> None:
    engine.jobs.register("effect", lambda s, job: engine.notify.notify(
        s, ["wang"], Message(f"job {job.id}", "effect"), channels=("inapp",)))
    job = engine.jobs.schedule("effect", clock.now)  # the worker runs on the real clock: due
    in_the_middle = tmp_path / "in-the-middle"
    worker = subprocess.Popen([sys.executable, "-c", BLOCKING_WORKER, database_url, str(tmp_path),
                               str(in_the_middle)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(in_the_middle.exists, worker, "the middle of the job")
    finally:
        kill(worker)
    assert in_the_middle.read_text() == str(job.id)

    # The database drops a dead client's transaction as it notices the closed connection; wait for
    # that on the row lock (a blocking FOR UPDATE, not a clock) before the tick, which skips locked rows.
    with engine.ctx.db.transaction() as s:
        row = s.get(Job, job.id, with_for_update=True)
        assert row is not None and (row.state, row.lock_owner, row.lock_expires_at) == ("pending", None, None)
    assert engine.jobs.tick().done == [job.id]  # no lease to wait out: at once, at the same moment
    row = job_row(engine, job.id)
    assert (row.state, row.done_at) == ("done", clock.now)
    assert [n.title for n in engine.notify.list("wang")] == [f"job {job.id}"]  # the effect, once


# A webhook receiver that holds the first request open (the message has arrived, the sender waits
# for the answer) until released: the sender is killed in between, as if it died after the send.
@dataclass
class HoldingReceiver:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    first_arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def holding_receiver() -> Iterator[HoldingReceiver]:
    state = HoldingReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append({"headers": dict(self.headers), "json": json.loads(raw.decode("utf-8"))})
            if len(state.requests) == 1:
                state.first_arrived.set()
                state.release.wait(120)
            data = json.dumps({"errcode": 0, "errmsg": "ok"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # answering the killed sender fails: expected

    httpd = Server(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()


def test_a_webhook_resent_after_its_worker_was_killed_carries_the_same_idempotency_key(
        engine: ProcessEngine, people, clock: Clock, database_url: str, tmp_path: Path,
        holding_receiver: HoldingReceiver, caplog: pytest.LogCaptureFixture) -> None:
    engine.notify.configure(webhook_url=holding_receiver.url, webhook_format="json")
    with engine.ctx.db.transaction() as s:
        engine.notify.notify(s, ["wang"], Message("【督办】响应事件：已超期", "案件：#7"), channels=("webhook",))
    [job] = engine.jobs.jobs(kind="notification")
    key = job.payload["idempotency_key"]
    env = {**os.environ, "OPSFLOW_DATABASE_URL": database_url, "OPSFLOW_VAR_DIR": str(tmp_path / "var"),
           "OPSFLOW_PROCESSES_DIR": str(ROOT / "processes"), "OPSFLOW_FORMS_DIR": str(FIXTURES / "forms"),
           "OPSFLOW_WEBHOOK_URL": holding_receiver.url, "OPSFLOW_WEBHOOK_FORMAT": "json",
           "OPSFLOW_WEBHOOK_TIMEOUT": "120"}
    worker = subprocess.Popen([sys.executable, "-m", "engine.cli", "tick"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(holding_receiver.first_arrived.is_set, worker, "the webhook send")
        leased = job_row(engine, job.id)  # read while the worker still lives: its lease, its count
    finally:
        kill(worker)
    assert (leased.state, leased.payload["_started"]) == ("pending", 1)  # the send was counted before it began
    assert leased.lock_owner is not None and leased.lock_owner.endswith(f":{worker.pid}")
    # the lease it left runs out no later than `lease` from now, on the real clock
    assert leased.lock_expires_at is not None
    assert leased.lock_expires_at <= datetime.now(UTC) + engine.jobs.lease

    assert engine.jobs.tick().idle  # before the lease ends, the job is the (maybe just slow) worker's
    clock.now = leased.lock_expires_at + timedelta(seconds=1)
    with caplog.at_level("INFO"):
        assert engine.jobs.tick().done == [job.id]
    row = job_row(engine, job.id)
    assert (row.state, row.payload["_started"], row.lock_owner) == ("done", 2, None)
    first, second = holding_receiver.requests
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"] == key
    assert first["json"]["idempotency_key"] == second["json"]["idempotency_key"] == key
    assert first["json"]["title"] == second["json"]["title"] == "【督办】响应事件：已超期"
    assert f"job {job.id} (notification): run 2 starts after run 1 was interrupted" in caplog.text
    assert f"webhook notification {key}: sending again after an interrupted send" in caplog.text


def test_a_long_send_keeps_its_lease_by_heartbeat(engine: ProcessEngine, clock: Clock) -> None:
    """While a send outlasts the lease, the heartbeat renews it: another worker's tick leaves the job alone."""
    engine.jobs.lease = timedelta(seconds=0.3)  # renewed every 0.1 s
    others: list[Any] = []

    def long_send(job: Job) -> None:
        clock.advance(seconds=1)  # the send has taken longer than the lease
        deadline = time.monotonic() + 30
        while job_row(engine, job.id).lock_expires_at != clock.now + engine.jobs.lease:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.02)
        others.append(engine.jobs.run_due_jobs(owner="another-worker"))

    engine.jobs.register("send", long_send, transactional=False)
    job = engine.jobs.schedule("send", clock.now)
    assert engine.jobs.tick().done == [job.id]
    assert len(others) == 1 and others[0].idle
    row = job_row(engine, job.id)
    assert (row.state, row.payload["_started"], row.lock_owner, row.lock_expires_at) == ("done", 1, None, None)
