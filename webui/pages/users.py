"""The admin's users page: list, add, roles, deactivate and reactivate, reset a password.

The engine decides (IdentityService: admin role, password policy, no locking yourself out, audit);
this module turns its refusals into messages in place.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine.errors import BadRequest, Conflict, Forbidden, NotFound, WeakPassword
from webui import engine_of_app
from webui.pages import render_error
from webui.pages.account import password_rule_text
from webui.pages.auth import login_required

bp = Blueprint("users", __name__)


@bp.errorhandler(Forbidden)
def not_an_admin(_error: Forbidden) -> Any:
    return render_error(403, _("Only an admin manages users."))


def _list(errors: dict[str, str] | None = None, form: dict[str, Any] | None = None, status: int = 200) -> Any:
    identity = engine_of_app().identity
    return render_template("users.html", accounts=identity.accounts(by=g.actor), roles=identity.roles(),
                           errors=errors or {}, form=form or {"roles": []}), status


def _detail(username: str, errors: dict[str, str] | None = None, status: int = 200) -> Any:
    identity = engine_of_app().identity
    return render_template("user.html", account=identity.account(username, by=g.actor), roles=identity.roles(),
                           errors=errors or {}), status


def _password_errors(password: str, repeat: str) -> dict[str, str]:
    if not password:
        return {"password": _("Enter a password.")}
    if password != repeat:
        return {"repeat": _("The two passwords differ.")}
    return {}


@bp.get("/admin/users")
@login_required
def index() -> Any:
    return _list()


@bp.post("/admin/users")
@login_required
def add() -> Any:
    form: dict[str, Any] = {k: (request.form.get(k) or "").strip() for k in ("username", "display_name")}
    form["roles"] = request.form.getlist("roles")
    errors = _password_errors(request.form.get("password") or "", request.form.get("repeat") or "")
    if not form["username"]:
        errors["username"] = _("Enter a user name.")
    if not form["roles"]:
        errors["roles"] = _("Choose at least one role.")
    if errors:
        return _list(errors, form, 422)  # the list itself is refused to a non-admin
    try:
        engine_of_app().identity.add_user(form["username"], form["roles"], form["display_name"] or None,
                                          request.form["password"], by=g.actor)
    except WeakPassword as exc:
        return _list({"password": password_rule_text(exc)}, form, 422)
    except Conflict:
        return _list({"username": _("This user name is taken.")}, form, 409)
    except NotFound as exc:
        return _list({"roles": exc.message}, form, 422)
    except BadRequest:
        return _list({"username": _("A user name is 1 to 64 characters without spaces.")}, form, 422)
    flash(_("User %(name)s added.", name=form["username"]), "ok")
    return redirect(url_for("users.detail", username=form["username"]))


@bp.get("/admin/users/<username>")
@login_required
def detail(username: str) -> Any:
    return _detail(username)


@bp.post("/admin/users/<username>/roles")
@login_required
def set_roles(username: str) -> Any:
    roles = request.form.getlist("roles")
    if not roles:
        return _detail(username, {"roles": _("Choose at least one role.")}, 422)
    try:
        engine_of_app().identity.set_roles(username, roles, by=g.actor)
    except Conflict:
        return _detail(username, {"roles": _("You cannot take the admin role from yourself; another admin can.")},
                       409)
    flash(_("Roles saved."), "ok")
    return redirect(url_for("users.detail", username=username))


@bp.post("/admin/users/<username>/active")
@login_required
def set_active(username: str) -> Any:
    active = request.form.get("active") == "1"
    try:
        engine_of_app().identity.set_active(username, active, by=g.actor)
    except Conflict:
        return _detail(username, {"active": _("You cannot deactivate yourself; another admin can.")}, 409)
    flash(_("%(name)s can sign in again.", name=username) if active else
          _("%(name)s was deactivated: signed out everywhere, API tokens revoked.", name=username), "ok")
    return redirect(url_for("users.detail", username=username))


@bp.post("/admin/users/<username>/password")
@login_required
def reset_password(username: str) -> Any:
    password = request.form.get("password") or ""
    errors = _password_errors(password, request.form.get("repeat") or "")
    if errors:
        return _detail(username, errors, 422)
    try:
        engine_of_app().identity.set_password(username, password, by=g.actor)
    except WeakPassword as exc:
        return _detail(username, {"password": password_rule_text(exc)}, 422)
    flash(_("Password set. %(name)s was signed out of every browser.", name=username), "ok")
    return redirect(url_for("users.detail", username=username))
