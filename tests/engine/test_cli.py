"""The command line, as a new user drives it: init -> user add -> deploy -> start -> ... -> audit verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

CORPUS = ROOT.parent / "shared" / "corpus" / "bpmn-miwg-reference"


@pytest.fixture
def opsflow(database_url: str, tmp_path: Path):
    processes = tmp_path / "processes"
    processes.mkdir()
    shutil.copy(ROOT / "processes" / "roles.json", processes)
    env = {**os.environ, "OPSFLOW_DATABASE_URL": database_url, "OPSFLOW_VAR_DIR": str(tmp_path / "var"),
           "OPSFLOW_PROCESSES_DIR": str(processes), "OPSFLOW_FORMS_DIR": str(FIXTURES / "forms")}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=tmp_path,
                                capture_output=True, text=True, input=stdin, timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_walkthrough_from_init_to_audit_verify(opsflow) -> None:
    ok(opsflow("init"))
    ok(opsflow("user", "add", "zhang", "--role", "staff", "--display-name", "张伟", "--password-stdin",
               stdin="pass-word\n"))
    ok(opsflow("user", "add", "liu", "--role", "运维负责人"))
    assert "deployed access_request v1" in ok(opsflow("deploy", str(FIXTURES / "two_lanes.bpmn")))
    case_id = ok(opsflow("start", "access_request", "--as", "zhang", "--business-key", "ACC-7")).strip()
    tasks = json.loads(ok(opsflow("tasks", "--as", "zhang", "--json")))
    assert {k for k in tasks[0]} >= {"id", "instance_id", "process_id", "name", "title", "role", "assignee",
                                     "state", "created_at", "due_at"}
    request = tasks[0]["id"]
    assert "title: 标题 (string)" in ok(opsflow("task", request))

    bad = opsflow("complete", request, "--as", "zhang", "--data", '{"title": "x", "system": "核心"}')
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
    assert "audit chain intact: 5 events" in ok(opsflow("audit", "verify"))


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
