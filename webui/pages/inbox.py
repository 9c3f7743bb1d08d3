"""The inbox: my tasks, my roles' tasks to claim, filters, sorting, pages; claim, unclaim, assign."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from math import ceil
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine.views import INBOX_ORDERS, Actor, case_titles
from webui import engine_of_app
from webui.pages.auth import _safe_next, login_required

bp = Blueprint("inbox", __name__)

PAGE_SIZE = 25
SCOPES = ("all", "mine", "group")


def nav_counts(actor: Actor) -> dict[str, int]:
    tasks = engine_of_app().tasks
    return {"mine": tasks.count(actor, "mine"), "group": tasks.count(actor, "group"),
            "overdue": tasks.count(actor, "all", overdue=True),
            "unread": engine_of_app().notify.unread_count(actor.username)}


def end_of_today() -> datetime:
    zone = engine_of_app().ctx.zone
    today = engine_of_app().ctx.now().astimezone(zone).date()
    return datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone)


@bp.get("/")
@login_required
def index() -> Any:
    engine = engine_of_app()
    args = request.args
    scope = args.get("scope") if args.get("scope") in SCOPES else "all"
    order = args.get("sort") if args.get("sort") in INBOX_ORDERS else "priority"
    definitions = {d.process_id: d.name for d in engine.repository.definitions()}
    process_id = args.get("process") if args.get("process") in definitions else None
    overdue = args.get("overdue") == "1"
    due_today = args.get("due") == "today"
    priority = int(args["priority"]) if (args.get("priority") or "").isdigit() else None
    page = max(int(args["page"]) if (args.get("page") or "").isdigit() else 1, 1)
    filters = {"overdue": overdue, "process_id": process_id, "due_before": end_of_today() if due_today else None,
               "priority": priority}
    total = engine.tasks.count(g.actor, scope, **filters)
    pages = max(ceil(total / PAGE_SIZE), 1)
    page = min(page, pages)
    rows = engine.tasks.inbox(g.actor, scope, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, order=order,
                              **filters)
    titles = case_titles(engine.ctx, {t.instance_id for t in rows})
    query = {k: v for k, v in {"scope": scope, "sort": order, "process": process_id, "overdue": "1" if overdue
                                else None, "due": "today" if due_today else None,
                                "priority": priority}.items() if v is not None}
    return render_template("inbox.html", tasks=rows, titles=titles, total=total, page=page, pages=pages,
                           scope=scope, order=order, process_id=process_id, overdue=overdue, due_today=due_today,
                           priority=priority, definitions=definitions, query=query, now=engine.ctx.now(),
                           holders=engine.substitutes.active_for(g.actor.username))


def _back(task_id: str) -> Any:
    return redirect(_safe_next(request.form.get("next") or url_for("tasks.show", task_id=task_id)))


@bp.post("/tasks/<task_id>/claim")
@login_required
def claim(task_id: str) -> Any:
    engine_of_app().tasks.claim(task_id, g.actor)
    flash(_("Task claimed: it is now in your tasks."), "ok")
    return _back(task_id)


@bp.post("/tasks/<task_id>/unclaim")
@login_required
def unclaim(task_id: str) -> Any:
    engine_of_app().tasks.unclaim(task_id, g.actor)
    flash(_("Task released to its role's queue."), "ok")
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/tasks/<task_id>/assign")
@login_required
def assign(task_id: str) -> Any:
    username = (request.form.get("user") or "").strip()
    if not username:
        flash(_("Choose a person to assign the task to."), "error")
        return _back(task_id)
    engine_of_app().tasks.assign(task_id, g.actor, username)
    flash(_("Task assigned to %(user)s.", user=username), "ok")
    return _back(task_id)


def may_assign(actor: Actor) -> bool:
    return engine_of_app().may(actor, "tasks.assign")
