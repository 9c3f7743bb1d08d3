"""Starting a case, the list of my cases, and the case page with its live BPMN diagram."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine.views import SYSTEM_CLASSES, Actor
from webui import engine_of_app
from webui.pages.auth import login_required
from webui.pages.tasks import field_labels

bp = Blueprint("cases", __name__)

HISTORY_ACTIONS = {
    "case.started": _l("Started the case"), "task.completed": _l("Completed"), "task.claimed": _l("Claimed"),
    "task.unclaimed": _l("Released"), "task.assigned": _l("Assigned"), "task.refused": _l("Refused"),
    "case.cancelled": _l("Cancelled the case"), "case.linked": _l("Linked a case"), "timer.fired": _l("Timer fired"),
    "message.delivered": _l("Message received"), "attachment.added": _l("Attached a file"),
    "timer.failed": _l("Timer failed"), "job.failed": _l("Retries used up"), "job.retried": _l("Retry requested"),
    "timer.retry_scheduled": _l("Retry requested"), "action.failed": _l("Action failed (rolled back)"),
    "case.regraded": _l("Regraded by a linked case"),
}


def startable(actor: Actor) -> list[dict[str, Any]]:
    engine = engine_of_app()
    out = []
    for row in engine.repository.definitions():
        loaded = engine.repository.load(row.id)
        if loaded.start_role is None or actor.has_role(loaded.start_role):
            out.append({"process_id": row.process_id, "name": row.name, "version": row.version,
                        "role": loaded.start_role})
    return out


@bp.get("/start")
@login_required
def start_page() -> Any:
    return render_template("start.html", processes=startable(g.actor))


@bp.post("/start/<process_id>")
@login_required
def start(process_id: str) -> Any:
    engine = engine_of_app()
    title = (request.form.get("title") or "").strip()[:200]
    case = engine.runtime.start(process_id, g.actor, {"title": title} if title else {})
    flash(_("Case %(id)s started.", id=case.id), "ok")
    mine = [t for t in engine.tasks.inbox(g.actor, "mine", limit=50) if t.instance_id == case.id]
    if mine:
        return redirect(url_for("tasks.show", task_id=mine[0].id))
    return redirect(url_for("cases.show", instance_id=case.id))


@bp.get("/cases")
@login_required
def index() -> Any:
    engine = engine_of_app()
    sees_all = engine.may(g.actor, "case.read_all")
    status = request.args.get("status") if request.args.get("status") in ("running", "completed",
                                                                           "cancelled") else None
    rows, total = engine.runtime.visible_cases(g.actor, status=status, limit=100)
    return render_template("cases.html", cases=rows, total=total, sees_all=sees_all, status=status)


@bp.get("/cases/<int:instance_id>")
@login_required
def show(instance_id: int) -> Any:
    engine = engine_of_app()
    case = engine.runtime.show(instance_id, g.actor)
    progress = engine.progress(instance_id)
    names = _task_names(case.process_id, case.version)
    acting = {e.task_id: e.data.get("acting_for") for e in case.history if e.data.get("acting_for")}
    # A completed step reads as its outcome (批准 / 驳回 / 退回), not a bare "completed".
    outcomes = {e.task_id: e.outcome_label for e in case.record if e.outcome_label}
    history = [{"at": e.at, "actor": e.actor, "action": outcomes.get(e.task_id) if e.action == "task.completed"
                and e.task_id in outcomes else str(HISTORY_ACTIONS.get(e.action, e.action)),
                "code": e.action, "task": names.get(str(e.data.get("task") or ""), e.data.get("task") or ""),
                "acting_for": e.data.get("acting_for") or (acting.get(e.task_id) if e.action == "task.completed"
                                                            else None),
                "detail": _history_detail(e.action, e.data), "source": e.source} for e in case.history]
    users = {u.username: u.display_name for u in engine.identity.users()}
    shown = engine.repository.load(case.definition_id).record_keys
    pending = engine.runtime.cancel_request(instance_id) if case.status == "running" else None
    may_cancel = case.status == "running" and engine.runtime.may_cancel(g.actor, instance_id)
    grading = _grading_rows(case.data.get("grading_history"), names)
    if grading is not None:
        shown = {*shown, "grading_history"}  # shown as its own table
    return render_template("case.html", case=case, progress=progress, history=history,
                           cancel_request=pending, may_cancel=may_cancel, grading=grading,
                           facts={k: v for k, v in case.data.items() if k not in shown},
                           labels=field_labels(case.definition_id), users=users,
                           attachments=engine.attachments.list(instance_id), now=engine.ctx.now())


@bp.post("/cases/<int:instance_id>/cancel")
@login_required
def cancel(instance_id: int) -> Any:
    outcome = engine_of_app().runtime.cancel(instance_id, g.actor, request.form.get("reason") or "")
    flash(_("Case cancelled.") if outcome == "cancelled" else
          _("Cancellation requested: this case is reportable, so compliance must sign it off."), "ok")
    return redirect(url_for("cases.show", instance_id=instance_id))


@bp.get("/cases/<int:instance_id>/diagram.bpmn")
@login_required
def diagram(instance_id: int) -> Any:
    engine = engine_of_app()
    case = engine.runtime.show(instance_id, g.actor)
    xml = engine.repository.definition(case.process_id, case.version).bpmn_xml
    return Response(xml, mimetype="application/xml", headers={"Cache-Control": "private, max-age=300"})


@bp.post("/cases/<int:instance_id>/attachments")
@login_required
def upload(instance_id: int) -> Any:
    engine = engine_of_app()
    upload = request.files.get("file")
    if not upload or not upload.filename:
        flash(_("Choose a file to attach."), "error")
    else:
        engine.attachments.add(instance_id, None, upload.filename, upload.mimetype or "", upload.read(), g.actor)
        flash(_("File attached."), "ok")
    return redirect(url_for("cases.show", instance_id=instance_id) + "#attachments")


@bp.get("/attachments/<int:attachment_id>")
@login_required
def attachment(attachment_id: int) -> Any:
    row = engine_of_app().attachments.get(attachment_id, g.actor)
    if row.content is None:
        abort(404)
    # Always a download, never rendered in the page's origin (an uploaded HTML file cannot run here).
    return Response(row.content, mimetype="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(row.filename)}",
        "X-Content-Type-Options": "nosniff", "X-OpsFlow-SHA256": row.sha256})


def _task_names(process_id: str, version: int) -> dict[str, str]:
    engine = engine_of_app()
    loaded = engine.repository.load(engine.repository.definition(process_id, version).id)
    return {k: v.name for k, v in loaded.rules.items()}


def _history_detail(action: str, data: dict[str, Any]) -> str:
    if action == "task.assigned":
        return f"→ {data.get('assignee')}"
    if action == "task.refused":
        return str(data.get("reason") or "")
    if action == "case.cancelled":
        return str(data.get("reason") or "")
    if action == "attachment.added":
        return f"{data.get('filename')} ({data.get('sha256', '')[:12]}…)"
    if action in ("timer.failed", "job.failed", "action.failed"):
        return str(data.get("error") or "")
    if action == "case.linked":
        return f"→ #{data.get('to')} ({data.get('kind')})"
    if action == "case.regraded":
        return f"{data.get('from_level')} → {data.get('level')} (#{data.get('from_case')})"
    return ""


def _grading_rows(entries: Any, names: dict[str, str]) -> list[dict[str, Any]] | None:
    """A case's grading_history as table rows; None when the data holds no such list of entries."""
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        return None
    classes = {number: label for label, number in SYSTEM_CLASSES.items()}  # 1 -> 一类 … 5 -> 五类
    rows = []
    for e in entries:
        level = e.get("system_level")
        after = str(e.get("after") or "")
        try:
            at = datetime.fromisoformat(e["at"]) if isinstance(e.get("at"), str) else None
        except ValueError:
            at = None
        rows.append({**e, "at": at, "system_level_label": classes.get(level) if level else _("Unclassified"),
                     # a step of another case (the incident that regraded this one) keeps its id
                     "step": after if e.get("source_case") else names.get(after, after)})
    return rows
