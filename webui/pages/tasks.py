"""The task page: instructions, the case's data so far (read-only) and the task's form."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine.errors import OpsFlowError, ValidationFailed
from engine.views import Actor, TaskDetail, TaskView, declared_fields
from webui import engine_of_app
from webui.pages.auth import login_required
from webui.pages.forms import FormRenderer, errors_by_field
from webui.pages.inbox import may_assign

bp = Blueprint("tasks", __name__)


def renderer_for(definition_id: int) -> FormRenderer:
    """User pickers: a field named by a task's `assigneeFrom` lists the users of that task's lane role
    (in the version the case runs on)."""
    engine = engine_of_app()
    user_roles: dict[str, str] = {}
    for rules in engine.repository.load(definition_id).rules.values():
        role = engine.identity.resolve_role(rules.lane)
        if rules.assignee_from and rules.assignee_from != "starter" and role:
            user_roles.setdefault(rules.assignee_from, role)
    users = {role: [(u.username, f"{u.display_name} ({u.username})") for u in engine.identity.users(role)]
             for role in set(user_roles.values())}
    return FormRenderer(engine.ctx.zone, user_roles, users)


def field_labels(definition_id: int) -> dict[str, str]:
    """Data key -> the title a form of the case's version gives it, for the read-only summary."""
    labels: dict[str, str] = {}
    for schema in engine_of_app().repository.load(definition_id).forms.values():
        for key, prop in ((schema or {}).get("properties") or {}).items():
            if isinstance(prop, dict) and prop.get("title"):
                labels.setdefault(key, str(prop["title"]))
    return labels


_PAGE_INPUTS = frozenset({"csrf_token", "_action", "attachments"})


def undeclared_inputs(schema: dict[str, Any], names: list[str]) -> list[str]:
    """Posted inputs whose field the form does not declare (the page's own inputs aside)."""
    declared = declared_fields(schema)
    roots = {re.split(r"[.\[]", name, maxsplit=1)[0]: name for name in names}
    return sorted(name for root, name in roots.items() if root not in declared and root not in _PAGE_INPUTS)


def may_act(actor: Actor, task: TaskView, holders: list[str]) -> bool:
    """Whether to offer the form (the engine still decides, separation of duties included)."""
    if task.state != "open":
        return False
    if task.assignee:
        # a substitute acts for the holder only on a role they hold themselves (A/B角)
        return task.assignee == actor.username or (task.assignee in holders and actor.has_role(task.role))
    return actor.has_role(task.role)


def _render(detail: TaskDetail, data: dict[str, Any] | None = None, errors: list[dict[str, str]] | None = None,
            extra_rows: dict[str, int] | None = None, status: int = 200) -> Any:
    engine = engine_of_app()
    task = detail.task
    holders = engine.substitutes.active_for(g.actor.username)
    form = None
    if detail.form is not None:
        values = data if data is not None else {k: v for k, v in detail.data.items()
                                                if k in (detail.form.get("properties") or {})}
        form = renderer_for(detail.definition_id).render(detail.form, values, errors_by_field(errors), extra_rows)
    assignable = []
    if task.state == "open" and may_assign(g.actor):
        assignable = [(u.username, f"{u.display_name} ({u.username})") for u in engine.identity.users(task.role)]
    acting_for = task.assignee if task.assignee and task.assignee != g.actor.username and \
        task.assignee in holders else None
    return render_template("task.html", detail=detail, task=task, form=form, may_act=may_act(g.actor, task, holders),
                           acting_for=acting_for, assignable=assignable, labels=field_labels(detail.definition_id),
                           case_data={k: v for k, v in detail.case_data.items()
                                      if k not in engine.repository.load(detail.definition_id).record_keys},
                           record=detail.record, now=engine.ctx.now(),
                           users={u.username: u.display_name for u in engine.identity.users()},
                           attachments=engine.attachments.list(task.instance_id)), status


@bp.get("/tasks/<task_id>")
@login_required
def show(task_id: str) -> Any:
    return _render(engine_of_app().tasks.get(task_id, g.actor))


@bp.post("/tasks/<task_id>")
@login_required
def submit(task_id: str) -> Any:
    engine = engine_of_app()
    detail = engine.tasks.get(task_id, g.actor)
    task = detail.task
    schema = detail.form or {"type": "object", "properties": {}}
    renderer = renderer_for(detail.definition_id)
    upload_errors: list[dict[str, str]] = []
    files: dict[str, dict[str, str]] = {}
    for key, upload in request.files.items(multi=True):
        if not upload or not upload.filename:
            continue
        content = upload.read()
        try:
            row = engine.attachments.add(task.instance_id, task.id, upload.filename, upload.mimetype or "",
                                         content, g.actor, kind="form" if key.endswith(".__file") else "document")
        except ValidationFailed:
            raise
        except OpsFlowError as exc:
            if exc.code == "forbidden":
                raise
            upload_errors.append({"field": key.removesuffix(".__file"), "message": exc.message})
            continue
        if key.endswith(".__file"):
            files[key.removesuffix(".__file")] = {"name": row.filename, "sha256": row.sha256}
    data = renderer.parse(schema, request.form, files)
    unknown = undeclared_inputs(schema, [*request.form.keys(), *request.files.keys()])
    if unknown:  # a crafted post: say so in place rather than drop it silently
        return _render(detail, data, [{"field": "(form)", "message": _("Not a field of this form: %(fields)s",
                                                                        fields=", ".join(unknown))}], status=422)
    action = request.form.get("_action", "complete")
    if action.startswith("add:"):
        return _render(detail, data, upload_errors, {action[4:]: 1})
    if upload_errors:
        return _render(detail, data, upload_errors, status=422)
    try:
        created = engine.tasks.complete(task_id, g.actor, data)
    except ValidationFailed as exc:
        return _render(detail, data, exc.details, status=422)
    flash(_("Done: %(task)s.", task=task.name), "ok")
    mine = [t for t in created if t.assignee == g.actor.username]
    if mine:
        return redirect(url_for("tasks.show", task_id=mine[0].id))
    return redirect(url_for("inbox.index"))
