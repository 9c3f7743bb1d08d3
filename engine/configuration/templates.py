"""The standard-change catalogue (标准变更模板, issue 16 item 3): templates an ops manager and the IT head
approve in a standard_change_template case, each bound to register items, with its steps and rollback
plan and a validity after which it expires until renewed (a new version) or retired.

A change is standard only when it cites an active template, within its validity, that covers every
system it touches, and never when a core system's rollback is untested (`check_standard_change`).
Every activation, expiry and retirement is an audit event with the case (template.activated ...),
so the audit trail is a template's history and the row its present state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.context import EngineContext
from engine.errors import BadRequest, NotFound
from engine.people.identity import IdentityService
from engine.spiff.timers import duration_from, parse_iso_duration
from engine.storage.audit import AuditService
from engine.storage.models import ConfigItem, HumanTask, ProcessInstance, StandardChangeTemplate

DRAFT, ACTIVE, EXPIRED, RETIRED = "草稿", "生效", "过期", "停用"
STATUSES = (DRAFT, ACTIVE, EXPIRED, RETIRED)
REVIEW_BEFORE = timedelta(days=30)  # the ops manager reviews a template this long before it expires
MAX_VALIDITY = timedelta(days=3 * 366)  # a template is reviewed at least every three years
CORE_UNTESTED = "核心系统的回退方案未经测试，不得按标准变更实施"


@dataclass(frozen=True)
class TemplateView:
    """A template as the catalogue page and the cases show it, its systems named from the register."""

    id: int
    code: str
    title: str
    systems: list[dict[str, Any]]  # {id, name, core} of each bound item
    steps: list[str]
    rollback_plan: str
    rollback_tested: bool
    status: str
    valid_from: datetime | None
    valid_until: datetime | None
    version: int
    approved_by_ops: str | None
    approved_by_it_head: str | None
    instance_id: int | None
    updated_at: datetime
    updated_by: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ids(values: Any) -> list[int] | None:
    """A list of register ids, or None when it is not one."""
    if not isinstance(values, list):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    return list(dict.fromkeys(values))


class StandardChangeCatalogue:
    def __init__(self, ctx: EngineContext, audit: AuditService) -> None:
        self.ctx = ctx
        self.audit = audit

    # reading -------------------------------------------------------------------------------------------
    def list_templates(self, status: str | None = None) -> list[TemplateView]:
        """Every template by code; `status` keeps those in that state."""
        with self.ctx.db.read() as s:
            query = select(StandardChangeTemplate).order_by(StandardChangeTemplate.code)
            if status:
                query = query.where(StandardChangeTemplate.status == status)
            return [self._view(s, t) for t in s.scalars(query)]

    def get(self, template_id: int) -> TemplateView:
        with self.ctx.db.read() as s:
            row = s.get(StandardChangeTemplate, template_id)
            if row is None:
                raise NotFound(f"no standard-change template with id {template_id}")
            return self._view(s, row)

    @staticmethod
    def _view(s: Session, t: StandardChangeTemplate) -> TemplateView:
        items = {i.id: i for i in s.scalars(select(ConfigItem).where(ConfigItem.id.in_(t.system_ids or [])))}
        systems = [{"id": i, "name": items[i].name if i in items else f"#{i}", "core": bool(items[i].core)
                    if i in items else False} for i in t.system_ids]
        return TemplateView(t.id, t.code, t.title, systems, list(t.steps), t.rollback_plan, t.rollback_tested,
                            t.status, t.valid_from, t.valid_until, t.version, t.approved_by_ops,
                            t.approved_by_it_head, t.instance_id, t.updated_at, t.updated_by)

    # the rule a change is held to ------------------------------------------------------------------------
    def check_standard_change(self, template_id: Any, systems: Any, rollback_tested: Any) -> dict[str, Any]:
        """Whether a change touching `systems` (register ids) may be implemented as standard under the
        template `template_id`: {"ok", "reason"}, the reason in Chinese for the requester."""
        if template_id in (None, ""):
            return {"ok": False, "reason": "标准变更须引用一个生效的标准变更模板"}
        try:
            wanted = int(template_id)
        except (TypeError, ValueError):
            return {"ok": False, "reason": f"标准变更模板编号 {template_id!r} 无效"}
        picked = _ids(systems)
        if not picked:
            return {"ok": False, "reason": "标准变更须选择所涉系统"}
        with self.ctx.db.read() as s:
            t = s.get(StandardChangeTemplate, wanted)
            if t is None:
                return {"ok": False, "reason": f"标准变更模板 {wanted} 不存在"}
            label = f"标准变更模板 {t.code}（{t.title}）"
            if t.status != ACTIVE:
                return {"ok": False, "reason": f"{label}状态为{t.status}，未生效"}
            if t.valid_until is not None and self.ctx.now() >= t.valid_until:
                return {"ok": False, "reason": f"{label}已于 {self._day(t.valid_until)} 到期，须复审续期后方可引用"}
            items = {i.id: i for i in s.scalars(select(ConfigItem).where(ConfigItem.id.in_(picked)))}
            uncovered = [items[i].name if i in items else f"#{i}" for i in picked if i not in set(t.system_ids)]
            if uncovered:
                return {"ok": False, "reason": f"{label}不适用于：{'、'.join(uncovered)}"}
            if not rollback_tested and any(items[i].core for i in picked if i in items):
                return {"ok": False, "reason": CORE_UNTESTED}
        return {"ok": True, "reason": ""}

    def check_proposal(self, systems: Any, rollback_tested: Any, validity: Any) -> dict[str, Any]:
        """A proposed template, before anyone approves it: a core system with an untested rollback is
        never standard, and the validity is a duration of at most three years."""
        picked = _ids(systems)
        if not picked:
            return {"ok": False, "reason": "须选择模板适用的系统"}
        problems = []
        with self.ctx.db.read() as s:
            core = [i.name for i in s.scalars(select(ConfigItem).where(ConfigItem.id.in_(picked), ConfigItem.core))]
        if core and not rollback_tested:
            problems.append(f"{'、'.join(sorted(core))}为核心系统，回退方案未经测试的不得作为标准变更模板")
        try:
            self._until(self.ctx.now(), validity)
        except ValueError as exc:
            problems.append(str(exc))
        return {"ok": not problems, "reason": "；".join(problems)}

    # a case changes the catalogue ----------------------------------------------------------------------
    def activate(self, instance_id: int, by: str, *, title: Any, systems: Any, steps: Any, rollback_plan: Any,
                 rollback_tested: Any, validity: Any, approved_by_ops: str | None, approved_by_it_head: str | None,
                 template_id: Any = None) -> dict[str, Any]:
        """Activate a new template (`template_id` None) or renew one (its next version, a new validity from
        now), in the case's transaction, audited template.activated as `by` with the case."""
        now = self.ctx.now()
        until = self._until(now, validity)
        picked = _ids(systems) or []
        with self.ctx.db.transaction() as s:
            if template_id in (None, ""):
                row = StandardChangeTemplate(
                    code="", title=str(title or "").strip()[:256], system_ids=picked,
                    steps=[str(x) for x in (steps or [])], rollback_plan=str(rollback_plan or ""),
                    rollback_tested=bool(rollback_tested), status=ACTIVE, version=1, created_at=now, created_by=by,
                    updated_at=now, updated_by=by)
                s.add(row)
                s.flush()
                row.code = f"SC-{row.id:04d}"  # numbered by the catalogue, never typed by a proposer
            else:
                row = self._row(s, template_id)
                row.version += 1
            row.status, row.valid_from, row.valid_until = ACTIVE, now, until
            row.approved_by_ops, row.approved_by_it_head, row.instance_id = approved_by_ops, approved_by_it_head, \
                instance_id
            row.updated_at, row.updated_by = now, by
            s.flush()
            self.audit.record(s, by, "template.activated", instance_id=instance_id, data={
                "template_id": row.id, "code": row.code, "version": row.version, "title": row.title,
                "system_ids": list(row.system_ids), "valid_from": now.isoformat(), "valid_until": until.isoformat(),
                "approved_by_ops": approved_by_ops, "approved_by_it_head": approved_by_it_head})
            return {"ok": True, "reason": "", "template_id": row.id, "code": row.code, "version": row.version,
                    "valid_from": now.isoformat(), "valid_until": until.isoformat(),
                    "review_at": max(now, until - REVIEW_BEFORE).isoformat()}

    def expire(self, instance_id: int, by: str, template_id: Any) -> dict[str, Any]:
        """Mark an active template past its validity 过期 (audited once); otherwise leave it as it is."""
        with self.ctx.db.transaction() as s:
            row = self._row(s, template_id)
            if row.status == ACTIVE and row.valid_until is not None and self.ctx.now() >= row.valid_until:
                row.status, row.updated_at, row.updated_by = EXPIRED, self.ctx.now(), by
                self.audit.record(s, by, "template.expired", instance_id=instance_id, data={
                    "template_id": row.id, "code": row.code, "version": row.version,
                    "valid_until": row.valid_until.isoformat()})
            return {"status": row.status, "code": row.code}

    def retire(self, instance_id: int, by: str, template_id: Any, reason: Any = None) -> dict[str, Any]:
        """Retire a template on review (停用): no change may cite it again; audited template.retired."""
        with self.ctx.db.transaction() as s:
            row = self._row(s, template_id)
            if row.status != RETIRED:
                row.status, row.updated_at, row.updated_by = RETIRED, self.ctx.now(), by
                self.audit.record(s, by, "template.retired", instance_id=instance_id, data={
                    "template_id": row.id, "code": row.code, "version": row.version, "reason": str(reason or "")})
            return {"status": row.status, "code": row.code}

    @staticmethod
    def _row(s: Session, template_id: Any) -> StandardChangeTemplate:
        row = s.get(StandardChangeTemplate, int(template_id))
        if row is None:
            raise NotFound(f"no standard-change template with id {template_id}")
        return row

    def _until(self, start: datetime, validity: Any) -> datetime:
        try:
            span = duration_from(start, parse_iso_duration(str(validity)))
        except Exception:  # noqa: BLE001 (any parse failure: not a duration)
            raise ValueError(f"有效期 {validity!r} 不是 ISO 8601 期间（如 P1Y、P6M）") from None
        if span <= REVIEW_BEFORE or span > MAX_VALIDITY:
            raise ValueError(f"有效期 {validity} 须长于 30 天、不超过 3 年")
        return start + span

    def _day(self, moment: datetime) -> str:
        return moment.astimezone(self.ctx.zone).strftime("%Y-%m-%d %H:%M")


class StandardChangeServices:
    """The catalogue as BPMN service tasks call it (engine/cases/connectors.py), inside a case: plain
    JSON in and out, the case and the user whose action runs the step taken from the engine context."""

    def __init__(self, ctx: EngineContext, identity: IdentityService, audit: AuditService | None = None) -> None:
        self.ctx = ctx
        self.identity = identity
        self.catalogue = StandardChangeCatalogue(ctx, audit or AuditService(ctx))

    def services(self) -> dict[str, Callable[..., Any]]:
        return {"check_standard_change": self.check_standard_change,
                "template_proposer": self.template_proposer,
                "check_template_proposal": self.check_template_proposal,
                "activate_standard_template": self.activate_standard_template,
                "expire_standard_template": self.expire_standard_template,
                "retire_standard_template": self.retire_standard_template}

    def _current(self) -> tuple[int, str]:
        current = self.ctx.current_case.get()
        if current is None:
            raise BadRequest("this service can only run inside a case")
        return current

    def check_standard_change(self, template_id: int | None, systems: list[int],
                              rollback_tested: bool) -> dict[str, Any]:
        """{"ok", "reason"}: whether a change of `systems` may follow template `template_id` as standard."""
        return self.catalogue.check_standard_change(template_id, systems, rollback_tested)

    def template_proposer(self, roles: list[str]) -> dict[str, Any]:
        """Whether the case's starter holds one of `roles` (who may propose a template): {"ok", "reason"}."""
        case_id, _user = self._current()
        with self.ctx.db.read() as s:
            starter = s.scalar(select(ProcessInstance.started_by).where(ProcessInstance.id == case_id))
        user = self.identity.find(str(starter))
        if user is None or not any(user.has_role(r) for r in roles):
            return {"ok": False, "reason": f"{starter} 不具备提出标准变更模板的角色（{'、'.join(roles)}）"}
        return {"ok": True, "reason": ""}

    def check_template_proposal(self, systems: Any, rollback_tested: Any, validity: Any) -> dict[str, Any]:
        """The proposal checked before anyone approves it: {"ok", "reason"}."""
        self._current()
        return self.catalogue.check_proposal(systems, rollback_tested, validity)

    def activate_standard_template(self, title: Any, systems: Any, steps: Any, rollback_plan: Any,
                                   rollback_tested: Any, validity: Any, ops_step: str, it_head_step: str,
                                   template_id: Any = None) -> dict[str, Any]:
        """Activate (or renew) the template this case approved; the approvers are who completed
        `ops_step` and `it_head_step` in this case last."""
        case_id, username = self._current()
        with self.ctx.db.read() as s:
            performers = {step: s.scalar(select(HumanTask.completed_by).where(
                HumanTask.instance_id == case_id, HumanTask.bpmn_id == step, HumanTask.state == "completed")
                .order_by(HumanTask.completed_at.desc()).limit(1)) for step in (ops_step, it_head_step)}
        return self.catalogue.activate(case_id, username, title=title, systems=systems, steps=steps,
                                       rollback_plan=rollback_plan, rollback_tested=rollback_tested,
                                       validity=validity, approved_by_ops=performers[ops_step],
                                       approved_by_it_head=performers[it_head_step], template_id=template_id)

    def expire_standard_template(self, template_id: Any) -> dict[str, Any]:
        case_id, username = self._current()
        return self.catalogue.expire(case_id, username, template_id)

    def retire_standard_template(self, template_id: Any, reason: Any = None) -> dict[str, Any]:
        case_id, username = self._current()
        return self.catalogue.retire(case_id, username, template_id, reason)
