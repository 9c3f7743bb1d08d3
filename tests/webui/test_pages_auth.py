"""Signing in and out: no user enumeration, a lockout after repeated failures, CSRF on every form."""

from __future__ import annotations

import re

import pytest

from tests.webui.test_pages_support import Pages, page_clock, page_engine, pages  # noqa: F401

PASSWORD = "Huanghe-2026"


@pytest.fixture(autouse=True)
def passwords(pages: Pages) -> None:
    for username in ("zhangwei", "liuyang"):
        pages.engine.identity.set_password(username, PASSWORD)


def login(pages: Pages, username: str, password: str) -> object:
    return pages.post("/login", {"username": username, "password": password})


def test_pages_need_a_signed_in_user(pages: Pages) -> None:
    for path in ("/", "/start", "/cases", "/substitutes", "/cases/1", "/tasks/x"):
        response = pages.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_login_page_is_chinese_by_default(pages: Pages) -> None:
    page = pages.get("/login").text
    assert "登录 OpsFlow" in page and 'lang="zh-CN"' in page


def test_sign_in_and_out(pages: Pages) -> None:
    response = login(pages, "zhangwei", PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "opsflow_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "张伟" in pages.get("/").text
    assert pages.post("/logout").status_code == 302
    assert pages.get("/").status_code == 302


def test_session_cookie_is_secure_over_https(pages: Pages) -> None:
    form = pages.client.get("/login", base_url="https://localhost").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = pages.client.post("/login", data={"username": "zhangwei", "password": PASSWORD,
                                                 "csrf_token": token}, base_url="https://localhost",
                                 headers={"Referer": "https://localhost/login"})
    assert "Secure" in response.headers["Set-Cookie"]


def test_wrong_password_and_unknown_user_get_the_same_answer(pages: Pages) -> None:
    wrong = login(pages, "zhangwei", "nope")
    unknown = login(pages, "nobody", "nope")
    assert wrong.status_code == unknown.status_code == 401
    assert "用户名或密码错误。" in wrong.text and "用户名或密码错误。" in unknown.text
    strip = lambda text: text.replace("zhangwei", "").replace("nobody", "")  # noqa: E731
    assert strip(wrong.text).replace(pages.token(), "") .count("alert") == strip(unknown.text).count("alert")


def test_repeated_failures_lock_the_name_even_with_the_right_password(pages: Pages) -> None:
    for _ in range(5):
        assert login(pages, "zhangwei", "nope").status_code == 401
    locked = login(pages, "zhangwei", PASSWORD)
    assert locked.status_code == 429 and "登录失败次数过多" in locked.text
    for _ in range(5):
        login(pages, "ghost", "nope")
    assert login(pages, "ghost", "nope").status_code == 429  # unknown names lock the same way
    assert login(pages, "liuyang", PASSWORD).status_code == 302  # other users are not affected


def test_forms_without_the_csrf_token_are_refused(pages: Pages) -> None:
    response = pages.post("/login", {"username": "zhangwei", "password": PASSWORD}, csrf=False)
    assert response.status_code == 400 and "表单已过期" in response.text
    pages.sign_in("liuyang")
    case = pages.submitted_change()
    task = pages.open_task(case, "approve_ops")
    assert pages.post(f"/tasks/{task.id}/claim", csrf=False).status_code == 400
    assert pages.engine.tasks.get(task.id).task.assignee is None


def test_next_only_goes_to_this_site(pages: Pages) -> None:
    token = pages.token()
    response = pages.client.post("/login", data={"username": "zhangwei", "password": PASSWORD,
                                                 "csrf_token": token, "next": "https://evil.example/"})
    assert response.headers["Location"] == "/"


def test_language_switch_is_remembered_for_the_user(pages: Pages) -> None:
    pages.sign_in("zhangwei")
    assert pages.post("/locale", {"locale": "en", "next": "/"}).status_code == 302
    assert "Inbox" in pages.get("/").text
    assert pages.engine.identity.locale("zhangwei") == "en"
    pages.sign_in(None)
    assert "登录" in pages.get("/login").text  # a new session starts in Chinese
    assert login(pages, "zhangwei", PASSWORD).status_code == 302
    assert "Sign out" in pages.get("/").text
    assert pages.post("/locale", {"locale": "xx"}).status_code == 400


def test_a_deactivated_user_is_signed_out(pages: Pages) -> None:
    pages.sign_in("zhangwei")
    assert pages.get("/").status_code == 200
    pages.engine.identity.set_active("zhangwei", False, by="admin")
    assert pages.get("/").status_code == 302
