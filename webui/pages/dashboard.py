"""The supervisor dashboard: what is late or nearly so, where, and the figures an inspection asks for."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Blueprint, Response, g, render_template, request
from flask_babel import gettext as _

from engine.views import Dashboard
from webui import engine_of_app
from webui.pages import local_time
from webui.pages.auth import login_required

bp = Blueprint("dashboard", __name__)
PERIODS = (7, 28, 90, 365)


def tables(report: Dashboard) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every table of the page, by name: (headers, rows) — the same rows the CSV export writes."""
    late, soon = _("Overdue"), _("Due within 24 h")
    return {
        "by_process": ([_("Process"), late, soon], report.overdue_by_process),
        "by_role": ([_("Role"), late, soon], report.overdue_by_role),
        "by_person": ([_("Person"), late, soon], report.overdue_by_person),
        "ageing": ([_("Age of open tasks"), _("Tasks")], report.ageing),
        "weekly": ([_("Week starting"), _("Started"), _("Completed")], report.weekly),
        "change_outcomes": ([_("Change outcome"), _("Cases")], sorted(report.change_outcomes.items())),
        "time_used": ([_("Share of time used"), _("Tasks")], report.time_used),
        "sla": ([_("Commitment"), _("Measured"), _("Breaches"), _("Rate")],
                [(label, f.measured, f.breaches, percent(f.rate))
                 for label, f in ((_("Response"), report.response), (_("Resolution"), report.resolution))]),
        "overdue_tasks": ([_("Task"), _("Case"), _("Role"), _("Assignee"), _("Due")],
                          [(t.name, t.instance_id, t.role, t.assignee or "", local_time(t.due_at))
                           for t in report.overdue_tasks]),
    }


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f}%"


def bars(rows: list[tuple[Any, ...]], columns: int = 1) -> dict[str, Any]:
    """Geometry for a small horizontal bar chart drawn as SVG on the server (no script needed)."""
    top = max((sum(r[1:1 + columns]) for r in rows), default=0) or 1
    return {"rows": [{"label": str(r[0]), "nums": list(r[1:1 + columns]),
                      "widths": [round(240 * v / top, 1) for v in r[1:1 + columns]]} for r in rows[:12]],
            "height": 22 * min(len(rows), 12) + 4}


@bp.get("/dashboard")
@login_required
def index() -> Any:
    engine = engine_of_app()
    days = int(request.args["days"]) if request.args.get("days", "").isdigit() else 28
    definitions = {d.process_id: d.name for d in engine.repository.definitions()}
    process_id = request.args.get("process") if request.args.get("process") in definitions else None
    report = engine.reports.dashboard(g.actor, days=days, process_id=process_id)
    named = tables(report)
    table = request.args.get("export")
    if table in named:
        headers, rows = named[table]
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(headers)
        writer.writerows(rows)
        return Response("\ufeff" + out.getvalue(), mimetype="text/csv",  # BOM: Excel opens UTF-8 Chinese
                        headers={"Content-Disposition": f"attachment; filename=opsflow-{table}.csv"})
    charts = {"by_process": bars(report.overdue_by_process, 2), "by_role": bars(report.overdue_by_role, 2),
              "ageing": bars(report.ageing), "weekly": bars(report.weekly, 2), "time_used": bars(report.time_used)}
    return render_template("dashboard.html", report=report, tables=named, charts=charts, days=days,
                           periods=PERIODS, definitions=definitions, process_id=process_id, percent=percent)

