"""The failures page (/admin/failures): a case stuck on a timer whose script ran over its budget is shown
to the process owner with the element and the error, retried by them (audited), refused to others; the case
page and the cases list show it stuck, and the API lists and retries it under the same grant."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine import ProcessEngine
from engine.spiff.parsing import SourceFile
from tests.conftest import FIXTURES, ROOT, Clock, make_settings
from tests.engine.test_failed_cases import SPINS
from tests.webui.test_pages_support import Pages
from webui import create_app


@pytest.fixture
def stuck(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[tuple[Pages, int]]:
    """A signed-out browser and case whose timer's script never ends (scripts stop after 0.5 s)."""
    eng = ProcessEngine(replace(make_settings(database_url, tmp_path, forms_dir=FIXTURES / "forms"),
                                script_timeout=0.5), clock=clock)
    eng.migrate()
    eng.identity.seed_roles(ROOT / "processes" / "roles.json")
    for name, roles in (("owner", ["process_owner"]), ("wang", ["ops_engineer"]), ("zhang", ["staff"])):
        eng.identity.add_user(name, roles)
    eng.repository.deploy([SourceFile("timer_script.bpmn", SPINS.encode())], "owner")
    case = eng.runtime.start("timer_script", eng.identity.get("wang"), {"title": "夜间巡检"}).id
    clock.advance(hours=2)
    eng.jobs.tick()
    app = create_app(eng, {"SECRET_KEY": "failures-test", "TESTING": True})
    yield Pages(app.test_client(), eng, clock), case
    eng.close()


def test_the_process_owner_sees_the_stuck_case_and_retries_it(stuck: tuple[Pages, int]) -> None:
    pages, case = stuck
    pages.sign_in("owner")
    inbox = pages.get("/inbox").text
    assert 'id="nav-failures"' in inbox
    page = pages.get("/admin/failures")
    assert page.status_code == 200
    assert f'id="failure-case-{case}"' in page.text and "夜间巡检" in page.text
    assert "&#39;check&#39;" in page.text and "OPSFLOW_SCRIPT_TIMEOUT" in page.text
    done = pages.post("/admin/failures/retry", {"instance_id": str(case)}, follow_redirects=True)
    assert done.status_code == 200 and f"已安排重试案件 {case}" in done.text  # 中文 by default
    history = pages.engine.runtime.show(case).history
    assert [(e.actor, e.action) for e in history if e.action == "job.retried"] == [("owner", "job.retried")]


def test_the_process_owner_opens_the_stuck_case_to_diagnose_it_but_not_once_it_ended(
        stuck: tuple[Pages, int]) -> None:
    pages, case = stuck
    pages.sign_in("owner")
    assert pages.get(f"/cases/{case}").status_code == 200  # not a taker of the case: stuck is the reason
    assert f"/cases/{case}" in pages.get("/cases").text
    pages.engine.runtime.cancel(case, pages.engine.identity.get("wang"), reason="巡检脚本有误，改版后重开")
    assert pages.get(f"/cases/{case}").status_code == 403


def test_others_get_403_on_the_page_and_on_retry(stuck: tuple[Pages, int]) -> None:
    pages, case = stuck
    for who in ("zhang", "wang"):
        pages.sign_in(who)
        assert 'id="nav-failures"' not in pages.get("/inbox").text
        assert pages.get("/admin/failures").status_code == 403
        assert pages.post("/admin/failures/retry", {"instance_id": str(case)}).status_code == 403
    assert "job.retried" not in [e.action for e in pages.engine.runtime.show(case).history]


def test_a_retry_without_the_form_token_is_refused(stuck: tuple[Pages, int]) -> None:
    pages, case = stuck
    pages.sign_in("owner")
    assert pages.post("/admin/failures/retry", {"instance_id": str(case)}, csrf=False).status_code == 400


def test_the_case_page_and_list_show_it_stuck_and_its_starter_cancels_it(stuck: tuple[Pages, int]) -> None:
    pages, case = stuck
    pages.sign_in("wang")
    page = pages.get(f"/cases/{case}").text
    assert 'id="case-error"' in page and "&#39;check&#39;" in page and 'id="cancel-form"' in page
    assert "已卡住" in pages.get("/cases").text
    done = pages.post(f"/cases/{case}/cancel", {"reason": "脚本有误"}, follow_redirects=True)
    assert done.status_code == 200 and 'id="case-error"' not in done.text
    assert pages.engine.runtime.show(case).status == "cancelled"
    pages.sign_in("owner")
    assert 'id="no-failures"' in pages.get("/admin/failures").text


def test_the_api_lists_and_retries_failures_for_the_process_owner_only(stuck: tuple[Pages, int]) -> None:
    pages, case = stuck
    owner = {"Authorization": f"Bearer {pages.engine.identity.create_token('owner')}"}
    staff = {"Authorization": f"Bearer {pages.engine.identity.create_token('wang')}"}
    listed = pages.client.get("/api/v1/failures", headers=owner)
    assert listed.status_code == 200
    [item] = listed.get_json()["items"]
    assert item["instance_id"] == case and "'check'" in item["error"] and item["state"] == "retrying"
    assert pages.client.get("/api/v1/failures", headers=staff).status_code == 403
    assert "'check'" in pages.client.get(f"/api/v1/instances/{case}", headers=staff).get_json()["error"]
    body = {"instance_id": case}
    assert pages.client.post("/api/v1/failures/retry", json=body, headers=staff).status_code == 403
    retried = pages.client.post("/api/v1/failures/retry", json=body, headers=owner)
    assert retried.status_code == 200 and retried.get_json()["job_id"] == item["job_id"]
