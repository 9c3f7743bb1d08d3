"""In-app notifications: listed for their recipient only, counted in the navigation, marked read."""

from __future__ import annotations

import re

from engine.people.notify import Message
from tests.webui.test_pages_support import Pages, page_clock, page_engine, pages  # noqa: F401


def notify(pages: Pages, username: str, title: str) -> None:
    with pages.engine.ctx.db.transaction() as s:
        pages.engine.notify.notify(s, [username], Message(title, "请尽快处理", instance_id=None), channels=["inapp"])


def unread(html: str) -> int | None:
    found = re.search(r'id="nav-unread">(\d+)<', html)
    return int(found.group(1)) if found else None


def test_unread_count_in_navigation_and_list(pages: Pages) -> None:
    notify(pages, "liuyang", "审批即将超时")
    notify(pages, "liuyang", "审批已超时")
    notify(pages, "zhangwei", "不是给刘洋的")
    pages.sign_in("liuyang")
    html = pages.get("/notifications").text
    assert unread(html) == 2
    assert "审批已超时" in html and "审批即将超时" in html and "不是给刘洋的" not in html


def test_mark_all_read_clears_the_count(pages: Pages) -> None:
    notify(pages, "liuyang", "审批即将超时")
    pages.sign_in("liuyang")
    pages.get("/notifications")
    response = pages.post("/notifications/read")
    assert response.status_code == 302
    html = pages.get("/notifications").text
    assert unread(html) is None and "审批即将超时" in html
    assert "审批即将超时" not in pages.get("/notifications?unread=1").text


def test_marking_read_needs_the_csrf_token_and_a_login(pages: Pages) -> None:
    notify(pages, "liuyang", "审批即将超时")
    pages.sign_in("liuyang")
    assert pages.post("/notifications/read", csrf=False).status_code == 400
    assert unread(pages.get("/notifications").text) == 1
    pages.sign_in(None)
    assert pages.get("/notifications").status_code in (302, 401)
