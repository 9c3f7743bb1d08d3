"""Reading a register file (JSON or CSV), or one item a case asks for, into item records, without the
database: what each row says and what is wrong with it, named by row. The service checks what needs
the database. A file's problems are told in English (the CLI, the import page); a case's in Chinese,
to the requester it goes back to: one rule, two wordings (PROBLEMS).
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
LABELS = {"name": "名称", "class": "核心交易类别", "system_class": "系统分类", "category": "业务类别",
          "markets": "连接市场", "environment": "环境", "owner_role": "归属角色", "maintainer_a": "A角维护人",
          "maintainer_b": "B角维护人", "vendor": "厂商", "version": "版本", "status": "状态",
          "depends_on": "依赖", "runs_on": "运行于"}

# Each problem in English (a file's row) and in Chinese (a case's item). {value}, {target}: shown quoted;
# {choices}: a list, joined; {label}: the field's Chinese name (LABELS) for {key}.
PROBLEMS = {
    "not_object": ("not an object", "不是一个对象"),
    "no_name": ("no name", "未填写名称"),
    "unknown_field": ("unknown field {key!r}", "未知字段 {key!r}"),
    "unknown_class": ("unknown class {value} (one of: {choices})", "核心交易类别 {value} 无效（可选：{choices}）"),
    "unknown_system_class": ("unknown system_class {value} (一类..五类, or 1..5)",
                             "系统分类 {value} 无效（一类至五类）"),
    "unknown_category": ("unknown category {value} (one of: {choices})", "业务类别 {value} 无效（可选：{choices}）"),
    "markets_list": ("markets must be a list of market codes", "连接市场须为市场代码列表"),
    "not_text": ("{key} must be text", "{label}须为文本"),
    "unknown_status": ("unknown status {value} (one of: {choices})", "状态 {value} 无效（可选：{choices}）"),
    "relation_list": ("{key} must be a list of item names", "{label}须为配置项名称列表"),
    "relation_self": ("{key} names the item itself", "{label}不能是配置项自身"),
    "duplicate_name": ("duplicate name {value} (also {other})", "名称 {value} 重复（另见 {other}）"),
    # checked by the service, against the register
    "unknown_target": ("{key} names {target}, which is neither in the file nor in the register",
                       "{label}中的 {target} 不在配置项登记册中"),
    "unknown_owner_role": ("unknown owner_role {value}", "归属角色 {value} 不存在"),
    "no_calendar": ("markets cannot be checked: no trading calendar ({error})",
                    "无法核对连接市场：缺少交易日历（{error}）"),
    "unknown_market": ("unknown market {value} (the trading calendar knows: {choices})",
                       "市场 {value} 不在交易日历中（交易日历中的市场：{choices}）"),
}


def problem(where: str, kind: str, zh: bool = False, **params: Any) -> FieldError:
    """A problem of the row `where`, worded for a file (English) or for a case's requester (zh)."""
    english, chinese = PROBLEMS[kind]
    shown = dict(params)
    for name in ("value", "target"):
        if name in params:
            value = params[name]
            shown[name] = ("（未填写）" if value is None else f"“{value}”") if zh else repr(value)
    if "choices" in params:
        shown["choices"] = ("、" if zh else ", ").join(str(c) for c in params["choices"])
    if "key" in params:
        shown["label"] = LABELS.get(params["key"], params["key"])
    return FieldError(where, (chinese if zh else english).format(**shown))


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
            problems.append(problem(record.row, "duplicate_name", value=record.name, other=seen[record.name]))
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


def parse_row(row: Any, where: str = "配置项") -> tuple[ItemRecord | None, list[FieldError]]:
    """One item as a case asks for it (a file's row by the same rules), its problems in Chinese."""
    problems: list[FieldError] = []
    return _record(where, row, problems, zh=True), problems


def _record(where: str, row: Any, problems: list[FieldError], zh: bool = False) -> ItemRecord | None:
    if not isinstance(row, dict):
        problems.append(problem(where, "not_object", zh))
        return None
    name = row.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(problem(where, "no_name", zh))
        return None
    name = name.strip()
    where = f"{where}（{name}）" if zh else f"{where} ({name})"
    before = len(problems)
    for key in sorted(set(row) - KEYS):
        problems.append(problem(where, "unknown_field", zh, key=key))
    fields: dict[str, Any] = {}
    if row.get("class") not in CLASSES:
        problems.append(problem(where, "unknown_class", zh, value=row.get("class"), choices=CLASSES))
    else:
        fields["core"] = CLASSES[row["class"]]
    fields["system_class"] = _system_class(where, row.get("system_class"), problems, zh)
    category = row.get("category", "其他")
    if category not in CATEGORIES:
        problems.append(problem(where, "unknown_category", zh, value=category, choices=CATEGORIES))
    else:
        fields["category"] = category
    markets = row.get("markets", [])
    if not isinstance(markets, list) or not all(isinstance(m, str) and m.strip() for m in markets):
        problems.append(problem(where, "markets_list", zh))
    else:
        fields["markets"] = sorted({m.strip().upper() for m in markets})
    for key, default in TEXT_FIELDS.items():
        value = row.get(key, default)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.append(problem(where, "not_text", zh, key=key))
        else:
            fields[key] = str(value).strip()
    if fields.get("status", "在用") not in STATUSES:
        problems.append(problem(where, "unknown_status", zh, value=fields["status"], choices=STATUSES))
    relations: set[tuple[str, str]] = set()
    for kind in KINDS:
        targets = row.get(kind, [])
        if not isinstance(targets, list) or not all(isinstance(t, str) and t.strip() for t in targets):
            problems.append(problem(where, "relation_list", zh, key=kind))
            continue
        for target in targets:
            if target.strip() == name:
                problems.append(problem(where, "relation_self", zh, key=kind))
            relations.add((kind, target.strip()))
    if len(problems) > before:
        return None
    return ItemRecord(where, name, fields, frozenset(relations))


def _system_class(where: str, value: Any, problems: list[FieldError], zh: bool = False) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip() in SYSTEM_CLASSES:
        return SYSTEM_CLASSES[value.strip()]
    if isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip() in {"1", "2", "3", "4", "5"}:
        return int(value)
    problems.append(problem(where, "unknown_system_class", zh, value=value))
    return None
