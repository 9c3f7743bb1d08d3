"""Who may do a task: the lane's role, a named assignee, and separation of duties (不相容岗位分离)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from engine.definitions.rules import STARTER, UserTaskRules
from engine.errors import FieldError, Forbidden, ValidationFailed
from engine.people.identity import Actor, IdentityService
from engine.storage.db import Sql, run
from engine.storage.models import HumanTask

_PERFORMERS = Sql("SELECT bpmn_id, completed_by FROM human_task WHERE instance_id = :id AND state = 'completed'")


def performers(s: Session, instance_id: int) -> dict[str, set[str]]:
    """bpmn id -> everyone who completed that task in this case (rework rounds included)."""
    rows = run(s, _PERFORMERS, {"id": instance_id})
    done: dict[str, set[str]] = defaultdict(set)
    for bpmn_id, user in rows:
        if user:
            done[bpmn_id].add(user)
    return done


def sod_violation(rules: UserTaskRules, username: str, done: dict[str, set[str]],
                  starter: str, names: dict[str, str]) -> str | None:
    """The separation-of-duties rule this user would break, as a sentence, or None."""
    for ref in rules.separation_of_duties:
        if ref == STARTER and username == starter:
            return (f"不相容岗位分离：{username} 是本案件的申请人，不得办理“{rules.name}”"
                    "（申请人不得审批或执行本人的申请）")
        if username in done.get(ref, ()):
            return f"不相容岗位分离：{username} 已办理本案件的“{names.get(ref, ref)}”，不得再办理“{rules.name}”"
    return None


def check_may_act(actor: Actor, task: HumanTask, rules: UserTaskRules, done: dict[str, set[str]],
                  starter: str, names: dict[str, str], *, claiming: bool = False,
                  acting_for: str | None = None, role_name: Callable[[str], str] = str) -> None:
    """Raise Forbidden naming the rule unless the actor may claim or complete this task.

    `acting_for`: the assignee, when the actor is their active substitute (A/B角); `role_name` gives a
    role's Chinese name, so a refusal names roles and steps as the user knows them.
    """
    role = role_name(task.role)
    if task.assignee and task.assignee not in (actor.username, acting_for):
        raise Forbidden(f"“{rules.name}”已由 {task.assignee} 办理，不是 {actor.username}", rule="assignee")
    if acting_for and not actor.has_role(task.role):
        raise Forbidden(f"{actor.username} 代 {acting_for} 办理，但本人不具备“{rules.name}”所需的角色{role}"
                        "（A/B角只能办理本人具备角色的任务）", rule="role")
    if (not task.assignee or claiming) and not actor.has_role(task.role):
        raise Forbidden(f"{actor.username} 不具备“{rules.name}”所需的角色{role}", rule="role")
    reason = sod_violation(rules, actor.username, done, starter, names)
    if reason:
        raise Forbidden(reason, rule="separation_of_duties")


def named_assignee(identity: IdentityService, rules: UserTaskRules, role: str, data: dict[str, Any],
                   starter: str) -> str | None:
    """The user the case data names for this task; they must exist and hold the lane's role."""
    field = rules.assignee_from
    if not field:
        return None
    if field == STARTER:
        return starter
    value = data.get(field)
    if value in (None, ""):
        raise ValidationFailed(f"task {rules.name!r} needs a user in field {field!r}",
                               [FieldError(field, f"请指定处理人 (name the user for {rules.name!r})")])
    user = identity.find(str(value))
    if user is None:
        raise ValidationFailed(f"unknown user {value!r} in field {field!r}",
                               [FieldError(field, f"用户 {value!r} 不存在 (no such user)")])
    if not user.has_role(role):
        raise ValidationFailed(f"user {value!r} does not hold role {role!r}",
                               [FieldError(field, f"用户 {value!r} 不具备角色 {role} (does not hold the role)")])
    return user.username


def distinct_users_errors(rules: UserTaskRules, data: dict[str, Any]) -> list[FieldError]:
    seen: dict[str, str] = {}
    errors = []
    for field in rules.distinct_users:
        value = data.get(field)
        if value in (None, ""):
            continue
        if value in seen:
            errors.append(FieldError(field, f"不相容岗位: {field} 与 {seen[value]} 不能是同一人 "
                                            f"({field} and {seen[value]} must be different people)"))
        else:
            seen[value] = field
    return errors
