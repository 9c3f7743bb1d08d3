"""OpsFlow's engine: a few services named after what users do (after Camunda's ProcessEngine).

    engine = ProcessEngine.from_env()
    engine.repository.deploy(...); engine.runtime.start(...); engine.tasks.complete(...)

Pure Python over SQLAlchemy, with the BPMN library kept behind engine/spiff/; never imports Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.cases.connectors import LibraryServices
from engine.cases.intake import AlertService
from engine.cases.migration import MigrationService
from engine.cases.progress import CaseProgress, case_progress
from engine.cases.regulatory import RegulatoryRegister
from engine.cases.reports import ReportService
from engine.cases.runtime import RuntimeService
from engine.cases.store import CaseStore
from engine.config import ROOT, Settings
from engine.configuration import ConfigurationService
from engine.configuration.templates import StandardChangeCatalogue
from engine.context import EngineContext, utc_now
from engine.definitions.calendar import CalendarService
from engine.definitions.documents import RegisterDocuments, seed_files
from engine.definitions.repository import RepositoryService
from engine.definitions.versions import VersionService
from engine.jobs.escalation import EscalationService
from engine.jobs.failures import FailureService
from engine.jobs.queue import JobService
from engine.jobs.timers import TimerService
from engine.people.access import AccessPolicy
from engine.people.identity import Actor, IdentityService
from engine.people.notify import NotifyService
from engine.people.substitutes import SubstituteService
from engine.storage.audit import AuditService
from engine.tasks.attachments import AttachmentService
from engine.tasks.service import TaskService


class ProcessEngine:
    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now,
                 functions: dict[str, Any] | None = None,
                 services: dict[str, Callable[..., Any]] | None = None) -> None:
        self.ctx = EngineContext(settings, clock, functions, services)
        self.audit = AuditService(self.ctx)
        # Every "may" beyond a task's lane, from processes/access.json (engine/people/access.py).
        self.access = AccessPolicy.load(_beside_roles(settings, "access.json"))
        self.identity = IdentityService(self.ctx, self.audit, self.access)
        # Forms, the trading calendar and registers edited in the browser: versioned rows every node reads.
        self.documents = RegisterDocuments(self.ctx, self.audit, self.access)
        self.repository = RepositoryService(self.ctx, self.identity, self.audit, self.access)
        self.repository.documents = self.documents
        self.store = CaseStore(self.ctx, self.repository, self.identity)
        self.runtime = RuntimeService(self.ctx, self.repository, self.identity, self.audit, self.store, self.access)
        self.tasks = TaskService(self.ctx, self.repository, self.identity, self.audit, self.store, self.access)
        self.reports = ReportService(self.ctx, self.store, self.access)
        # Regulatory reports (首报, 续报, 预警, 解除, 总结): the register and the printed 报告书.
        self.regulatory = RegulatoryRegister(self.ctx, self.repository, self.runtime, self.access)
        self.alerts = AlertService(self.ctx, self.repository, self.runtime, self.audit, self.access)
        self.migration = MigrationService(self.ctx, self.repository, self.store, self.audit, self.access)
        self.versions = VersionService(self.ctx, self.repository, self.audit)
        self.substitutes = SubstituteService(self.ctx, self.identity, self.audit, self.access)
        self.attachments = AttachmentService(self.ctx, self.audit, self.access)
        # Services BPMN service tasks may call (spiffworkflow:serviceTaskOperator id="...").
        self.ctx.environment.services.setdefault("start_case", self.runtime.start_linked_case)
        self.calendar = CalendarService(settings.processes_dir / "calendar", self.audit, self.documents)
        self.ctx.environment.services.setdefault("trading_window_check", self.calendar.check_window)
        self.store.calendar = self.calendar  # due times in working (trading) days
        # The configuration items register (配置项): market codes checked against the calendar's.
        self.configuration = ConfigurationService(self.ctx, self.audit, self.access,
                                                  lambda: self.calendar.calendar().markets.keys())
        self.standard_changes = StandardChangeCatalogue(self.ctx, self.audit)  # 标准变更模板
        # Time passing (engine/jobs/): the job table and its tick, case timers and timer starts,
        # escalations and the notifications they send.
        self.notify = NotifyService(self.ctx, self.audit)
        self.jobs = JobService(self.ctx, self.audit)
        self.timers = TimerService(self.ctx, self.jobs, self.repository, self.runtime, self.store, self.audit)
        self.failures = FailureService(self.ctx, self.jobs, self.timers, self.audit, self.access)
        self.escalations = EscalationService(self.ctx, self.jobs, self.store, self.identity, self.audit,
                                             self.notify, self.access)
        for name, service in LibraryServices(self.ctx, self.identity, self.runtime, self.calendar,
                                             self.configuration, self.documents).services().items():
            self.ctx.environment.services.setdefault(name, service)

    @classmethod
    def from_env(cls, **kwargs: Any) -> ProcessEngine:
        return cls(Settings.from_env(), **kwargs)

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest Alembic revision."""
        from engine.storage.migrations import upgrade

        with self.ctx.db.maintenance() as engine:  # no statement timeout: a migration may take long
            upgrade(engine, audit_anchor=self.audit.anchor)

    def init(self, demo: bool = False, demo_password: str = "opsflow") -> dict[str, Any]:
        """Create or upgrade the schema, seed roles, deploy processes/, and add demo users."""
        import json

        self.migrate()
        added_roles = self.identity.seed_roles(_beside_roles(self.ctx.settings, "roles.json"))
        # Before the deploy, which reads the forms from the database. A file changed after an edit in the
        # browser does not replace that edit (engine/definitions/documents.py).
        seeding = self.documents.seed(seed_files(self.ctx.settings.forms_dir, self.ctx.settings.processes_dir))
        deployed = self.repository.deploy_directory()
        users = []
        # Demo users only in a new database: their known password skips the password policy, so they
        # never land beside real users (and a deactivated one is never brought back).
        existing = demo and self.identity.has_users()
        if demo and not existing:
            for u in json.loads((ROOT / "processes" / "demo_users.json").read_text(encoding="utf-8")):
                self.identity.add_user(u["username"], u["roles"], u["display_name"], demo_password,
                                       password_policy=False)
                users.append(u["username"])
        items = self.seed_demo_register() if demo and not existing else []
        return {"roles_added": added_roles, "deployed": deployed, "demo_users": users,
                "demo_skipped": existing, "demo_items": items,
                "documents_seeded": seeding.added, "documents_kept": seeding.kept}

    def seed_demo_register(self) -> list[str]:
        """The demo firm's systems (processes/demo_config_items.json), so the forms' pickers offer some."""
        path = ROOT / "processes" / "demo_config_items.json"
        summary = self.configuration.import_items("opsflow init --demo", path.read_text(encoding="utf-8"), path.name)
        return summary.created

    def progress(self, instance_id: int) -> CaseProgress:
        """Completed, active and overdue BPMN elements of a case, for its diagram."""
        return case_progress(self.ctx, self.store, instance_id)

    def may(self, actor: Actor, action: str) -> bool:
        """Whether the access policy grants `action` (processes/access.json) to the actor: for offering
        a button or a link; the service behind it checks again."""
        return self.access.allows(actor, action)

    def close(self) -> None:
        self.ctx.db.dispose()

    def schema_is_current(self) -> bool:
        """Whether the database is at the newest Alembic revision (`/readyz`); raises if it is unreachable."""
        from engine.storage.migrations import is_current

        return is_current(self.ctx.db.reader)  # a read: a held write lock is check_write's to report

    def start_ticker(self) -> None:
        """Fire due timers and jobs from a background thread of this process (each web worker, after the fork)."""
        from engine.jobs.ticker import start_ticker

        start_ticker(self)


def _beside_roles(settings: Settings, name: str) -> Path:
    """A people file (roles.json, access.json) of the processes directory, else the shipped one."""
    own = settings.processes_dir / name
    return own if own.exists() else ROOT / "processes" / name


__all__ = ["ProcessEngine", "Settings"]
