"""Substitutes (A/B角): name who stands in for you, and see whom you stand in for."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine.errors import BadRequest, NotFound
from webui import engine_of_app
from webui.pages.auth import login_required

bp = Blueprint("substitutes", __name__)


def _page(errors: dict[str, str] | None = None, form: dict[str, str] | None = None, status: int = 200) -> Any:
    engine = engine_of_app()
    is_admin = engine.may(g.actor, "substitutes.manage")
    entries = engine.substitutes.list(None if is_admin else g.actor.username)
    users = engine.identity.users()
    today = engine.ctx.now().astimezone(engine.ctx.zone).date()
    return render_template("substitutes.html", entries=entries, users=users, is_admin=is_admin,
                           errors=errors or {}, form=form or {"starts": today.isoformat(),
                                                              "ends": (today + timedelta(days=7)).isoformat()},
                           now=engine.ctx.now()), status


@bp.get("/substitutes")
@login_required
def index() -> Any:
    return _page()


@bp.post("/substitutes")
@login_required
def create() -> Any:
    engine = engine_of_app()
    form = {k: (request.form.get(k) or "").strip() for k in ("holder", "substitute", "starts", "ends", "reason")}
    errors: dict[str, str] = {}
    if not form["substitute"]:
        errors["substitute"] = _("Choose a substitute.")
    days: dict[str, date] = {}
    for key in ("starts", "ends"):
        try:
            days[key] = date.fromisoformat(form[key])
        except ValueError:
            errors[key] = _("Enter a date (YYYY-MM-DD).")
    if not errors and days["ends"] < days["starts"]:
        errors["ends"] = _("The last day cannot be before the first.")
    if errors:
        return _page(errors, form, 422)
    zone = engine.ctx.zone
    starts = datetime.combine(days["starts"], time(0), tzinfo=zone)
    ends = datetime.combine(days["ends"] + timedelta(days=1), time(0), tzinfo=zone)  # through the last day
    try:
        engine.substitutes.create(g.actor, form["substitute"], starts, ends, form["reason"],
                                  holder=form["holder"] or None)
    except (BadRequest, NotFound) as exc:
        return _page({"substitute": exc.message}, form, 422)
    flash(_("Substitute named."), "ok")
    return redirect(url_for("substitutes.index"))


@bp.post("/substitutes/<int:entry_id>/end")
@login_required
def end(entry_id: int) -> Any:
    engine_of_app().substitutes.end(entry_id, g.actor)
    flash(_("Substitution ended."), "ok")
    return redirect(url_for("substitutes.index"))
