"""`opsflow audit …`: verify the chain, take a checkpoint to keep outside, archive past retention.

Exit codes as every command (docs/CONTRACT.md): 1 with one line on stderr for a broken chain, a
missing or wrong key, a forged checkpoint; 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import OpsFlowError
from engine.storage.audit import read_archive

if TYPE_CHECKING:
    from engine import ProcessEngine


def _read_json(name: str) -> Any:
    try:
        return json.loads(Path(name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OpsFlowError(f"{name}: no such file") from None
    except ValueError as exc:
        raise OpsFlowError(f"{name} is not JSON: {exc}") from None


def cmd_verify(engine: ProcessEngine, args: argparse.Namespace) -> int:
    report = engine.audit.verify(_read_json(args.checkpoint) if args.checkpoint else None)
    if report.ok:
        print(report.summary())
        return 0
    print(report.summary(), file=sys.stderr)
    return 1


def cmd_checkpoint(engine: ProcessEngine, args: argparse.Namespace) -> int:
    from engine.people.notify import Message, SendError

    if args.post and not engine.notify.settings.webhook_url:
        raise OpsFlowError("--post needs the webhook (OPSFLOW_WEBHOOK_URL)")

    def post(checkpoint: dict[str, Any]) -> None:
        text = json.dumps(checkpoint, ensure_ascii=False)
        try:
            engine.notify.send_webhook(Message("审计链检查点 Audit checkpoint", text, kind="audit_checkpoint"))
        except (SendError, OSError) as exc:
            raise OpsFlowError(f"checkpoint not posted: {exc}") from None

    checkpoint = engine.audit.checkpoint(publish=post if args.post else None)
    print(json.dumps(checkpoint, ensure_ascii=False, indent=2))
    return 0


def _moment(engine: ProcessEngine, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise OpsFlowError(f"--before {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=engine.ctx.zone)


def cmd_archive(engine: ProcessEngine, args: argparse.Namespace) -> int:
    before = _moment(engine, args.before) if args.before else None
    archived = engine.audit.archive(Path(args.out), before)
    if archived is None:
        print("nothing to archive: no event is older than the retention period"
              + (f" and {args.before}" if args.before else ""))
        return 0
    print(f"archived events {archived.first_id}–{archived.last_id} ({archived.count}) to {archived.path}  "
          f"sha256 {archived.sha256}")
    print(engine.audit.verify().summary())
    return 0


def cmd_verify_archive(engine: ProcessEngine, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise OpsFlowError(f"{args.file}: no such file")
    archived = read_archive(path, engine.audit.key())
    print(f"archive intact: events {archived.first_id}–{archived.last_id} ({archived.count})  "
          f"sha256 {archived.sha256}")
    return 0


def add_commands(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    c = audit.add_parser("verify", help="check every event and the signed head; exit 1 naming the first bad one")
    c.add_argument("--checkpoint", metavar="FILE", help="also prove the event a kept checkpoint names is unchanged")
    c.set_defaults(func=cmd_verify)
    c = audit.add_parser("checkpoint", help="print the signed head (JSON) to keep outside the system")
    c.add_argument("--post", action="store_true", help="also send it to the webhook (OPSFLOW_WEBHOOK_URL)")
    c.set_defaults(func=cmd_checkpoint)
    c = audit.add_parser("archive", help="move events past OPSFLOW_AUDIT_RETENTION to a signed file")
    c.add_argument("--out", required=True, metavar="FILE", help="the archive to write (.gz: compressed); never "
                   "overwritten")
    c.add_argument("--before", metavar="DATE", help="only events before this (never later than the retention "
                   "period allows)")
    c.set_defaults(func=cmd_archive)
    c = audit.add_parser("verify-archive", help="check an archive file's events and signature")
    c.add_argument("file")
    c.set_defaults(func=cmd_verify_archive)
