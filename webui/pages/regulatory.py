"""Compliance's register of regulatory reports (/compliance/reports): what is due, overdue, sent and late,
with filters; and a case's 报告书 as PDF (/cases/<id>/report.pdf) or DOCX (/cases/<id>/report.docx).

The engine decides who may read them (RegulatoryRegister: the grant case.read_all; the 报告书 follows the
case's readers) and computes every status.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, render_template, request
from flask_babel import gettext as _

from engine.errors import Forbidden
from engine.views import REPORT_STATUSES
from webui import engine_of_app
from webui.pages import render_error
from webui.pages.auth import login_required

bp = Blueprint("regulatory", __name__)
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@bp.errorhandler(Forbidden)
def not_allowed(error: Forbidden) -> Any:
    return render_error(403, error.message)


@bp.get("/compliance/reports")
@login_required
def index() -> Any:
    engine = engine_of_app()
    status = request.args.get("status") if request.args.get("status") in REPORT_STATUSES else None
    kind = request.args.get("kind") or None
    reports = engine.regulatory.reports(g.actor, status=status, kind=kind)
    labels = {"due": _("Due"), "overdue": _("Overdue, not sent"), "sent": _("Sent on time"),
              "late": _("Sent late")}
    now = engine.ctx.now()
    return render_template("regulatory_reports.html", reports=reports, now=now, status=status, kind=kind,
                           labels=labels, kinds=sorted({r.kind for r in engine.regulatory.reports(g.actor)}))


@bp.get("/cases/<int:instance_id>/report.pdf")
@login_required
def report_book(instance_id: int) -> Any:
    pdf = engine_of_app().regulatory.report_book(g.actor, instance_id)
    return Response(pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="report-{instance_id}.pdf"'})


@bp.get("/cases/<int:instance_id>/report.docx")
@login_required
def report_book_docx(instance_id: int) -> Any:
    docx = engine_of_app().regulatory.report_book_docx(g.actor, instance_id)
    return Response(docx, mimetype=DOCX,
                    headers={"Content-Disposition": f'attachment; filename="report-{instance_id}.docx"'})
