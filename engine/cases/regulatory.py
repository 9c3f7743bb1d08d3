"""The register of regulatory reports (监管报告登记): every 首报, 续报, 预警, 解除 and investigation report
of every case, with its due time, who drafted, signed (签发人) and sent it, to whom, and whether it is late.

Which steps are reports is data in the BPMN (user task properties), never a task id here:
`regulatoryReport` = the kind on a step that drafts a report (a redraft of an unsent report of the same
kind is the same report); `regulatoryReportStep` = `sign` (an approval signs the report being prepared),
`submit` (the report is sent: submission form with submitted_at, recipients, signed_report, receipt) or
`sent` (the drafting step itself is the report, e.g. an hourly 续报). The register is read from the inbox
rows the engine writes on every save (due_at, completed_at/by, answers), so it can never disagree with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from engine.cases.report_book import report_docx, report_pdf
from engine.cases.runtime import RuntimeService
from engine.context import EngineContext
from engine.definitions.repository import RepositoryService
from engine.people.access import AccessPolicy
from engine.people.identity import Actor
from engine.storage.models import HumanTask, ProcessInstance

KIND, STEP = "regulatoryReport", "regulatoryReportStep"
FIRST_REPORT = "首报"  # the kind the 报告书 prints
STATUSES = ("due", "overdue", "sent", "late")  # not yet due / due and unsent / sent on time / sent late


@dataclass
class RegulatoryReport:
    instance_id: int
    case_title: str
    process_id: str
    kind: str
    due_at: datetime | None
    opened_at: datetime
    drafted_by: str | None = None
    drafted_at: datetime | None = None
    signer: str | None = None  # who approved the sign step (签发人)
    signed_at: datetime | None = None
    sent_at: datetime | None = None  # when it was sent, as declared (never after it was recorded)
    sent_recorded_at: datetime | None = None  # when the engine recorded the sending
    sent_by: str | None = None
    recipients: list[str] = field(default_factory=list)
    channel: str | None = None
    attachment: dict[str, Any] | None = None  # the signed report's file name and SHA-256
    receipt: dict[str, Any] | None = None
    draft: dict[str, Any] = field(default_factory=dict)  # the last drafting step's answers

    def status(self, now: datetime) -> str:
        if self.sent_at is not None:
            return "late" if self.due_at is not None and self.sent_at > self.due_at else "sent"
        return "overdue" if self.due_at is not None and now > self.due_at else "due"


class RegulatoryRegister:
    def __init__(self, ctx: EngineContext, repository: RepositoryService, runtime: RuntimeService,
                 access: AccessPolicy) -> None:
        self.ctx = ctx
        self.repository = repository
        self.runtime = runtime
        self.access = access

    def reports(self, actor: Actor, status: str | None = None, kind: str | None = None,
                instance_id: int | None = None) -> list[RegulatoryReport]:
        """Every report of every case (newest first), for compliance and those who read every case."""
        self.access.require(actor, "case.read_all", "read the register of regulatory reports")
        now = self.ctx.now()
        found = [r for r in self._all(instance_id)
                 if (status is None or r.status(now) == status) and (kind is None or r.kind == kind)]
        return sorted(found, key=lambda r: (r.opened_at, r.instance_id), reverse=True)

    def report_book(self, actor: Actor, instance_id: int) -> bytes:
        """The case's 报告书 as a PDF, pre-filled from the case and its latest 首报 (any reader of the case)."""
        case = self.runtime.show(instance_id, actor)
        firsts = [r for r in self._all(instance_id) if r.kind == FIRST_REPORT]
        return report_pdf(case.id, case.data, case.title, firsts[-1] if firsts else None,
                          self.ctx.settings.timezone)

    def report_book_docx(self, actor: Actor, instance_id: int) -> bytes:
        """The same 报告书 as a Word document (DOCX), for those who fill in or sign it in Word or WPS."""
        case = self.runtime.show(instance_id, actor)
        firsts = [r for r in self._all(instance_id) if r.kind == FIRST_REPORT]
        return report_docx(case.id, case.data, case.title, firsts[-1] if firsts else None,
                           self.ctx.settings.timezone)

    def _all(self, instance_id: int | None) -> list[RegulatoryReport]:
        marked = self._marked_steps()
        if not marked:
            return []
        query = (select(HumanTask, ProcessInstance.title, ProcessInstance.definition_id)
                 .join(ProcessInstance, ProcessInstance.id == HumanTask.instance_id)
                 .where(HumanTask.bpmn_id.in_({b for _, b in marked}), HumanTask.state != "cancelled")
                 .order_by(HumanTask.instance_id, HumanTask.created_at))
        if instance_id is not None:
            query = query.where(HumanTask.instance_id == instance_id)
        reports: list[RegulatoryReport] = []
        current: dict[int, RegulatoryReport] = {}  # per case: the report being prepared
        with self.ctx.db.transaction() as s:
            rows = list(s.execute(query))
        # In the order the steps happened: a clock standing still gives them one created_at, so the case
        # revision each was completed at decides (open steps last).
        rows.sort(key=lambda r: (r[0].instance_id, r[0].created_at, r[0].completed_revision or 1 << 62))
        for task, title, definition_id in rows:
            props = marked.get((definition_id, task.bpmn_id))
            if props is None:
                continue
            kind, step = props.get(KIND), props.get(STEP, "draft")
            report = current.get(task.instance_id)
            if kind:
                if report is None or report.kind != kind or report.sent_at is not None:
                    report = RegulatoryReport(task.instance_id, title, task.process_id, kind, task.due_at,
                                              task.created_at)
                    reports.append(report)
                    current[task.instance_id] = report
                if task.state == "completed":
                    _drafted(report, task)
                    if step == "sent":
                        _sent(report, task)
            elif report is not None and task.state == "completed":
                if step == "sign" and (task.answers or {}).get("decision") == "approve":
                    report.signer, report.signed_at = task.completed_by, task.completed_at
                elif step == "submit":
                    _sent(report, task)
        return reports

    def _marked_steps(self) -> dict[tuple[int, str], dict[str, str]]:
        """(definition id, task id) -> its report properties, over every deployed version."""
        marked: dict[tuple[int, str], dict[str, str]] = {}
        with self.ctx.db.transaction() as s:
            ids = list(s.scalars(select(ProcessInstance.definition_id).distinct()))
        for definition_id in ids:
            for bpmn_id, rules in self.repository.load(definition_id).rules.items():
                props = {k: v for k, v in rules.properties.items() if k in (KIND, STEP)}
                if props:
                    marked[(definition_id, bpmn_id)] = props
        return marked


def _drafted(report: RegulatoryReport, task: HumanTask) -> None:
    answers = task.answers or {}
    report.drafted_by, report.drafted_at, report.draft = task.completed_by, task.completed_at, answers
    if answers.get("recipients"):
        report.recipients = list(answers["recipients"])


def _sent(report: RegulatoryReport, task: HumanTask) -> None:
    answers = task.answers or {}
    recorded = task.completed_at
    declared = _when(answers.get("submitted_at") or answers.get("reported_at"))
    report.sent_recorded_at, report.sent_by = recorded, task.completed_by
    report.sent_at = min(declared, recorded) if declared and recorded else recorded
    report.recipients = list(answers.get("recipients") or report.recipients)
    report.channel = answers.get("channel") or report.channel
    report.attachment = answers.get("signed_report") or report.attachment
    report.receipt = answers.get("receipt") or report.receipt


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
