"""The signed-in user's own account: changing their password (every other browser is signed out)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine.errors import LoginLocked, WeakPassword, WrongPassword
from webui import engine_of_app
from webui.pages.auth import login_required, use_session

bp = Blueprint("account", __name__)


def password_rule_text(error: WeakPassword) -> str:
    """The policy's refusal (engine/people/passwords.py) in the page's language, naming the rule."""
    texts = {
        "length": _("At least 10 characters."),
        "letters_and_digits": _("Use both letters and digits."),
        "username": _("The password may not contain the user name."),
        "common": _("This password is too common; choose another."),
    }
    return texts.get(error.rule, error.message)


def _page(errors: dict[str, str] | None = None, status: int = 200) -> Any:
    return render_template("account_password.html", errors=errors or {}), status


@bp.get("/account/password")
@login_required
def password() -> Any:
    return _page()


@bp.post("/account/password")
@login_required
def change_password() -> Any:
    current = request.form.get("current") or ""
    new = request.form.get("new") or ""
    errors: dict[str, str] = {}
    if not current:
        errors["current"] = _("Enter your current password.")
    if not new:
        errors["new"] = _("Enter a new password.")
    elif new != (request.form.get("repeat") or ""):
        errors["repeat"] = _("The two new passwords differ.")
    if errors:
        return _page(errors, 422)
    try:
        session_id = engine_of_app().identity.change_password(
            g.actor.username, current, new, request.remote_addr or "-", current_app.permanent_session_lifetime)
    except WeakPassword as exc:
        return _page({"new": password_rule_text(exc)}, 422)
    except WrongPassword:
        return _page({"current": _("The current password is wrong.")}, 422)
    except LoginLocked as exc:
        page, status = _page({"current": _("Too many failed attempts. Try again in %(minutes)d minutes.",
                                           minutes=exc.minutes)}, 429)
        return page, status, {"Retry-After": str(exc.retry_after)}
    use_session(session_id)  # this browser stays signed in; every other one is signed out
    flash(_("Password changed. Your other browsers were signed out."), "ok")
    return redirect(url_for("account.password"))
