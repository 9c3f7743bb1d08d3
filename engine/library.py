"""Services the process library's BPMN service tasks call (besides `start_case`).

Each is generic (no process id is special-cased) and returns plain JSON data that the task stores
in its `resultVariable`; problems a requester can fix come back as `ok: false` with a Chinese
`reason` that the process shows when it returns the case, never as an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from engine.context import EngineContext
from engine.errors import BadRequest, NotFound
from engine.identity import IdentityService
from engine.models import CaseLink, ProcessInstance
from engine.runtime import RuntimeService


class LibraryServices:
    def __init__(self, ctx: EngineContext, identity: IdentityService, runtime: RuntimeService) -> None:
        self.ctx = ctx
        self.identity = identity
        self.runtime = runtime

    def services(self) -> dict[str, Callable[..., Any]]:
        return {"check_users": self.check_users, "users_with_role": self.users_with_role,
                "require_case": self.require_case}

    def _current(self) -> tuple[int, str]:
        current = self.ctx.current_case.get()
        if current is None:
            raise BadRequest("this service can only run inside a case")
        return current

    def check_users(self, users: dict[str, Any]) -> dict[str, Any]:
        """`{"field": [username, role], ...}`: each named user exists and holds the role.

        An empty username is skipped (the form decides what is required).
        """
        problems = []
        for field, (username, role) in users.items():
            if not username:
                continue
            user = self.identity.find(str(username))
            if user is None:
                problems.append(f"{field}：用户 {username} 不存在")
            elif not user.has_role(role):
                problems.append(f"{field}：用户 {username} 不具备角色 {role}")
        return {"ok": not problems, "problems": problems, "reason": "；".join(problems)}

    def users_with_role(self, role: str, exclude_starter: bool = True) -> list[str]:
        """Usernames holding a role (for a multi-instance task over them), the case's starter left out.

        No one left is an error: an empty vote must never pass as unanimous.
        """
        case_id, _user = self._current()
        starter = None
        if exclude_starter:
            with self.ctx.db.transaction() as s:
                row = s.get(ProcessInstance, case_id)
                starter = row.started_by if row else None
        names = sorted(u.username for u in self.identity.users(role) if u.username != starter)
        if not names:
            raise BadRequest(f"no user holds the role {role!r} (besides the requester); an admin must add one")
        return names

    def require_case(self, case_id: Any, process_id: str, field: str, expected: Any,
                     kind: str = "evidence") -> dict[str, Any]:
        """A finished case of `process_id` whose data `field` equals `expected`, linked from this case."""
        if case_id in (None, ""):
            return {"ok": False, "reason": f"未提供{process_id}流程编号"}
        try:
            other_id = int(case_id)
        except (TypeError, ValueError):
            return {"ok": False, "reason": f"流程编号 {case_id!r} 无效"}
        current_id, username = self._current()
        try:
            other = self.runtime.show(other_id)
        except NotFound:
            return {"ok": False, "reason": f"流程 {other_id} 不存在"}
        if other.process_id != process_id:
            return {"ok": False, "reason": f"流程 {other_id} 不是 {process_id} 流程（是 {other.process_id}）"}
        if other.status != "completed" or other.data.get(field) != expected:
            return {"ok": False, "reason": f"流程 {other_id} 尚未完成或结论不是 {expected}"
                                           f"（状态 {other.status}，{field}={other.data.get(field)!r}）"}
        with self.ctx.db.transaction() as s:
            linked = s.scalars(select(CaseLink).where(CaseLink.from_instance_id == current_id,
                                                      CaseLink.to_instance_id == other_id,
                                                      CaseLink.kind == kind)).first()
        if linked is None:
            self.runtime.link(current_id, other_id, kind, username)
        return {"ok": True, "reason": "", "instance_id": other_id, "title": other.title}
