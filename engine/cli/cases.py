"""`opsflow cancel`, `unclaim`, `assign` and `substitute add|list|remove`: acts on cases, tasks and A/B角.

Each acts as a named user (`--as`) and goes through the same services, so the access policy
(processes/access.json), separation of duties and the audit trail apply as on the web and the API.
`substitute` acts as the principal unless `--as` names someone else (an admin, for another person).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.errors import BadRequest, NotFound

if TYPE_CHECKING:
    from engine import ProcessEngine


def cmd_cancel(engine: ProcessEngine, args: argparse.Namespace) -> int:
    outcome = engine.runtime.cancel(args.case_id, engine.identity.get(args.as_user), args.reason)
    if outcome == "cancelled":
        print(f"case {args.case_id} cancelled")
    else:
        print(f"case {args.case_id} is reportable: cancelling it waits for compliance's sign-off "
              f"(opsflow cancel {args.case_id} --as <compliance officer> --reason ...)")
    return 0


def cmd_unclaim(engine: ProcessEngine, args: argparse.Namespace) -> int:
    task = engine.tasks.unclaim(args.task_id, engine.identity.get(args.as_user))
    print(f"task {task.id} is back in the queue of {task.role}")
    return 0


def cmd_assign(engine: ProcessEngine, args: argparse.Namespace) -> int:
    task = engine.tasks.assign(args.task_id, engine.identity.get(args.as_user), args.user)
    print(f"task {task.id} assigned to {task.assignee}")
    return 0


def _moment(engine: ProcessEngine, text: str, flag: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{flag} {text!r} is not an ISO date or time (e.g. 2026-12-24 or 2026-12-24T18:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=engine.ctx.zone)


def cmd_substitute_add(engine: ProcessEngine, args: argparse.Namespace) -> int:
    actor = engine.identity.get(args.as_user or args.principal)
    row = engine.substitutes.create(actor, args.substitute, _moment(engine, args.starts, "--from"),
                                    _moment(engine, args.until, "--until"), args.reason, holder=args.principal)
    zone = engine.ctx.zone
    print(f"substitute {row.id}: {row.substitute} stands in for {row.holder} "
          f"from {row.starts_at.astimezone(zone).isoformat()} until {row.ends_at.astimezone(zone).isoformat()}")
    return 0


def _entry(row: Any) -> dict[str, Any]:
    return {"id": row.id, "holder": row.holder, "substitute": row.substitute, "starts_at": row.starts_at.isoformat(),
            "ends_at": row.ends_at.isoformat(), "reason": row.reason, "created_by": row.created_by}


def cmd_substitute_list(engine: ProcessEngine, args: argparse.Namespace) -> int:
    rows = [_entry(r) for r in engine.substitutes.list(args.user, include_past=args.all)]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for r in rows:
        print(f"{r['id']:>5}  {r['substitute']} for {r['holder']}  {r['starts_at']} → {r['ends_at']}  {r['reason']}")
    if not rows:
        print("no substitutes")
    return 0


def cmd_substitute_remove(engine: ProcessEngine, args: argparse.Namespace) -> int:
    entry = next((r for r in engine.substitutes.list(None, include_past=True) if r.id == args.id), None)
    if entry is None:
        raise NotFound(f"unknown substitute entry {args.id}")
    row = engine.substitutes.end(args.id, engine.identity.get(args.as_user or entry.holder))
    print(f"substitute {row.id} ended ({row.substitute} no longer stands in for {row.holder})")
    return 0


def add_commands(sub: Any) -> None:
    c = sub.add_parser("cancel", help="cancel a case, with a reason (a reportable one needs compliance's sign-off)")
    c.add_argument("case_id", type=int)
    c.add_argument("--as", dest="as_user", required=True)
    c.add_argument("--reason", required=True)
    c.set_defaults(func=cmd_cancel)
    c = sub.add_parser("unclaim", help="put a claimed task back in its role's queue")
    c.add_argument("task_id")
    c.add_argument("--as", dest="as_user", required=True)
    c.set_defaults(func=cmd_unclaim)
    c = sub.add_parser("assign", help="hand a task to a user who holds its role")
    c.add_argument("task_id")
    c.add_argument("user")
    c.add_argument("--as", dest="as_user", required=True)
    c.set_defaults(func=cmd_assign)
    substitute = sub.add_parser("substitute", help="A/B角 substitutes").add_subparsers(
        dest="substitute_command", required=True)
    c = substitute.add_parser("add", help="name SUBSTITUTE to stand in for PRINCIPAL in a window")
    c.add_argument("principal")
    c.add_argument("substitute")
    c.add_argument("--from", dest="starts", required=True)
    c.add_argument("--until", required=True)
    c.add_argument("--reason", default="")
    c.add_argument("--as", dest="as_user", help="who names them (default: the principal)")
    c.set_defaults(func=cmd_substitute_add)
    c = substitute.add_parser("list", help="current substitutes (--all: past ones too)")
    c.add_argument("--user", help="only entries where this user is principal or substitute")
    c.add_argument("--all", action="store_true")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_substitute_list)
    c = substitute.add_parser("remove", help="end a substitute entry now")
    c.add_argument("id", type=int)
    c.add_argument("--as", dest="as_user", help="who ends it (default: the principal)")
    c.set_defaults(func=cmd_substitute_remove)
