"""`opsflow`: the command line over the engine services (docs/CONTRACT.md).

Exit codes: 0 success, 1 a user error (one line on stderr, never a traceback), 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import ProcessEngine
from engine.cli.audit import add_commands as add_audit_commands
from engine.cli.cases import add_commands as add_case_commands
from engine.cli.configuration import add_commands as add_ci_commands
from engine.errors import LintFailed, OpsFlowError, ValidationFailed
from engine.spiff.parsing import SourceFile

CLI = "cli"  # the actor of what an operator does from the shell (the event's source names the OS user)


def _cli_source() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a bare container)
        user = "?"
    return f"cli {user}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _local(engine: ProcessEngine, value: datetime | None) -> str:
    return value.astimezone(engine.ctx.zone).strftime("%Y-%m-%d %H:%M") if value else "-"


def _data(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise OpsFlowError(f"--data is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise OpsFlowError("--data must be a JSON object")
    return value


def task_json(t: Any) -> dict[str, Any]:
    return {"id": t.id, "instance_id": t.instance_id, "process_id": t.process_id, "name": t.bpmn_id,
            "title": t.name, "role": t.role, "assignee": t.assignee, "state": t.state,
            "priority": t.priority, "created_at": t.created_at, "due_at": t.due_at, "form": t.form_key}


# commands -------------------------------------------------------------------------------------
def cmd_init(engine: ProcessEngine, args: argparse.Namespace) -> int:
    retention = engine.audit.retention()  # a bad OPSFLOW_AUDIT_RETENTION is refused before anything changes
    result = engine.init(demo=args.demo)
    for d in result["deployed"]:
        print(f"{'deployed' if d.changed else 'unchanged'} {d.process_id} v{d.version}  {d.name}")
    if result["demo_users"]:
        print(f"demo users added with the demo password 'opsflow', which the password policy would refuse "
              f"(--demo only; never use them in production): {', '.join(result['demo_users'])}")
    for kept in result.get("documents_kept") or []:
        print(f"kept the browser's edit of {kept} (its file changed since; the database's version stays)")
    if result.get("demo_items"):
        print(f"demo configuration register: {len(result['demo_items'])} systems (opsflow ci list)")
    if result.get("demo_skipped"):
        print("demo users not added: this database has users already, left as they are")
    key = engine.audit.key()
    print(f"audit key: {key.where} (id {key.id}); keep a copy apart from the database backups")
    print(f"audit retention: {retention.text}")
    print(f"database ready: {engine.ctx.settings.database_url}")
    return 0


def cmd_deploy(engine: ProcessEngine, args: argparse.Namespace) -> int:
    sources = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise OpsFlowError(f"{name}: no such file")
        sources.append(SourceFile(str(path), path.read_bytes()))
    try:
        results = engine.repository.deploy(sources, actor=args.as_user or "cli", check_only=args.check)
    except LintFailed as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    if args.check:
        names = ", ".join(r.process_id for r in results) or "no executable process"
        print(f"ok: {names}")
    for r in [] if args.check else results:
        print(f"{'deployed' if r.changed else 'unchanged'} {r.process_id} v{r.version}  {r.name}")
    return 0


def cmd_user_add(engine: ProcessEngine, args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None  # held to the password policy
    actor = engine.identity.add_user(args.name, args.role, args.display_name, password, by=CLI)
    if args.email:
        engine.notify.set_email(actor.username, args.email, by=CLI)  # where escalation e-mails go
    print(f"user {actor.username} ({actor.display_name}) roles: {', '.join(sorted(actor.roles))}")
    return 0


def cmd_user_email(engine: ProcessEngine, args: argparse.Namespace) -> int:
    engine.notify.set_email(args.name, args.email or None, by=CLI)
    print(f"user {args.name} e-mail: {args.email or '-'}")
    return 0


def cmd_user_roles(engine: ProcessEngine, args: argparse.Namespace) -> int:
    actor = engine.identity.set_roles(args.name, args.role, by=CLI)
    print(f"user {actor.username} roles: {', '.join(sorted(actor.roles))}")
    return 0


def cmd_user_active(engine: ProcessEngine, args: argparse.Namespace) -> int:
    active = args.user_command == "activate"
    revoked = engine.identity.set_active(args.name, active, by=CLI)
    print(f"user {args.name} activated" if active else
          f"user {args.name} deactivated: signed out everywhere; {revoked} token(s) revoked")
    return 0


def cmd_user_passwd(engine: ProcessEngine, args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise OpsFlowError("no password on stdin")
    ended = engine.identity.set_password(args.name, password, by=CLI)
    print(f"user {args.name}: password set; {ended} web session(s) signed out (API tokens kept)")
    return 0


def cmd_token_create(engine: ProcessEngine, args: argparse.Namespace) -> int:
    print(engine.identity.create_token(args.name, by=CLI))
    return 0


def cmd_start(engine: ProcessEngine, args: argparse.Namespace) -> int:
    actor = engine.identity.get(args.as_user)
    case = engine.runtime.start(args.process_id, actor, _data(args.data), args.business_key)
    if args.json:
        print(_json({"id": case.id, "process_id": case.process_id, "status": case.status,
                     "title": case.title}))
    else:
        print(case.id)
    return 0


def cmd_tasks(engine: ProcessEngine, args: argparse.Namespace) -> int:
    if args.as_user:
        actor = engine.identity.get(args.as_user)
        rows = engine.tasks.inbox(actor, scope="everyone" if args.all else "all", overdue=args.overdue)
    else:
        from engine.people.identity import Actor

        rows = engine.tasks.inbox(Actor("cli", "cli", frozenset({"admin"})), scope="everyone",
                                  overdue=args.overdue)
    if args.json:
        print(_json([task_json(t) for t in rows]))
        return 0
    if not rows:
        print("no open tasks")
    for t in rows:
        who = t.assignee or f"[{t.role}]"
        print(f"{t.id}  case {t.instance_id:<5} {t.process_id:<16} {t.name}  → {who}  due {_local(engine, t.due_at)}")
    return 0


def cmd_task(engine: ProcessEngine, args: argparse.Namespace) -> int:
    detail = engine.tasks.get(args.task_id)
    t = detail.task
    out = {**task_json(t), "case_title": detail.case_title, "form_schema": detail.form, "data": detail.data,
           "case_data": detail.case_data, "record": [e.to_json() for e in detail.record],
           "return_reason": t.return_reason, "returned_by": t.returned_by, "documentation": detail.documentation}
    if args.json:
        print(_json(out))
        return 0
    print(f"{detail.title}  ({t.bpmn_id}, case {t.instance_id}: {detail.case_title})")
    print(f"state {t.state}; role {t.role}; assignee {t.assignee or '-'}; due {_local(engine, t.due_at)}")
    if t.return_reason:
        print(f"已退回 (returned) by {t.returned_by or '自动检查 (an automatic check)'}: {t.return_reason}")
    if detail.documentation:
        print(detail.documentation)
    if detail.form:
        required = set(detail.form.get("required", []))
        print("form fields:")
        for name, field in detail.form.get("properties", {}).items():
            mark = "*" if name in required else " "
            enum = f" one of {field['enum']}" if "enum" in field else ""
            print(f"  {mark} {name}: {field.get('title', '')} ({field.get('type', 'any')}){enum}")
    return 0


def cmd_claim(engine: ProcessEngine, args: argparse.Namespace) -> int:
    task = engine.tasks.claim(args.task_id, engine.identity.get(args.as_user))
    print(f"task {task.id} claimed by {task.assignee}")
    return 0


def cmd_complete(engine: ProcessEngine, args: argparse.Namespace) -> int:
    created = engine.tasks.complete(args.task_id, engine.identity.get(args.as_user), _data(args.data))
    print(f"task {args.task_id} completed")
    for t in created:
        print(f"next: {t.id}  {t.name}  → {t.assignee or '[' + t.role + ']'}")
    return 0


def cmd_show(engine: ProcessEngine, args: argparse.Namespace) -> int:
    case = engine.runtime.show(args.instance_id)
    if args.json:
        print(_json({"id": case.id, "process_id": case.process_id, "version": case.version,
                     "business_key": case.business_key, "title": case.title, "status": case.status,
                     "started_by": case.started_by, "started_at": case.started_at, "ended_at": case.ended_at,
                     "data": case.data, "open_tasks": [task_json(t) for t in case.open_tasks],
                     "history": [{"id": e.id, "at": e.at, "actor": e.actor, "action": e.action,
                                  "task_id": e.task_id, "data": e.data} for e in case.history],
                     "links": case.links, "record": [e.to_json() for e in case.record], "error": case.error}))
        return 0
    print(f"case {case.id}: {case.title}  [{case.process_id} v{case.version}]  {case.status}")
    print(f"started by {case.started_by} at {_local(engine, case.started_at)}")
    if case.error:
        print(f"STUCK: its timer could not fire: {case.error}")
        print("  retry it from /admin/failures (process owner), or: opsflow cancel "
              f"{case.id} --as USER --reason TEXT")
    print("open tasks:" if case.open_tasks else "open tasks: none")
    for t in case.open_tasks:
        print(f"  {t.id}  {t.name}  → {t.assignee or '[' + t.role + ']'}  due {_local(engine, t.due_at)}")
    print("approval record (审批记录):" if case.record else "approval record: none yet")
    for entry in case.record:
        who = entry.completed_by + (f" for {entry.acting_for}" if entry.acting_for else "")
        said = "; ".join(f"{a['label']}: {a['text']}" for a in entry.answers if a["text"] not in (None, ""))
        print(f"  {_local(engine, entry.completed_at)}  {entry.name}  {entry.outcome_label or '已完成'}  {who}"
              + (f"  — {said}" if said else ""))
    print("history:")
    for e in case.history:
        what = e.data.get("task") or e.data.get("reason") or ""
        print(f"  {_local(engine, e.at)}  {e.actor:<12} {e.action:<18} {what}")
    for link in case.links:
        print(f"link: {link['kind']} {link['direction']} case {link['instance_id']} ({link['process_id']})")
    return 0


def cmd_tick(engine: ProcessEngine, args: argparse.Namespace) -> int:
    """Fire what is due once (case timers, escalations, notifications, timer starts) and exit."""
    engine.timers.sync_start_timers()
    report = engine.jobs.tick()
    while len(report.timers) >= 100 or len(report.done) + len(report.retrying) + len(report.failed) >= 100:
        report = engine.jobs.tick()  # a backlog: keep going until it is drained
    print(f"fired timers in {len(report.timers)} case(s); jobs: {len(report.done)} done, "
          f"{len(report.retrying)} to retry, {len(report.failed)} failed")
    return 0


def cmd_worker(engine: ProcessEngine, args: argparse.Namespace) -> int:
    """Tick continuously in the foreground (any number of workers may run at once) until stopped."""
    import logging

    from engine.jobs.ticker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per tick
    print(f"opsflow worker ticking every {args.interval} s (Ctrl-C to stop)", flush=True)
    run_worker(engine, args.interval)
    return 0


def cmd_jobs(engine: ProcessEngine, args: argparse.Namespace) -> int:
    if args.retry:  # for a user (--as): their grant decides, as on the failures page; else the operator
        by = engine.identity.get(args.as_user) if args.as_user else CLI
        print(f"job {engine.failures.retry(by, job_id=args.retry)} is due again")
        return 0
    for job in engine.jobs.jobs(state=args.state, kind=args.kind, limit=args.limit):
        where = f"case {job.instance_id}" if job.instance_id else "-"
        print(f"{job.id:<6} {job.kind:<12} {job.state:<9} due {_local(engine, job.due_at)}  {where}  "
              f"retries left {job.retries_left}" + (f"  last error: {job.last_error}" if job.last_error else ""))
    return 0


# The web server, run by module name: the engine never imports the web UI (it is one of the engine's callers).
WEB_SERVER = "webui.serve"


def cmd_serve(engine: ProcessEngine, args: argparse.Namespace) -> int:
    """The web UI and API under gunicorn, each worker with its own timer ticker: this process becomes
    `python -m webui.serve` (same pid, so a signal to it reaches gunicorn's master)."""
    engine.close()  # each gunicorn worker opens its own engine
    os.execv(sys.executable, [sys.executable, "-m", WEB_SERVER, "--host", args.host, "--port", str(args.port),
                              "--workers", str(args.workers)])


def cmd_calendar_import(engine: ProcessEngine, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise OpsFlowError(f"{args.file}: no such file")
    by = CLI
    if args.as_user:  # on someone's behalf: the access policy's registers.edit decides
        editor = engine.identity.get(args.as_user)
        engine.access.require(editor, "registers.edit", "edit the trading calendar")
        by = editor.username
    try:
        counts = engine.calendar.import_holidays(path.read_text(encoding="utf-8"), path.name, by=by)
    except ValueError as exc:
        raise OpsFlowError(f"{args.file}: {exc}") from None
    for year, days in counts.items():
        print(f"{year}: {days} closed weekdays")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opsflow", description="OpsFlow 运维流程引擎")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("init", help="create or upgrade the database; deploy processes/")
    c.add_argument("--demo", action="store_true",
                   help="add one demo user per role (password opsflow) to a database that has no users yet")
    c.set_defaults(func=cmd_init)

    c = sub.add_parser("deploy", help="lint and deploy BPMN/DMN files")
    c.add_argument("files", nargs="+")
    c.add_argument("--check", action="store_true", help="lint only")
    c.add_argument("--as", dest="as_user")
    c.set_defaults(func=cmd_deploy)

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    c = user.add_parser("add")
    c.add_argument("name")
    c.add_argument("--role", nargs="+", required=True, action="extend")
    c.add_argument("--display-name")
    c.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin (at least 10 characters, letters and digits)")
    c.add_argument("--email", help="where escalation e-mails go")
    c.set_defaults(func=cmd_user_add)
    c = user.add_parser("email", help="set (or with '' clear) where a user's escalation e-mails go")
    c.add_argument("name")
    c.add_argument("email")
    c.set_defaults(func=cmd_user_email)
    c = user.add_parser("roles")
    c.add_argument("name")
    c.add_argument("--role", nargs="+", required=True, action="extend")
    c.set_defaults(func=cmd_user_roles)
    for name, what in (("deactivate", "sign a user out for good and revoke their tokens"),
                       ("activate", "let a deactivated user back in")):
        c = user.add_parser(name, help=what)
        c.add_argument("name")
        c.set_defaults(func=cmd_user_active)
    c = user.add_parser("passwd", help="set a user's password (read from stdin); signs them out of the web")
    c.add_argument("name")
    c.add_argument("--password-stdin", action="store_true", required=True,
                   help="read the password from the first line of stdin (at least 10 characters, letters and digits)")
    c.set_defaults(func=cmd_user_passwd)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    c = token.add_parser("create")
    c.add_argument("name")
    c.set_defaults(func=cmd_token_create)

    c = sub.add_parser("start", help="start a case")
    c.add_argument("process_id")
    c.add_argument("--as", dest="as_user", required=True)
    c.add_argument("--data", help="JSON object, or @file.json")
    c.add_argument("--business-key")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_start)

    c = sub.add_parser("tasks", help="list open tasks")
    c.add_argument("--as", dest="as_user")
    c.add_argument("--all", action="store_true")
    c.add_argument("--overdue", action="store_true")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_tasks)

    c = sub.add_parser("task", help="show one task with its form")
    c.add_argument("task_id")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_task)

    c = sub.add_parser("claim", help="claim a role task")
    c.add_argument("task_id")
    c.add_argument("--as", dest="as_user", required=True)
    c.set_defaults(func=cmd_claim)

    c = sub.add_parser("complete", help="validate and complete a task")
    c.add_argument("task_id")
    c.add_argument("--as", dest="as_user", required=True)
    c.add_argument("--data", required=True, help="JSON object, or @file.json")
    c.set_defaults(func=cmd_complete)

    c = sub.add_parser("show", help="a case: status, open tasks, history, links")
    c.add_argument("instance_id", type=int)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_show)

    c = sub.add_parser("serve", help="serve the web UI and API (http://127.0.0.1:8000)")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=8000)
    c.add_argument("--workers", type=int, default=2)
    c.set_defaults(func=cmd_serve)

    c = sub.add_parser("tick", help="fire every due timer and job once and exit")
    c.set_defaults(func=cmd_tick)

    c = sub.add_parser("worker", help="fire due timers and jobs continuously (blocking)")
    c.add_argument("--interval", type=float, default=0.5, help="seconds between ticks (default 0.5)")
    c.set_defaults(func=cmd_worker)

    c = sub.add_parser("jobs", help="list jobs (escalations, notifications, timer starts), or retry one")
    c.add_argument("--state", choices=["pending", "done", "failed", "cancelled"])
    c.add_argument("--kind")
    c.add_argument("--limit", type=int, default=50)
    c.add_argument("--retry", type=int, metavar="JOB_ID", help="give a failed job new retries")
    c.add_argument("--as", dest="as_user", help="the user the retry is done for (needs process.deploy); "
                                                "without it, the operator running the command")
    c.set_defaults(func=cmd_jobs)

    calendar = sub.add_parser("calendar", help="the trading calendar").add_subparsers(
        dest="calendar_command", required=True)
    c = calendar.add_parser("import-holidays", help="merge a holiday list (one YYYY-MM-DD per line)")
    c.add_argument("file")
    c.add_argument("--as", dest="as_user", help="the user it is done for (needs registers.edit); "
                                                "without it, the operator running the command")
    c.set_defaults(func=cmd_calendar_import)

    add_audit_commands(sub)
    add_case_commands(sub)
    add_ci_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    engine = None
    try:
        engine = ProcessEngine.from_env()
        engine.ctx.source.set(_cli_source())
        if args.command != "init":
            if not engine.schema_is_current():
                raise OpsFlowError("the database is not initialised or not up to date: run 'opsflow init'")
        return int(args.func(engine, args))
    except ValidationFailed as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err.field}: {err.message}", file=sys.stderr)
        return 1
    except OpsFlowError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 (a user never sees a traceback; the log keeps the detail)
        print(f"error: unexpected {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if engine is not None:
            engine.close()

