"""Figures for supervisors (督促检查): overdue steps, ageing, throughput, change and incident figures.

Task figures are plain SQL over the inbox table. Change outcomes and types live in case data, so
those read each finished case of the period (bounded), never the running ones.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from engine.context import EngineContext
from engine.people.access import AccessPolicy
from engine.people.identity import Actor
from engine.storage.models import HumanTask, ProcessInstance

AGE_BUCKETS = ((timedelta(days=1), "<1d"), (timedelta(days=3), "1-3d"), (timedelta(days=7), "3-7d"),
               (None, ">7d"))
MAX_CASES_READ = 1000
# The processes whose figures an inspection asks for (JR/T 0099 §4.8 督促检查); the ids of processes/.
CHANGE_PROCESS, INCIDENT_PROCESS = "change", "incident"


@dataclass
class Dashboard:
    since: datetime
    now: datetime
    process_id: str | None
    overdue_by_process: list[tuple[str, int, int]] = field(default_factory=list)  # (process, overdue, due soon)
    overdue_by_role: list[tuple[str, int, int]] = field(default_factory=list)
    overdue_by_person: list[tuple[str, int, int]] = field(default_factory=list)
    ageing: list[tuple[str, int]] = field(default_factory=list)
    weekly: list[tuple[str, int, int]] = field(default_factory=list)  # (week starting, started, completed)
    change_outcomes: dict[str, int] = field(default_factory=dict)
    emergency_changes: int = 0
    changes: int = 0
    incident_mttr_hours: float | None = None
    incidents_resolved: int = 0
    response_tasks: int = 0
    response_breaches: int = 0
    overdue_tasks: list[HumanTask] = field(default_factory=list)

    @property
    def change_success_rate(self) -> float | None:
        total = sum(self.change_outcomes.values())
        return self.change_outcomes.get("成功", 0) / total if total else None

    @property
    def emergency_ratio(self) -> float | None:
        return self.emergency_changes / self.changes if self.changes else None

    @property
    def response_breach_rate(self) -> float | None:
        return self.response_breaches / self.response_tasks if self.response_tasks else None


class ReportService:
    def __init__(self, ctx: EngineContext, store: Any, access: AccessPolicy) -> None:
        self.ctx = ctx
        self.access = access
        self.store = store

    def dashboard(self, actor: Actor, days: int = 28, process_id: str | None = None,
                  due_soon: timedelta = timedelta(hours=24)) -> Dashboard:
        self.access.require(actor, "dashboard.view", "see the supervisor dashboard")
        now = self.ctx.now()
        report = Dashboard(since=now - timedelta(days=max(1, min(days, 366))), now=now, process_id=process_id)
        with self.ctx.db.transaction() as s:
            self._tasks(s, report, due_soon)
            self._weekly(s, report)
            self._changes(s, report)
            self._incidents(s, report)
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

    def _finished(self, s: Any, process_id: str, since: datetime) -> list[tuple[ProcessInstance, dict[str, Any]]]:
        from engine.cases.runtime import case_data

        rows = list(s.scalars(select(ProcessInstance).where(
            ProcessInstance.process_id == process_id, ProcessInstance.status == "completed",
            ProcessInstance.ended_at >= since).order_by(ProcessInstance.id.desc()).limit(MAX_CASES_READ)))
        return [(row, case_data(self.store.read(s, row))) for row in rows]

    def _changes(self, s: Any, report: Dashboard) -> None:
        if report.process_id not in (None, CHANGE_PROCESS):
            return
        outcomes: Counter[str] = Counter()
        for _row, data in self._finished(s, CHANGE_PROCESS, report.since):
            report.changes += 1
            report.emergency_changes += data.get("change_type") == "emergency"
            if data.get("outcome"):
                outcomes[str(data["outcome"])] += 1
        report.change_outcomes = dict(outcomes)

    def _incidents(self, s: Any, report: Dashboard) -> None:
        if report.process_id not in (None, INCIDENT_PROCESS):
            return
        durations = [(row.ended_at - row.started_at).total_seconds() / 3600
                     for row, _data in self._finished(s, INCIDENT_PROCESS, report.since) if row.ended_at]
        report.incidents_resolved = len(durations)
        report.incident_mttr_hours = sum(durations) / len(durations) if durations else None
        timed = select(HumanTask.due_at, HumanTask.completed_at).where(
            HumanTask.process_id == INCIDENT_PROCESS, HumanTask.state == "completed", HumanTask.due_at.is_not(None),
            HumanTask.completed_at >= report.since)
        rows = s.execute(timed).all()
        report.response_tasks = len(rows)
        report.response_breaches = sum(1 for due, done in rows if done > due)

