"""`opsflow ci import FILE` and `opsflow ci list`: the configuration items register (docs/CONTRACT.md).

Without `--as` the import is the operator's at the shell (like `deploy`); with `--as USER` it is
that user's, held to the grant ci.manage (processes/access.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import OpsFlowError

if TYPE_CHECKING:
    from engine import ProcessEngine

OPERATOR = "cli"


def cmd_import(engine: ProcessEngine, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise OpsFlowError(f"{args.file}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from a spreadsheet's CSV export is not a column
    except UnicodeDecodeError:
        raise OpsFlowError(f"{args.file}: not UTF-8 text") from None
    by = engine.identity.get(args.as_user) if args.as_user else OPERATOR
    summary = engine.configuration.import_items(by, text, path.name)
    for word, names in (("created", summary.created), ("updated", summary.updated)):
        for name in names:
            print(f"{word} {name}")
    print(f"{len(summary.created)} created, {len(summary.updated)} updated, {len(summary.unchanged)} unchanged"
          + (f"; kept (not in the file): {', '.join(summary.kept)}" if summary.kept else ""))
    return 0


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def cmd_list(engine: ProcessEngine, args: argparse.Namespace) -> int:
    items = engine.configuration.list_items(args.search)
    if args.json:
        print(json.dumps([i.as_dict() for i in items], ensure_ascii=False, indent=2, default=_default))
        return 0
    for i in items:
        relations = "; ".join(f"{kind} {', '.join(names)}" for kind, names in
                              (("depends_on", i.depends_on), ("runs_on", i.runs_on)) if names)
        print(f"{i.name}  {i.class_label} {i.system_class_label or '-'}  {','.join(i.markets) or '-'}  "
              f"{i.environment}  {i.version or '-'}  {i.status}" + (f"  ({relations})" if relations else ""))
    if not items:
        print("no configuration items" + (f" matching {args.search!r}" if args.search else ""))
    return 0


def add_commands(sub: Any) -> None:
    ci = sub.add_parser("ci", help="the configuration items register").add_subparsers(dest="ci_command",
                                                                                     required=True)
    c = ci.add_parser("import", help="create or update items and relations from a JSON or CSV file (all or nothing)")
    c.add_argument("file")
    c.add_argument("--as", dest="as_user", help="the user it is done for (needs ci.manage); without it, the "
                                                "operator running the command")
    c.set_defaults(func=cmd_import)
    c = ci.add_parser("list", help="the items with their relations")
    c.add_argument("--json", action="store_true")
    c.add_argument("--search", metavar="TEXT", help="only items whose name, class, markets, people, vendor, "
                                                    "version or status contain it")
    c.set_defaults(func=cmd_list)
