"""Figures for supervisors (督促检查): overdue steps, ageing, time used, throughput, KPIs.

Task figures are plain SQL over the inbox table. The KPIs add up the figures each save keeps on the
case row (engine/cases/figures.py, processes/kpis.json) in SQL: every case counts, none is read.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select

from engine.cases.figures import KpiRules
from engine.context import EngineContext
from engine.people.access import AccessPolicy
from engine.people.identity import Actor
from engine.storage.models import HumanTask, ProcessInstance

AGE_BUCKETS = ((timedelta(days=1), "<1d"), (timedelta(days=3), "1-3d"), (timedelta(days=7), "3-7d"),
               (None, ">7d"))
# Share of the time between an open task's creation and its due time already used.
TIME_USED_BUCKETS = ("<50%", "50-75%", "75-95%", "95-100%", ">100%")


@dataclass
class SlaFigure:
    """Tasks measured against their due time: completed in the period, or still open past it."""

    measured: int = 0
    breaches: int = 0

    @property
    def rate(self) -> float | None:
        return self.breaches / self.measured if self.measured else None


@dataclass
class Dashboard:
    since: datetime
    now: datetime
    process_id: str | None
    overdue_by_process: list[tuple[str, int, int]] = field(default_factory=list)  # (process, overdue, due soon)
    overdue_by_role: list[tuple[str, int, int]] = field(default_factory=list)
    overdue_by_person: list[tuple[str, int, int]] = field(default_factory=list)
    ageing: list[tuple[str, int]] = field(default_factory=list)
    time_used: list[tuple[str, int]] = field(default_factory=list)  # open tasks with a due time, by share used
    weekly: list[tuple[str, int, int]] = field(default_factory=list)  # (week starting, started, completed)
    change_outcomes: dict[str, int] = field(default_factory=dict)  # changes closed in the period
    changes_successful: int = 0
    emergency_changes: int = 0
    changes: int = 0  # changes requested in the period (with a type)
    incident_mttr_hours: float | None = None  # mean of detection -> restore
    incidents_restored: int = 0
    response: SlaFigure = field(default_factory=SlaFigure)
    resolution: SlaFigure = field(default_factory=SlaFigure)
    overdue_tasks: list[HumanTask] = field(default_factory=list)

    @property
    def change_success_rate(self) -> float | None:
        total = sum(self.change_outcomes.values())
        return self.changes_successful / total if total else None

    @property
    def emergency_ratio(self) -> float | None:
        return self.emergency_changes / self.changes if self.changes else None


class ReportService:
    def __init__(self, ctx: EngineContext, store: Any, access: AccessPolicy) -> None:
        self.ctx = ctx
        self.access = access
        self.store = store
        self.kpis: KpiRules = store.kpis  # the figures each save keeps (processes/kpis.json)

    def dashboard(self, actor: Actor, days: int = 28, process_id: str | None = None,
                  due_soon: timedelta = timedelta(hours=24)) -> Dashboard:
        self.access.require(actor, "dashboard.view", "see the supervisor dashboard")
        now = self.ctx.now()
        report = Dashboard(since=now - timedelta(days=max(1, min(days, 366))), now=now, process_id=process_id)
        with self.ctx.db.transaction() as s:
            self._tasks(s, report, due_soon)
            self._time_used(s, report)
            self._weekly(s, report)
            self._changes(s, report)
            self._incidents(s, report)
            self._sla(s, report)
        return report

    def _open(self, report: Dashboard) -> Any:
        query = select(HumanTask).where(HumanTask.state == "open")
        return query.where(HumanTask.process_id == report.process_id) if report.process_id else query

    def _tasks(self, s: Any, report: Dashboard, due_soon: timedelta) -> None:
        now = report.now
        where = [HumanTask.state == "open"]
        if report.process_id:
            where.append(HumanTask.process_id == report.process_id)
        edges = [now - limit for limit, _label in AGE_BUCKETS if limit is not None]
        # One scan of the open tasks, grouped finely; the three views and the ageing add it up.
        person = func.coalesce(HumanTask.assignee, "—")
        rows = s.execute(select(
            HumanTask.process_id, HumanTask.role, person, func.count().filter(HumanTask.due_at < now),
            func.count().filter(HumanTask.due_at >= now, HumanTask.due_at < now + due_soon),
            *[func.count().filter(HumanTask.created_at > edge) for edge in edges], func.count(),
        ).where(*where).group_by(HumanTask.process_id, HumanTask.role, person)).all()
        views: list[Counter[str]] = [Counter(), Counter(), Counter(), Counter(), Counter(), Counter()]
        newer = [0] * (len(edges) + 1)
        for process_id, role, who, late, soon, *ages in rows:
            for i, key in enumerate((process_id, role, who)):
                views[2 * i][key] += late
                views[2 * i + 1][key] += soon
            newer = [a + b for a, b in zip(newer, ages, strict=True)]
        for i, target in enumerate((report.overdue_by_process, report.overdue_by_role, report.overdue_by_person)):
            late_by, soon_by = views[2 * i], views[2 * i + 1]
            target.extend(sorted(((str(k), late_by[k], soon_by[k]) for k in late_by | soon_by
                                  if late_by[k] or soon_by[k]), key=lambda r: (-r[1], -r[2], r[0])))
        counts = [newer[0], *[newer[i] - newer[i - 1] for i in range(1, len(edges))], newer[-1] - newer[-2]]
        report.ageing = [(label, int(n)) for (_limit, label), n in zip(AGE_BUCKETS, counts, strict=True)]
        report.overdue_tasks = list(s.scalars(self._open(report).where(HumanTask.due_at < now)
                                              .order_by(HumanTask.due_at).limit(200)))

    def _cases(self, report: Dashboard) -> Any:
        query = select(ProcessInstance)
        return query.where(ProcessInstance.process_id == report.process_id) if report.process_id else query

    def _weekly(self, s: Any, report: Dashboard) -> None:
        started = s.scalars(self._cases(report).with_only_columns(ProcessInstance.started_at)
                            .where(ProcessInstance.started_at >= report.since))
        ended = s.scalars(self._cases(report).with_only_columns(ProcessInstance.ended_at)
                          .where(ProcessInstance.status == "completed", ProcessInstance.ended_at >= report.since))
        weeks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for index, moments in enumerate((started, ended)):
            for at in moments:
                local = at.astimezone(self.ctx.zone).date()
                weeks[(local - timedelta(days=local.weekday())).isoformat()][index] += 1
        report.weekly = [(week, a, b) for week, (a, b) in sorted(weeks.items())]

    def _epoch(self, column: Any) -> Any:
        """Seconds since 1970 of a time column, in SQL (SQLite keeps UTC text, PostgreSQL timestamptz)."""
        if self.ctx.db.is_sqlite:
            return (func.julianday(column) - 2440587.5) * 86400.0
        return func.extract("epoch", column)

    def _time_used(self, s: Any, report: Dashboard) -> None:
        """Open tasks with a due time by the share of created -> due already gone: one grouped count."""
        now, made, due = report.now.timestamp(), self._epoch(HumanTask.created_at), self._epoch(HumanTask.due_at)
        used, span = now - made, due - made
        where = [HumanTask.state == "open", HumanTask.due_at.is_not(None)]
        if report.process_id:
            where.append(HumanTask.process_id == report.process_id)
        on_time = HumanTask.due_at >= report.now  # compared as stored: exact at the due time itself
        counts = s.execute(select(
            func.count().filter(on_time, used < 0.5 * span),
            func.count().filter(on_time, used >= 0.5 * span, used < 0.75 * span),
            func.count().filter(on_time, used >= 0.75 * span, used < 0.95 * span),
            func.count().filter(on_time, used >= 0.95 * span),
            func.count().filter(HumanTask.due_at < report.now),
        ).where(*where)).one()
        report.time_used = [(label, int(n or 0)) for label, n in zip(TIME_USED_BUCKETS, counts, strict=True)]

    def _sla(self, s: Any, report: Dashboard) -> None:
        """Response and resolution: only the tasks kpis.json names (never escalations or confirmations)."""
        for kind, figure in (("response", report.response), ("resolution", report.resolution)):
            tasks = {pid: ids for pid, ids in self.kpis.sla_tasks(kind).items()
                     if report.process_id in (None, pid)}
            if not tasks:
                continue
            late_done = and_(HumanTask.state == "completed", HumanTask.completed_at > HumanTask.due_at)
            late_open = and_(HumanTask.state == "open", HumanTask.due_at < report.now)
            measured, breaches = s.execute(select(
                func.count(), func.count().filter(or_(late_done, late_open)),
            ).where(
                or_(*[and_(HumanTask.process_id == pid, HumanTask.bpmn_id.in_(ids)) for pid, ids in tasks.items()]),
                HumanTask.due_at.is_not(None),
                or_(and_(HumanTask.state == "completed", HumanTask.completed_at >= report.since), late_open),
            )).one()
            figure.measured, figure.breaches = int(measured), int(breaches or 0)

    def _changes(self, s: Any, report: Dashboard) -> None:
        """Outcomes of the changes closed in the period; emergency share of those requested in it."""
        kinds = {pid: p for pid, p in self.kpis.processes.items()
                 if (p.successful_outcomes or p.emergency_categories) and report.process_id in (None, pid)}
        if not kinds:
            return
        cases = ProcessInstance.process_id.in_(list(kinds))
        outcomes: Counter[str] = Counter()
        for process_id, outcome, n in s.execute(
                select(ProcessInstance.process_id, ProcessInstance.outcome, func.count())
                .where(cases, ProcessInstance.status == "completed", ProcessInstance.outcome.is_not(None),
                       ProcessInstance.ended_at >= report.since)
                .group_by(ProcessInstance.process_id, ProcessInstance.outcome)):
            outcomes[str(outcome)] += n
            report.changes_successful += n if outcome in kinds[process_id].successful_outcomes else 0
        report.change_outcomes = dict(outcomes)
        for process_id, category, n in s.execute(
                select(ProcessInstance.process_id, ProcessInstance.category, func.count())
                .where(cases, ProcessInstance.category.is_not(None), ProcessInstance.started_at >= report.since)
                .group_by(ProcessInstance.process_id, ProcessInstance.category)):
            report.changes += n
            report.emergency_changes += n if category in kinds[process_id].emergency_categories else 0

    def _incidents(self, s: Any, report: Dashboard) -> None:
        """MTTR: mean of detection -> restore over the cases restored in the period."""
        took = self._epoch(ProcessInstance.restored_at) - self._epoch(ProcessInstance.detected_at)
        query = select(func.count(), func.avg(took)).where(
            ProcessInstance.detected_at.is_not(None), ProcessInstance.restored_at >= report.since,
            ProcessInstance.restored_at >= ProcessInstance.detected_at)
        if report.process_id:
            query = query.where(ProcessInstance.process_id == report.process_id)
        count, mean = s.execute(query).one()
        report.incidents_restored = int(count)
        report.incident_mttr_hours = float(mean) / 3600 if count else None
