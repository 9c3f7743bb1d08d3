"""Login, logout and the language switch; who is signed in (`g.actor`), and the login throttle.

A failed login says the same thing whether or not the user exists, and repeated failures lock
that name (and, more loosely, that address) for a while, whether or not the user exists.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from webui import engine_of_app

bp = Blueprint("auth", __name__)

LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"


class LoginThrottle:
    """Failures per user name and per client address in a sliding window (per process)."""

    def __init__(self, per_name: int = 5, per_address: int = 30, window: float = 900.0) -> None:
        self.per_name, self.per_address, self.window = per_name, per_address, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures[key]
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def locked(self, username: str, address: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return (len(self._recent("u:" + username.lower(), now)) >= self.per_name
                    or len(self._recent("a:" + address, now)) >= self.per_address)

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent("u:" + username.lower(), now).append(now)
            self._recent("a:" + address, now).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop("u:" + username.lower(), None)


def throttle() -> LoginThrottle:
    from flask import current_app

    return current_app.extensions.setdefault("opsflow_login_throttle", LoginThrottle())


def load_actor() -> None:
    """Before each page request: the signed-in user, re-read so a deactivated user is signed out."""
    g.actor = None
    username = session.get("user")
    if username:
        actor = engine_of_app().identity.find(username)
        if actor is None:
            session.clear()
        else:
            g.actor = actor


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
    address = request.remote_addr or "-"
    limiter = throttle()
    if limiter.locked(username, address):
        return render_template("login.html", error=_("Too many failed attempts. Please wait 15 minutes and try "
                                                     "again."), username=username,
                               next=request.form.get("next", "")), 429
    actor = engine_of_app().identity.authenticate(username, password) if username and password else None
    if actor is None:
        limiter.failed(username, address)
        return render_template("login.html", error=_("Wrong user name or password."), username=username,
                               next=request.form.get("next", "")), 401
    limiter.succeeded(username)
    chosen = session.get("locale")
    session.clear()  # a fresh session on every login (no fixation)
    session.permanent = True
    session["user"] = actor.username
    stored = engine_of_app().identity.locale(actor.username)
    session["locale"] = stored if stored in LOCALES else (chosen if chosen in LOCALES else DEFAULT_LOCALE)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Any:
    locale = session.get("locale")
    session.clear()
    if locale:
        session["locale"] = locale
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
