"""In-app notifications: the list, and marking them read (the unread count shows in the navigation)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, redirect, render_template, request, url_for

from webui import engine_of_app
from webui.pages.auth import login_required

bp = Blueprint("notifications", __name__)


@bp.get("/notifications")
@login_required
def index() -> Any:
    notify = engine_of_app().notify
    unread_only = request.args.get("unread") == "1"
    return render_template("notifications.html", items=notify.list(g.actor.username, unread_only=unread_only),
                           unread_only=unread_only)


@bp.post("/notifications/read")
@login_required
def mark_read() -> Any:
    ids = [int(i) for i in request.form.getlist("id") if i.isdigit()]
    engine_of_app().notify.mark_read(g.actor.username, ids or None)
    return redirect(url_for("notifications.index"))
