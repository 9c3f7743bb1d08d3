"""The process owner's failures page (/admin/failures): cases stuck on a timer that could not fire and
jobs whose retries ran out, each with a Retry button; cancelling lives on the case page.

The engine decides who may see and retry (FailureService: the grant process.deploy) and records the retry.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine.errors import Forbidden
from webui import engine_of_app
from webui.pages import render_error
from webui.pages.auth import login_required

bp = Blueprint("failures", __name__)


@bp.errorhandler(Forbidden)
def not_a_process_owner(_error: Forbidden) -> Any:
    return render_error(403, _("Only a process owner sees and retries failed cases."))


@bp.get("/admin/failures")
@login_required
def index() -> Any:
    return render_template("failures.html", failures=engine_of_app().failures.failures(g.actor))


@bp.post("/admin/failures/retry")
@login_required
def retry() -> Any:
    case, job = _number(request.form.get("instance_id")), _number(request.form.get("job_id"))
    engine_of_app().failures.retry(g.actor, instance_id=case, job_id=None if case is not None else job)
    flash(_("Retry scheduled: it runs at the next tick.") if case is None else
          _("Retry of case %(id)s scheduled: it runs at the next tick.", id=case), "ok")
    return redirect(url_for("failures.index"))


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and len(text) < 10 else None
