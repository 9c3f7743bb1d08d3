"""Reading a register file (JSON or CSV) into item records, without the database: what each row
says and what is wrong with it, named by row. The service checks what needs the database.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from engine.errors import FieldError

CLASSES = {"核心交易": True, "非核心": False}  # the firm's own split: core trading systems or not
SYSTEM_CLASSES = {"一类": 1, "二类": 2, "三类": 3, "四类": 4, "五类": 5}  # the 2021 classification
# The business categories incident grading reads (processes/incident_level.dmn); 其他 grades on data only.
CATEGORIES = ("集中交易", "网上交易", "期货交易", "行情", "第三方存管", "融资融券", "银期转账", "清算", "其他")
STATUSES = ("在用", "停用", "建设中", "已下线")
IN_SERVICE = ("在用", "建设中")  # what a form's picker offers: an item being built may have changes, incidents too
KINDS = ("depends_on", "runs_on")
TEXT_FIELDS = {"environment": "生产", "owner_role": "", "maintainer_a": "", "maintainer_b": "", "vendor": "",
               "version": "", "status": "在用"}
KEYS = {"name", "class", "system_class", "category", "markets", *TEXT_FIELDS, *KINDS}


def class_label(core: bool) -> str:
    return "核心交易" if core else "非核心"


def system_class_label(number: int | None) -> str | None:
    return None if number is None else next(k for k, v in SYSTEM_CLASSES.items() if v == number)


@dataclass(frozen=True)
class ItemRecord:
    row: str  # how an error names it: "item 3 (集中交易)" or "line 4 (集中交易)"
    name: str
    fields: dict[str, Any]  # the ConfigItem columns the file sets
    relations: frozenset[tuple[str, str]]  # (kind, target name)


def parse(text: str, file_name: str) -> tuple[list[ItemRecord], list[FieldError]]:
    """The records of a .csv (by its name) or JSON file, and every problem found in them."""
    if file_name.lower().endswith(".csv"):
        rows = [(f"line {n}", _csv_row(r)) for n, r in enumerate(csv.DictReader(io.StringIO(text)), start=2)]
    else:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            return [], [FieldError(file_name, f"not valid JSON: {exc}")]
        raw = raw.get("items") if isinstance(raw, dict) else raw
        if not isinstance(raw, list):
            return [], [FieldError(file_name, "expected a list of items (or an object with 'items')")]
        rows = [(f"item {n}", r) for n, r in enumerate(raw, start=1)]
    records: list[ItemRecord] = []
    problems: list[FieldError] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        record = _record(where, row, problems)
        if record is None:
            continue
        if record.name in seen:
            problems.append(FieldError(record.row, f"duplicate name {record.name!r} (also {seen[record.name]})"))
            continue
        seen[record.name] = record.row
        records.append(record)
    return records, problems


def _csv_row(row: dict[str | None, Any]) -> dict[str, Any]:
    """A CSV row as a JSON item: empty cells left out, lists separated by ';'."""
    item: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or value is None or not str(value).strip():
            continue
        value = str(value).strip()
        item[key.strip()] = [v.strip() for v in value.split(";") if v.strip()] if key.strip() in (
            "markets", *KINDS) else value
    return item


def _record(where: str, row: Any, problems: list[FieldError]) -> ItemRecord | None:
    if not isinstance(row, dict):
        problems.append(FieldError(where, "not an object"))
        return None
    name = row.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(FieldError(where, "no name"))
        return None
    name = name.strip()
    where = f"{where} ({name})"
    before = len(problems)
    for key in sorted(set(row) - KEYS):
        problems.append(FieldError(where, f"unknown field {key!r}"))
    fields: dict[str, Any] = {}
    if row.get("class") not in CLASSES:
        problems.append(FieldError(where, f"unknown class {row.get('class')!r} (one of: {', '.join(CLASSES)})"))
    else:
        fields["core"] = CLASSES[row["class"]]
    fields["system_class"] = _system_class(where, row.get("system_class"), problems)
    category = row.get("category", "其他")
    if category not in CATEGORIES:
        problems.append(FieldError(where, f"unknown category {category!r} (one of: {', '.join(CATEGORIES)})"))
    else:
        fields["category"] = category
    markets = row.get("markets", [])
    if not isinstance(markets, list) or not all(isinstance(m, str) and m.strip() for m in markets):
        problems.append(FieldError(where, "markets must be a list of market codes"))
    else:
        fields["markets"] = sorted({m.strip().upper() for m in markets})
    for key, default in TEXT_FIELDS.items():
        value = row.get(key, default)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.append(FieldError(where, f"{key} must be text"))
        else:
            fields[key] = str(value).strip()
    if fields.get("status", "在用") not in STATUSES:
        problems.append(FieldError(where, f"unknown status {fields['status']!r} (one of: {', '.join(STATUSES)})"))
    relations: set[tuple[str, str]] = set()
    for kind in KINDS:
        targets = row.get(kind, [])
        if not isinstance(targets, list) or not all(isinstance(t, str) and t.strip() for t in targets):
            problems.append(FieldError(where, f"{kind} must be a list of item names"))
            continue
        for target in targets:
            if target.strip() == name:
                problems.append(FieldError(where, f"{kind} names the item itself"))
            relations.add((kind, target.strip()))
    if len(problems) > before:
        return None
    return ItemRecord(where, name, fields, frozenset(relations))


def _system_class(where: str, value: Any, problems: list[FieldError]) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip() in SYSTEM_CLASSES:
        return SYSTEM_CLASSES[value.strip()]
    if isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip() in {"1", "2", "3", "4", "5"}:
        return int(value)
    problems.append(FieldError(where, f"unknown system_class {value!r} (一类..五类, or 1..5)"))
    return None
