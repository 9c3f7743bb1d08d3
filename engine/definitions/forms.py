"""JSON Schema forms: loading, checking a schema, and validating a submission field by field."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no types
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import SchemaError, ValidationError

from engine.errors import FieldError

if TYPE_CHECKING:
    from engine.definitions.documents import RegisterDocuments

_FORMATS = FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 as processes read it (datetime.fromisoformat), with its offset: a time without a zone
    would be read in the server's zone, not the firm's. jsonschema checks it only with an extra package."""
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


def read_form(forms_dir: Path, name: str,
              documents: RegisterDocuments | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """The form's newest version in the database (saved in the browser or seeded at init), else the
    schema in forms_dir/name; or the reason it cannot be used."""
    document = documents.latest("form", name) if documents is not None else None
    if document is not None:
        schema = document.data()
        problem = schema_problem(schema)  # again: the checks may have grown since it was saved
        return (None, f"form {name!r} (version {document.version}): {problem}") if problem else (schema, None)
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
    if _holds(schema, "unevaluatedProperties") and _holds(schema, "patternProperties"):
        # jsonschema matches patternProperties with Python's backtracking `re` inside unevaluatedProperties
        return ("unevaluatedProperties cannot be combined with patternProperties (their keys would be matched "
                "by a backtracking regex engine); use additionalProperties")
    for name, problem in register_field_problems(schema):
        return f"field {name!r}: {problem}"
    for field, pattern in form_patterns(schema):
        reason = _linear_problem(pattern)
        if reason:
            return (f"field {field!r}: pattern {pattern!r} cannot be matched in linear time ({reason}); "
                    f"backreferences and lookarounds are not supported")
    return None


# Register fields: picked from the configuration items register, never typed -----------------------
# {"type": "array", "items": {"type": "integer"}, "x-register": "config_item", "x-facts": "affected_systems"}:
# the values are item ids; on submit the engine writes the items' facts (name, category, class, core,
# markets, version) from the register under `x-facts` (default "<field>_items"), where a form cannot reach.
REGISTER = "x-register"
REGISTERS = ("config_item",)


@dataclass(frozen=True)
class RegisterField:
    name: str
    register: str
    many: bool  # an array of ids, or one id
    facts: str  # the case variable the engine fills from the register


def register_fields(schema: dict[str, Any] | None) -> list[RegisterField]:
    """The form's top-level fields whose values are register ids."""
    found = []
    for name, prop in ((schema or {}).get("properties") or {}).items():
        if isinstance(prop, dict) and REGISTER in prop:
            many = prop.get("type") == "array"
            found.append(RegisterField(name, str(prop[REGISTER]), many, str(prop.get("x-facts") or f"{name}_items")))
    return found


def register_field_problems(schema: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    declared = declared_fields(schema)
    for f in register_fields(schema):
        prop = schema["properties"][f.name]
        ids = prop.get("items") if f.many else prop
        if f.register not in REGISTERS:
            problems.append((f.name, f"{REGISTER} {f.register!r} names no register (known: {', '.join(REGISTERS)})"))
        elif not isinstance(ids, dict) or ids.get("type") != "integer":
            problems.append((f.name, f"a {REGISTER} field holds item ids: type integer, or an array of integers"))
        elif not f.facts.isidentifier() or f.facts in declared:
            problems.append((f.name, f"x-facts {f.facts!r} must be a data name the form does not declare (the "
                                     "engine fills it from the register; a form field could forge it)"))
    return problems


# Patterns: matched by RE2 (linear in the input), never by Python's backtracking `re` -----------------
# A pattern such as ^(a+)+$ takes Python's `re` minutes on a short input any user can type.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the author, not logged to stderr


@lru_cache(maxsize=1024)
def _re2(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def _linear_problem(pattern: str) -> str | None:
    try:
        _re2(pattern)
    except re2.error as exc:
        return str(exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc)
    return None


def form_patterns(schema: Any, field: str = "(form)") -> list[tuple[str, str]]:
    """Every (field, regex) a form holds: `pattern` values and `patternProperties` keys, at any depth."""
    found: list[tuple[str, str]] = []
    if isinstance(schema, list):
        for item in schema:
            found.extend(form_patterns(item, field))
    elif isinstance(schema, dict):
        if isinstance(schema.get("pattern"), str):
            found.append((field, schema["pattern"]))
        if isinstance(schema.get("patternProperties"), dict):
            found.extend((field, key) for key in schema["patternProperties"])
        for key, value in schema.items():
            if key in ("properties", "patternProperties") and isinstance(value, dict):
                for name, sub in value.items():
                    found.extend(form_patterns(sub, name if key == "properties" else field))
            elif key not in ("pattern", "enum", "const", "default", "examples") and isinstance(value, dict | list):
                found.extend(form_patterns(value, field))
    return found


def _holds(schema: Any, keyword: str) -> bool:
    """Whether a keyword appears anywhere in a schema (as a keyword, not inside enum/const values)."""
    if isinstance(schema, list):
        return any(_holds(item, keyword) for item in schema)
    if not isinstance(schema, dict):
        return False
    return keyword in schema or any(_holds(value, keyword) for key, value in schema.items()
                                    if key not in ("enum", "const", "default", "examples"))


def _search(pattern: str, text: str) -> bool:
    return _re2(pattern).search(text) is not None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    properties, patterns = schema.get("properties", {}), list(schema.get("patternProperties", {}))
    extras = {k for k in instance if k not in properties and not any(_search(p, k) for p in patterns)}
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        joined = ", ".join(repr(each) for each in sorted(extras))
        yield ValidationError(f"Additional properties are not allowed ({joined} unexpected)")


_FormValidator = validators.extend(Draft202012Validator, {
    "pattern": _pattern, "patternProperties": _pattern_properties, "additionalProperties": _additional_properties})


@lru_cache(maxsize=512)
def _validator(schema_text: str) -> Draft202012Validator:
    return _FormValidator(json.loads(schema_text), format_checker=_FORMATS)


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
                errors.append(FieldError(_join(path, name), f"{title}: 必填"))
            continue
        title = err.schema.get("title") if isinstance(err.schema, dict) else None
        errors.append(FieldError(path or "(form)", f"{title + ': ' if title else ''}{chinese_message(err)}"))
    return errors


# What a form's user reads: each JSON Schema rule in Chinese (jsonschema's own words are English).
_TYPES = {"string": "文本", "integer": "整数", "number": "数字", "boolean": "是或否", "array": "列表",
          "object": "一组字段", "null": "空值"}
_FORMATS_ZH = {"date-time": "日期时间（如 2026-11-21T10:00:00+08:00）", "date": "日期（如 2026-11-21）",
               "email": "电子邮件地址", "time": "时间", "uri": "网址", "duration": "时长（如 PT4H）"}


def chinese_message(err: ValidationError) -> str:
    """The error as a Chinese sentence with its limit; an unforeseen rule keeps jsonschema's words."""
    rule, limit = err.validator, err.validator_value
    if rule == "type":
        kinds = limit if isinstance(limit, list) else [limit]
        return f"应为{'或'.join(_TYPES.get(str(k), str(k)) for k in kinds)}"
    if rule in ("enum", "oneOf", "anyOf") or (rule == "const" and not isinstance(limit, bool)):
        return "不是可选的值之一"
    messages = {
        "const": "须勾选" if limit is True else "不应勾选",
        "minLength": f"至少 {limit} 个字符", "maxLength": f"最多 {limit} 个字符",
        "minimum": f"不得小于 {limit}", "maximum": f"不得大于 {limit}",
        "exclusiveMinimum": f"须大于 {limit}", "exclusiveMaximum": f"须小于 {limit}",
        "multipleOf": f"须为 {limit} 的倍数",
        "minItems": f"至少选择或填写 {limit} 项", "maxItems": f"最多 {limit} 项", "uniqueItems": "不得有重复项",
        "pattern": "格式不符",
        "format": f"应为{_FORMATS_ZH.get(str(limit), str(limit))}",
        "minProperties": f"至少填写 {limit} 项", "maxProperties": f"最多填写 {limit} 项",
        "additionalProperties": "此表单没有该字段", "unevaluatedProperties": "此表单没有该字段",
        "dependentRequired": "缺少与之配套的字段", "not": "此值不被允许",
    }
    return messages.get(str(rule), err.message)


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


# Submissions carry only what the form declares ---------------------------------------------------
# The case state's serializer turns a mapping with this key back into an object (a datetime, …):
# no submitted value may carry it, or reading the case would decode what a user typed.
TYPE_MARKER = "typename"
_COMBINATORS = ("allOf", "anyOf", "oneOf")


def declared_fields(schema: dict[str, Any] | None) -> set[str]:
    """The property names an object schema declares, with those of its if/then/else and combinators."""
    if not isinstance(schema, dict):
        return set()
    names = set((schema.get("properties") or {}).keys())
    for key in ("if", "then", "else"):
        names |= declared_fields(schema.get(key))
    for key in _COMBINATORS:
        for sub in schema.get(key) or []:
            names |= declared_fields(sub)
    return names


def _property_schemas(schema: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found = []
    prop = (schema.get("properties") or {}).get(name)
    if isinstance(prop, dict):
        found.append(prop)
    for key in ("then", "else"):
        if isinstance(schema.get(key), dict):
            found += _property_schemas(schema[key], name)
    for key in _COMBINATORS:
        for sub in schema.get(key) or []:
            if isinstance(sub, dict):
                found += _property_schemas(sub, name)
    return found


def undeclared_errors(schema: dict[str, Any] | None, data: Any, path: str = "") -> list[FieldError]:
    """A field the form does not declare, at any depth, and any serializer type marker."""
    errors: list[FieldError] = []
    if isinstance(data, dict):
        declared = declared_fields(schema)
        open_object = isinstance(schema, dict) and isinstance(schema.get("additionalProperties"), dict)
        for key, value in data.items():
            where = _join(path, str(key))
            if key == TYPE_MARKER:
                errors.append(FieldError(where, f"“{TYPE_MARKER}” is a reserved key and may not be submitted"))
            elif key not in declared and not open_object:
                errors.append(FieldError(where, "此表单没有该字段 (not a field of this form)"))
            else:
                subs = _property_schemas(schema, key) if isinstance(schema, dict) else []
                sub = subs[0] if subs else (schema or {}).get("additionalProperties")
                errors += undeclared_errors(sub if isinstance(sub, dict) else None, value, where)
    elif isinstance(data, list):
        items = schema.get("items") if isinstance(schema, dict) else None
        for index, value in enumerate(data):
            errors += undeclared_errors(items if isinstance(items, dict) else None, value, f"{path}[{index}]")
    return errors


def type_marker_errors(data: Any, path: str = "") -> list[FieldError]:
    """Data that no form governs (start data, message payloads) may still never carry a type marker."""
    errors: list[FieldError] = []
    if isinstance(data, dict):
        for key, value in data.items():
            where = _join(path, str(key))
            if key == TYPE_MARKER:
                errors.append(FieldError(where, f"“{TYPE_MARKER}” is a reserved key and may not be submitted"))
            else:
                errors += type_marker_errors(value, where)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            errors += type_marker_errors(value, f"{path}[{index}]")
    return errors


# Labels, for the approval record -------------------------------------------------------------------
_LABELLED = re.compile(r"^\s*([\w.-]+)\s+([^/]+?)\s*$")


def enum_options(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, label) of an enum, from oneOf/const titles, x-enumNames or a labelled description
    ("approve 批准 / reject 驳回")."""
    if "oneOf" in schema and all(isinstance(o, dict) and "const" in o for o in schema["oneOf"]):
        return [(str(o["const"]), str(o.get("title") or o["const"])) for o in schema["oneOf"]]
    values = schema.get("enum")
    if not values:
        return []
    names = schema.get("x-enumNames")
    if isinstance(names, list) and len(names) == len(values):
        return [(str(v), str(n)) for v, n in zip(values, names, strict=True)]
    labels: dict[str, str] = {}
    for part in str(schema.get("description") or "").split("/"):
        if m := _LABELLED.match(part):
            labels[m.group(1)] = m.group(2)
    return [(str(v), labels.get(str(v), str(v))) for v in values]


def outcome_field(schema: dict[str, Any] | None) -> str | None:
    """The field whose value is the task's outcome (审批结论), named by the form's `x-outcome`."""
    name = (schema or {}).get("x-outcome")
    return name if isinstance(name, str) and name in declared_fields(schema) else None


def labelled_answers(schema: dict[str, Any] | None, answers: dict[str, Any]) -> list[dict[str, Any]]:
    """Each answer with the form's own label for the field and for an enum value, in form order."""
    props: dict[str, Any] = {}
    for name in (schema or {}).get("properties") or {}:
        found = _property_schemas(schema or {}, name)
        props[name] = found[0] if found else {}
    order = [*props, *(k for k in answers if k not in props)]
    shown = []
    for name in order:
        if name not in answers:
            continue
        prop = props.get(name) or {}
        value = answers[name]
        shown.append({"field": name, "label": str(prop.get("title") or name), "value": value,
                      "text": _labelled_value(prop, value)})
    return shown


def _labelled_value(prop: Any, value: Any) -> Any:
    """A value as the form labels it: an enum's label, an object's keys by their titles (a checklist)."""
    if not isinstance(prop, dict):
        return value
    if isinstance(value, dict):
        titles = {k: (v or {}).get("title") or k for k, v in (prop.get("properties") or {}).items()
                  if isinstance(v, dict)}
        return {str(titles.get(k, k)): _labelled_value((prop.get("properties") or {}).get(k), v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_labelled_value(prop.get("items"), v) for v in value]
    return dict(enum_options(prop)).get(str(value), value)
