"""Browsing the configuration items register (配置项): one item's page (its relations both ways, its
history from the audit trail, the cases linked to it that the viewer may read) and the register
exported as CSV, XLSX or JSON in the shape the importer reads, so an export re-imports unchanged.

Anyone signed in browses and exports the register: it is the reference data every process picks
systems from. Importing stays with ci.manage (ConfigurationService.import_items).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from engine.configuration.items import ConfigurationService, ItemView
from engine.configuration.records import KINDS, class_label, system_class_label
from engine.errors import NotFound
from engine.people.identity import Actor
from engine.people.substitutes import holders_for
from engine.storage.models import AuditEvent, CaseItem, ConfigItemRelation, ProcessInstance

# The importer's columns (records.KEYS), in the order a person reads a row; lists joined with ';'.
EXPORT_COLUMNS = ("name", "class", "system_class", "category", "markets", "environment", "owner_role",
                  "maintainer_a", "maintainer_b", "vendor", "version", "status", *KINDS)
HISTORY_ACTIONS = ("ci.created", "ci.updated")  # the events that name one item and its fields
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class RelatedItem:
    id: int
    name: str
    kind: str  # depends_on | runs_on


@dataclass(frozen=True)
class FieldChange:
    """One field of one audited change: `before` is None when the item was created."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class ItemChange:
    at: datetime
    actor: str
    action: str  # ci.created | ci.updated
    changes: list[FieldChange]


@dataclass(frozen=True)
class LinkedCase:
    instance_id: int
    process_id: str
    process_name: str
    title: str
    status: str
    started_at: datetime
    linked_at: datetime
    linked_by: str


@dataclass(frozen=True)
class ItemDetail:
    item: ItemView
    relations: list[RelatedItem]  # what this item depends on and runs on
    used_by: list[RelatedItem]  # items that depend on or run on this one (kind as they declare it)
    history: list[ItemChange]  # oldest first
    cases: list[LinkedCase]  # only those the viewer may read, newest first

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def item_detail(register: ConfigurationService, actor: Actor, item_id: int) -> ItemDetail:
    """One item as its page shows it; NotFound for an unknown id."""
    items = register.list_items()
    item = next((i for i in items if i.id == item_id), None)
    if item is None:
        raise NotFound(f"unknown configuration item {item_id}")
    names = {i.id: i.name for i in items}
    with register.ctx.db.read() as s:
        rows = list(s.scalars(select(ConfigItemRelation).where(or_(
            ConfigItemRelation.from_id == item_id, ConfigItemRelation.to_id == item_id))))
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action.in_(HISTORY_ACTIONS))
                                .order_by(AuditEvent.id)))
        query = (select(CaseItem, ProcessInstance).join(ProcessInstance, ProcessInstance.id == CaseItem.instance_id)
                 .where(CaseItem.item_id == item_id))
        # The cases list's own read rule (access.case_filter), so the item's page never reveals more.
        readable = register.access.case_filter(actor, holders_for(s, actor.username, register.ctx.now()))
        if readable is not None:
            query = query.where(readable)
        cases = [LinkedCase(case.id, case.process_id, case.definition.name, case.title, case.status,
                            case.started_at, link.linked_at, link.linked_by)
                 for link, case in s.execute(query.order_by(ProcessInstance.id.desc()))]
    relations = sorted((RelatedItem(r.to_id, names[r.to_id], r.kind) for r in rows if r.from_id == item_id),
                       key=lambda r: (r.kind, r.name))
    used_by = sorted((RelatedItem(r.from_id, names[r.from_id], r.kind) for r in rows if r.to_id == item_id),
                     key=lambda r: (r.kind, r.name))
    history = [_change(e) for e in events if isinstance(e.data, dict) and e.data.get("name") == item.name]
    return ItemDetail(item, relations, used_by, history, cases)


def _change(event: AuditEvent) -> ItemChange:
    if event.action == "ci.created":
        fields = event.data.get("fields") or {}
        changes = [FieldChange(k, None, v) for k, v in fields.items()]
    else:
        changes = [FieldChange(k, c.get("from"), c.get("to")) for k, c in (event.data.get("changes") or {}).items()
                   if isinstance(c, dict)]
    return ItemChange(event.at, event.actor, event.action, changes)


def shown(field: str, value: Any) -> str:
    """A recorded field value as the register writes it (核心交易, 一类, SSE;SZSE, depends_on: 行情)."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if field == "core" and isinstance(value, bool):
        return class_label(value)
    if field == "system_class" and isinstance(value, int):
        return system_class_label(value) or str(value)
    if field == "relations" and isinstance(value, dict):
        return "; ".join(f"{kind}: {', '.join(targets)}" for kind, targets in value.items() if targets) or "—"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


# exports --------------------------------------------------------------------------------------
def export_rows(items: list[ItemView]) -> list[dict[str, Any]]:
    """Each item as an import file row (JSON shape: lists stay lists)."""
    return [i.as_row() for i in items]


def _cells(row: dict[str, Any]) -> list[str]:
    return [";".join(v) if isinstance(v, list) else ("" if v is None else str(v))
            for v in (row[c] for c in EXPORT_COLUMNS)]


def export_csv(items: list[ItemView]) -> str:
    """The register as the CSV `opsflow ci import` reads back (relations by item name).

    An empty cell reads back as the importer's default, so an item stored with an empty environment
    or status comes back as 生产 / 在用; the JSON export keeps every value as it is.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(_cells(row) for row in export_rows(items))
    return out.getvalue()


def export_json(items: list[ItemView]) -> str:
    return json.dumps(export_rows(items), ensure_ascii=False, indent=2)


def export_xlsx(items: list[ItemView]) -> bytes:
    """One sheet 配置项 with the CSV's columns; every cell is text, never a formula."""
    from openpyxl import Workbook  # type: ignore[import-untyped]  # no stubs shipped

    book = Workbook()
    sheet = book.active
    sheet.title = "配置项"
    sheet.append(list(EXPORT_COLUMNS))
    for row in export_rows(items):
        sheet.append(_cells(row))
    for line in sheet.iter_rows(min_row=2):
        for cell in line:
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"  # openpyxl would store "=..." as a formula a spreadsheet runs
    sheet.freeze_panes = "B2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
