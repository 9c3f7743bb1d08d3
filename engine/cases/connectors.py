"""Services the process library's BPMN service tasks call (besides `start_case`).

Each is generic (no process id is special-cased) and returns plain JSON data that the task stores
in its `resultVariable`; problems a requester can fix come back as `ok: false` with a Chinese
`reason` that the process shows when it returns the case, never as an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, time
from typing import Any

from sqlalchemy import or_, select

from engine.cases.evidence import TestEvidence
from engine.cases.regrading import LinkedRegrading
from engine.cases.runtime import RuntimeService
from engine.configuration import ConfigurationService
from engine.configuration.reconcile import RegisterReview
from engine.configuration.templates import StandardChangeServices
from engine.context import EngineContext
from engine.definitions.calendar import CalendarService
from engine.definitions.documents import RegisterDocuments
from engine.errors import BadRequest, NotFound
from engine.people.identity import IdentityService
from engine.spiff.timers import duration_from, parse_iso_duration
from engine.storage.models import CaseLink, ProcessInstance

_REGISTER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class LibraryServices:
    def __init__(self, ctx: EngineContext, identity: IdentityService, runtime: RuntimeService,
                 calendar: CalendarService | None = None,
                 configuration: ConfigurationService | None = None,
                 documents: RegisterDocuments | None = None) -> None:
        self.ctx = ctx
        self.documents = documents  # where the registers live (the database)
        self.identity = identity
        self.runtime = runtime
        self.calendar = calendar
        self.configuration = configuration

    def services(self) -> dict[str, Callable[..., Any]]:
        return {"check_users": self.check_users, "users_with_role": self.users_with_role,
                "require_case": self.require_case, "link_cases": self.link_cases,
                "linked_cases": self.linked_cases, "register_entries": self.register_entries,
                "register_entry": self.register_entry, "deadline": self.deadline,
                "check_config_item": self.check_config_item, "register_config_item": self.register_config_item,
                "update_item_versions": self.update_item_versions,
                # the standard-change catalogue (标准变更模板): check_standard_change, activate/expire/retire
                **StandardChangeServices(self.ctx, self.identity).services(),
                **RegisterReview(self.ctx, self.identity).services(),
                "check_test_evidence": self.check_test_evidence,
                **LinkedRegrading(self.ctx, self.runtime).services()}

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
                starter = s.scalar(select(ProcessInstance.started_by).where(ProcessInstance.id == case_id))
        names = sorted(u.username for u in self.identity.users(role) if u.username != starter)
        if not names:
            raise BadRequest(f"no user holds the role {role!r} (besides the requester); an admin must add one")
        return names

    def require_case(self, case_id: Any, process_id: str, field: str, expected: Any,
                     kind: str = "evidence") -> dict[str, Any]:
        """A finished case of `process_id` whose data `field` equals `expected`, linked from this case.

        `expected` may be a list: any of its values is accepted.
        """
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
        accepted = expected if isinstance(expected, list) else [expected]
        if other.status != "completed" or other.data.get(field) not in accepted:
            return {"ok": False, "reason": f"流程 {other_id} 尚未完成或结论不是 {expected}"
                                           f"（状态 {other.status}，{field}={other.data.get(field)!r}）"}
        self.runtime.link(current_id, other_id, kind, username)
        return {"ok": True, "reason": "", "instance_id": other_id, "title": other.title}

    def check_test_evidence(self, test_case_id: Any, systems: Any, target_versions: Any = None) -> dict[str, Any]:
        """{ok, reason}: a passed, signed-off system_testing case that tested `systems` (register ids) at
        `target_versions` ([{system, version}]; else the register's version) and no other change cites;
        the use is recorded as a test_evidence link (engine/cases/evidence.py)."""
        current_id, username = self._current()
        return TestEvidence(self.ctx, self.runtime, self._register_of_items()).check(
            current_id, username, test_case_id, systems, target_versions)

    def link_cases(self, case_ids: Any, process_id: str, kind: str, direction: str = "to",
                   required: bool = False) -> dict[str, Any]:
        """Link existing cases of `process_id` (any status) with this one; the list of all so linked.

        `direction` "to" stores this case -> other (this case opened or uses it), "from" stores
        other -> this case (the other one led to this one, as an incident leads to a problem).
        A link of the same kind between the two, either way, is not stored twice. `required`: at
        least one such linked case must exist afterwards.
        """
        if direction not in ("to", "from"):
            raise BadRequest(f"direction must be 'to' or 'from', not {direction!r}")
        if case_ids in (None, ""):
            case_ids = []
        if not isinstance(case_ids, list):
            case_ids = [case_ids]
        current_id, username = self._current()
        problems = []
        for raw in case_ids:
            try:
                other_id = int(raw)
            except (TypeError, ValueError):
                problems.append(f"流程编号 {raw!r} 无效")
                continue
            if other_id == current_id:
                problems.append(f"流程 {other_id} 是本流程自身")
                continue
            with self.ctx.db.transaction() as s:
                other = s.get(ProcessInstance, other_id)
                if other is None:
                    problems.append(f"流程 {other_id} 不存在")
                    continue
                if other.process_id != process_id:
                    problems.append(f"流程 {other_id} 不是 {process_id} 流程（是 {other.process_id}）")
                    continue
                exists = s.scalars(select(CaseLink).where(CaseLink.kind == kind, or_(
                    (CaseLink.from_instance_id == current_id) & (CaseLink.to_instance_id == other_id),
                    (CaseLink.from_instance_id == other_id) & (CaseLink.to_instance_id == current_id)))).first()
            if exists is None:
                source, target = (current_id, other_id) if direction == "to" else (other_id, current_id)
                self.runtime.link(source, target, kind, username)
        linked = [c["instance_id"] for c in self.linked_cases(process_id, kind)]
        if required and not linked and not problems:
            problems.append(f"须关联至少一个 {process_id} 流程（填写流程编号）")
        return {"ok": not problems, "problems": problems, "reason": "；".join(problems), "linked": linked}

    def linked_cases(self, process_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """The cases linked with this one (either way), optionally of one process and link kind."""
        current_id, _user = self._current()
        out = []
        with self.ctx.db.transaction() as s:
            query = select(CaseLink).where(or_(CaseLink.from_instance_id == current_id,
                                               CaseLink.to_instance_id == current_id)).order_by(CaseLink.id)
            if kind:
                query = query.where(CaseLink.kind == kind)
            for link in s.scalars(query):
                other_id = link.to_instance_id if link.from_instance_id == current_id else link.from_instance_id
                other = s.get(ProcessInstance, other_id)
                if other is None or (process_id and other.process_id != process_id):
                    continue
                out.append({"instance_id": other_id, "process_id": other.process_id, "kind": link.kind,
                            "direction": "to" if link.from_instance_id == current_id else "from",
                            "title": other.title, "status": other.status})
        return out

    # registers a process owner keeps (emergency plans …): the database's newest version, seeded from
    # processes/<register>.json (engine/definitions/documents.py); read on every call, so a plan saved on
    # another node is the one this node offers --------------------------------------------------------
    def _register(self, register: str) -> list[dict[str, Any]]:
        if not _REGISTER_NAME.match(str(register)):
            raise BadRequest(f"register name {register!r} must be lower-case letters, digits and _")
        document = self.documents.latest("register", register) if self.documents is not None else None
        path = self.ctx.settings.processes_dir / f"{register}.json"
        if document is not None:
            content, where = document.data(), f"register {register!r} version {document.version}"
        elif path.is_file():
            content, where = json.loads(path.read_text(encoding="utf-8")), path.name
        else:
            raise NotFound(f"no register {register!r} (not in the database, and {path.name} is missing "
                           f"from the processes directory)")
        entries = content.get("entries") if isinstance(content, dict) else None
        if not isinstance(entries, list):
            raise BadRequest(f"{where} must hold an object with an \"entries\" list")
        return entries

    def register_entries(self, register: str, active_only: bool = True) -> list[dict[str, Any]]:
        """A register's entries (the database's newest version, else `processes/<register>.json`), the
        inactive ones left out."""
        return [e for e in self._register(register) if not active_only or e.get("active", True)]

    def register_entry(self, register: str, entry_id: Any) -> dict[str, Any]:
        """One active entry by its `id`; an unknown or inactive id is `ok: false` with a reason."""
        for entry in self._register(register):
            if str(entry.get("id")) == str(entry_id):
                if not entry.get("active", True):
                    return {"ok": False, "reason": f"{entry_id} 已停用（{entry.get('name', '')}）", "entry": entry}
                return {"ok": True, "reason": "", "entry": entry}
        known = "、".join(str(e.get("id")) for e in self._register(register) if e.get("active", True))
        return {"ok": False, "reason": f"登记册中没有 {entry_id!r}（可选：{known}）", "entry": None}

    # the configuration items register (配置项, engine/configuration/) -------------------------------------
    def _register_of_items(self) -> ConfigurationService:
        if self.configuration is None:
            raise BadRequest("the configuration items register is not available to this engine")
        return self.configuration

    def check_config_item(self, action: Any, item_id: Any = None, item: Any = None) -> dict[str, Any]:
        """Whether this case's request (`action` create or update item `item_id`, with `item`'s fields)
        would register as the register stands now: {ok, reason, item_id, name, changes}; writes nothing."""
        self._current()
        return self._register_of_items().check_request(action, item_id, item)

    def register_config_item(self, action: Any, item_id: Any = None, item: Any = None) -> dict[str, Any]:
        """Create or change the one item this case asks for, in the case's transaction, audited as the
        user whose action runs this step (the config manager who approved it, held to ci.manage)."""
        case_id, username = self._current()
        return self._register_of_items().register_request(self.identity.get(username), case_id, action, item_id,
                                                          item)

    def update_item_versions(self, versions: Any) -> dict[str, Any]:
        """A change closed successfully: each item it names in `versions` ([{system: id, version}]) takes
        the version it brought, audited ci.updated as the user who closed it, with this case's id."""
        case_id, username = self._current()
        return self._register_of_items().update_versions(username, case_id, versions)

    # time -------------------------------------------------------------------------------------------
    def deadline(self, start: Any = None, duration: str | None = None, working_days: int = 0) -> str:
        """A due time (ISO 8601, the firm's zone) from `start` (default: now, by the engine clock).

        `duration` is an ISO 8601 duration ("PT30M", "P30D"); `working_days` counts whole working
        days after the start day (weekdays that are not holidays in the trading calendar) and gives
        the end of the last one. Both may be combined (working days first).
        """
        zone = self.ctx.zone
        if start in (None, ""):
            moment = self.ctx.now()
        else:
            try:
                moment = start if isinstance(start, datetime) else datetime.fromisoformat(str(start))
            except ValueError:
                raise BadRequest(f"deadline: start {start!r} is not an ISO 8601 date-time") from None
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(zone)
        if working_days:
            if self.calendar is None:
                raise BadRequest("deadline: working days need the trading calendar")
            calendar = self.calendar.calendar()
            day = moment.date()
            for _ in range(int(working_days)):
                day = calendar.next_trading_day(day)
            moment = datetime.combine(day, time(23, 59, 59), tzinfo=zone)
        if duration:
            try:
                moment += duration_from(moment, parse_iso_duration(str(duration)))
            except Exception:  # noqa: BLE001 (any parse failure is the author's problem)
                raise BadRequest(f"deadline: {duration!r} is not an ISO 8601 duration such as PT30M or P30D") \
                    from None
        return moment.isoformat()

