"""The inbox: my tasks and my roles' tasks, filters, sorting, pages, claim/unclaim/assign, nav counts."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.webui.test_pages_support import Pages, page_clock, page_engine, pages  # noqa: F401


def count(html: str, name: str) -> int | None:
    found = re.search(rf'id="nav-{name}"[^>]*>(\d+)<', html)
    return int(found.group(1)) if found else None


def rows(html: str) -> list[str]:
    return re.findall(r'data-bpmn="([^"]+)"', html.split('id="inbox"', 1)[1]) if 'id="inbox"' in html else []


def test_my_task_after_starting_a_change(pages: Pages) -> None:
    case = pages.start_change()
    pages.sign_in("zhangwei")
    html = pages.get("/").text
    assert rows(html) == ["request"]
    assert f"#{case}" in html and count(html, "mine") == 1


def test_role_task_is_claimable_and_counted(pages: Pages) -> None:
    pages.submitted_change()
    pages.sign_in("liuyang")
    html = pages.get("/").text
    assert rows(html) == ["approve_ops"] and count(html, "group") == 1 and "认领" in html
    assert rows(pages.get("/?scope=mine").text) == []
    assert rows(pages.get("/?scope=group").text) == ["approve_ops"]
    pages.sign_in("lina")
    assert rows(pages.get("/").text) == []  # not her role


def test_claim_and_release(pages: Pages) -> None:
    task = pages.open_task(pages.submitted_change(), "approve_ops")
    pages.sign_in("liuyang")
    response = pages.post(f"/tasks/{task.id}/claim")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/tasks/{task.id}")
    assert pages.engine.tasks.get(task.id).task.assignee == "liuyang"
    assert rows(pages.get("/?scope=mine").text) == ["approve_ops"]
    assert pages.post(f"/tasks/{task.id}/unclaim", {"next": "/"}).status_code == 302
    assert pages.engine.tasks.get(task.id).task.assignee is None


def test_claim_without_the_role_is_a_403_page(pages: Pages) -> None:
    task = pages.open_task(pages.submitted_change(), "approve_ops")
    pages.sign_in("lina")
    response = pages.post(f"/tasks/{task.id}/claim")
    assert response.status_code == 403 and "无权操作" in response.text and "<html" in response.text


def test_requester_cannot_claim_own_approval(pages: Pages) -> None:
    pages.engine.identity.set_roles("zhangwei", ["staff", "ops_manager"])
    task = pages.open_task(pages.submitted_change(), "approve_ops")
    pages.sign_in("zhangwei")
    response = pages.post(f"/tasks/{task.id}/claim")
    assert response.status_code == 403 and "不相容岗位分离" in response.text


def test_claimed_by_someone_else_is_a_conflict_page(pages: Pages) -> None:
    pages.engine.identity.add_user("liuyang2", ["ops_manager"])
    task = pages.open_task(pages.submitted_change(), "approve_ops")
    pages.engine.tasks.claim(task.id, pages.actor("liuyang2"))
    pages.sign_in("liuyang")
    response = pages.post(f"/tasks/{task.id}/claim")
    assert response.status_code == 409 and "liuyang2" in response.text


def test_manager_assigns_and_others_may_not(pages: Pages) -> None:
    pages.engine.identity.add_user("liuyang2", ["ops_manager"])
    task = pages.open_task(pages.submitted_change(), "approve_ops")
    pages.sign_in("lina")
    assert pages.post(f"/tasks/{task.id}/assign", {"user": "liuyang"}).status_code == 403
    pages.sign_in("liuyang")
    assert 'id="assign-user"' in pages.get(f"/tasks/{task.id}").text
    assert pages.post(f"/tasks/{task.id}/assign", {"user": "liuyang2"}).status_code == 302
    assert pages.engine.tasks.get(task.id).task.assignee == "liuyang2"
    assert pages.post(f"/tasks/{task.id}/assign", {"user": "lina"}).status_code == 403  # not her role
    assert pages.post(f"/tasks/{task.id}/assign", {"user": "nobody"}).status_code == 404


def test_filters_sorting_and_pages(pages: Pages) -> None:
    for _ in range(3):
        pages.submitted_change()
    pages.sign_in("liuyang")
    assert len(rows(pages.get("/?process=change").text)) == 3
    assert rows(pages.get("/?process=nope").text) == rows(pages.get("/").text)  # unknown filter ignored
    assert rows(pages.get("/?overdue=1").text) == []
    assert len(rows(pages.get("/?due=today").text)) == 0  # due tomorrow (P1D)
    assert len(rows(pages.get("/?priority=3").text)) == 3 and rows(pages.get("/?priority=1").text) == []
    assert len(rows(pages.get("/?sort=due").text)) == 3 and len(rows(pages.get("/?sort=created").text)) == 3
    pages.clock.advance(days=2)
    html = pages.get("/?overdue=1").text
    assert len(rows(html)) == 3 and count(html, "overdue") == 3 and "已超时" in html
    assert len(rows(pages.get("/?due=today").text)) == 3


def test_pagination(pages: Pages, monkeypatch) -> None:
    import webui.pages.inbox as inbox

    monkeypatch.setattr(inbox, "PAGE_SIZE", 2)
    for _ in range(3):
        pages.submitted_change()
    pages.sign_in("liuyang")
    first, second = pages.get("/").text, pages.get("/?page=2").text
    assert len(rows(first)) == 2 and len(rows(second)) == 1
    assert 'rel="next"' in first and 'rel="prev"' in second
    assert len(rows(pages.get("/?page=99").text)) == 1  # past the end: the last page


def test_due_dates_show_in_the_firm_zone(pages: Pages) -> None:
    task = pages.open_task(pages.submitted_change(), "approve_ops")
    pages.sign_in("liuyang")
    local = (task.due_at + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    assert local in pages.get("/").text
