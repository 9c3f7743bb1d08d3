"""Due times, priorities and escalation rules of user tasks, read from their BPMN properties.

    <spiffworkflow:property name="dueIn" value="P5D" />            a duration from creation
    <spiffworkflow:property name="dueInFrom" value="sla" />        ... or from a case data field ("PT30M")
    <spiffworkflow:property name="dueFrom" value="report_by" />    ... or a datetime field of the case
    <spiffworkflow:property name="dueCalendar" value="working" />  count dueIn in trading days
    <spiffworkflow:property name="priorityFrom" value="priority" /> 1-5 or "P1".."P5" from case data
    <spiffworkflow:property name="escalation"
        value="50%: notify assignee; 75%: notify manager; 100%: notify supervisor via inapp, email, webhook;
               100%: reassign ops_manager" />

Escalation syntax (rules separated by `;`, each `WHEN: ACTION`; `；` and `：` work too):

    WHEN    N%            a share of the time from creation to the due time (0% = at creation)
            due           the due time itself (= 100%)
            due+PT1H      a duration after the due time
            PT2H          a duration after creation (needs no due time)
    ACTION  notify TARGET[, TARGET...] [via CHANNEL[, CHANNEL...]]
            reassign TARGET               the task goes to that role's queue (or to @user)
    TARGET  assignee (the queue's holders while unclaimed) | manager (the role's manager) |
            supervisor | starter | a role key or Chinese role name | @username
    CHANNEL inapp | email | webhook (the group robot); default: inapp, email
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.spiff.timers import duration_from, parse_iso_duration

CALENDARS = ("calendar", "working")
CHANNELS = ("inapp", "email", "webhook")
DEFAULT_CHANNELS = ("inapp", "email")
SPECIAL_TARGETS = ("assignee", "manager", "supervisor", "starter")
# Whom "manager" means for each role: processes/access.json `managers` (engine/people/access.py).


# durations ----------------------------------------------------------------------------------------
def parse_duration(text: str) -> dict[str, float]:
    """An ISO 8601 duration as the BPMN timers parse it ({'days': 5, 'hours': 4}); ValueError if invalid."""
    text = str(text).strip()
    if not text.upper().startswith("P"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P1D or PT4H")
    try:
        return parse_iso_duration(text)
    except Exception:  # noqa: BLE001 (Spiff raises a bare Exception)
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P1D or PT4H") from None


def add_duration(start: datetime, parsed: dict[str, float], times: int = 1) -> datetime:
    """start + times x duration, with calendar-correct months and years (in start's zone)."""
    scaled = {k: v * times for k, v in parsed.items()}
    return start + duration_from(start, scaled)


def add_working(start: datetime, parsed: dict[str, float], calendar: Any) -> datetime:
    """Whole trading days (P5D; a week is 5) at the same clock time, then any time part in calendar time.

    Counting starts from the next trading day, so P1D from Friday evening (or Saturday) is Monday.
    """
    if parsed.get("years") or parsed.get("months"):
        raise ValueError("working-time durations count days or weeks, not months or years")
    days = parsed.get("days", 0) + 5 * parsed.get("weeks", 0)
    if days != int(days):
        raise ValueError("working-time durations count whole days")
    local = start.astimezone(calendar.zone)
    day = local.date()
    for _ in range(int(days)):
        day = calendar.next_trading_day(day)
    due = datetime.combine(day, local.time(), tzinfo=calendar.zone)
    return due + timedelta(hours=parsed.get("hours", 0), minutes=parsed.get("minutes", 0),
                           seconds=parsed.get("seconds", 0))


def parse_moment(value: Any, zone: ZoneInfo) -> datetime:
    """A datetime or ISO string; a naive one is in the engine's zone (never the server's)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


# due time and priority ------------------------------------------------------------------------------
def due_at(rules: Any, data: dict[str, Any], now: datetime, zone: ZoneInfo,
           calendar: Any = None) -> datetime | None:
    """The task's due time: dueFrom (a date in the data), else dueInFrom / dueIn from creation.

    With dueCalendar="working" the duration counts trading days of the trading calendar.
    A duration the data gets wrong falls back to dueIn; a bad date leaves the task without a due time
    (neither fails the case).
    """
    props = rules.properties
    if rules.due_from and data.get(rules.due_from):
        try:
            return parse_moment(data[rules.due_from], zone)
        except (TypeError, ValueError):
            return None
    texts = [str(data[props["dueInFrom"]])] if props.get("dueInFrom") and data.get(props["dueInFrom"]) else []
    for text in [*texts, *([rules.due_in] if rules.due_in else [])]:  # the data's duration, else dueIn
        try:
            parsed = parse_duration(text)
            if props.get("dueCalendar", "calendar") == "working" and calendar is not None:
                return add_working(now, parsed, calendar.calendar())
            return add_duration(now, parsed)
        except ValueError:
            continue
    return None


def priority_of(rules: Any, data: dict[str, Any]) -> int:
    """priorityFrom names a data field holding 1-5 or "P1".."P5"; else the task's fixed priority."""
    field = rules.properties.get("priorityFrom")
    value = data.get(field) if field else None
    if value is None or isinstance(value, bool):
        return rules.priority
    text = str(value).strip().upper().removeprefix("P")
    return int(text) if text.isdigit() and 1 <= int(text) <= 5 else rules.priority


# escalation -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EscalationRule:
    text: str
    percent: float | None  # share of created -> due; None: counted from creation alone
    offset: str | None  # ISO duration added (after creation, or after the percentage point)
    action: str  # notify | reassign
    targets: tuple[str, ...]
    channels: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.text.split(":", 1)[0].split("：", 1)[0].strip()

    def fires_at(self, created: datetime, due: datetime | None) -> datetime | None:
        if self.percent is not None:
            if due is None:
                return None
            at = created + (due - created) * (self.percent / 100)
        else:
            at = created
        return add_duration(at, parse_duration(self.offset)) if self.offset else at


_RULE = re.compile(r"^(?P<when>[^:：]+)[:：](?P<action>.+)$", re.S)
_PERCENT = re.compile(r"^(\d{1,4}(?:\.\d+)?)\s*%$")
_DUE_PLUS = re.compile(r"^due\s*\+\s*(P\S+)$", re.I)


def parse_escalation(text: str) -> list[EscalationRule]:
    """Parse an `escalation` property; ValueError naming the first rule that is wrong."""
    rules = []
    for part in re.split(r"[;；\n]", text or ""):
        part = part.strip()
        if not part:
            continue
        m = _RULE.match(part)
        if not m:
            raise ValueError(f"{part!r}: write WHEN: ACTION, e.g. '75%: notify manager'")
        when, action = m.group("when").strip(), " ".join(m.group("action").split())
        percent, offset = _parse_when(part, when)
        verb, _, rest = action.partition(" ")
        verb = verb.lower()
        if verb == "notify":
            pieces = re.split(r"\s+via\s+", rest, maxsplit=1, flags=re.I)
            targets = _list(pieces[0])
            channels = tuple(c.lower() for c in _list(pieces[1])) if len(pieces) == 2 else DEFAULT_CHANNELS
            if not channels:
                raise ValueError(f"{part!r}: 'via' needs a channel ({', '.join(CHANNELS)})")
            bad = [c for c in channels if c not in CHANNELS]
            if bad:
                raise ValueError(f"{part!r}: unknown channel {bad[0]!r} (use {', '.join(CHANNELS)})")
        elif verb == "reassign":
            targets, channels = _list(rest), ()
            if len(targets) != 1:
                raise ValueError(f"{part!r}: reassign names one role or @user")
            if targets[0] in ("assignee", "starter"):
                raise ValueError(f"{part!r}: reassign to a role, manager, supervisor or @user")
        else:
            raise ValueError(f"{part!r}: the action is 'notify ...' or 'reassign ...', not {verb!r}")
        if not targets:
            raise ValueError(f"{part!r}: name whom to {verb}")
        rules.append(EscalationRule(part, percent, offset, verb, targets, channels))
    return rules


def _parse_when(part: str, when: str) -> tuple[float | None, str | None]:
    if m := _PERCENT.match(when):
        return float(m.group(1)), None
    if when.lower() == "due":
        return 100.0, None
    if m := _DUE_PLUS.match(when):
        parse_duration(m.group(1).upper())
        return 100.0, m.group(1).upper()
    if when.upper().startswith("P"):
        try:
            parse_duration(when.upper())
        except ValueError as exc:
            raise ValueError(f"{part!r}: {exc}") from None
        return None, when.upper()
    raise ValueError(f"{part!r}: WHEN is N%, due, due+PT1H or a duration such as PT2H, not {when!r}")


def _list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in re.split(r"[,，、]|\s+and\s+|\s+", text or "") if p.strip())


def lint_deadlines(rules: Any, resolve_role: Callable[[str], str | None]) -> list[str]:
    """Problems with a user task's due-time, priority and escalation properties (for deploy)."""
    props, problems = rules.properties, []
    calendar = props.get("dueCalendar")
    if calendar is not None and calendar not in CALENDARS:
        problems.append(f"dueCalendar {calendar!r} is 'calendar' or 'working' (trading days)")
    if calendar == "working":
        if not (rules.due_in or props.get("dueInFrom")):
            problems.append("dueCalendar 'working' needs a dueIn or dueInFrom duration")
        elif rules.due_in:
            try:
                parsed = parse_duration(rules.due_in)
                if parsed.get("years") or parsed.get("months") or \
                        parsed.get("days", 0) != int(parsed.get("days", 0)):
                    problems.append(f"dueIn {rules.due_in!r} in working time counts whole days or weeks")
            except ValueError:
                pass  # reported as a bad dueIn already
    for name in ("dueInFrom", "priorityFrom"):
        if props.get(name) is not None and not props[name].isidentifier():
            problems.append(f"{name} {props[name]!r} is not a data field name")
    if "escalation" not in props:
        return problems
    try:
        parsed_rules = parse_escalation(props["escalation"])
    except ValueError as exc:
        return [*problems, f"escalation {exc}"]
    if not parsed_rules:
        problems.append("escalation is empty")
    has_due = bool(rules.due_in or rules.due_from or props.get("dueInFrom"))
    for rule in parsed_rules:
        if rule.percent is not None and not has_due:
            problems.append(f"escalation {rule.text!r} is relative to the due time, but the task has none "
                            f"(set dueIn, dueInFrom or dueFrom)")
        for target in rule.targets:
            if target.startswith("@"):
                if len(target) < 2:
                    problems.append(f"escalation {rule.text!r}: '@' needs a username")
            elif target not in SPECIAL_TARGETS and resolve_role(target) is None:
                problems.append(f"escalation {rule.text!r}: {target!r} is no role (nor assignee, manager, "
                                f"supervisor, starter or @user)")
    return problems


def reassign_roles(rules: Any, resolve_role: Callable[[str], str | None], manager: str) -> list[str]:
    """The roles the task's `reassign` escalation rules hand it to (`manager` is the lane's manager)."""
    try:
        parsed = parse_escalation(rules.properties.get("escalation") or "")
    except ValueError:
        return []  # reported by lint_deadlines
    targets = [r.targets[0] for r in parsed if r.action == "reassign" and r.targets]
    return [manager if t == "manager" else "supervisor" if t == "supervisor" else resolve_role(t) or t
            for t in targets if not t.startswith("@")]
