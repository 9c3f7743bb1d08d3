"""Process owners edit in the browser: the bpmn-js modeler, lint and deploy, versions, migration,
forms and decision tables. Thin over engine.versions, engine.repository and engine.migration."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, abort, flash, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine.errors import LintFailed, OpsFlowError
from engine.views import DeployedVersion, Problem, SourceFile, read_form, schema_problem
from webui import engine_of_app
from webui.pages.auth import login_required
from webui.pages.forms import FormRenderer

bp = Blueprint("modeler", __name__)
OWNER = "process_owner"


def owner_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @login_required
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not engine_of_app().may(g.actor, "process.deploy"):
            abort(403, _("Only a process owner may edit and deploy processes."))
        return view(*args, **kwargs)

    return wrapped


def _problems(problems: list[Problem]) -> list[dict[str, Any]]:
    return [{"file": p.file, "line": p.line, "message": p.message, "element": p.element} for p in problems]


def _deployed(results: list[DeployedVersion]) -> list[dict[str, Any]]:
    return [{"process_id": d.process_id, "name": d.name, "version": d.version, "changed": d.changed}
            for d in results]


def _outcome(action: Callable[[], list[DeployedVersion]]) -> tuple[Any, int]:
    """Run a lint-and-deploy; JSON with the problems (422) or what was deployed."""
    try:
        results = action()
    except LintFailed as exc:
        return jsonify(ok=False, problems=_problems(exc.problems)), 422
    except OpsFlowError as exc:
        return jsonify(ok=False, problems=[{"file": "", "line": 0, "message": exc.message, "element": None}]), 422
    return jsonify(ok=True, problems=[], deployed=_deployed(results)), 200


# processes ----------------------------------------------------------------------------------------
@bp.get("/processes")
@owner_required
def index() -> Any:
    engine = engine_of_app()
    return render_template("processes.html", definitions=engine.repository.definitions(),
                           forms=engine.versions.form_names(), problems=None, deployed=None,
                           registers=engine.documents.registers() if engine.may(g.actor, "registers.edit") else [])


@bp.post("/processes/upload")
@owner_required
def upload() -> Any:
    """BPMN/DMN files from another modeler (Camunda Modeler included): linted, deployed when clean."""
    engine = engine_of_app()
    files = [f for f in request.files.getlist("files") if f and f.filename]
    problems: list[dict[str, Any]] = []
    deployed = None
    if not files:
        problems = [{"file": "", "line": 0, "message": _("Choose one or more .bpmn or .dmn files."), "element": None}]
    else:
        try:
            deployed = _deployed(engine.repository.deploy_as(
                g.actor, [SourceFile(f.filename or "upload.bpmn", f.read()) for f in files]))
        except LintFailed as exc:
            problems = _problems(exc.problems)
    status = 422 if problems else 200
    return render_template("processes.html", definitions=engine.repository.definitions(),
                           forms=engine.versions.form_names(), problems=problems, deployed=deployed), status


@bp.get("/processes/<process_id>/edit")
@owner_required
def edit(process_id: str) -> Any:
    engine = engine_of_app()
    row = engine.repository.definition(process_id)
    roles = [(r.key, role_label(r)) for r in engine.identity.roles()]
    return render_template("modeler.html", definition=row, forms=engine.versions.form_names(), roles=roles,
                           decisions=sorted(row.dmn_xml or {}))


def role_label(role: Any) -> str:
    from webui.pages.auth import current_locale

    return role.name_zh if current_locale().startswith("zh") else role.name_en


@bp.get("/processes/<process_id>/source.bpmn")
@owner_required
def source(process_id: str) -> Any:
    version = request.args.get("version", type=int)
    row = engine_of_app().repository.definition(process_id, version)
    return Response(row.bpmn_xml, mimetype="application/xml", headers={"Cache-Control": "no-store"})


@bp.post("/processes/<process_id>/save")
@owner_required
def save(process_id: str) -> Any:
    xml = (request.form.get("xml") or "").encode("utf-8")
    check = request.form.get("check") == "1"
    return _outcome(lambda: engine_of_app().versions.save_bpmn(g.actor, process_id, xml, check))


# versions and migration ---------------------------------------------------------------------------
@bp.get("/processes/<process_id>/versions")
@owner_required
def versions(process_id: str) -> Any:
    return _versions_page(process_id)


def _versions_page(process_id: str, report: Any = None, dry_run: bool = True, status: int = 200) -> Any:
    engine = engine_of_app()
    history = engine.versions.history(process_id)
    return render_template("versions.html", process_id=process_id, history=history, report=report,
                           dry_run=dry_run), status


@bp.post("/processes/<process_id>/versions/<int:version>/redeploy")
@owner_required
def redeploy(process_id: str, version: int) -> Any:
    results = engine_of_app().versions.redeploy(g.actor, process_id, version)
    mine = [d for d in results if d.process_id == process_id]
    if mine and mine[0].changed:
        flash(_("Version %(old)s deployed again as version %(new)s.", old=version, new=mine[0].version), "ok")
    else:
        flash(_("Version %(old)s is already the newest.", old=version), "ok")
    return redirect(url_for("modeler.versions", process_id=process_id))


@bp.post("/processes/<process_id>/migrate")
@owner_required
def migrate(process_id: str) -> Any:
    engine = engine_of_app()
    dry_run = request.form.get("run") != "1"
    ids = [int(i) for i in request.form.getlist("case") if i.isdigit()] or None
    report = engine.migration.migrate(g.actor, process_id, request.form.get("to_version", type=int), ids,
                                      dry_run=dry_run)
    return _versions_page(process_id, report, dry_run)


# decisions ----------------------------------------------------------------------------------------
@bp.get("/processes/<process_id>/decisions/<file>")
@owner_required
def decision(process_id: str, file: str) -> Any:
    row = engine_of_app().repository.definition(process_id)
    if file not in (row.dmn_xml or {}):
        abort(404)
    return render_template("decision.html", definition=row, file=file)


@bp.get("/processes/<process_id>/decisions/<file>/source.dmn")
@owner_required
def decision_source(process_id: str, file: str) -> Any:
    row = engine_of_app().repository.definition(process_id)
    if file not in (row.dmn_xml or {}):
        abort(404)
    return Response(row.dmn_xml[file], mimetype="application/xml", headers={"Cache-Control": "no-store"})


@bp.post("/processes/<process_id>/decisions/<file>")
@owner_required
def save_decision(process_id: str, file: str) -> Any:
    xml = (request.form.get("xml") or "").encode("utf-8")
    return _outcome(lambda: engine_of_app().versions.save_decision(g.actor, process_id, file, xml))


# forms --------------------------------------------------------------------------------------------
@bp.get("/forms/<name>/edit")
@owner_required
def form(name: str) -> Any:
    engine = engine_of_app()
    schema, _reason = read_form(engine.ctx.settings.forms_dir, name, engine.documents)
    text = json.dumps(schema, ensure_ascii=False, indent=2) if schema is not None else \
        '{\n  "type": "object",\n  "title": "",\n  "required": [],\n  "properties": {}\n}'
    return _form_page(name, text)


def _form_page(name: str, text: str, problems: list[dict[str, Any]] | None = None, deployed: Any = None,
               status: int = 200) -> Any:
    engine = engine_of_app()
    users = [f"{row.process_id} v{row.version}" for row in engine.versions.users_of_form(name)]
    return render_template("form_editor.html", name=name, text=text, problems=problems or [], deployed=deployed,
                           used_by=users, preview=_preview(text),
                           document=engine.documents.latest("form", name)), status


def _preview(text: str) -> Any:
    try:
        schema = json.loads(text)
    except ValueError:
        return None
    if not isinstance(schema, dict):
        return None
    try:
        return FormRenderer(engine_of_app().ctx.zone).render(schema, {}, {})
    except (AttributeError, TypeError, ValueError):
        return None


@bp.post("/forms/<name>/preview")
@owner_required
def form_preview(name: str) -> Any:
    """The form as the inbox renders it (the same macros), for the editor's live preview."""
    text = request.form.get("schema") or ""
    try:
        schema = json.loads(text)
    except ValueError as exc:
        return render_template("_form_preview.html", form=None, problem=_("Not valid JSON: %(error)s",
                                                                           error=str(exc)))
    problem = schema_problem(schema)
    return render_template("_form_preview.html", form=None if problem else _preview(text), problem=problem)


@bp.post("/forms/<name>")
@owner_required
def save_form(name: str) -> Any:
    engine = engine_of_app()
    text = request.form.get("schema") or ""
    try:
        schema = json.loads(text)
    except ValueError as exc:
        return _form_page(name, text, [{"file": name, "line": getattr(exc, "lineno", 1),
                                        "message": _("Not valid JSON: %(error)s", error=str(exc)),
                                        "element": None}], status=422)
    try:
        results = engine.versions.save_form(g.actor, name, schema, check_only=request.form.get("check") == "1")
    except LintFailed as exc:
        return _form_page(name, text, _problems(exc.problems), status=422)
    except OpsFlowError as exc:
        return _form_page(name, text, [{"file": name, "line": 1, "message": exc.message, "element": None}],
                          status=422)
    return _form_page(name, text, deployed=_deployed(results))


# registers: the trading calendar and the emergency plans, saved as new versions in the database ---------
@bp.get("/registers/<kind>/<key>/edit")
@login_required
def register(kind: str, key: str) -> Any:
    engine = engine_of_app()
    if not engine.may(g.actor, "registers.edit"):
        abort(403)
    try:
        text, _document = engine.documents.current(kind, key)
    except OpsFlowError:
        abort(404)
    return _register_page(kind, key, text)


@bp.post("/registers/<kind>/<key>")
@login_required
def save_register(kind: str, key: str) -> Any:
    engine = engine_of_app()
    if not engine.may(g.actor, "registers.edit"):
        abort(403)
    text = request.form.get("text") or ""
    try:
        saved = engine.documents.edit(g.actor, kind, key, text)
    except OpsFlowError as exc:
        return _register_page(kind, key, text, problem=exc.message, status=422)
    flash(_("Saved as version %(v)s.", v=saved.version))
    return redirect(url_for("modeler.register", kind=kind, key=key))


def _register_page(kind: str, key: str, text: str, problem: str | None = None, status: int = 200) -> Any:
    engine = engine_of_app()
    try:
        history = engine.documents.history(kind, key)
    except OpsFlowError:
        history = []  # only in its file so far
    return render_template("register_editor.html", kind=kind, key=key, text=text, problem=problem,
                           history=history), status
