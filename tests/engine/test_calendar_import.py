"""Loading a firm's holiday list into the trading calendar."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from engine.definitions.calendar import TradingCalendar, import_holidays
from tests.conftest import ROOT


@pytest.fixture
def calendar_dir(tmp_path: Path) -> Path:
    target = tmp_path / "calendar"
    shutil.copytree(ROOT / "processes" / "calendar", target)
    return target


def test_imported_holidays_close_the_exchanges_on_those_days(calendar_dir: Path) -> None:
    counts = import_holidays(calendar_dir, "# 2027 春节\n2027-02-08,春节\n2027-02-09 春节\n\n2027-02-09\n")
    assert counts[2027] == 2
    calendar = TradingCalendar.load(calendar_dir)
    assert not calendar.is_trading_day(date(2027, 2, 8))
    assert calendar.is_trading_day(date(2027, 2, 10))
    assert "2025" in json.loads((calendar_dir / "holidays.json").read_text(encoding="utf-8"))["closed"]


@pytest.mark.parametrize(("text", "message"), [
    ("2027-02-06\n", "line 1: 2027-02-06 is a weekend day"),
    ("2027-02-08\nfoo\n", "line 2: 'foo' is not a date"),
])
def test_bad_lines_are_refused_with_their_line_number_and_nothing_changes(calendar_dir: Path, text: str,
                                                                           message: str) -> None:
    before = (calendar_dir / "holidays.json").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        import_holidays(calendar_dir, text)
    assert (calendar_dir / "holidays.json").read_text(encoding="utf-8") == before
