"""Accounts in the browser and the API: the shared login lockout, sessions that end, one's own password,
and the admin's users page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from engine import ProcessEngine
from tests.conftest import ROOT, Clock, make_settings
from tests.webui.test_pages_support import Pages, change_library, page_clock, page_engine, pages  # noqa: F401
from webui import create_app

PASSWORD = "Huanghe-2026"
NEW = "Taishan-2027x"


@pytest.fixture(autouse=True)
def passwords(pages: Pages) -> None:  # noqa: F811
    for username in ("zhangwei", "liuyang", "admin"):
        pages.engine.identity.set_password(username, PASSWORD)


def browser(engine: ProcessEngine, secret: str = "pages-test") -> Pages:
    """Another browser (or, with its own engine, another worker process) on the same database."""
    app = create_app(engine, {"SECRET_KEY": secret, "TESTING": True})
    return Pages(app.test_client(), engine, engine.ctx.clock)  # type: ignore[arg-type]


@pytest.fixture
def other_worker(database_url: str, tmp_path: Path, page_clock: Clock) -> Iterator[ProcessEngine]:  # noqa: F811
    eng = ProcessEngine(make_settings(database_url, tmp_path, forms_dir=ROOT / "forms",
                                      processes_dir=change_library(tmp_path)), clock=page_clock)
    yield eng
    eng.close()


def login(client: Pages, username: str, password: str) -> Any:
    return client.post("/login", {"username": username, "password": password})


def token_request(client: FlaskClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("opsflow_session")
    assert cookie is not None
    return cookie.value


def field_error(page: str, field: str) -> str:
    found = re.search(rf'id="error-{field}">([^<]*)<', page)
    assert found, page
    return found.group(1)


# the lockout, shared by every worker and by the API ---------------------------------------------
def test_failures_on_two_workers_lock_the_name_for_the_page_and_the_api(
        pages: Pages, other_worker: ProcessEngine, page_clock: Clock) -> None:  # noqa: F811
    second = browser(other_worker)
    for client in (pages, second, pages, second):
        assert login(client, "zhangwei", "wrong-password-1").status_code == 401
    assert token_request(second.client, "zhangwei", "wrong-password-1").status_code == 401  # the 5th, by API
    locked = login(pages, "zhangwei", PASSWORD)  # the right password, during the lockout
    assert locked.status_code == 429 and "登录失败次数过多，请 15 分钟后再试。" in locked.text
    assert locked.headers["Retry-After"] == "900"
    api = token_request(second.client, "zhangwei", PASSWORD)
    assert api.status_code == 429 and api.headers["Retry-After"] == "900"
    assert api.get_json()["error"] == {"code": "login_locked", "message": "too many failed logins: try again in "
                                       "15 minute(s)", "details": {"retry_after": 900}}
    assert pages.get("/").status_code == 302  # not signed in
    assert login(pages, "liuyang", PASSWORD).status_code == 302  # another name is not locked
    page_clock.advance(minutes=15)
    assert login(second, "zhangwei", PASSWORD).status_code == 302
    trail = [e.action for e in pages.engine.audit.events() if e.action.startswith("user.login")]
    assert trail.count("user.login_failed") == 5 and trail.count("user.login_locked") == 2


def test_the_api_lockout_holds_for_the_right_password_and_is_in_the_openapi_document(pages: Pages) -> None:  # noqa: F811
    for _ in range(5):
        assert token_request(pages.client, "ghost", "wrong-password-1").status_code == 401
    assert token_request(pages.client, "ghost", "wrong-password-1").status_code == 429
    for _ in range(5):
        token_request(pages.client, "liuyang", "wrong-password-1")
    refused = token_request(pages.client, "liuyang", PASSWORD)
    assert refused.status_code == 429 and "token" not in refused.get_json()
    doc = pages.client.get("/api/v1/openapi.json").get_json()
    assert "429" in doc["paths"]["/auth/token"]["post"]["responses"]


def test_a_successful_login_clears_the_count(pages: Pages) -> None:  # noqa: F811
    for _ in range(4):
        login(pages, "zhangwei", "wrong-password-1")
    assert token_request(pages.client, "zhangwei", PASSWORD).status_code == 201
    for _ in range(4):
        login(pages, "zhangwei", "wrong-password-1")
    assert login(pages, "zhangwei", PASSWORD).status_code == 302


def test_a_deactivated_user_cannot_log_in_and_their_token_stops_working(pages: Pages) -> None:  # noqa: F811
    token = token_request(pages.client, "zhangwei", PASSWORD).get_json()["token"]
    me = pages.client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    pages.engine.identity.set_active("zhangwei", False, by="admin")
    gone = pages.client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401 and gone.get_json()["error"]["code"] == "unauthorized"
    assert login(pages, "zhangwei", PASSWORD).status_code == 401
    assert token_request(pages.client, "zhangwei", PASSWORD).status_code == 401


# sessions that end ------------------------------------------------------------------------------
def test_a_cookie_replayed_after_sign_out_is_sent_to_the_login_page(pages: Pages) -> None:  # noqa: F811
    assert login(pages, "zhangwei", PASSWORD).status_code == 302
    stolen = session_cookie(pages.client)
    assert "张伟" in pages.get("/").text
    assert pages.post("/logout").status_code == 302
    pages.client.set_cookie("opsflow_session", stolen)
    replay = pages.get("/")
    assert replay.status_code == 302 and "/login" in replay.headers["Location"]
    assert ("user.logout", "zhangwei") in [(e.action, e.actor) for e in pages.engine.audit.events()]


def test_a_cookie_from_before_session_records_is_not_enough(pages: Pages) -> None:  # noqa: F811
    with pages.client.session_transaction() as session:
        session["user"] = "zhangwei"  # what a signed cookie held before revision 0007
    response = pages.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_changing_ones_password_signs_out_the_other_browser_but_not_this_one(pages: Pages) -> None:  # noqa: F811
    other = browser(pages.engine)
    for client in (pages, other):
        assert login(client, "zhangwei", PASSWORD).status_code == 302
    token = token_request(pages.client, "zhangwei", PASSWORD).get_json()["token"]
    form = pages.get("/account/password").text
    assert "修改密码" in form and 'name="repeat"' in form
    done = pages.post("/account/password", {"current": PASSWORD, "new": NEW, "repeat": NEW}, follow_redirects=True)
    assert done.status_code == 200 and "密码已修改，您在其他浏览器上的登录已全部退出。" in done.text
    assert "张伟" in pages.get("/").text  # this browser carries on
    assert other.get("/").status_code == 302  # the other one must sign in again
    assert pages.client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert login(other, "zhangwei", PASSWORD).status_code == 401
    assert login(other, "zhangwei", NEW).status_code == 302


@pytest.mark.parametrize(("new", "message"), [
    ("Ab1-short", "密码至少需要 10 个字符。"),
    ("onlyletters-here", "密码须同时包含字母和数字。"),
    ("zhangwei-2026", "密码不能包含用户名。"),
    ("Password123", "该密码过于常见，请另选一个。"),
])
def test_a_weak_new_password_is_refused_on_the_page_naming_the_rule(pages: Pages, new: str, message: str) -> None:  # noqa: F811
    pages.sign_in("zhangwei")
    refused = pages.post("/account/password", {"current": PASSWORD, "new": new, "repeat": new})
    assert refused.status_code == 422 and field_error(refused.text, "new") == message
    assert pages.engine.identity.authenticate("zhangwei", PASSWORD) is not None


def test_the_password_page_refuses_a_wrong_current_password_a_mismatch_and_a_missing_csrf_token(
        pages: Pages) -> None:  # noqa: F811
    pages.sign_in("zhangwei")
    wrong = pages.post("/account/password", {"current": "not-it-12345", "new": NEW, "repeat": NEW})
    assert wrong.status_code == 422 and field_error(wrong.text, "current") == "当前密码错误。"
    differ = pages.post("/account/password", {"current": PASSWORD, "new": NEW, "repeat": NEW + "y"})
    assert differ.status_code == 422 and field_error(differ.text, "repeat") == "两次输入的新密码不一致。"
    forged = pages.post("/account/password", {"current": PASSWORD, "new": NEW, "repeat": NEW}, csrf=False)
    assert forged.status_code == 400
    assert pages.engine.identity.authenticate("zhangwei", PASSWORD) is not None
    pages.sign_in(None)
    assert pages.get("/account/password").status_code == 302


def test_the_header_links_the_password_page_for_everyone_and_users_for_admins(pages: Pages) -> None:  # noqa: F811
    pages.sign_in("zhangwei")
    page = pages.get("/").text
    assert 'id="nav-password"' in page and 'id="nav-users"' not in page
    pages.sign_in("admin")
    page = pages.get("/").text
    assert 'id="nav-password"' in page and 'id="nav-users"' in page and "用户管理" in page


# the admin's users page -------------------------------------------------------------------------
def test_someone_without_the_admin_role_gets_403_everywhere_on_the_users_page(pages: Pages) -> None:  # noqa: F811
    pages.sign_in("zhuhong")  # a supervisor sees a lot, but does not manage users
    listing = pages.get("/admin/users")
    assert listing.status_code == 403 and "只有平台管理员可以管理用户。" in listing.text
    assert pages.get("/admin/users/zhangwei").status_code == 403
    posts = [("/admin/users", {"username": "mole", "roles": ["admin"], "password": NEW, "repeat": NEW}),
             ("/admin/users", {"username": "", "password": ""}),
             ("/admin/users/zhuhong/roles", {"roles": ["admin"]}),
             ("/admin/users/zhangwei/active", {"active": "0"}),
             ("/admin/users/zhangwei/password", {"password": NEW, "repeat": NEW})]
    for path, data in posts:
        assert pages.post(path, data).status_code == 403, path
    identity = pages.engine.identity
    assert identity.find("mole") is None and identity.get("zhuhong").roles == {"supervisor"}
    assert identity.find("zhangwei") is not None and identity.authenticate("zhangwei", PASSWORD) is not None


def test_an_admin_adds_a_user_who_can_then_sign_in(pages: Pages) -> None:  # noqa: F811
    pages.sign_in("admin")
    listing = pages.get("/admin/users").text
    assert 'id="user-zhangwei"' in listing and "员工" in listing
    form = {"username": "qianli", "display_name": "钱立", "roles": ["staff", "cab"]}
    weak = pages.post("/admin/users", {**form, "password": "qianli-2026", "repeat": "qianli-2026"})
    assert weak.status_code == 422 and field_error(weak.text, "password") == "密码不能包含用户名。"
    assert 'value="qianli"' in weak.text  # the form keeps what was typed
    taken = pages.post("/admin/users", {**form, "username": "zhangwei", "password": NEW, "repeat": NEW})
    assert taken.status_code == 409 and field_error(taken.text, "username") == "该用户名已被使用。"
    no_role = pages.post("/admin/users", {**form, "roles": [], "password": NEW, "repeat": NEW})
    assert no_role.status_code == 422 and field_error(no_role.text, "roles") == "请至少选择一个角色。"
    added = pages.post("/admin/users", {**form, "password": NEW, "repeat": NEW}, follow_redirects=True)
    assert added.status_code == 200 and "已添加用户 qianli。" in added.text
    assert pages.engine.identity.get("qianli").roles == {"staff", "cab"}
    newcomer = browser(pages.engine)
    assert login(newcomer, "qianli", NEW).status_code == 302
    event = [e for e in pages.engine.audit.events() if e.action == "user.added"][-1]
    assert (event.actor, event.data["username"], event.source) == ("admin", "qianli", "web 127.0.0.1")


def test_an_admin_sets_roles_deactivates_reactivates_and_resets_a_password(pages: Pages) -> None:  # noqa: F811
    victim = browser(pages.engine)
    assert login(victim, "zhangwei", PASSWORD).status_code == 302
    pages.sign_in("admin")
    assert "张伟" in pages.get("/admin/users/zhangwei").text
    assert pages.post("/admin/users/zhangwei/roles", {"roles": ["staff", "ops_engineer"]}).status_code == 302
    assert pages.engine.identity.get("zhangwei").roles == {"staff", "ops_engineer"}

    off = pages.post("/admin/users/zhangwei/active", {"active": "0"}, follow_redirects=True)
    assert "zhangwei 已停用：所有登录已退出，API 令牌已吊销。" in off.text and 'id="state-deactivated"' in off.text
    assert victim.get("/").status_code == 302
    assert login(victim, "zhangwei", PASSWORD).status_code == 401
    assert pages.post("/admin/users/zhangwei/active", {"active": "1"}).status_code == 302
    assert login(victim, "zhangwei", PASSWORD).status_code == 302

    weak = pages.post("/admin/users/zhangwei/password", {"password": "short1", "repeat": "short1"})
    assert weak.status_code == 422 and field_error(weak.text, "password") == "密码至少需要 10 个字符。"
    reset = pages.post("/admin/users/zhangwei/password", {"password": NEW, "repeat": NEW}, follow_redirects=True)
    assert "密码已设置，zhangwei 在所有浏览器上的登录已退出。" in reset.text
    assert victim.get("/").status_code == 302
    assert login(victim, "zhangwei", NEW).status_code == 302
    trail = [(e.action, e.actor) for e in pages.engine.audit.events() if e.data.get("username") == "zhangwei"
             and e.action in ("user.roles_set", "user.deactivated", "user.activated", "user.password_set")]
    assert trail[-4:] == [("user.roles_set", "admin"), ("user.deactivated", "admin"), ("user.activated", "admin"),
                          ("user.password_set", "admin")]


def test_an_admin_cannot_deactivate_themselves_or_drop_their_own_admin_role(pages: Pages) -> None:  # noqa: F811
    pages.sign_in("admin")
    myself = pages.post("/admin/users/admin/active", {"active": "0"})
    assert myself.status_code == 409
    assert field_error(myself.text, "active") == "不能停用自己的账号，请由其他管理员操作。"
    demote = pages.post("/admin/users/admin/roles", {"roles": ["staff"]})
    assert demote.status_code == 409
    assert pages.engine.identity.find("admin").roles == {"admin"}


def test_the_users_page_in_english(pages: Pages) -> None:  # noqa: F811
    pages.sign_in("admin")
    pages.post("/locale", {"locale": "en", "next": "/"})
    page = pages.get("/admin/users").text
    assert "Add a user" in page and "Change password" in page
    weak = pages.post("/admin/users", {"username": "qianli", "roles": ["staff"], "password": "Password123",
                                       "repeat": "Password123"})
    assert field_error(weak.text, "password") == "This password is too common; choose another."
