"""Server-rendered pages: login, inbox, task forms, case pages (thin over engine services)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Request, g, jsonify, render_template, request, send_from_directory
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from engine.errors import OpsFlowError
from engine.views import ROOT
from webui import engine_of_app
from webui.errors import status_of

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
# bpmn-js is installed from npm (package.json) and served from its dist folder as it is.
VENDOR = {"bpmn-js": ROOT / "node_modules" / "bpmn-js" / "dist", "dmn-js": ROOT / "node_modules" / "dmn-js" / "dist"}
PAGE_BLUEPRINTS = frozenset({"auth", "inbox", "tasks", "cases", "substitutes", "vendor", "modeler", "dashboard",
                             "notifications", "account", "users", "failures", "regulatory",
                             "configuration", "standard_changes"})
csrf = CSRFProtect()


class SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure whenever the request came over HTTPS (or the config insists)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (request.is_secure if request else False)


def register(app: Flask) -> None:
    from webui.pages import (
        account,
        auth,
        cases,
        configuration,
        dashboard,
        failures,
        inbox,
        modeler,
        notifications,
        regulatory,
        standard_changes,
        substitutes,
        tasks,
        users,
    )

    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=10)  # a working day, then sign in again
    app.config["SESSION_COOKIE_NAME"] = "opsflow_session"
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # pages only: the API authenticates by token, not cookie
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # the token lives as long as the session
    app.session_interface = SessionInterface()
    csrf.init_app(app)
    compile_catalogs()
    Babel(app, locale_selector=auth.current_locale, default_locale=auth.DEFAULT_LOCALE,
          default_timezone=app.extensions["opsflow"].ctx.settings.timezone,
          default_translation_directories=str(TRANSLATIONS))

    for bp in (auth.bp, inbox.bp, tasks.bp, cases.bp, substitutes.bp, modeler.bp, dashboard.bp, notifications.bp,
               account.bp, users.bp, failures.bp, regulatory.bp, configuration.bp, standard_changes.bp):
        app.register_blueprint(bp)

    @app.get("/vendor/<package>/<path:filename>", endpoint="vendor.file")
    def vendor_file(package: str, filename: str) -> Any:
        if package not in VENDOR:
            return render_error(404, _("Not found"))
        return send_from_directory(VENDOR[package], filename, max_age=86400)

    @app.before_request
    def before_page() -> None:
        if not _is_page(request):
            return
        auth.load_actor()
        if request.method == "POST":
            csrf.protect()

    @app.after_request
    def page_headers(response: Any) -> Any:
        if _is_page(request):
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "font-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                "form-action 'self'")
            if getattr(g, "actor", None) is not None:
                response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.context_processor
    def page_context() -> dict[str, Any]:
        if not _is_page(request):
            return {}
        from webui.pages.inbox import nav_counts

        actor = g.get("actor")
        engine = engine_of_app()
        return {"actor": actor, "nav": nav_counts(actor) if actor else None, "locale": auth.current_locale(),
                "role_names": role_names(),
                # the header offers what the access policy grants (processes/access.json)
                "may": lambda action: actor is not None and engine.may(actor, action)}

    app.add_template_filter(local_time, "local")
    app.add_template_filter(local_date, "local_date")

    @app.errorhandler(OpsFlowError)
    def engine_error(error: OpsFlowError) -> Any:
        status = status_of(error)
        if request.path.startswith("/api/"):
            return jsonify(error={"code": error.code, "message": error.message, "details": error.details}), status
        return render_error(status, error.message)

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> Any:
        return render_error(400, _("The form has expired or did not come from this site. Reload the page and "
                                   "try again."))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if request.path.startswith("/api/"):
            return jsonify(error={"code": (error.name or "error").lower().replace(" ", "_"),
                                  "message": error.description}), error.code or 500
        return render_error(error.code or 500, error.description or error.name)


def _is_page(req: Request) -> bool:
    return req.blueprint in PAGE_BLUEPRINTS or (req.blueprint is None and not req.path.startswith(
        ("/api/", "/static/", "/healthz", "/readyz")))


def render_error(status: int, message: str) -> Any:
    titles = {400: _("Bad request"), 403: _("Not allowed"), 404: _("Not found"), 409: _("Already changed"),
              413: _("File too large"), 422: _("Cannot be done"), 429: _("Too many attempts"),
              503: _("Temporarily unavailable")}
    if not hasattr(g, "actor"):
        g.actor = None
    return render_template("error.html", status=status, title=titles.get(status, _("Something went wrong")),
                           message=message), status


def role_names() -> dict[str, str]:
    cache = g.get("_role_names")
    if cache is None:
        from webui.pages.auth import current_locale

        zh = current_locale().startswith("zh")
        cache = {r.key: (r.name_zh if zh else r.name_en) for r in engine_of_app().identity.roles()}
        g._role_names = cache
    return cache


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored (UTC) time in the firm's zone."""
    if not value:
        return ""
    return value.astimezone(engine_of_app().ctx.zone).strftime(fmt)


def local_date(value: datetime | None) -> str:
    return local_time(value, "%Y-%m-%d")


def compile_catalogs() -> None:
    """Compile each .po into its .mo when the .mo is missing or older (a fresh clone works as is)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as f:
            catalog = read_po(f)
        try:
            with mo.open("wb") as f:
                write_mo(f, catalog)
        except OSError:  # a read-only install: the committed .mo is used
            continue

