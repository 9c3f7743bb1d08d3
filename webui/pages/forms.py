"""JSON Schema forms as HTML: a field tree for the templates, and the posted form back into JSON.

Input names are the engine's field paths (`affected_systems[0].name`), so a validation error
lands next to its field. A value that cannot be read as its type is passed on as typed, and the
schema's own validation reports it with the value kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from werkzeug.datastructures import MultiDict

from engine.views import enum_options

RADIO_MAX = 4
LONG_TEXT = 200


@dataclass
class Field:
    name: str
    key: str
    schema: dict[str, Any]
    widget: str
    title: str
    description: str = ""
    required: bool = False
    value: Any = None
    options: list[tuple[str, str]] = field(default_factory=list)
    children: list[Field] = field(default_factory=list)
    rows: list[list[Field]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The value as an input shows it."""
        if self.value is None:
            return ""
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return str(self.value)


@dataclass
class RenderedForm:
    title: str
    description: str
    fields: list[Field]
    other_errors: list[str]


def is_file_ref(schema: dict[str, Any]) -> bool:
    """An object naming a stored file (name + sha256): rendered as an upload."""
    props = schema.get("properties") or {}
    return schema.get("type") == "object" and "sha256" in props and "name" in props


def widget_of(schema: dict[str, Any], user_role: str | None) -> str:
    kind = schema.get("type")
    if schema.get("x-widget"):
        return str(schema["x-widget"])
    if user_role and kind == "string":
        return "user"
    if enum_options(schema):
        return "radios" if len(enum_options(schema)) <= RADIO_MAX else "select"
    if kind == "object":
        return "file" if is_file_ref(schema) else "group"
    if kind == "array":
        items = schema.get("items") or {}
        if items.get("type") == "object":
            return "table"
        return "checkboxes" if enum_options(items) else "lines"
    if kind == "boolean":
        return "boolean"
    if kind in ("integer", "number"):
        return kind
    fmt = schema.get("format")
    if fmt == "date-time":
        return "datetime"
    if fmt == "date":
        return "date"
    if fmt == "textarea":
        return "textarea"
    if schema.get("maxLength", 0) > LONG_TEXT or ("maxLength" not in schema and "pattern" not in schema
                                                   and schema.get("minLength", 0) >= 5):
        return "textarea"
    return "text"


class FormRenderer:
    def __init__(self, zone: ZoneInfo, user_roles: dict[str, str] | None = None,
                 users: dict[str, list[tuple[str, str]]] | None = None) -> None:
        self.zone = zone
        self.user_roles = user_roles or {}  # field key -> role whose users it names
        self.users = users or {}  # role -> [(username, label)]

    # schema + data -> fields ------------------------------------------------------------------
    def render(self, schema: dict[str, Any], data: dict[str, Any], errors: dict[str, list[str]],
               extra_rows: dict[str, int] | None = None) -> RenderedForm:
        unused = {k: list(v) for k, v in errors.items()}
        fields = self._object_fields(schema, data if isinstance(data, dict) else {}, "", unused,
                                     extra_rows or {})
        other = [f"{path}: {m}" if path not in ("", "(form)") else m for path, ms in unused.items() for m in ms]
        return RenderedForm(str(schema.get("title") or ""), str(schema.get("description") or ""), fields, other)

    def _object_fields(self, schema: dict[str, Any], data: dict[str, Any], prefix: str,
                       errors: dict[str, list[str]], extra_rows: dict[str, int]) -> list[Field]:
        required = set(schema.get("required") or [])
        out = []
        for key, sub in (schema.get("properties") or {}).items():
            if not isinstance(sub, dict) or sub.get("readOnly"):
                continue
            name = f"{prefix}.{key}" if prefix else key
            out.append(self._field(key, name, sub, data.get(key), key in required, errors, extra_rows))
        return out

    def _field(self, key: str, name: str, schema: dict[str, Any], value: Any, required: bool,
               errors: dict[str, list[str]], extra_rows: dict[str, int]) -> Field:
        role = schema.get("x-role") or self.user_roles.get(key)
        widget = widget_of(schema, role)
        f = Field(name, key, schema, widget, str(schema.get("title") or key), str(schema.get("description") or ""),
                  required, value, errors=errors.pop(name, []))
        if widget in ("radios", "select"):
            f.options = enum_options(schema)
        elif widget == "user":
            f.options = list(self.users.get(str(role), []))
            if value and str(value) not in {u for u, _ in f.options}:
                f.options.append((str(value), str(value)))
        elif widget == "checkboxes":
            f.options = enum_options(schema.get("items") or {})
            f.value = [str(v) for v in value] if isinstance(value, list) else []
        elif widget == "lines":
            f.value = "\n".join(str(v) for v in value) if isinstance(value, list) else (value or "")
        elif widget == "datetime":
            f.value = self._local_input(value)
        elif widget in ("group", "file"):
            f.children = self._object_fields(schema, value if isinstance(value, dict) else {}, name, errors,
                                             extra_rows)
        elif widget == "table":
            items = schema.get("items") or {}
            rows = value if isinstance(value, list) else []
            count = max(len(rows), 1 if required or schema.get("minItems") else 0) + extra_rows.get(name, 0)
            for i in range(count):
                row = rows[i] if i < len(rows) and isinstance(rows[i], dict) else {}
                f.rows.append(self._object_fields(items, row, f"{name}[{i}]", errors, extra_rows))
            for path in [p for p in errors if p.startswith(name + "[")]:
                f.errors += [f"{path[len(name):]}: {m}" for m in errors.pop(path)]
        return f

    def _local_input(self, value: Any) -> str:
        if not value:
            return ""
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(self.zone)
        return moment.strftime("%Y-%m-%dT%H:%M")

    # posted form -> data ------------------------------------------------------------------------
    def parse(self, schema: dict[str, Any], form: MultiDict[str, str],
              files: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
        """The submission as JSON; blank fields are left out so `required` reports them."""
        return self._parse_object(schema, form, "", files or {})

    def _parse_object(self, schema: dict[str, Any], form: MultiDict[str, str], prefix: str,
                      files: dict[str, dict[str, str]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, sub in (schema.get("properties") or {}).items():
            if not isinstance(sub, dict) or sub.get("readOnly"):
                continue
            name = f"{prefix}.{key}" if prefix else key
            value = self._parse_field(name, key, sub, form, files)
            if value is not None:
                out[key] = value
        return out

    def _parse_field(self, name: str, key: str, schema: dict[str, Any], form: MultiDict[str, str],
                     files: dict[str, dict[str, str]]) -> Any:
        widget = widget_of(schema, schema.get("x-role") or self.user_roles.get(key))
        if widget in ("group", "file"):
            value = self._parse_object(schema, form, name, files)
            if widget == "file" and name in files:
                value.update(files[name])
            return value or None
        if widget == "table":
            count = _int(form.get(f"{name}.__rows"), 0)
            rows = []
            for i in range(min(count, 500)):
                if form.get(f"{name}[{i}].__remove"):
                    continue
                row = self._parse_object(schema.get("items") or {}, form, f"{name}[{i}]", files)
                if row:
                    rows.append(row)
            return rows or None
        if widget == "checkboxes":
            return [_typed_enum(v, schema.get("items") or {}) for v in form.getlist(name) if v] or None
        raw = form.get(name)
        if widget == "boolean":
            if raw is None or raw == "":
                return False if form.get(f"{name}.__present") and not schema.get("x-ask") else None
            return raw in ("true", "on", "1", "yes")
        if raw is None or raw.strip() == "":
            return None
        raw = raw.strip() if widget not in ("textarea",) else raw.strip("\r\n")
        if widget == "lines":
            return [line.strip() for line in raw.splitlines() if line.strip()]
        if widget in ("integer", "number"):
            return _number(raw, widget)
        if widget == "datetime":
            return self._iso(raw)
        if widget in ("radios", "select"):
            return _typed_enum(raw, schema)
        return raw

    def _iso(self, raw: str) -> str:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            return raw
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.isoformat()


def errors_by_field(errors: list[dict[str, str]] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in errors or []:
        messages = out.setdefault(e.get("field") or "", [])
        if (e.get("message") or "") not in messages:  # engine.forms repeats `required` errors
            messages.append(e.get("message") or "")
    return out


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def _number(raw: str, kind: str) -> Any:
    try:
        return int(raw) if kind == "integer" else float(raw) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:
        return raw  # the schema reports it, with the typed text kept


def _typed_enum(raw: str, schema: dict[str, Any]) -> Any:
    candidates = [o.get("const") for o in schema.get("oneOf") or [] if isinstance(o, dict)] + list(
        schema.get("enum") or [])
    for c in candidates:
        if str(c) == raw:
            return c
    return raw
