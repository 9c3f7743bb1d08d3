"""Substitutes (A/B角): the substitute sees the holder's tasks, acts on them, and the record says so."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.errors import BadRequest, Forbidden
from engine.spiff.parsing import SourceFile
from tests.conftest import ROOT
from tests.processes.conftest import Flow
from tests.processes.test_change import change_request as change_form_data
from tests.processes.test_change import evidence_for
from tests.webui.test_pages_support import CHANGE_FORM, Pages, page_clock, page_engine, pages  # noqa: F401

CHANGE_FORM_DATA = change_form_data()


def name_substitute(pages: Pages, holder: str, substitute: str) -> None:
    pages.sign_in(holder)
    response = pages.post("/substitutes", {"substitute": substitute, "starts": "2026-11-20", "ends": "2026-11-27",
                                           "reason": "休假"})
    assert response.status_code == 302


def test_substitute_sees_and_completes_the_holders_task_acting_for_them(pages: Pages) -> None:
    case = pages.start_change()
    task = pages.open_task(case, "request")
    pages.engine.identity.add_user("zhaoyun", ["staff"], "赵云")
    name_substitute(pages, "zhangwei", "zhaoyun")
    pages.sign_in("zhaoyun")
    inbox = pages.get("/").text
    assert 'data-bpmn="request"' in inbox and "zhangwei" in inbox
    page = pages.get(f"/tasks/{task.id}").text
    assert 'id="acting-for"' in page and 'id="task-form"' in page
    assert pages.post(f"/tasks/{task.id}", CHANGE_FORM).status_code == 302
    done = pages.engine.tasks.get(task.id).task
    assert (done.completed_by, done.acting_for) == ("zhaoyun", "zhangwei")
    pages.sign_in("zhangwei")
    history = pages.get(f"/cases/{case}").text
    assert "代 张伟" in history  # acting for, in the history


def test_substitution_ends_with_its_window(pages: Pages) -> None:
    task = pages.open_task(pages.start_change(), "request")
    pages.engine.identity.add_user("zhaoyun", ["staff"], "赵云")
    name_substitute(pages, "zhangwei", "zhaoyun")
    pages.clock.advance(days=8)
    pages.sign_in("zhaoyun")
    assert 'data-bpmn="request"' not in pages.get("/").text
    assert pages.post(f"/tasks/{task.id}", CHANGE_FORM).status_code == 403


def test_substitutes_page_and_its_refusals(pages: Pages) -> None:
    pages.sign_in("zhangwei")
    assert pages.post("/substitutes", {"substitute": "", "starts": "x", "ends": ""}).status_code == 422
    response = pages.post("/substitutes", {"substitute": "zhangwei", "starts": "2026-11-20", "ends": "2026-11-21"})
    assert response.status_code == 422 and "own substitute" in response.text
    assert pages.post("/substitutes", {"substitute": "wuhao", "starts": "2026-11-22",
                                       "ends": "2026-11-21"}).status_code == 422
    assert pages.post("/substitutes", {"holder": "liuyang", "substitute": "wuhao", "starts": "2026-11-20",
                                       "ends": "2026-11-21"}).status_code == 403  # only for oneself
    pages.engine.identity.add_user("zhaoyun", ["staff"], "赵云")
    name_substitute(pages, "zhangwei", "zhaoyun")
    entry = pages.engine.substitutes.list("zhangwei")[0]
    assert "zhaoyun" in pages.get("/substitutes").text
    pages.sign_in("lina")
    assert pages.post(f"/substitutes/{entry.id}/end").status_code == 403
    pages.sign_in("admin")
    assert "zhangwei" in pages.get("/substitutes").text
    assert pages.post(f"/substitutes/{entry.id}/end").status_code == 302
    assert pages.engine.substitutes.active_for("zhaoyun") == []


def test_substitute_service_rules(pages: Pages) -> None:
    svc, now = pages.engine.substitutes, pages.clock.now
    admin, lina = pages.actor("admin"), pages.actor("lina")
    with pytest.raises(BadRequest):
        svc.create(lina, "wangqiang", now, now - timedelta(hours=1))
    with pytest.raises(BadRequest):
        svc.create(lina, "wangqiang", now, now + timedelta(days=400))
    with pytest.raises(Forbidden):
        svc.create(lina, "wangqiang", now, now + timedelta(days=1), holder="zhangwei")
    svc.create(admin, "wangqiang", now, now + timedelta(days=1), holder="lina")
    assert svc.active_for("wangqiang") == ["lina"]
    assert svc.active_for("wangqiang", now + timedelta(days=2)) == []
    actions = [e.action for e in pages.engine.audit.events()]
    assert "substitute.created" in actions


def test_attachment_rules(pages: Pages) -> None:
    case = pages.start_change()
    task = pages.open_task(case, "request")
    files = pages.engine.attachments
    with pytest.raises(BadRequest):
        files.add(case, task.id, "a.txt", "text/plain", b"", pages.actor("zhangwei"))
    with pytest.raises(BadRequest):
        files.add(case, task.id, "a.txt", "text/plain", b"x" * (files.max_bytes + 1), pages.actor("zhangwei"))
    with pytest.raises(Forbidden):
        files.add(case, task.id, "a.txt", "text/plain", b"x", pages.actor("lina"))
    row = files.add(case, task.id, "../../etc/passwd\x00", "text/plain", b"x", pages.actor("zhangwei"))
    assert row.filename == "passwd" and len(row.sha256) == 64
    assert files.get(row.id, pages.actor("zhangwei")).content == b"x"
    assert pages.engine.audit.events(instance_id=case)[-1].action == "attachment.added"


def test_an_unqualified_substitute_is_refused_and_acts_only_on_roles_they_hold(pages: Pages) -> None:
    svc, now, engine = pages.engine.substitutes, pages.clock.now, pages.engine
    with pytest.raises(Forbidden, match="holds none of zhaolei's roles"):
        svc.create(pages.actor("zhaolei"), "zhangwei", now, now + timedelta(days=3))  # it_head -> staff only
    engine.identity.add_user("qianjin", ["it_head", "staff"], "钱进")  # an IT head who also raises requests
    engine.identity.add_user("zhaoyun", ["staff"], "赵云")
    svc.create(pages.actor("qianjin"), "zhaoyun", now, now + timedelta(days=3))  # qualified for the staff work
    # a medium-risk change cites a passed system_testing case as its test evidence
    testing = ROOT / "processes" / "system_testing.bpmn"
    engine.repository.deploy([SourceFile(testing.name, testing.read_bytes())], "owner")
    case = pages.start_change()
    pages.engine.tasks.complete(pages.open_task(case, "request").id, pages.actor("zhangwei"),
                                dict(CHANGE_FORM_DATA, rollback_tested=False, test_case_id=evidence_for(Flow(engine))))
    pages.engine.tasks.complete(pages.open_task(case, "approve_ops").id, pages.actor("liuyang"),
                                {"decision": "approve"})
    approval = pages.open_task(case, "approve_it_head")
    engine.tasks.claim(approval.id, pages.actor("qianjin"))
    zhaoyun = pages.actor("zhaoyun")
    assert approval.id not in {t.id for t in engine.tasks.inbox(zhaoyun)}  # not an IT head: not in the inbox
    with pytest.raises(Forbidden, match="不具备“信息技术负责人审批”所需的角色信息技术负责人"):
        engine.tasks.complete(approval.id, zhaoyun, {"decision": "approve"})
    assert pages.open_task(case, "approve_it_head").state == "open"
