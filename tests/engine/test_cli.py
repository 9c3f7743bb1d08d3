"""The command line, as a new user drives it: init -> user add -> deploy -> start -> ... -> audit verify."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from engine import ProcessEngine
from engine.storage.models import AuditEvent, AuditHead, Job
from tests.conftest import FIXTURES, ROOT, Clock, make_settings
from tests.engine.command_line import run_opsflow
from tests.engine.local_servers import WebhookServer, free_port, webhook_server  # noqa: F401

CORPUS = ROOT.parent / "shared" / "corpus" / "bpmn-miwg-reference"


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment every command of a test runs in: its own database, var/ and processes/."""
    processes = tmp_path / "processes"
    processes.mkdir()
    shutil.copy(ROOT / "processes" / "roles.json", processes)
    env = {**os.environ, "OPSFLOW_DATABASE_URL": database_url, "OPSFLOW_VAR_DIR": str(tmp_path / "var"),
           "OPSFLOW_PROCESSES_DIR": str(processes), "OPSFLOW_FORMS_DIR": str(FIXTURES / "forms")}
    env.pop("OPSFLOW_AUDIT_KEY", None)
    return env


@pytest.fixture
def opsflow_process(cli_env: dict[str, str], tmp_path: Path):
    """`opsflow ARGS` as its own process, exactly as a user types it: the installed console script."""
    console_script = Path(sys.executable).with_name("opsflow")

    def run(*args: str, stdin: str | None = None, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([str(console_script), *args], env={**cli_env, **(extra or {})},
                                cwd=tmp_path, capture_output=True, text=True, input=stdin, timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run


@pytest.fixture
def opsflow(cli_env: dict[str, str], tmp_path: Path):
    """`opsflow ARGS` through the same `main()` in this process (tests/engine/command_line.py; the
    walkthrough and the serve/worker/kill tests use real processes)."""
    def run(*args: str, stdin: str | None = None, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return run_opsflow(args, {**cli_env, **(extra or {})}, tmp_path, stdin)

    return run


@pytest.fixture
def same_database(database_url: str, tmp_path: Path) -> Iterator[ProcessEngine]:
    """The database (and key) the commands use, opened in the test to look at and to tamper with."""
    eng = ProcessEngine(make_settings(database_url, tmp_path))
    yield eng
    eng.close()


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_walkthrough_from_init_to_audit_verify(opsflow_process, opsflow) -> None:
    # The installed console script, a process per command, where the walkthrough crosses from one
    # command to the next through the database and the key (init, a password on stdin, a start, the
    # audit chain); the steps between run the same main() in this process (~1.5 s less each).
    assert "audit key: " in ok(opsflow_process("init"))
    ok(opsflow_process("user", "add", "zhang", "--role", "staff", "--display-name", "张伟", "--password-stdin",
                       stdin="pass-word-2026\n"))
    ok(opsflow("user", "add", "liu", "--role", "运维负责人"))
    assert "deployed access_request v1" in ok(opsflow("deploy", str(FIXTURES / "two_lanes.bpmn")))
    case_id = ok(opsflow_process("start", "access_request", "--as", "zhang", "--business-key", "ACC-7")).strip()
    tasks = json.loads(ok(opsflow("tasks", "--as", "zhang", "--json")))
    assert {k for k in tasks[0]} >= {"id", "instance_id", "process_id", "name", "title", "role", "assignee",
                                     "state", "created_at", "due_at"}
    request = tasks[0]["id"]
    assert "title: 标题 (string)" in ok(opsflow("task", request))

    bad = opsflow_process("complete", request, "--as", "zhang", "--data", '{"title": "x", "system": "核心"}')  # exit 1
    assert bad.returncode == 1
    for field in ("title", "system", "reason"):
        assert f"  {field}: " in bad.stderr
    ok(opsflow("complete", request, "--as", "zhang", "--data",
               '{"title": "只读权限", "system": "清算", "reason": "日终清算排查"}'))

    approval = json.loads(ok(opsflow("tasks", "--as", "liu", "--json")))[0]
    assert (approval["title"], approval["assignee"]) == ("审批", None)
    ok(opsflow("claim", approval["id"], "--as", "liu"))
    ok(opsflow("complete", approval["id"], "--as", "liu", "--data", '{"decision": "approve"}'))
    shown = json.loads(ok(opsflow("show", case_id, "--json")))
    assert shown["status"] == "completed"
    assert [e["action"] for e in shown["history"]] == ["case.started", "task.completed", "task.claimed",
                                                       "task.completed"]
    # 9, and init's 4 document.saved: the fixture forms copied into the database
    assert "audit chain intact: 13 events" in ok(opsflow_process("audit", "verify"))


def test_user_errors_are_one_line_and_exit_1(opsflow) -> None:
    ok(opsflow("init"))
    for args, message in [
        (("start", "nope", "--as", "ghost"), "error: unknown user 'ghost'"),
        (("claim", "no-such-task", "--as", "ghost"), "error: unknown user 'ghost'"),
        (("task", "no-such-task"), "error: unknown task no-such-task"),
        (("show", "999"), "error: unknown case 999"),
        (("user", "add", "x", "--role", "wizard"), "error: unknown role 'wizard'"),
        (("deploy", "missing.bpmn"), "error: missing.bpmn: no such file"),
    ]:
        result = opsflow(*args)
        assert result.returncode == 1 and result.stderr.startswith(message), (args, result.stderr)


def test_bad_usage_exits_2(opsflow) -> None:
    assert opsflow("frobnicate").returncode == 2
    assert opsflow("start").returncode == 2


def test_commands_refuse_an_uninitialised_database(opsflow) -> None:
    result = opsflow("tasks")
    assert result.returncode == 1 and "run 'opsflow init'" in result.stderr


def test_deploy_problems_print_file_line_message(opsflow, tmp_path: Path) -> None:
    ok(opsflow("init"))
    broken = tmp_path / "broken.bpmn"
    broken.write_text((FIXTURES / "two_lanes.bpmn").read_text().replace('name="ops_manager"', 'name="ghost"'))
    result = opsflow("deploy", "--check", str(broken))
    assert result.returncode == 1
    file, line, message = result.stderr.splitlines()[0].split(":", 2)
    assert file == str(broken) and int(line) > 1 and "names no role" in message


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not beside the repository")
def test_deploy_refuses_a_timer_cycle_under_a_minute(opsflow, tmp_path: Path) -> None:
    bpmn = tmp_path / "remind.bpmn"
    bpmn.write_text((FIXTURES / "timer_boundary.bpmn").read_text(encoding="utf-8").replace('"R2/PT1H"', '"R/PT0S"'),
                    encoding="utf-8")
    ok(opsflow("init"))
    result = opsflow("deploy", str(bpmn))
    assert result.returncode == 1 and "remind.bpmn:" in result.stderr and "at least a minute" in result.stderr
    assert "timer_boundary" not in opsflow("show", "1").stderr + ok(opsflow("tasks", "--json"))


def test_every_corpus_file_goes_through_deploy_check_without_a_crash(opsflow) -> None:
    ok(opsflow("init"))
    files = sorted(CORPUS.glob("*.bpmn"))
    assert len(files) >= 20
    for path in files:
        result = opsflow("deploy", "--check", str(path))
        assert result.returncode in (0, 1), path
        if result.returncode == 1:
            lines = result.stderr.strip().splitlines()
            assert lines and all(line.startswith(f"{path}:") for line in lines), (path, result.stderr)
            assert "unexpected" not in result.stderr, (path, result.stderr)


# the audit trail ------------------------------------------------------------------------------------
def one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_user_token_and_calendar_commands_are_audited_as_from_the_cli(opsflow, same_database: ProcessEngine,
                                                                       tmp_path: Path) -> None:
    shutil.copytree(ROOT / "processes" / "calendar", tmp_path / "processes" / "calendar")
    holidays = tmp_path / "holidays-2031.txt"
    holidays.write_text("2031-02-03,春节\n", encoding="utf-8")
    ok(opsflow("init"))
    ok(opsflow("user", "add", "ma", "--role", "staff", "--password-stdin", stdin="pw-1234567890\n"))
    ok(opsflow("user", "roles", "ma", "--role", "staff", "cab"))
    ok(opsflow("token", "create", "ma"))
    assert "1 token(s) revoked" in ok(opsflow("user", "deactivate", "ma"))
    ok(opsflow("user", "activate", "ma"))
    ok(opsflow("user", "passwd", "ma", "--password-stdin", stdin="pw-0987654321\n"))
    ok(opsflow("user", "email", "ma", "ma@firm.cn"))
    ok(opsflow("calendar", "import-holidays", str(holidays)))
    events = same_database.audit.events()
    seeded = 6  # init copies the 4 fixture forms and the calendar's 2 files into the database
    assert {(e.action, e.actor) for e in events[2:2 + seeded]} == {("document.saved", "system")}
    assert [(e.action, e.actor) for e in events[2 + seeded:]] == [
        ("user.added", "cli"), ("user.roles_set", "cli"), ("token.created", "cli"), ("user.deactivated", "cli"),
        ("user.activated", "cli"), ("user.password_set", "cli"), ("user.email_set", "cli"),
        ("document.saved", "cli"), ("calendar.holidays_imported", "cli")]
    assert {e.source for e in events} == {f"cli {getpass.getuser()}"}
    assert events[-1].data["added"] == ["2031-02-03"]


def test_checkpoint_verify_and_a_forged_checkpoint(opsflow, same_database: ProcessEngine, tmp_path: Path) -> None:
    ok(opsflow("init"))
    ok(opsflow("user", "add", "ma", "--role", "staff"))
    checkpoint = json.loads(ok(opsflow("audit", "checkpoint")))
    kept = tmp_path / "checkpoint.json"
    kept.write_text(json.dumps(checkpoint))
    assert f"(event {checkpoint['last_id']}) confirmed" in ok(opsflow("audit", "verify", "--checkpoint", str(kept)))
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**checkpoint, "last_id": 1}))
    one_line_error(opsflow("audit", "verify", "--checkpoint", str(forged)), "signature does not match")
    one_line_error(opsflow("audit", "verify", "--checkpoint", str(tmp_path / "none.json")), "no such file")

    with same_database.ctx.db.transaction() as s:  # cut the tail and step the head back
        end = s.get(AuditEvent, checkpoint["last_id"] - 1)
        s.execute(delete(AuditEvent).where(AuditEvent.id > end.id))
        s.execute(update(AuditHead).values(last_id=end.id, last_hash=end.hash))
    one_line_error(opsflow("audit", "verify"), "audit chain broken: the audit head's signature does not match")
    one_line_error(opsflow("audit", "verify", "--checkpoint", str(kept)), "audit chain broken")
    one_line_error(opsflow("audit", "checkpoint"), "no checkpoint of a broken chain")


def test_checkpoint_post_sends_it_to_the_webhook(opsflow, webhook_server: WebhookServer) -> None:  # noqa: F811
    ok(opsflow("init"))
    one_line_error(opsflow("audit", "checkpoint", "--post"), "--post needs the webhook")
    webhook = {"OPSFLOW_WEBHOOK_URL": webhook_server.url}
    printed = json.loads(ok(opsflow("audit", "checkpoint", "--post", extra=webhook)))
    [sent] = webhook_server.requests
    assert json.loads(sent["json"]["body"]) == printed
    webhook_server.answer_next(500, {})
    one_line_error(opsflow("audit", "checkpoint", "--post", extra=webhook),
                   "checkpoint not posted: webhook answered HTTP 500")


def test_a_missing_or_wrong_audit_key_is_one_line_and_exit_1(opsflow, tmp_path: Path) -> None:
    ok(opsflow("init"))
    wrong = {"OPSFLOW_AUDIT_KEY": "a-different-key-that-is-long-enough-0123"}
    one_line_error(opsflow("audit", "verify", extra=wrong), "is not the one that signed this chain")
    one_line_error(opsflow("user", "add", "ma", "--role", "staff", extra=wrong), "is not the one that signed")
    (tmp_path / "var" / "audit.key").unlink()
    one_line_error(opsflow("audit", "verify"), "error: no audit key: set OPSFLOW_AUDIT_KEY or restore")
    one_line_error(opsflow("user", "add", "ma", "--role", "staff"), "error: no audit key")


def test_retention_under_six_months_is_refused(opsflow, tmp_path: Path) -> None:
    short = {"OPSFLOW_AUDIT_RETENTION": "P3M"}
    one_line_error(opsflow("init", extra=short), "OPSFLOW_AUDIT_RETENTION='P3M' is under the minimum of six months")
    ok(opsflow("init"))
    one_line_error(opsflow("audit", "archive", "--out", str(tmp_path / "a.jsonl"), extra=short),
                   "under the minimum of six months")
    assert opsflow("audit", "archive").returncode == 2
    assert "nothing to archive" in ok(opsflow("audit", "archive", "--out", str(tmp_path / "a.jsonl")))
    assert not (tmp_path / "a.jsonl").exists()


def test_archived_events_verify_from_their_file_and_the_rest_from_the_anchor(opsflow, database_url: str,
                                                                              tmp_path: Path) -> None:
    ok(opsflow("init"))
    ok(opsflow("user", "add", "ma", "--role", "staff"))
    later = ProcessEngine(make_settings(database_url, tmp_path), clock=Clock(Clock().now + timedelta(days=21 * 366)))
    try:
        archived = later.audit.archive(tmp_path / "audit-2026.jsonl.gz")
        assert archived is not None and archived.count == 7  # with init's 4 document.saved (the fixture forms)
        with later.ctx.db.transaction() as s:
            assert s.scalars(select(AuditEvent.action)).all() == ["audit.archived"]
    finally:
        later.close()
    assert "events up to 7 archived" in ok(opsflow("audit", "verify"))
    archive = str(tmp_path / "audit-2026.jsonl.gz")
    assert "archive intact: events 1–7 (7)" in ok(opsflow("audit", "verify-archive", archive))
    one_line_error(opsflow("audit", "archive", "--out", archive), "never overwritten")


def eventually(check: Callable[[], object], seconds: float = 60) -> object:
    """The first truthy answer of check, polled until the time is up."""
    deadline = time.monotonic() + seconds
    while not (answer := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)
    return answer


def http_get(url: str) -> tuple[int, object] | None:
    """(status, JSON body), or None while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


def test_serve_answers_over_http_and_its_worker_fires_due_timers(opsflow, cli_env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    ok(opsflow("init"))
    ok(opsflow("user", "add", "wang", "--role", "ops_engineer"))
    ok(opsflow("user", "add", "liu", "--role", "ops_manager"))
    ok(opsflow("deploy", str(FIXTURES / "timer_boundary.bpmn")))
    ok(opsflow("start", "timer_boundary", "--as", "wang", "--data", '{"work_within": "PT1S"}'))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--workers", "1"],
                                  env=cli_env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert eventually(lambda: http_get(f"{base}/readyz")) == (200, {"status": "ok", "database": "ok"})
        assert http_get(f"{base}/healthz") == (200, {"status": "ok"})

        def timed_out() -> list[str]:  # the deadline passed before serving: the worker's ticker fires it
            return [t["title"] for t in json.loads(ok(opsflow("tasks", "--as", "liu", "--json")))]

        assert eventually(timed_out) == ["超时处理"]
    finally:
        server.send_signal(signal.SIGTERM)  # `opsflow serve` became gunicorn's master: it stops its workers
        try:
            server.wait(timeout=30)
        finally:
            if server.returncode is None:
                server.kill()
                server.wait()
    output = log.read_text(encoding="utf-8")
    assert server.returncode == 0, output
    assert f"OpsFlow is serving at {base}" in output and "Traceback" not in output


# jobs --retry -----------------------------------------------------------------------------------
def failed_job(eng: ProcessEngine) -> int:
    """A job whose one run failed: a kind whose handler raises, run once by the test's own engine."""
    eng.jobs.register("broken", lambda s, job: 1 / 0)
    job = eng.jobs.schedule("broken", eng.ctx.now() - timedelta(minutes=1), retries=1)
    assert eng.jobs.tick().failed == [job.id]
    return job.id


def job_state(eng: ProcessEngine, job_id: int) -> tuple[str, int]:
    with eng.ctx.db.read() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.state, job.retries_left


def retried_by(eng: ProcessEngine) -> list[str]:
    return [e.actor for e in eng.audit.events() if e.action == "job.retried"]


def test_jobs_retry_for_a_user_needs_process_deploy_like_the_failures_page(
        opsflow, same_database: ProcessEngine) -> None:
    ok(opsflow("init"))
    ok(opsflow("user", "add", "zhang", "--role", "staff"))
    ok(opsflow("user", "add", "owner", "--role", "process_owner"))
    job = failed_job(same_database)
    refused = opsflow("jobs", "--retry", str(job), "--as", "zhang")
    one_line_error(refused, "zhang may not retry a failed case or job: it needs the grant process.deploy")
    assert job_state(same_database, job) == ("failed", 0) and retried_by(same_database) == []
    one_line_error(opsflow("jobs", "--retry", str(job), "--as", "nobody"), "nobody")
    assert job_state(same_database, job) == ("failed", 0)

    assert ok(opsflow("jobs", "--retry", str(job), "--as", "owner")) == f"job {job} is due again\n"
    assert job_state(same_database, job)[0] == "pending" and retried_by(same_database) == ["owner"]
    other = failed_job(same_database)
    ok(opsflow("jobs", "--retry", str(other)))  # the operator at the shell, as `opsflow ci import` without --as
    assert job_state(same_database, other)[0] == "pending" and retried_by(same_database) == ["owner", "cli"]


def test_jobs_retry_refuses_a_job_that_is_not_failed(opsflow, same_database: ProcessEngine) -> None:
    ok(opsflow("init"))
    ok(opsflow("user", "add", "owner", "--role", "process_owner"))
    same_database.jobs.register("fine", lambda s, job: None)
    done = same_database.jobs.schedule("fine", same_database.ctx.now() - timedelta(minutes=1))
    assert same_database.jobs.tick().done == [done.id]
    waiting = same_database.jobs.schedule("fine", same_database.ctx.now() + timedelta(days=1), retries=2)
    for job, state in ((done.id, "done"), (waiting.id, "pending")):
        before = job_state(same_database, job)
        for who in ((), ("--as", "owner")):
            one_line_error(opsflow("jobs", "--retry", str(job), *who),
                           f"error: job {job} is {state}, not failed: nothing to retry")
        assert job_state(same_database, job) == before
    one_line_error(opsflow("jobs", "--retry", "999999"), "error: unknown job 999999")
    assert retried_by(same_database) == []
