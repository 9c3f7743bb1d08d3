"""The OpenAPI document, generated from the route table and its marshmallow schemas, and a page to read it."""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Response, jsonify

from webui.api.access import MAX_ID, PUBLIC, ROUTES, Route, endpoint
from webui.api.schemas import ErrorSchema

ERROR_TEXT = {
    400: "bad request (malformed JSON, not an object, or refused by the engine)",
    401: "no token, or an unknown, expired or revoked one",
    403: "not allowed: by role or by separation of duties (details.rule names the rule)",
    404: "not found (or nothing waits for the message)",
    409: "conflict: task already completed or claimed by someone else, stale revision, case not running",
    422: "validation failed: details lists [{field, message}] (or lint problems)",
    429: "too many failed logins for this name: refused until Retry-After seconds have passed",
    503: "the database cannot be reached or written (details.reason): try again after Retry-After seconds",
}
TAGS = [
    {"name": "auth", "description": "API tokens"},
    {"name": "processes", "description": "Deployed BPMN process definitions"},
    {"name": "instances", "description": "Cases (process instances)"},
    {"name": "tasks", "description": "The inbox and the work on a task"},
    {"name": "intake", "description": "BPMN messages and monitoring alerts from other systems"},
    {"name": "audit", "description": "The tamper-evident audit trail"},
    {"name": "failures", "description": "Stuck cases and failed jobs, for the process owner"},
    {"name": "regulatory", "description": "The register of regulatory reports (首报, 续报, 预警, 解除, 总结)"},
    {"name": "configuration", "description": "The configuration items register (配置项): systems, relations, history"},
    {"name": "docs", "description": "This document"},
]


def _schema_name(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    return name[:-6] if name.endswith("Schema") and len(name) > 6 else name


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    spec = APISpec(title="OpsFlow REST API", version="1.0.0", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name)],
                   info={"description": "OpsFlow 运维流程引擎 API v1 (docs/CONTRACT.md). Send "
                                        "`Authorization: Bearer TOKEN` from `opsflow token create` or "
                                        "`POST /api/v1/auth/token`. Every refusal names its rule."},
                   servers=[{"url": "/api/v1"}], tags=TAGS)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=ErrorSchema)
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(ROUTES.values(), key=lambda r: (r.path, r.method)):
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.endpoint.removeprefix("api."), "summary": route.summary,
                          "description": f"**Who may:** {route.rule}.", "tags": [route.tag]}
    params: list[Any] = []
    for name in re.findall(r"{(\w+)}", route.path):
        schema: dict[str, Any] = ({"type": "integer", "minimum": 1, "maximum": MAX_ID} if name == "instance_id"
                                  else {"type": "string", "minLength": 1, "maxLength": 128})
        params.append({"in": "path", "name": name, "required": True, "schema": schema})
    if route.query is not None:
        params.append({"in": "query", "schema": route.query})
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": route.body}}}
    responses: dict[str, Any] = {}
    for status in route.status:
        content: dict[str, Any] = {}
        if route.content_type == "application/json":
            content = {"application/json": {"schema": route.response or {"type": "object"}}}
        else:
            content = {route.content_type: {"schema": {"type": "string"}}}
        responses[str(status)] = {"description": "OK" if status == 200 else "Created", "content": content}
    for status in (*route.errors, 503):  # any call that touches the database (engine/storage/db.py)
        responses[str(status)] = {"description": ERROR_TEXT[status],
                                  "content": {"application/json": {"schema": "Error"}}}
    op["responses"] = responses
    op["security"] = [] if route.access == PUBLIC else [{"bearer": []}]
    return op


@endpoint("GET", "/openapi.json", access=PUBLIC, rule="anyone", summary="This OpenAPI document", tag="docs")
def openapi_json() -> Response:
    return jsonify(document())


@endpoint("GET", "/docs", access=PUBLIC, rule="anyone", summary="The OpenAPI document as a page to read",
          tag="docs", content_type="text/html")
def openapi_page() -> Response:
    return Response(_page(document()), mimetype="text/html")


def _page(doc: dict[str, Any]) -> str:
    """A plain server-rendered page (no scripts, no CDN): every operation, who may call it, its schemas."""
    schemas = doc["components"]["schemas"]
    out = ["<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>OpsFlow API v1</title>",
           "<style>body{font:14px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
           "h2{border-bottom:1px solid #ccc;margin-top:2em}.op{border:1px solid #ddd;border-radius:4px;"
           "margin:.8em 0;padding:.5em 1em}.m{display:inline-block;min-width:4em;font-weight:bold}"
           ".get{color:#0a6}.post{color:#06c}.delete{color:#c33}code,pre{background:#f5f5f5;padding:0 .2em}"
           "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;"
           "vertical-align:top}</style></head><body>",
           f"<h1>{escape(doc['info']['title'])} {escape(doc['info']['version'])}</h1>",
           f"<p>{escape(doc['info']['description'])}</p>",
           "<p>Base URL <code>/api/v1</code>. Machine-readable: <a href='openapi.json'>openapi.json</a>. "
           "Errors: <code>{\"error\": {\"code\", \"message\", \"details\"}}</code>.</p>"]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            by_tag.setdefault(op["tags"][0], []).append((path, method, op))
    for tag in doc["tags"]:
        ops = by_tag.get(tag["name"], [])
        if not ops:
            continue
        out.append(f"<h2 id='{escape(tag['name'])}'>{escape(tag['name'])}: {escape(tag['description'])}</h2>")
        for path, method, op in ops:
            out.append(f"<div class='op' id='{escape(op['operationId'])}'><div><span class='m {method}'>"
                       f"{method.upper()}</span> <code>/api/v1{escape(path)}</code> — {escape(op['summary'])}</div>")
            out.append(f"<div>{escape(op['description'].replace('**', ''))}"
                       f"{'' if op['security'] else ' No token needed.'}</div>")
            params = op.get("parameters", [])
            if params:
                out.append("<div>Parameters: " + ", ".join(
                    f"<code>{escape(p['name'])}</code> ({escape(p['in'])}, {escape(_type(p.get('schema', {})))}"
                    f"{', required' if p.get('required') else ''})" for p in params) + "</div>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                out.append(f"<div>Body: {_ref_link(body)}</div>")
            out.append("<div>Responses: " + "; ".join(
                f"<b>{code}</b> {_response_schema(resp)}" for code, resp in op["responses"].items()) + "</div>")
            out.append("</div>")
    out.append("<h2 id='schemas'>Schemas</h2>")
    for name, schema in schemas.items():
        out.append(f"<div class='op' id='schema-{escape(name)}'><b>{escape(name)}</b><table>"
                   "<tr><th>field</th><th>type</th><th>required</th><th>notes</th></tr>")
        required = set(schema.get("required", []))
        for field, prop in schema.get("properties", {}).items():
            notes = prop.get("description", "")
            if "enum" in prop:
                notes = f"{notes} one of: {', '.join(map(str, prop['enum']))}".strip()
            out.append(f"<tr><td><code>{escape(field)}</code></td><td>{_type(prop, link=True)}</td>"
                       f"<td>{'yes' if field in required else ''}</td><td>{escape(notes)}</td></tr>")
        out.append("</table></div>")
    out.append("</body></html>")
    return "".join(out)


def _ref_link(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return f"<a href='#schema-{escape(name)}'>{escape(name)}</a>"
    return escape(schema.get("type", "object"))


def _response_schema(response: dict[str, Any]) -> str:
    for media, content in response.get("content", {}).items():
        schema = content.get("schema", {})
        shown = _ref_link(schema) if "$ref" in schema else escape(media)
        return f"{shown} <small>({escape(response['description'])})</small>"
    return escape(response["description"])


def _type(prop: dict[str, Any], link: bool = False) -> str:
    if "$ref" in prop:
        return _ref_link(prop) if link else escape(prop["$ref"].rsplit("/", 1)[-1])
    if prop.get("type") == "array":
        return f"array of {_type(prop.get('items', {}), link)}"
    text = str(prop.get("type", "any")) + (f" ({prop['format']})" if "format" in prop else "")
    if prop.get("nullable"):
        text += ", nullable"
    return escape(text)
