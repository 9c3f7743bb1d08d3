"""How every API endpoint is declared: its access rule, schemas and errors, in one table.

`@endpoint(...)` registers the view on the blueprint *and* in `ROUTES`, which the OpenAPI document
and the authorisation-matrix test read; an API URL without an entry there fails the suite.

Access: `PUBLIC` endpoints need no token; every other needs a valid Bearer token, and the engine
service the view calls decides the rest (roles, ownership, separation of duties) by raising
Forbidden; views never repeat those rules. `rule` says in words what the engine checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import Response, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException

from engine import ProcessEngine
from engine.errors import OpsFlowError
from engine.views import Actor
from webui.api import bp
from webui.errors import headers_of, status_of

PUBLIC = "public"
TOKEN = "token"
MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class Route:
    endpoint: str
    path: str
    method: str
    access: str  # PUBLIC or TOKEN
    rule: str  # who may, as the engine decides it
    summary: str
    tag: str
    query: type[Schema] | None
    body: type[Schema] | None
    response: type[Schema] | None
    status: tuple[int, ...]  # the success statuses; the first is the usual one
    errors: tuple[int, ...]
    content_type: str = "application/json"


ROUTES: dict[str, Route] = {}


class ApiError(Exception):
    """An error the API layer itself raises (no or bad token, malformed body)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def engine() -> ProcessEngine:
    return current_app.extensions["opsflow"]


def actor() -> Actor:
    return g.api_actor


def endpoint(method: str, path: str, *, access: str = TOKEN, rule: str, summary: str, tag: str,
             query: type[Schema] | None = None, body: type[Schema] | None = None,
             response: type[Schema] | None = None, status: int | tuple[int, ...] = 200,
             errors: tuple[int, ...] = (),
             content_type: str = "application/json") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an endpoint. The view gets path values, then `query=` and `body=` when declared,
    and returns the object to dump with `response` (or a Flask response as is)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        name = view.__name__
        if f"api.{name}" in ROUTES:
            raise RuntimeError(f"API endpoint {name!r} is declared twice")
        flask_path = path.replace("{", "<").replace("}", ">")
        for param in ("instance_id",):  # integer ids route as integers (a non-number is a 404)
            flask_path = flask_path.replace(f"<{param}>", f"<int(min=1, max={MAX_ID}):{param}>")
        all_errors = tuple(sorted({*errors, *((401,) if access == TOKEN else ()),
                                   *((422,) if query or body else ()), *((400,) if body else ())}))
        statuses = status if isinstance(status, tuple) else (status,)
        ROUTES[f"api.{name}"] = Route(f"api.{name}", path, method, access, rule, summary, tag, query, body,
                                      response, statuses, all_errors, content_type)
        dump = response() if response else None
        load_query = query() if query else None
        load_body = body() if body else None

        @wraps(view)
        def run(**path_values: Any) -> Any:
            if access != PUBLIC:
                g.api_actor = _authenticate()
            kwargs = dict(path_values)
            if any("\x00" in str(v) for v in kwargs.values()):
                raise ApiError(404, "not_found", "no such resource (the path holds a NUL character)")
            if load_query is not None:
                kwargs["query"] = _load(load_query, request.args.to_dict(flat=True))
            if load_body is not None:
                kwargs["body"] = _load(load_body, _json_body())
            result = view(**kwargs)
            if isinstance(result, Response | tuple):  # a response (and status) the view made itself
                return result
            return jsonify(dump.dump(result) if dump is not None else result), statuses[0]

        bp.add_url_rule(flask_path, name, run, methods=[method])
        return view

    return decorate


def _authenticate() -> Actor:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer TOKEN' (opsflow token create, "
                                            "or POST /api/v1/auth/token)")
    found = engine().identity.actor_for_token(token.strip())
    if found is None:
        raise ApiError(401, "unauthorized", "the token is unknown, expired or revoked")
    g.api_token = token.strip()
    return found


def _json_body() -> Any:
    if not request.get_data(cache=True):
        return {}
    payload = request.get_json(force=True, silent=True)
    if payload is None:
        raise ApiError(400, "bad_request", "the body is not valid JSON")
    if not isinstance(payload, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return payload


def _nul_fields(data: Any, prefix: str = "") -> list[str]:
    """Fields holding a NUL character, which no text column can store (PostgreSQL refuses it)."""
    if isinstance(data, str):
        return [prefix or "(body)"] if "\x00" in data else []
    if isinstance(data, dict):
        return [f for k, v in data.items() for f in _nul_fields(v, f"{prefix}.{k}" if prefix else str(k))
                + ([f"{prefix}.{k}" if prefix else str(k)] if "\x00" in str(k) else [])]
    if isinstance(data, list):
        return [f for i, v in enumerate(data) for f in _nul_fields(v, f"{prefix}[{i}]")]
    return []


def _load(schema: Schema, data: Any) -> Any:
    bad = _nul_fields(data)
    if bad:
        errors = [{"field": f, "message": "contains a NUL character"} for f in bad]
        raise ApiError(422, "validation_failed", f"{len(errors)} field error(s)", errors)
    try:
        return schema.load(data)
    except ValidationError as exc:
        errors = _flatten(exc.messages)
        raise ApiError(422, "validation_failed", f"{len(errors)} field error(s)", errors) from None


def _flatten(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    """Marshmallow's nested messages as [{field, message}], the engine's field-error shape."""
    if isinstance(messages, dict):
        out = []
        for key, value in messages.items():
            name = prefix if key == "_schema" else (f"{prefix}[{key}]" if isinstance(key, int)
                                                     else f"{prefix}.{key}" if prefix else str(key))
            out += _flatten(value, name)
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [{"field": prefix or "(body)", "message": m} for m in messages]
    if isinstance(messages, list):
        return [e for m in messages for e in _flatten(m, prefix)]
    return [{"field": prefix or "(body)", "message": str(messages)}]


def error_response(status: int, code: str, message: str, details: Any = None) -> tuple[Response, int]:
    response = jsonify(error={"code": code, "message": message, "details": details})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="opsflow"'
    return response, status


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Any:
    return error_response(exc.status, exc.code, exc.message, exc.details)


@bp.errorhandler(OpsFlowError)
def _engine_error(exc: OpsFlowError) -> Any:
    response, status = error_response(status_of(exc), exc.code, exc.message, exc.details)
    response.headers.update(headers_of(exc))
    return response, status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
            413: "too_large"}.get(exc.code or 500, "http_error")
    status = exc.code or 500
    response, status = error_response(status, code, exc.description or exc.name)
    if status == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods or [])
    return response, status


@bp.route("/<path:anything>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(anything: str) -> Any:
    """Anything under /api/v1 no endpoint serves: a JSON 404 (or 405 naming the methods it takes)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        try:
            matched, _ = adapter.match(method=method)
        except HTTPException:
            continue
        if matched != "api.unknown":
            allowed.append(method)
    if allowed:
        response, status = error_response(405, "method_not_allowed",
                                          f"{request.method} is not allowed here ({', '.join(allowed)})")
        response.headers["Allow"] = ", ".join(allowed)
        return response, status
    return error_response(404, "not_found", f"no API endpoint at {request.path}")
