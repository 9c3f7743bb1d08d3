"""The periodic review of the register (配置项核对, JR/T 0099-2012 §6.4.5; processes/ci_reconcile.bpmn): each
run hands every owner role the items in service it owns, as the register records them, to confirm or to
note what differs. What was confirmed is the case's record; nothing here changes the register (a
discrepancy is corrected through the config_item process).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from engine.configuration.records import IN_SERVICE, class_label
from engine.context import EngineContext
from engine.people.identity import IdentityService
from engine.storage.models import ConfigItem


class RegisterReview:
    def __init__(self, ctx: EngineContext, identity: IdentityService) -> None:
        self.ctx = ctx
        self.identity = identity

    def services(self) -> dict[str, Callable[..., Any]]:
        return {"register_owners": self.register_owners}

    def register_owners(self) -> list[dict[str, Any]]:
        """Per owner role (by key), its name and its items in service as recorded now, by name: one
        review each (a multi-instance task over this list)."""
        names = {r.key: r.name_zh for r in self.identity.roles()}
        owners: dict[str, list[dict[str, Any]]] = {}
        with self.ctx.db.read() as s:
            for i in s.scalars(select(ConfigItem).where(ConfigItem.status.in_(IN_SERVICE)).order_by(ConfigItem.name)):
                owners.setdefault(i.owner_role, []).append({
                    "id": i.id, "name": i.name, "class_label": class_label(i.core), "environment": i.environment,
                    "version": i.version, "status": i.status, "maintainer_a": i.maintainer_a,
                    "maintainer_b": i.maintainer_b, "vendor": i.vendor})
        return [{"role": role, "role_name": names.get(role, role) if role else "未指定归属角色", "items": items}
                for role, items in sorted(owners.items())]
