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

from engine.configuration.records import ItemRecord, class_label, parse, system_class_label
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

    def _check(self, s: Session, records: list[ItemRecord], existing: dict[str, ConfigItem]) -> list[FieldError]:
        problems = []
        names = {r.name for r in records} | set(existing)
        roles = set(s.scalars(select(Role.key)))
        known_markets: Collection[str] | None = None
        for r in records:
            for kind, target in sorted(r.relations):
                if target not in names:
                    problems.append(FieldError(r.row, f"{kind} names {target!r}, which is neither in the file nor "
                                                      "in the register"))
            if r.fields["owner_role"] and r.fields["owner_role"] not in roles:
                problems.append(FieldError(r.row, f"unknown owner_role {r.fields['owner_role']!r}"))
            if r.fields["markets"]:
                try:
                    known_markets = self.markets() if known_markets is None else known_markets
                except OSError as exc:  # no processes/calendar/sessions.json to check codes against
                    problems.append(FieldError(r.row, f"markets cannot be checked: no trading calendar ({exc})"))
                    continue
                for market in r.fields["markets"]:
                    if market not in known_markets:
                        problems.append(FieldError(r.row, f"unknown market {market!r} (the trading calendar knows: "
                                                          f"{', '.join(sorted(known_markets))})"))
        return problems

    def _apply(self, s: Session, records: list[ItemRecord], existing: dict[str, ConfigItem],
               actor: str) -> ImportSummary:
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
            changed = {k: {"from": getattr(row, k), "to": v} for k, v in r.fields.items() if getattr(row, k) != v}
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
                self.audit.record(s, actor, "ci.created", data={"name": r.name, "fields": changes[r.name]})
                summary.created.append(r.name)
            elif changes[r.name]:
                rows[r.name].updated_at, rows[r.name].updated_by = now, actor
                self.audit.record(s, actor, "ci.updated", data={"name": r.name, "changes": changes[r.name]})
                summary.updated.append(r.name)
            else:
                summary.unchanged.append(r.name)
        return summary

    def list_items(self, search: str | None = None) -> list[ItemView]:
        """Every item by name, with its relations; `search` keeps those whose text contains it."""
        with self.ctx.db.read() as s:
            items = list(s.scalars(select(ConfigItem).order_by(ConfigItem.name)))
            names = {i.id: i.name for i in items}
            related: dict[tuple[int, str], list[str]] = {}
            for rel in s.scalars(select(ConfigItemRelation)):
                related.setdefault((rel.from_id, rel.kind), []).append(names[rel.to_id])
            views = [ItemView(i.id, i.name, i.core, class_label(i.core), i.system_class,
                              system_class_label(i.system_class), i.category, list(i.markets), i.environment,
                              i.owner_role, i.maintainer_a, i.maintainer_b, i.vendor, i.version, i.status,
                              sorted(related.get((i.id, "depends_on"), [])), sorted(related.get((i.id, "runs_on"), [])),
                              i.updated_at, i.updated_by) for i in items]
        return [v for v in views if v.matches(search)] if search else views


def _relations(relations: Collection[tuple[str, str]]) -> dict[str, list[str]]:
    return {kind: sorted(t for k, t in relations if k == kind) for kind in sorted({k for k, _ in relations})}
