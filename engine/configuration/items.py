"""The configuration items register (配置项, issue 16): import a file of items and their relations,
list and search them. Every created or changed item is an audit event naming the changed fields
(ci.created, ci.updated), so the audit trail is the item's history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from engine.configuration.records import (
    KINDS,
    ItemRecord,
    class_label,
    parse,
    parse_row,
    problem,
    system_class_label,
)
from engine.context import EngineContext
from engine.errors import FieldError, ValidationFailed
from engine.people.access import AccessPolicy
from engine.people.identity import Actor
from engine.storage.audit import AuditService
from engine.storage.models import ConfigItem, ConfigItemRelation, Role

COLUMNS = ("core", "system_class", "category", "markets", "environment", "owner_role", "maintainer_a", "maintainer_b",
           "vendor", "version", "status")


@dataclass(frozen=True)
class ItemView:
    """An item as a list or a page shows it, with the names of the items it depends on and runs on."""

    id: int
    name: str
    core: bool
    class_label: str
    system_class: int | None
    system_class_label: str | None
    category: str
    markets: list[str]
    environment: str
    owner_role: str
    maintainer_a: str
    maintainer_b: str
    vendor: str
    version: str
    status: str
    depends_on: list[str]
    runs_on: list[str]
    updated_at: datetime
    updated_by: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_row(self) -> dict[str, Any]:
        """The item as a row of an import file (an export, a request's fields to overlay): parse_row reads it."""
        return {"name": self.name, "class": self.class_label, "system_class": self.system_class_label,
                "category": self.category, "markets": list(self.markets), "environment": self.environment,
                "owner_role": self.owner_role, "maintainer_a": self.maintainer_a, "maintainer_b": self.maintainer_b,
                "vendor": self.vendor, "version": self.version, "status": self.status,
                "depends_on": list(self.depends_on), "runs_on": list(self.runs_on)}

    def matches(self, text: str) -> bool:
        needle = text.strip().lower()
        return any(needle in str(v).lower() for v in (
            self.name, self.class_label, self.system_class_label or "", self.category, " ".join(self.markets),
            self.environment, self.owner_role, self.maintainer_a, self.maintainer_b, self.vendor, self.version,
            self.status))


@dataclass
class ImportSummary:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # in the register, not in the file: never deleted by an import


@dataclass
class _Request:
    """A case's request for one item, checked against the register."""

    action: str
    item_id: int | None
    existing: dict[str, ConfigItem]  # the register by name, as the request would leave it
    record: ItemRecord | None = None
    problems: list[FieldError] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)

    def refused(self, reason: str) -> _Request:
        self.problems.append(FieldError("", reason))
        return self

    def answer(self) -> dict[str, Any]:
        reason = "；".join(f"{p.field}：{p.message}" if p.field else p.message for p in self.problems)
        return {"ok": not self.problems, "reason": reason, "action": self.action, "item_id": self.item_id,
                "name": self.record.name if self.record else None, "changes": {} if self.problems else self.changes}


class ConfigurationService:
    def __init__(self, ctx: EngineContext, audit: AuditService, access: AccessPolicy,
                 markets: Callable[[], Collection[str]]) -> None:
        self.ctx = ctx
        self.audit = audit
        self.access = access
        self.markets = markets  # the market codes the trading calendar knows

    def import_items(self, by: Actor | str, text: str, file_name: str) -> ImportSummary:
        """Create or update the file's items and relations in one transaction, or nothing at all.

        `by` is a user, held to ci.manage, or the name of the operator at the shell (`opsflow ci
        import` without --as), who runs the installation. Problems are collected for every row and
        refused together (ValidationFailed, each naming its row). Items absent from the file stay.
        """
        if isinstance(by, Actor):
            self.access.require(by, "ci.manage", "import configuration items")
        actor = by.username if isinstance(by, Actor) else by
        records, problems = parse(text, file_name)
        with self.ctx.db.transaction() as s:
            existing = {row.name: row for row in s.scalars(select(ConfigItem))}
            problems += self._check(s, records, existing)
            if problems:
                raise ValidationFailed(f"{file_name}: {len(problems)} problem(s); nothing imported", problems)
            summary = self._apply(s, records, existing, actor)
            self.audit.record(s, actor, "ci.imported", data={
                "file": file_name, "sha256": hashlib.sha256(text.encode()).hexdigest(), **asdict(summary)})
        return summary

    def _check(self, s: Session, records: list[ItemRecord], existing: dict[str, ConfigItem],
               zh: bool = False) -> list[FieldError]:
        problems = []
        names = {r.name for r in records} | set(existing)
        roles = set(s.scalars(select(Role.key)))
        known_markets: Collection[str] | None = None
        for r in records:
            for kind, target in sorted(r.relations):
                if target not in names:
                    problems.append(problem(r.row, "unknown_target", zh, key=kind, target=target))
            if r.fields["owner_role"] and r.fields["owner_role"] not in roles:
                problems.append(problem(r.row, "unknown_owner_role", zh, value=r.fields["owner_role"]))
            if r.fields["markets"]:
                try:
                    known_markets = self.markets() if known_markets is None else known_markets
                except OSError as exc:  # no processes/calendar/sessions.json to check codes against
                    problems.append(problem(r.row, "no_calendar", zh, error=exc))
                    continue
                for market in r.fields["markets"]:
                    if market not in known_markets:
                        problems.append(problem(r.row, "unknown_market", zh, value=market,
                                                choices=sorted(known_markets)))
        return problems

    def _apply(self, s: Session, records: list[ItemRecord], existing: dict[str, ConfigItem],
               actor: str, instance_id: int | None = None) -> ImportSummary:
        """`existing` by the name each record gives (a renamed item under its new name); `instance_id`:
        the case that asked for the change, on its audit events."""
        now = self.ctx.now()
        changes: dict[str, dict[str, Any]] = {}
        created: set[str] = set()
        rows = dict(existing)
        for r in records:
            row = existing.get(r.name)
            if row is None:
                row = ConfigItem(name=r.name, **r.fields, created_at=now, created_by=actor, updated_at=now,
                                 updated_by=actor)
                s.add(row)
                rows[r.name] = row
                created.add(r.name)
                changes[r.name] = dict(r.fields)
                continue
            changed = {k: {"from": getattr(row, k), "to": v} for k, v in {"name": r.name, **r.fields}.items()
                       if getattr(row, k) != v}
            for k, change in changed.items():
                setattr(row, k, change["to"])
            changes[r.name] = changed
        s.flush()
        names = {row.id: name for name, row in rows.items()}
        current: dict[str, set[tuple[str, str]]] = {name: set() for name in rows}
        for rel in s.scalars(select(ConfigItemRelation)):
            current[names[rel.from_id]].add((rel.kind, names[rel.to_id]))
        for r in records:
            if r.relations == current[r.name]:
                continue
            s.execute(delete(ConfigItemRelation).where(ConfigItemRelation.from_id == rows[r.name].id))
            s.add_all(ConfigItemRelation(from_id=rows[r.name].id, to_id=rows[target].id, kind=kind)
                      for kind, target in sorted(r.relations))
            if r.name in created:
                changes[r.name]["relations"] = _relations(r.relations)
            else:
                changes[r.name]["relations"] = {"from": _relations(current[r.name]), "to": _relations(r.relations)}
        summary = ImportSummary(kept=sorted(set(existing) - {r.name for r in records}))
        for r in records:
            if r.name in created:
                self.audit.record(s, actor, "ci.created", instance_id=instance_id,
                                  data={"name": r.name, "fields": changes[r.name]})
                summary.created.append(r.name)
            elif changes[r.name]:
                self._record_update(s, rows[r.name], actor, changes[r.name], instance_id)
                summary.updated.append(r.name)
            else:
                summary.unchanged.append(r.name)
        return summary

    def _record_update(self, s: Session, row: ConfigItem, actor: str, changes: dict[str, Any],
                       instance_id: int | None) -> None:
        """Stamp a changed item and audit it (ci.updated, each field from -> to): the item's history."""
        row.updated_at, row.updated_by = self.ctx.now(), actor
        self.audit.record(s, actor, "ci.updated", instance_id=instance_id,
                          data={"name": row.name, "changes": changes})

    # versions a change brought (6.4 配置项更新, processes/change.bpmn) -------------------------------------
    def update_versions(self, by: str, instance_id: int, versions: Any) -> dict[str, Any]:
        """Set each item to the version a closed change brought, in the case's transaction, audited as
        `by` (whose action closed the change) with the case id.

        `versions`: [{system: item id, version}]. The `from` is the item's version now, not the one it
        had when the change was asked for: if someone changed it meanwhile, the history says so. An item
        already at the version is left alone; one gone from the register is listed as missing.
        """
        rows = versions if isinstance(versions, list) else []
        answer: dict[str, list[Any]] = {"updated": [], "unchanged": [], "missing": []}
        with self.ctx.db.transaction() as s:
            for row in rows:
                item_id = row.get("system") if isinstance(row, dict) else None
                version = str(row.get("version") or "").strip() if isinstance(row, dict) else ""
                item = (s.get(ConfigItem, item_id, with_for_update=True)
                        if isinstance(item_id, int) and not isinstance(item_id, bool) else None)
                if item is None or not version:
                    answer["missing"].append(item_id)
                    continue
                if item.version == version:
                    answer["unchanged"].append({"item_id": item.id, "name": item.name, "version": version})
                    continue
                change = {"from": item.version, "to": version}
                item.version = version
                self._record_update(s, item, by, {"version": change}, instance_id)
                answer["updated"].append({"item_id": item.id, "name": item.name, **change})
        return answer

    # one item, asked for by a case (processes/config_item.bpmn) ----------------------------------------
    def check_request(self, action: Any, item_id: Any, item: Any) -> dict[str, Any]:
        """Whether a case's request would register as the register stands now; nothing is written.

        `action` "create" (a new item, `item` its fields) or "update" (item `item_id`; the fields `item`
        gives replace its own, the others stay). The answer: {ok, reason, item_id, name, changes}, the
        reason in Chinese for the requester the case goes back to.
        """
        with self.ctx.db.transaction() as s:
            return self._requested(s, action, item_id, item).answer()

    def register_request(self, by: Actor, instance_id: int, action: Any, item_id: Any, item: Any) -> dict[str, Any]:
        """Create or change the one item a case asks for, with its relations, in the case's transaction,
        audited as `by` (the config manager who approved it) with the case; a problem the requester can
        fix (a name taken, an unknown market) is `ok: false` with the reason, and nothing is written."""
        self.access.require(by, "ci.manage", "register a configuration item")
        with self.ctx.db.transaction() as s:
            request = self._requested(s, action, item_id, item)
            if request.record is None or request.problems:
                return request.answer()
            self._apply(s, [request.record], request.existing, by.username, instance_id)
            registered = s.scalars(select(ConfigItem).where(ConfigItem.name == request.record.name)).one()
            request.item_id = registered.id
        return request.answer()

    def _requested(self, s: Session, action: Any, item_id: Any, item: Any) -> _Request:
        existing = {row.name: row for row in s.scalars(select(ConfigItem))}
        request = _Request(action=str(action), item_id=None, existing=existing)
        if action not in ("create", "update"):
            return request.refused(f"申请类型 {action!r} 无效（create 新增 或 update 变更）")
        if item is not None and not isinstance(item, dict):
            return request.refused("配置项内容须为对象")
        # a field left empty is not asked for: a new item takes the default, a changed one keeps its value
        given = {k: v for k, v in (item or {}).items() if v is not None}
        current: ConfigItem | None = None
        if action == "update":
            try:
                request.item_id = int(item_id)
            except (TypeError, ValueError):
                return request.refused("变更已登记的配置项须填写配置项编号")
            current = s.get(ConfigItem, request.item_id)
            if current is None:
                return request.refused(f"配置项登记册中没有编号为 {request.item_id} 的配置项")
            before = self._as_row(s, current, {row.id: name for name, row in existing.items()})
            given = {**before, **given}
            request.existing = {name: row for name, row in existing.items() if row.id != current.id}
        elif item_id not in (None, ""):
            return request.refused("新增配置项不填配置项编号（修改已登记的配置项请选择“变更”）")
        record, problems = parse_row(given)
        if record is not None:
            taken = request.existing.get(record.name)
            if taken is not None:
                problems.append(FieldError("", f"名称“{record.name}”已被配置项 {taken.id} 使用" + (
                    "（修改它请选择“变更”并填写其编号）" if current is None else "")))
            problems += self._check(s, [record], request.existing, zh=True)
        request.record, request.problems = record, problems
        if record is None or problems:
            return request
        if current is None:
            request.changes = {**record.fields, **_relations(record.relations)}
            return request
        request.existing = {**request.existing, record.name: current}
        old_relations = frozenset((kind, target) for kind in KINDS for target in before[kind])
        request.changes = {k: {"from": getattr(current, k), "to": v} for k, v in {"name": record.name, **record.fields}
                           .items() if getattr(current, k) != v}
        if old_relations != record.relations:
            request.changes["relations"] = {"from": _relations(old_relations), "to": _relations(record.relations)}
        if not request.changes:
            return request.refused(f"未提出任何变更：内容与登记册中的配置项 {current.id}（{current.name}）相同")
        return request

    @staticmethod
    def _as_row(s: Session, item: ConfigItem, names: dict[int, str]) -> dict[str, Any]:
        """An item as the row of an import file (what a request's fields overlay)."""
        related: dict[tuple[int, str], list[str]] = {}
        for rel in s.scalars(select(ConfigItemRelation).where(ConfigItemRelation.from_id == item.id)):
            related.setdefault((item.id, rel.kind), []).append(names[rel.to_id])
        return _view(item, related).as_row()

    def list_items(self, search: str | None = None) -> list[ItemView]:
        """Every item by name, with its relations; `search` keeps those whose text contains it."""
        with self.ctx.db.read() as s:
            items = list(s.scalars(select(ConfigItem).order_by(ConfigItem.name)))
            names = {i.id: i.name for i in items}
            related: dict[tuple[int, str], list[str]] = {}
            for rel in s.scalars(select(ConfigItemRelation)):
                related.setdefault((rel.from_id, rel.kind), []).append(names[rel.to_id])
            views = [_view(i, related) for i in items]
        return [v for v in views if v.matches(search)] if search else views


def _relations(relations: Collection[tuple[str, str]]) -> dict[str, list[str]]:
    return {kind: sorted(t for k, t in relations if k == kind) for kind in sorted({k for k, _ in relations})}


def _view(i: ConfigItem, related: dict[tuple[int, str], list[str]]) -> ItemView:
    """An item with the names of what it depends on and runs on (`related`: (item id, kind) -> names)."""
    return ItemView(i.id, i.name, i.core, class_label(i.core), i.system_class, system_class_label(i.system_class),
                    i.category, list(i.markets), i.environment, i.owner_role, i.maintainer_a, i.maintainer_b,
                    i.vendor, i.version, i.status, sorted(related.get((i.id, "depends_on"), [])),
                    sorted(related.get((i.id, "runs_on"), [])), i.updated_at, i.updated_by)
