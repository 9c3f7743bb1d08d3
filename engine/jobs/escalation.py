"""Escalation of open tasks as their due time nears or passes, and the notifications it sends.

A user task's `escalation` property (engine/definitions/deadlines.py) becomes one `escalation` job
per rule when the task is created, due at the rule's threshold. When it runs on a task still open,
it notifies the rule's targets or reassigns the task, and records it. E-mails and webhook messages
go out as `notification` jobs, outside any transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from engine.cases.store import CaseStore, OpenCase
from engine.context import EngineContext
from engine.definitions.deadlines import parse_escalation
from engine.definitions.forms import outcome_field
from engine.jobs.queue import JobService, schedule_job
from engine.people.access import AccessPolicy
from engine.people.identity import IdentityService
from engine.people.notify import Message, NotifyService
from engine.storage.audit import AuditService
from engine.storage.models import HumanTask, Job, ProcessInstance

log = logging.getLogger("opsflow.jobs")


class EscalationService:
    def __init__(self, ctx: EngineContext, jobs: JobService, store: CaseStore, identity: IdentityService,
                 audit: AuditService, notify: NotifyService, access: AccessPolicy) -> None:
        self.ctx = ctx
        self.access = access
        self.store = store
        self.identity = identity
        self.audit = audit
        self.notify = notify
        jobs.register("escalation", self._escalate)
        jobs.register("notification", self._send, transactional=False)
        store.on_tasks_created.append(self._schedule_escalations)

    def _schedule_escalations(self, s: Session, case: OpenCase, created: list[HumanTask]) -> None:
        """on_tasks_created: one job per escalation rule of each new task, at its threshold."""
        for task in created:
            rules = case.definition.rules.get(task.bpmn_id)
            text = rules.properties.get("escalation") if rules else None
            if not text:
                continue
            try:
                parsed = parse_escalation(text)
            except ValueError as exc:  # deployed before the lint knew the property
                log.warning("case %s task %s: bad escalation ignored: %s", task.instance_id, task.bpmn_id, exc)
                continue
            for index, rule in enumerate(parsed):
                at = rule.fires_at(task.created_at, task.due_at)
                if at is None:
                    continue
                schedule_job(s, "escalation", at, created_at=task.created_at, instance_id=task.instance_id,
                             task_id=task.id, payload={"rule": rule.text, "index": index, "bpmn_id": task.bpmn_id})

    def _escalate(self, s: Session, job: Job) -> None:
        task = s.get(HumanTask, job.task_id) if job.task_id else None
        if task is None:
            return
        case_row = self.store.lock(s, task.instance_id)  # every writer locks the case first
        s.refresh(task)
        if task.state != "open":
            job.payload = {**job.payload, "outcome": f"task {task.state}"}
            return
        rule = parse_escalation(job.payload["rule"])[0]
        now = self.ctx.now()
        audit: dict[str, Any] = {"rule": rule.text, "action": rule.action, "due_at": task.due_at}
        if rule.action == "reassign":
            moved = self._reassign(task, rule.targets[0], now, self._is_approval(task, case_row))
            audit.update(moved)
            recipients = [task.assignee] if task.assignee else self._holders(task.role)
            if "refused_to" in moved:  # the would-be takers are told; the approval stays where it may be done
                recipients = sorted({*recipients, *moved["refused_to"]})
            channels: tuple[str, ...] = ("inapp", "email")
        else:
            recipients = self._recipients(rule.targets, task, case_row)
            channels = rule.channels
        message = self._message(task, case_row, rule.label, now, reassigned=rule.action == "reassign")
        queued = self.notify.notify(s, recipients, message, channels)
        audit.update(recipients=recipients, channels=list(channels), email=queued["email"],
                     webhook=queued["webhook"])
        self.audit.record(s, "system", "task.escalated", instance_id=task.instance_id, task_id=task.id, data=audit)
        job.payload = {**job.payload, "outcome": rule.action, "recipients": recipients}

    def _is_approval(self, task: HumanTask, case_row: ProcessInstance) -> bool:
        """A task whose form records a decision (x-outcome): only those allowed to approve may take it."""
        definition = self.store.repository.load(case_row.definition_id)
        form = definition.forms.get(task.form_key) if task.form_key else None
        return form is not None and outcome_field(form) is not None

    def _reassign(self, task: HumanTask, target: str, now: datetime, approval: bool) -> dict[str, Any]:
        before = {"from_role": task.role, "from_assignee": task.assignee}
        if target.startswith("@"):
            user = self.identity.find(target[1:])
            if user is None:
                return {**before, "outcome": f"unknown user {target[1:]!r}: not reassigned"}
            if approval and not any(self.access.may_take_approval(r, task.role) for r in user.roles):
                return {**before, "refused_to": [user.username],
                        "outcome": f"{user.username} may not approve a task of {task.role}: notified, not reassigned"}
            task.assignee, task.claimed_at = user.username, now
        else:
            role = (self.access.manager_of(task.role) if target == "manager" else
                    "supervisor" if target == "supervisor" else self.identity.resolve_role(target) or target)
            if approval and not self.access.may_take_approval(role, task.role):
                return {**before, "refused_to": self._holders(role),
                        "outcome": f"{role} may not approve a task of {task.role} (access.json approves_for): "
                                   "notified, not reassigned"}
            task.role, task.assignee, task.claimed_at = role, None, None
        return {**before, "to_role": task.role, "to_assignee": task.assignee}

    def _holders(self, role: str) -> list[str]:
        return [a.username for a in self.identity.users(role)]

    def _recipients(self, targets: tuple[str, ...], task: HumanTask, case_row: ProcessInstance) -> list[str]:
        out: list[str] = []
        for target in targets:
            if target == "assignee":
                out += [task.assignee] if task.assignee else self._holders(task.role)
            elif target == "manager":
                out += self._holders(self.access.manager_of(task.role))
            elif target == "supervisor":
                out += self._holders("supervisor")
            elif target == "starter":
                out.append(case_row.started_by)
            elif target.startswith("@"):
                out.append(target[1:])
            else:
                out += self._holders(self.identity.resolve_role(target) or target)
        return sorted(set(out))

    def _message(self, task: HumanTask, case_row: ProcessInstance, label: str, now: datetime,
                 reassigned: bool = False) -> Message:
        zone = self.ctx.zone
        due = task.due_at
        if due is None:
            state = f"已等待 {_span(now - task.created_at)}"
        elif now >= due:
            state = f"已超期 {_span(now - due)}"
        else:
            state = f"距截止还有 {_span(due - now)}"
        who = task.assignee or f"{task.role} 队列（未认领）"
        title = f"【{'任务转派' if reassigned else '督办'}】{task.name}：{state}"
        body = "\n".join([
            f"案件：#{case_row.id} {case_row.title}",
            f"任务：{task.name}（{task.bpmn_id}）",
            f"处理人：{who}",
            f"截止时间：{due.astimezone(zone).strftime('%Y-%m-%d %H:%M') if due else '未设定'}",
            f"督办规则：{label}",
        ])
        return Message(title, body, "escalation", task.instance_id, task.id)

    # notifications -------------------------------------------------------------------------------
    def _send(self, job: Job) -> None:
        self.notify.send(job.payload)


def _span(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}天" if days else "", f"{hours}小时" if hours else "", f"{minutes}分钟" if minutes or not
             (days or hours) else ""]
    return "".join(parts)
