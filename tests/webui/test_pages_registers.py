"""The register editor: the trading calendar and the emergency plans edited in the browser, each save a new
version in the database (issue 16, item 5)."""

from __future__ import annotations

import json
from datetime import date

from tests.webui.test_pages_support import Pages, library_engine, page_clock, page_engine, pages  # noqa: F401


def test_a_process_owner_saves_a_plan_as_a_new_version_that_the_service_tasks_read(pages: Pages) -> None:
    pages.sign_in("maqing")
    assert 'id="registers"' in pages.get("/processes").text
    page = pages.get("/registers/calendar/holidays/edit")
    assert page.status_code == 200 and "2026-10-01" in page.text  # the file, not yet in the database
    plans = {"description": "应急预案登记册", "entries": [{"id": "EP-NET-01", "name": "网络中断应急预案"}]}
    response = pages.post("/registers/register/emergency_plans", {"text": json.dumps(plans, ensure_ascii=False)})
    assert response.status_code == 302
    page = pages.get(response.headers["Location"])
    assert "网络中断应急预案" in page.text and 'id="history"' in page.text and "maqing" in page.text
    entries = pages.engine.ctx.environment.services["register_entries"]("emergency_plans")
    assert [e["id"] for e in entries] == ["EP-NET-01"]
    event = pages.engine.audit.events()[-1]
    assert (event.actor, event.action, event.data["version"]) == ("maqing", "document.saved", 1)


def test_a_holiday_saved_in_the_browser_closes_the_market(pages: Pages) -> None:
    pages.sign_in("maqing")
    text, _ = pages.engine.documents.current("calendar", "holidays")
    holidays = json.loads(text)
    holidays["closed"].setdefault("2026", []).append("2026-12-07")
    response = pages.post("/registers/calendar/holidays", {"text": json.dumps(holidays)})
    assert response.status_code == 302
    assert not pages.engine.calendar.calendar().is_trading_day(date(2026, 12, 7))


def test_bad_json_is_refused_with_the_reason_and_nothing_is_saved(pages: Pages) -> None:
    pages.sign_in("maqing")
    bad = '{"markets": {"SSE": {"day": [["9:xx", "11:30"]]}}}'
    response = pages.post("/registers/calendar/sessions", {"text": bad})
    assert response.status_code == 422 and 'id="problems"' in response.text and "9:xx" in response.text
    assert pages.engine.documents.versions("calendar") == {}
    assert pages.post("/registers/form/approval.json", {"text": "{}"}).status_code == 422  # forms: the form editor


def test_only_those_who_may_edit_registers_see_or_save_them(pages: Pages) -> None:
    pages.sign_in("zhangwei")
    assert pages.get("/registers/register/emergency_plans/edit").status_code == 403
    assert pages.post("/registers/register/emergency_plans", {"text": '{"entries": []}'}).status_code == 403
    assert pages.engine.documents.versions("register") == {}
    pages.sign_in("maqing")
    assert pages.get("/registers/register/no_such_register/edit").status_code == 404
