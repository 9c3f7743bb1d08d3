"""The configuration items register (配置项) in the browser: /config-items lists and searches the items,
exports them (CSV, XLSX, JSON) and imports a file; /config-items/<id> shows one item with its relations,
history and linked cases.

Anyone signed in browses and exports (the register is reference data every process picks from); the
import is the engine's, held to ci.manage (engine/configuration/). The item's cases follow the cases
list's read rule (engine/configuration/browse.py).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine.errors import ValidationFailed
from engine.views import XLSX, export_csv, export_json, export_xlsx, item_detail, shown
from webui import engine_of_app
from webui.pages import render_error, role_names
from webui.pages.auth import login_required

bp = Blueprint("configuration", __name__)
FIELD_LABELS = {
    "core": _l("Class"), "system_class": _l("2021 class"), "category": _l("Category"), "markets": _l("Markets"),
    "environment": _l("Environment"), "owner_role": _l("Owner role"), "maintainer_a": _l("A maintainer"),
    "maintainer_b": _l("B maintainer"), "vendor": _l("Vendor"), "version": _l("Version"), "status": _l("Status"),
    "relations": _l("Relations"),
}
KIND_LABELS = {"depends_on": _l("Depends on"), "runs_on": _l("Runs on")}
USED_BY_LABELS = {"depends_on": _l("Depended on by"), "runs_on": _l("Runs it")}


def shown_value(field: str, value: Any) -> str:
    """A recorded value as the page writes it: roles and relation kinds by their names."""
    if field == "owner_role" and isinstance(value, str) and value:
        return role_names().get(value, value)
    if field == "relations" and isinstance(value, dict) and any(value.values()):
        return "; ".join(f"{KIND_LABELS.get(kind, kind)}: {', '.join(targets)}" for kind, targets in value.items()
                         if targets)
    return shown(field, value)


def _index(search: str, errors: list[dict[str, str]] | None = None, file_name: str = "", status: int = 200) -> Any:
    engine = engine_of_app()
    items = engine.configuration.list_items(search or None)
    return render_template("config_items.html", items=items, search=search, errors=errors or [],
                           file_name=file_name, may_import=engine.may(g.actor, "ci.manage")), status


@bp.get("/config-items")
@login_required
def index() -> Any:
    return _index((request.args.get("search") or "").strip()[:200])


@bp.post("/config-items/import")
@login_required
def import_file() -> Any:
    engine = engine_of_app()
    upload = request.files.get("file")
    if not upload or not upload.filename:
        return _index("", [{"field": "", "message": _("Choose a JSON or CSV file to import.")}], status=422)
    name = upload.filename
    try:
        text = upload.read().decode("utf-8-sig")  # a spreadsheet's CSV export starts with a BOM
    except UnicodeDecodeError:
        return _index("", [{"field": name, "message": _("The file is not UTF-8 text.")}], name, 422)
    try:
        summary = engine.configuration.import_items(g.actor, text, name)
    except ValidationFailed as exc:
        return _index("", [e.as_dict() for e in exc.errors], name, 422)
    flash(_("%(file)s imported: %(created)s created, %(updated)s updated, %(unchanged)s unchanged.", file=name,
            created=len(summary.created), updated=len(summary.updated), unchanged=len(summary.unchanged)), "ok")
    return redirect(url_for("configuration.index"))


@bp.get("/config-items/export.<fmt>")
@login_required
def export(fmt: str) -> Any:
    items = engine_of_app().configuration.list_items((request.args.get("search") or "").strip()[:200] or None)
    if fmt == "csv":
        # a BOM so that a spreadsheet opens the Chinese text as UTF-8; the importer reads past it
        body, mimetype = "\ufeff" + export_csv(items), "text/csv"
    elif fmt == "xlsx":
        return Response(export_xlsx(items), mimetype=XLSX,
                        headers={"Content-Disposition": 'attachment; filename="config-items.xlsx"'})
    elif fmt == "json":
        body, mimetype = export_json(items), "application/json"
    else:
        return render_error(404, _("Export as csv, xlsx or json."))
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="config-items.{fmt}"'})


@bp.get("/config-items/<int:item_id>")
@login_required
def show(item_id: int) -> Any:
    detail = item_detail(engine_of_app().configuration, g.actor, item_id)
    return render_template("config_item.html", detail=detail, item=detail.item, field_labels=FIELD_LABELS,
                           kind_labels=KIND_LABELS, used_by_labels=USED_BY_LABELS, shown=shown_value)
