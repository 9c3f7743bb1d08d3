"""Login, logout and the language switch; who is signed in (`g.actor`).

A failed login says the same thing whether or not the user exists; repeated failures lock that name
(and, more loosely, that address) for a while, whether or not the user exists: the engine counts
them in the database (IdentityService.login), so every worker and the API share one count. The
session cookie names a server-side session record, which signing out ends for good.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from engine.errors import LoginLocked
from webui import engine_of_app

bp = Blueprint("auth", __name__)

LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"


def load_actor() -> None:
    """Before each page request: the signed-in user, from the session record the cookie names (one
    indexed query), so a signed-out, password-changed or deactivated session is refused at once."""
    g.actor = None
    session_id = session.get("sid")
    if session_id:
        g.actor = engine_of_app().identity.actor_for_session(session_id)
    if g.actor is None and ("sid" in session or "user" in session):  # ended, or from before session records
        _forget_user()


def start_session(username: str) -> None:
    """A fresh session for this browser (no fixation), kept for a working day."""
    session_id = engine_of_app().identity.open_session(username, request.remote_addr or "-",
                                                       current_app.permanent_session_lifetime)
    use_session(session_id)


def use_session(session_id: str) -> None:
    chosen = session.get("locale")
    session.clear()
    session.permanent = True
    session["sid"] = session_id
    if chosen in LOCALES:
        session["locale"] = chosen


def _forget_user() -> None:
    locale = session.get("locale")
    session.clear()
    if locale in LOCALES:
        session["locale"] = locale


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("actor") is None:
            return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
        return view(*args, **kwargs)

    return wrapped


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no `//`)."""
    if not target:
        return url_for("inbox.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("inbox.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        if g.get("actor") is not None:
            return redirect(url_for("inbox.index"))
        return render_template("login.html", next=request.args.get("next", ""))
    username = (request.form.get("username") or "").strip()[:64]
    password = request.form.get("password") or ""
    again = {"username": username, "next": request.form.get("next", "")}
    identity = engine_of_app().identity
    try:
        actor = identity.login(username, password, request.remote_addr or "-") if username else None
    except LoginLocked as locked:
        response = make_response(render_template(
            "login.html", error=_("Too many failed sign-in attempts. Try again in %(minutes)d minutes.",
                                  minutes=locked.minutes), **again), 429)
        response.headers["Retry-After"] = str(locked.retry_after)
        return response
    if actor is None:
        return render_template("login.html", error=_("Wrong user name or password."), **again), 401
    start_session(actor.username)
    stored = identity.locale(actor.username)
    if stored in LOCALES:
        session["locale"] = stored
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Any:
    session_id = session.get("sid")
    if session_id:
        engine_of_app().identity.close_session(session_id)
    _forget_user()
    return redirect(url_for("auth.login"))


@bp.post("/locale")
def set_locale() -> Any:
    locale = request.form.get("locale")
    if locale not in LOCALES:
        abort(400)
    session["locale"] = locale
    if g.get("actor") is not None:
        engine_of_app().identity.set_locale(g.actor.username, locale)
    return redirect(_safe_next(request.form.get("next")))


def current_locale() -> str:
    locale = session.get("locale")
    return locale if locale in LOCALES else DEFAULT_LOCALE
