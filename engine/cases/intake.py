"""Monitoring alert intake (JR/T 0099 §5.3 监控分析): an alert opens, updates or notes an incident case.

A new (source, fingerprint) opens an `incident` case on its monitoring path, graded by the
incident DMNs from the severity; a repeat while that case runs is appended to it; a resolved
alert is noted on it. A retry of the alert last received (same status, same occurrence time) is
recognised and changes nothing, so monitoring may resend freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.cases.runtime import RuntimeService
from engine.configuration import picker
from engine.configuration.records import CATEGORIES
from engine.context import EngineContext
from engine.definitions.repository import RepositoryService
from engine.errors import BadRequest, Conflict, Forbidden, NotFound
from engine.people.access import AccessPolicy
from engine.people.identity import Actor
from engine.storage.audit import AuditService
from engine.storage.models import Alert, AlertOccurrence, ProcessInstance

INCIDENT_PROCESS = "incident"
STATUSES = ("firing", "resolved")
# severity -> (impact, urgency): the incident_grading DMN turns these into a priority.
SEVERITIES: dict[str, tuple[str, str]] = {
    "critical": ("high", "high"),     # P1
    "major": ("high", "medium"),      # P2
    "minor": ("medium", "medium"),    # P3
    "warning": ("medium", "low"),     # P4
    "info": ("low", "low"),           # P4
}
OTHER_CLASS = "其他"


@dataclass(frozen=True)
class AlertOutcome:
    action: str  # opened | appended | resolved
    duplicate: bool  # a retry of the alert last received: nothing changed
    alert_id: int
    instance_id: int
    status: str
    occurrences: int


class AlertService:
    def __init__(self, ctx: EngineContext, repository: RepositoryService, runtime: RuntimeService,
                 audit: AuditService, access: AccessPolicy) -> None:
        self.ctx = ctx
        self.access = access
        self.repository = repository
        self.runtime = runtime
        self.audit = audit

    def receive(self, actor: Actor, *, source: str, fingerprint: str, status: str, severity: str,
                system: str, text: str, occurred_at: datetime | None = None,
                system_class: str | None = None) -> AlertOutcome:
        """Open, append to or note on the incident case of this alert; idempotent under retries.

        Only alert sources (the alerts.post grant) post, and each account speaks only for its own
        alerts: another account cannot append to or resolve them.
        """
        self.access.require(actor, "alerts.post", "post monitoring alerts")
        source, fingerprint, system = source.strip(), fingerprint.strip(), system.strip()
        if not source or not fingerprint or not system:
            raise BadRequest("an alert needs a source, a fingerprint and an affected system")
        if status not in STATUSES:
            raise BadRequest(f"unknown alert status {status!r} ({', '.join(STATUSES)})")
        if severity not in SEVERITIES:
            raise BadRequest(f"unknown severity {severity!r} ({', '.join(SEVERITIES)})")
        if occurred_at is not None:
            occurred_at = (occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=self.ctx.zone))
            occurred_at = occurred_at.astimezone(UTC)
        receive = partial(self._receive, actor, source=source, fingerprint=fingerprint, status=status,
                          severity=severity, system=system, text=text.strip(), occurred_at=occurred_at,
                          system_class=system_class)
        try:
            return receive()
        except IntegrityError:
            # The same new alert arrived twice at once and the other request opened the case first.
            try:
                return receive()
            except IntegrityError:
                raise Conflict(f"alert {fingerprint!r} from {source!r} is being received concurrently; "
                               f"retry") from None

    def occurrences(self, instance_id: int) -> list[AlertOccurrence]:
        with self.ctx.db.transaction() as s:
            return list(s.scalars(select(AlertOccurrence).where(AlertOccurrence.instance_id == instance_id)
                                  .order_by(AlertOccurrence.id)))

    # -------------------------------------------------------------------------------------------
    def _receive(self, actor: Actor, *, source: str, fingerprint: str, status: str, severity: str,
                 system: str, text: str, occurred_at: datetime | None,
                 system_class: str | None) -> AlertOutcome:
        with self.ctx.db.transaction() as s:
            alert = s.scalars(select(Alert).where(Alert.source == source, Alert.fingerprint == fingerprint)
                              .with_for_update()).first()
            now = self.ctx.now()
            last = None
            if alert is not None:
                owner = s.scalars(select(AlertOccurrence.received_by).where(AlertOccurrence.alert_id == alert.id)
                                  .order_by(AlertOccurrence.id).limit(1)).first()
                if owner is not None and owner != actor.username:
                    raise Forbidden(f"alert {fingerprint!r} from {source!r} was raised by {owner}; "
                                    f"{actor.username} may not append to or resolve it", rule="alert_source")
                last = s.scalars(select(AlertOccurrence).where(AlertOccurrence.alert_id == alert.id)
                                 .order_by(AlertOccurrence.id.desc()).limit(1)).first()
                if last is not None and last.status == status and (occurred_at is None
                                                                   or last.occurred_at == occurred_at):
                    return self._outcome(s, alert, last.action, duplicate=True)
            if status == "resolved":
                if alert is None:
                    raise NotFound(f"no alert {fingerprint!r} from {source!r} was received; nothing to resolve")
                action = "resolved"
            else:
                case = s.get(ProcessInstance, alert.instance_id) if alert is not None else None
                action = "appended" if case is not None and case.status == "running" else "opened"
            if action == "opened":
                data = self._case_data(s, source, fingerprint, severity, system, text, occurred_at or now, system_class)
                row = self.runtime.start(INCIDENT_PROCESS, actor, data,
                                         business_key=f"alert:{source}:{fingerprint}"[:128],
                                         check_role=False)  # alerts.post grants it
                if alert is None:
                    alert = Alert(source=source, fingerprint=fingerprint, instance_id=row.id, status=status,
                                  severity=severity, system=system[:128], first_seen_at=now, last_seen_at=now)
                    s.add(alert)
                    s.flush()  # a concurrent twin fails here, on the unique (source, fingerprint)
                alert.instance_id = row.id
            assert alert is not None  # resolved and appended need one; opened made one
            alert.status, alert.severity, alert.last_seen_at = status, severity, now
            s.add(AlertOccurrence(alert_id=alert.id, instance_id=alert.instance_id, status=status, severity=severity,
                                  text=text, occurred_at=occurred_at, received_at=now,
                                  received_by=actor.username, action=action))
            self.audit.record(s, actor.username, f"alert.{action}", instance_id=alert.instance_id,
                              data={"source": source, "fingerprint": fingerprint, "status": status,
                                    "severity": severity, "system": system, "text": text,
                                    "occurred_at": occurred_at.isoformat() if occurred_at else None})
            s.flush()
            return self._outcome(s, alert, action, duplicate=False)

    def _outcome(self, s: Any, alert: Alert, action: str, duplicate: bool) -> AlertOutcome:
        count = len(list(s.scalars(select(AlertOccurrence.id).where(
            AlertOccurrence.alert_id == alert.id, AlertOccurrence.instance_id == alert.instance_id))))
        return AlertOutcome(action, duplicate, alert.id, alert.instance_id, alert.status, count)

    def _case_data(self, s: Session, source: str, fingerprint: str, severity: str, system: str, text: str,
                   discovered_at: datetime, system_class: str | None) -> dict[str, Any]:
        """The case an alert opens. A system in the register is graded as the register says (its
        category and 2021 class); the alert's own `system_class` counts only for a system it lacks."""
        if system_class is not None and system_class not in CATEGORIES:
            raise BadRequest(f"unknown system class {system_class!r} ({', '.join(CATEGORIES)})")
        impact, urgency = SEVERITIES[severity]
        summary = text.splitlines()[0] if text else severity
        registered = picker.items_named(s, [system])
        case = self._alert_case(source, fingerprint, severity, summary, system, text, discovered_at, impact, urgency)
        if registered:  # the engine fills in what the register says of it (engine/configuration/picker.py)
            return {**case, "systems": [i.id for i in registered]}
        return {**case, "system_class": system_class or (system if system in CATEGORIES else OTHER_CLASS)}

    def _alert_case(self, source: str, fingerprint: str, severity: str, summary: str, system: str, text: str,
                    discovered_at: datetime, impact: str, urgency: str) -> dict[str, Any]:
        return {
            "source": "monitoring",  # the incident process's path for cases opened by monitoring
            "title": f"监控告警：{system} {summary}"[:200],
            "description": text or summary,
            "affected_systems": [system],
            "discovered_at": discovered_at.astimezone(self.ctx.zone).isoformat(),
            "impact": impact,
            "urgency": urgency,
            "outage_minutes": 0,
            "alert": {"source": source, "fingerprint": fingerprint, "severity": severity},
        }
