"""JSON Schema forms: loading, checking a schema, and validating a submission field by field."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from engine.errors import FieldError

_FORMATS = FormatChecker()


def read_form(forms_dir: Path, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """The schema in forms_dir/name, or the reason it cannot be used."""
    path = (forms_dir / name).resolve()
    if forms_dir.resolve() not in path.parents:
        return None, f"form {name!r} is outside the forms directory"
    if not path.is_file():
        return None, f"form {name!r} does not exist in {forms_dir}"
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"form {name!r} is not valid JSON: {exc}"
    problem = schema_problem(schema)
    return (None, f"form {name!r}: {problem}") if problem else (schema, None)


def schema_problem(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return "a form must be a JSON object"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    return None


@lru_cache(maxsize=512)
def _validator(schema_text: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_text), format_checker=_FORMATS)


# Deployed forms are frozen objects: their validator is found by identity before hashing the text.
_BY_IDENTITY: dict[int, tuple[dict[str, Any], Draft202012Validator]] = {}


def _validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    known = _BY_IDENTITY.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    validator = _validator(json.dumps(schema, sort_keys=True))
    if len(_BY_IDENTITY) > 2048:
        _BY_IDENTITY.clear()
    _BY_IDENTITY[id(schema)] = (schema, validator)
    return validator


def field_errors(schema: dict[str, Any], data: Any) -> list[FieldError]:
    """Every error, each named by its field path (`systems[0].name`), required fields included."""
    validator = _validator_for(schema)
    errors = []
    reported: set[str] = set()
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        path = _path(err.absolute_path)
        if err.validator == "required" and isinstance(err.instance, dict):
            missing = [n for n in err.validator_value if n not in err.instance]
            for name in missing:
                if _join(path, name) in reported:
                    continue  # jsonschema reports each missing field once per required list entry
                reported.add(_join(path, name))
                title = _title(schema, err.absolute_path, name) or (
                    err.schema.get("properties", {}).get(name, {}) or {}).get("title", name)
                errors.append(FieldError(_join(path, name), f"{title}: 必填 (required)"))
            continue
        title = err.schema.get("title") if isinstance(err.schema, dict) else None
        errors.append(FieldError(path or "(form)", f"{title + ': ' if title else ''}{err.message}"))
    return errors


def _title(schema: dict[str, Any], path: Any, name: str) -> str | None:
    """The field's title from the form itself (a rule in if/then does not repeat it)."""
    node: Any = schema
    for part in [*path, name]:
        if isinstance(part, int):
            node = node.get("items", {}) if isinstance(node, dict) else {}
        else:
            node = node.get("properties", {}).get(part, {}) if isinstance(node, dict) else {}
    return node.get("title") if isinstance(node, dict) else None


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
