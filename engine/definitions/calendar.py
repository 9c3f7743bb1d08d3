"""The trading calendar: which days the markets trade and when, and whether a change window hits it.

Data, not code (REQUIREMENTS §2.4-5): the session times per market and the weekday closures per
year, versioned in the database (engine/definitions/documents.py: `calendar` `sessions` and
`holidays`), seeded at init from `processes/calendar/sessions.json` and `holidays.json`; the format is
in `processes/calendar/README.md`. Every read checks the newest version numbers (one small query), so
a holiday saved on one node applies on every node at once. A document not in the database yet is read
from its file, re-read when the file changes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from engine.definitions.documents import RegisterDocuments
    from engine.storage.audit import AuditService

CALENDAR_KEYS = ("sessions", "holidays")  # its documents in the database (engine/definitions/documents.py)


@dataclass(frozen=True)
class Market:
    code: str
    name: str
    day: tuple[tuple[time, time], ...]
    night: tuple[time, time] | None


@dataclass(frozen=True)
class Session:
    market: Market
    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        return {"market": self.market.code, "name": self.market.name,
                "start": self.start.isoformat(), "end": self.end.isoformat()}


def _hm(text: str) -> time:
    return datetime.strptime(text, "%H:%M").time()


class TradingCalendar:
    def __init__(self, zone: ZoneInfo, markets: dict[str, Market], closed: dict[int, set[date]]) -> None:
        self.zone = zone
        self.markets = markets
        self.closed = closed

    @classmethod
    def load(cls, directory: Path) -> TradingCalendar:
        return cls.of(json.loads((directory / "sessions.json").read_text(encoding="utf-8")),
                      json.loads((directory / "holidays.json").read_text(encoding="utf-8")))

    @classmethod
    def of(cls, sessions: dict[str, Any], holidays: dict[str, Any]) -> TradingCalendar:
        markets = {}
        for code, m in sessions["markets"].items():
            night = m.get("night")
            markets[code] = Market(code, m.get("name", code), tuple((_hm(a), _hm(b)) for a, b in m.get("day", [])),
                                   (_hm(night[0]), _hm(night[1])) if night else None)
        closed = {int(year): {date.fromisoformat(d) for d in days} for year, days in holidays["closed"].items()}
        return cls(ZoneInfo(sessions.get("timezone", "Asia/Shanghai")), markets, closed)

    # days ---------------------------------------------------------------------------------------
    def is_trading_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.closed.get(day.year, set())

    def next_trading_day(self, day: date) -> date:
        day += timedelta(days=1)
        while not self.is_trading_day(day):
            day += timedelta(days=1)
        return day

    def has_night_session(self, day: date) -> bool:
        """Night trading runs on a trading day unless a holiday (not just a weekend) follows it."""
        if not self.is_trading_day(day):
            return False
        nxt = self.next_trading_day(day)
        between = (day + timedelta(days=i) for i in range(1, (nxt - day).days))
        return all(d.weekday() >= 5 for d in between)

    # sessions -----------------------------------------------------------------------------------
    def sessions(self, market: Market, day: date) -> list[Session]:
        """The sessions that start on this calendar day."""
        if not self.is_trading_day(day):
            return []
        out = [Session(market, self._at(day, a), self._at(day, b)) for a, b in market.day]
        if market.night and self.has_night_session(day):
            start, end = market.night
            out.append(Session(market, self._at(day, start),
                               self._at(day + timedelta(days=1) if end <= start else day, end)))
        return out

    def _at(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self.zone)

    def overlapping(self, start: datetime, end: datetime, markets: list[str]) -> list[Session]:
        local_start, local_end = start.astimezone(self.zone), end.astimezone(self.zone)
        hits = []
        day = local_start.date() - timedelta(days=1)  # yesterday's night session runs past midnight
        while day <= local_end.date():
            for code in markets:
                hits += [s for s in self.sessions(self.markets[code], day) if s.start < end and start < s.end]
            day += timedelta(days=1)
        return sorted(hits, key=lambda s: (s.start, s.market.code))

    def missing_years(self, start: datetime, end: datetime) -> list[int]:
        years = range(start.astimezone(self.zone).year, end.astimezone(self.zone).year + 1)
        return [y for y in years if y not in self.closed]

    # the change window check ----------------------------------------------------------------------
    def check_window(self, start: str, end: str, markets: list[str] | None = None) -> dict[str, Any]:
        """Judge a planned window against the sessions of the markets a change affects.

        `window_class`: `trading_session` (overlaps a session), `trading_day` (on a trading day but
        outside its sessions) or `non_trading_day`. `ok` is false when the window is unusable.
        """
        markets = sorted(set(markets or []))
        try:
            ws, we = _aware(start, self.zone), _aware(end, self.zone)
        except (TypeError, ValueError):
            return _verdict(False, "invalid", f"变更窗口时间无法识别：{start!r} – {end!r}")
        if we <= ws:
            return _verdict(False, "invalid", "变更窗口的结束时间必须晚于开始时间")
        unknown = [m for m in markets if m not in self.markets]
        if unknown:
            return _verdict(False, "invalid", f"交易日历中没有这些市场：{', '.join(unknown)}")
        warnings = [f"交易日历缺少 {y} 年的休市安排，按所有工作日均为交易日处理"
                    for y in self.missing_years(ws, we)]
        hits = self.overlapping(ws, we, markets)
        if hits:
            listed = "；".join(f"{s.market.name}({s.market.code}) {_local(s.start)}–{_local(s.end)}" for s in hits[:5])
            more = f" 等 {len(hits)} 个时段" if len(hits) > 5 else ""
            reason = (f"变更窗口 {_local(ws.astimezone(self.zone))}–{_local(we.astimezone(self.zone))} "
                      f"与交易时段重叠：{listed}{more}。请改到非交易时段，紧急情况请按紧急变更申请。")
            return _verdict(False, "trading_session", reason, hits, warnings)
        day, trading_day = ws.astimezone(self.zone).date(), False
        while day <= we.astimezone(self.zone).date():
            trading_day = trading_day or self.is_trading_day(day)
            day += timedelta(days=1)
        return _verdict(True, "trading_day" if trading_day else "non_trading_day", "", [], warnings)


def _aware(value: str, zone: ZoneInfo) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _verdict(ok: bool, window_class: str, reason: str, hits: list[Session] | None = None,
             warnings: list[str] | None = None) -> dict[str, Any]:
    return {"ok": ok, "overlaps": bool(hits), "window_class": window_class, "reason": reason,
            "conflicts": [s.as_dict() for s in hits or []], "warnings": warnings or []}


def calendar_problem(key: str, data: Any) -> str | None:
    """Why `data` cannot be the calendar's `sessions` or `holidays` document, or None."""
    empty_sessions: dict[str, Any] = {"markets": {}}
    empty_holidays: dict[str, Any] = {"closed": {}}
    try:
        if key == "sessions":
            TradingCalendar.of(data, empty_holidays)
        else:
            TradingCalendar.of(empty_sessions, data)
    except (AttributeError, KeyError, TypeError, ValueError, ZoneInfoNotFoundError) as exc:
        return f"calendar {key}: not in the format of processes/calendar/README.md ({type(exc).__name__}: {exc})"
    return None


class CalendarService:
    """The calendar behind the `trading_window_check` service: the database's newest version of each
    document, else its file (an engine whose database was never seeded)."""

    def __init__(self, directory: Path, audit: AuditService | None = None,
                 documents: RegisterDocuments | None = None) -> None:
        self.directory = directory
        self.audit = audit  # where holiday imports are recorded (the engine passes it; a bare reader needs none)
        self.documents = documents
        self._lock = threading.Lock()
        self._loaded: tuple[tuple[Any, ...], TradingCalendar] | None = None

    def _stamp(self) -> tuple[Any, ...]:
        """What the calendar was built from: each document's version in the database, or its file's mtime."""
        versions = self.documents.versions("calendar") if self.documents is not None else {}
        return tuple(("v", versions[key]) if key in versions
                     else ("file", (self.directory / f"{key}.json").stat().st_mtime) for key in CALENDAR_KEYS)

    def _data(self, key: str) -> dict[str, Any]:
        document = self.documents.latest("calendar", key) if self.documents is not None else None
        if document is not None:
            return dict(document.data())
        return dict(json.loads((self.directory / f"{key}.json").read_text(encoding="utf-8")))

    def calendar(self) -> TradingCalendar:
        stamp = self._stamp()
        with self._lock:
            if self._loaded is None or self._loaded[0] != stamp:
                # built from what was read after the stamp: a save in between only means one more rebuild
                self._loaded = (stamp, TradingCalendar.of(self._data("sessions"), self._data("holidays")))
            return self._loaded[1]

    def check_window(self, start: str, end: str, markets: list[str] | None = None) -> dict[str, Any]:
        return self.calendar().check_window(start, end, markets)

    def import_holidays(self, text: str, file_name: str, by: str = "system") -> dict[int, int]:
        """`import_holidays` into this calendar, recorded in the audit trail with the days it added.

        With the database (the engine's calendar) the merged list is saved as the next version of the
        `holidays` document in the same transaction; a bare calendar merges into its holidays.json.
        """
        if self.audit is None:
            raise RuntimeError("a calendar without an audit trail cannot import")
        if self.documents is not None:
            return self._import_into_database(text, file_name, by)
        path = self.directory / "holidays.json"
        previous = path.read_text(encoding="utf-8")
        before = {d for days in json.loads(previous).get("closed", {}).values() for d in days}
        try:
            with self.audit.ctx.db.transaction() as s:
                counts = import_holidays(self.directory, text)
                after = {d for days in json.loads(path.read_text(encoding="utf-8"))["closed"].values() for d in days}
                self.audit.record(s, by, "calendar.holidays_imported", data={
                    "file": file_name, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                    "added": sorted(after - before), "years": {str(y): n for y, n in counts.items()}})
        except Exception:
            path.write_text(previous, encoding="utf-8")  # not recorded, so not changed
            raise
        return counts

    def _import_into_database(self, text: str, file_name: str, by: str) -> dict[int, int]:
        assert self.documents is not None and self.audit is not None
        with self.audit.ctx.db.transaction() as s:
            holidays = self._data("holidays")
            before = {d for days in holidays.get("closed", {}).values() for d in days}
            merged = merge_holidays(holidays, text)
            self.documents.save("calendar", "holidays", json.dumps(merged, ensure_ascii=False, indent=2) + "\n", by)
            after = {d for days in merged["closed"].values() for d in days}
            counts = {int(y): len(v) for y, v in merged["closed"].items()}
            self.audit.record(s, by, "calendar.holidays_imported", data={
                "file": file_name, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "added": sorted(after - before), "years": {str(y): n for y, n in counts.items()}})
        return counts


def import_holidays(directory: Path, text: str) -> dict[int, int]:
    """Merge a firm's holiday list into directory/holidays.json; returns how many days each year now has."""
    path = directory / "holidays.json"
    holidays = merge_holidays(json.loads(path.read_text(encoding="utf-8")), text)
    path.write_text(json.dumps(holidays, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return {int(y): len(v) for y, v in holidays["closed"].items()}


def merge_holidays(holidays: dict[str, Any], text: str) -> dict[str, Any]:
    """A holidays document with a firm's holiday list merged in (the argument is left unchanged).

    The list is one closed weekday per line (`YYYY-MM-DD`, optionally followed by a comma or
    whitespace and a name such as `2027-02-08,春节`); blank lines and lines starting with # are
    ignored. A weekend date is refused: exchanges never trade on weekends, so listing one is a typo.
    """
    days: set[date] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        token = line.replace(",", " ").replace("\t", " ").split()[0]
        try:
            day = date.fromisoformat(token)
        except ValueError:
            raise ValueError(f"line {number}: {token!r} is not a date (YYYY-MM-DD)") from None
        if day.weekday() >= 5:
            raise ValueError(f"line {number}: {day} is a weekend day; list only weekdays the exchanges close")
        days.add(day)
    holidays = json.loads(json.dumps(holidays))
    closed: dict[str, list[str]] = holidays.setdefault("closed", {})
    for day in days:
        year = closed.setdefault(str(day.year), [])
        if day.isoformat() not in year:
            year.append(day.isoformat())
    for key in closed:
        closed[key] = sorted(set(closed[key]))
    holidays["closed"] = dict(sorted(closed.items()))
    return holidays
