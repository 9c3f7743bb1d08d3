"""The standard-change catalogue (标准变更模板) in the browser: /standard-changes lists every template with
its systems, steps, rollback plan, validity and approvers, read-only. Templates change only through the
standard_change_template process (engine/configuration/templates.py); anyone signed in may read the
catalogue, as a change's requester must to cite a template.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from engine.views import TEMPLATE_STATUSES as STATUSES
from webui import engine_of_app
from webui.pages.auth import login_required

bp = Blueprint("standard_changes", __name__)


@bp.get("/standard-changes")
@login_required
def index() -> Any:
    engine = engine_of_app()
    status = request.args.get("status") or ""
    status = status if status in STATUSES else ""
    templates = engine.standard_changes.list_templates(status or None)
    return render_template("standard_changes.html", templates=templates, status=status, statuses=STATUSES)
