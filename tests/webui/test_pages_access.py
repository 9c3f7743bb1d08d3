"""The access policy in the browser: the refusals testers found, as pages answer them.

Over the whole process library (incidents open linked emergencies), the demo cast and a fixed clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine import ProcessEngine
from tests.conftest import ROOT, Clock, make_settings
from tests.processes.test_incident import incident_report
from tests.webui.test_pages_support import DEMO_USERS, START, Pages
from webui import create_app


@pytest.fixture
def pages(database_url: str, tmp_path: Path) -> Iterator[Pages]:
    clock = Clock(START)
    eng = ProcessEngine(make_settings(database_url, tmp_path, forms_dir=ROOT / "forms"), clock=clock)
    eng.migrate()
    eng.identity.seed_roles(ROOT / "processes" / "roles.json")
    eng.repository.deploy_directory(ROOT / "processes")
    eng.seed_demo_register()
    for u in DEMO_USERS:
        eng.identity.add_user(u["username"], u["roles"], u["display_name"])
    yield Pages(create_app(eng, {"SECRET_KEY": "pages-test", "TESTING": True}).test_client(), eng, clock)
    eng.close()


def p1_incident(pages: Pages) -> tuple[int, int]:
    engine, reporter = pages.engine, pages.actor("zhangwei")
    case = engine.runtime.start("incident", reporter, {"title": "网上交易中断"}).id
    report = pages.open_task(case, "report")
    engine.tasks.complete(report.id, reporter, incident_report(engine, impact="high", urgency="high"))
    [link] = engine.runtime.show(case).links
    return case, link["instance_id"]


def test_the_reporter_cannot_cancel_a_p1_incident_from_its_page(pages: Pages) -> None:
    case, emergency = p1_incident(pages)
    pages.sign_in("zhangwei")
    page = pages.get(f"/cases/{case}")
    assert page.status_code == 200 and 'id="cancel-form"' not in page.text  # not offered ...
    refused = pages.post(f"/cases/{case}/cancel", {"reason": "报错了"})  # ... and refused when forced
    assert refused.status_code == 403 and "report clock" in refused.text
    assert pages.engine.runtime.show(case).status == "running"
    assert pages.engine.runtime.show(emergency).status == "running"


def test_a_reportable_incident_is_cancelled_from_its_page_after_compliance_signs_off(pages: Pages) -> None:
    case, emergency = p1_incident(pages)
    pages.sign_in("liuyang")  # the ops manager reads the department's cases and may cancel
    page = pages.get(f"/cases/{case}")
    assert page.status_code == 200 and 'id="cancel-form"' in page.text
    asked = pages.post(f"/cases/{case}/cancel", {"reason": "重复报告"}, follow_redirects=True)
    assert asked.status_code == 200 and 'id="cancel-request"' in asked.text and "重复报告" in asked.text
    assert pages.engine.runtime.show(case).status == "running"
    pages.sign_in("sunyan")
    page = pages.get(f"/cases/{case}")
    assert 'id="cancel-form"' in page.text
    done = pages.post(f"/cases/{case}/cancel", {"reason": "核实重复"}, follow_redirects=True)
    assert done.status_code == 200 and 'id="case-status"' in done.text
    assert [pages.engine.runtime.show(c).status for c in (case, emergency)] == ["cancelled", "cancelled"]


def test_department_readers_open_a_p1_incident_that_others_cannot(pages: Pages) -> None:
    case, emergency = p1_incident(pages)
    for who in ("liuyang", "zhaolei", "sunyan"):
        pages.sign_in(who)
        assert pages.get(f"/cases/{case}").status_code == 200
        assert pages.get(f"/cases/{emergency}").status_code == 200
        assert pages.get(f"/cases/{case}/diagram.bpmn").status_code == 200
    pages.sign_in("huangmin")  # the test lead takes no part
    assert pages.get(f"/cases/{case}").status_code == 403
    assert pages.get(f"/cases/{case}/diagram.bpmn").status_code == 403


def test_a_substitute_reads_the_case_page_of_the_task_they_stand_in_for(pages: Pages) -> None:
    engine, now = pages.engine, pages.clock.now
    case = engine.runtime.start("incident", pages.actor("zhangwei"), {"title": "事件"}).id
    engine.tasks.complete(pages.open_task(case, "report").id, pages.actor("zhangwei"), incident_report(pages.engine))
    respond = pages.open_task(case, "respond")
    engine.tasks.claim(respond.id, pages.actor("lina"))
    pages.sign_in("wangqiang")  # an engineer, before standing in: the task is lina's alone now
    assert pages.get(f"/cases/{case}").status_code == 403
    assert pages.get(f"/tasks/{respond.id}").status_code == 403
    engine.substitutes.create(pages.actor("lina"), "wangqiang", now - timedelta(hours=1), now + timedelta(days=2))
    assert pages.get(f"/tasks/{respond.id}").status_code == 200
    assert pages.get(f"/cases/{case}").status_code == 200  # one rule: the task, its files and its case


def test_naming_an_unqualified_substitute_on_the_page_says_why(pages: Pages) -> None:
    pages.sign_in("zhaolei")  # the IT head names a staff-only user
    refused = pages.post("/substitutes", {"substitute": "zhangwei", "starts": "2026-11-20", "ends": "2026-11-27"})
    assert refused.status_code == 403 and "holds none of zhaolei" in refused.text
    assert pages.engine.substitutes.list("zhaolei") == []


def test_the_inbox_offers_assigning_only_to_the_grant(pages: Pages) -> None:
    case = pages.engine.runtime.start("incident", pages.actor("zhangwei"), {"title": "事件"}).id
    pages.engine.tasks.complete(pages.open_task(case, "report").id, pages.actor("zhangwei"),
                                incident_report(pages.engine))
    respond = pages.open_task(case, "respond")
    pages.sign_in("lina")
    assert 'name="user"' not in pages.get(f"/tasks/{respond.id}").text
    assert pages.post(f"/tasks/{respond.id}/assign", {"user": "wangqiang"}).status_code == 403
    pages.sign_in("liuyang")
    assert 'name="user"' in pages.get(f"/tasks/{respond.id}").text
    assert pages.post(f"/tasks/{respond.id}/assign", {"user": "wangqiang"}).status_code == 302
    assert pages.open_task(case, "respond").assignee == "wangqiang"


def test_the_readme_role_table_shows_the_grants_of_access_json() -> None:
    """README's role table is the policy file's: a grant changed in one and not the other fails here."""
    policy = json.loads((ROOT / "processes" / "access.json").read_text(encoding="utf-8"))["grants"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("<!-- grants -->"):readme.index("<!-- /grants -->")]
    for action, grant in policy.items():
        row = re.search(rf"^\| `{re.escape(action)}` \|[^|]*\| ([^|]*) \|$", table, re.M)
        assert row, f"README role table has no row for {action}"
        listed = {r.strip(" `") for r in row.group(1).split(",") if r.strip()}
        assert listed == set(grant["roles"]), (action, listed)
