"""OpsFlow's Flask application: the task inbox pages and the REST API, thin over engine services."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, jsonify, request

from engine import ProcessEngine
from engine.errors import Unavailable
from webui.errors import headers_of


def create_app(engine: ProcessEngine | None = None, config: dict[str, Any] | None = None) -> Flask:
    engine = engine or ProcessEngine.from_env()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=engine.ctx.settings.secret_key(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=20 * 1024 * 1024,
        JSON_AS_ASCII=False,
    )
    app.config.update(config or {})
    app.extensions["opsflow"] = engine

    from webui.api import bp as api_bp
    from webui.pages import register as register_pages

    app.register_blueprint(api_bp, url_prefix="/api/v1")
    register_pages(app)

    @app.before_request
    def note_source() -> None:
        """Every audit event of this request says where it came from (the API or the pages, and the peer)."""
        channel = "api" if request.path.startswith("/api/") else "web"
        g.opsflow_source = engine.ctx.source.set(f"{channel} {request.remote_addr or '-'}")

    @app.teardown_request
    def forget_source(_error: BaseException | None) -> None:
        token = g.pop("opsflow_source", None)
        if token is not None:
            engine.ctx.source.reset(token)

    @app.errorhandler(Unavailable)
    def database_unavailable(error: Unavailable) -> Any:
        """503 + Retry-After; the page is rendered as for a visitor, since the header's user, counts and
        role names would need the database that is down. (The API blueprint answers its own JSON.)"""
        headers = headers_of(error)
        if request.path.startswith("/api/"):
            body = {"code": error.code, "message": error.message, "details": error.details}
            return jsonify(error=body), 503, headers
        from webui.pages import render_error

        g.actor, g._role_names = None, {}
        return (*render_error(503, error.message), headers)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Any:
        try:
            current = engine.schema_is_current()
        except Exception as exc:  # noqa: BLE001 (any database failure means not ready)
            return jsonify(status="unavailable", database=f"unreachable: {exc.__class__.__name__}"), 503
        if not current:
            return jsonify(status="unavailable", database="migrations pending: run 'opsflow init'"), 503
        try:  # ready means a write commits, not only that the schema can be read
            engine.ctx.db.check_write()
        except Unavailable as down:
            return jsonify(status="unavailable", database=f"cannot commit a write: {down.reason}"), 503, \
                {"Retry-After": str(down.retry_after)}
        return jsonify(status="ok", database="ok")

    return app


def engine_of_app() -> ProcessEngine:
    return current_app.extensions["opsflow"]
