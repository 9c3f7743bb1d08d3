"""The register in forms: a field marked `x-register: config_item` offers the items in service and,
on submit, the engine writes what the register says of the picked items into the case (their
category, class, core flag, markets, version) and links the case to them. Processes read those
facts, never what a requester typed: a change's window check, risk and an incident's grading.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.configuration.records import IN_SERVICE, class_label, system_class_label
from engine.definitions.forms import RegisterField, register_fields
from engine.errors import FieldError
from engine.storage.models import CaseItem, ConfigItem


def in_service(s: Session) -> list[ConfigItem]:
    return list(s.scalars(select(ConfigItem).where(ConfigItem.status.in_(IN_SERVICE)).order_by(ConfigItem.name)))


def item_facts(item: ConfigItem) -> dict[str, Any]:
    """What a case keeps of an item: the register's word at the time of the step, for the record."""
    return {"id": item.id, "name": item.name, "core": item.core, "class_label": class_label(item.core),
            "system_class": item.system_class, "system_class_label": system_class_label(item.system_class),
            "category": item.category, "markets": list(item.markets), "environment": item.environment,
            "version": item.version, "owner_role": item.owner_role}


def item_label(item: ConfigItem) -> str:
    level = system_class_label(item.system_class)
    return f"{item.name}（{class_label(item.core)}{'·' + level if level else ''}）"


def with_options(s: Session, schema: dict[str, Any] | None, *, every_item: bool = False) -> dict[str, Any] | None:
    """The form with its register fields' choices filled in, for display: the items in service to
    pick from, or `every_item` to name what was picked (a record outlives an item's retirement)."""
    fields = register_fields(schema)
    if not fields or schema is None:
        return schema
    items = list(s.scalars(select(ConfigItem).order_by(ConfigItem.name))) if every_item else in_service(s)
    options = [{"const": i.id, "title": item_label(i)} for i in items]
    shown = copy.deepcopy(schema)
    for f in fields:
        prop = shown["properties"][f.name]
        target = prop.setdefault("items", {}) if f.many else prop
        if options:
            target["oneOf"] = options
    return shown


def register_schema(forms: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The register fields of all of a process's forms as one form: what start data may name."""
    properties = {f.name: form["properties"][f.name] for form in forms for f in register_fields(form)
                  if form is not None}
    return {"properties": properties} if properties else None


def resolve(s: Session, schema: dict[str, Any] | None, data: dict[str, Any], *,
            retired_too: bool = False) -> tuple[dict[str, list[dict[str, Any]]], list[int], list[FieldError]]:
    """The facts to write for a submission's register fields, the ids it names, and what is wrong.

    An id must name an item in service (`retired_too`: any registered item, for start data a process
    passes on, whose systems may have been retired since they were picked); an empty register is
    named as such, so the requester knows whom to ask rather than seeing an empty list.
    """
    fields = register_fields(schema)
    if not fields:
        return {}, [], []
    items = {i.id: i for i in (s.scalars(select(ConfigItem)) if retired_too else in_service(s))}
    facts: dict[str, list[dict[str, Any]]] = {}
    named: list[int] = []
    errors: list[FieldError] = []
    for f in fields:
        value = data.get(f.name)
        if value is None:
            continue  # required or not is the schema's to say
        ids = value if f.many and isinstance(value, list) else [value]
        picked = []
        for index, item_id in enumerate(ids):
            where = f"{f.name}[{index}]" if f.many else f.name
            item = items.get(item_id) if isinstance(item_id, int) and not isinstance(item_id, bool) else None
            if item is None:
                errors.append(_unknown(schema, f, where, item_id, bool(items)))
            elif item.id not in named:
                picked.append(item_facts(item))
                named.append(item.id)
        facts[f.facts] = picked
    return facts, named, errors


def _unknown(schema: dict[str, Any] | None, f: RegisterField, where: str, item_id: Any, any_items: bool) -> FieldError:
    title = ((schema or {}).get("properties", {}).get(f.name) or {}).get("title") or f.name
    if not any_items:
        return FieldError(where, f"{title}: 配置项登记簿中没有在用的系统，请配置管理员先登记 "
                                 "(the configuration register has no item in service)")
    return FieldError(where, f"{title}: {item_id!r} 不是登记簿中在用的配置项 (not an item in service)")


def link(s: Session, instance_id: int, item_ids: list[int], by: str, at: datetime) -> None:
    """Link the case to the items it names; a link once made stays (the case named the item)."""
    if not item_ids:
        return
    linked = set(s.scalars(select(CaseItem.item_id).where(CaseItem.instance_id == instance_id)))
    s.add_all(CaseItem(instance_id=instance_id, item_id=i, linked_at=at, linked_by=by)
              for i in item_ids if i not in linked)


def case_items(s: Session, instance_id: int) -> list[ConfigItem]:
    return list(s.scalars(select(ConfigItem).join(CaseItem, CaseItem.item_id == ConfigItem.id)
                          .where(CaseItem.instance_id == instance_id).order_by(ConfigItem.name)))


def items_named(s: Session, names: list[str]) -> list[ConfigItem]:
    """Items in service by name (an alert names its system as the monitoring tool knows it)."""
    if not names:
        return []
    return list(s.scalars(select(ConfigItem).where(ConfigItem.name.in_(names), ConfigItem.status.in_(IN_SERVICE))
                          .order_by(ConfigItem.name)))
