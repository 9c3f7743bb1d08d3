"""Starting a case, the case list and the case page: diagram markers, history, links, 403s."""

from __future__ import annotations

import re

from tests.webui.test_pages_support import Pages, page_clock, page_engine, pages  # noqa: F401


def markers(html: str, state: str) -> set[str]:
    return set(re.search(rf'data-{state}="([^"]*)"', html).group(1).split())


def test_start_page_lists_what_my_roles_may_start(pages: Pages) -> None:
    pages.sign_in("zhangwei")
    assert 'data-process="change"' in pages.get("/start").text
    pages.sign_in("lina")
    assert 'data-process="change"' not in pages.get("/start").text
    assert pages.post("/start/change", {"title": "x"}).status_code == 403


def test_starting_a_case_opens_my_first_task(pages: Pages) -> None:
    pages.sign_in("zhangwei")
    response = pages.post("/start/change", {"title": "核心交易系统补丁"})
    assert response.status_code == 302 and "/tasks/" in response.headers["Location"]
    case = pages.engine.runtime.cases()[0]
    assert case.title == "核心交易系统补丁" and case.started_by == "zhangwei"
    assert pages.post("/start/nope").status_code == 404


def test_case_page_marks_the_diagram_and_shows_the_history(pages: Pages) -> None:
    case = pages.submitted_change()
    pages.sign_in("zhangwei")
    html = pages.get(f"/cases/{case}").text
    assert {"start", "request"} <= markers(html, "completed")
    assert markers(html, "active") == {"approve_ops"} and markers(html, "overdue") == set()
    assert "发起案件" in html and "填写变更申请" in html and "办公系统参数调整" in html
    assert "bpmn-navigated-viewer.production.min.js" in html
    xml = pages.get(f"/cases/{case}/diagram.bpmn")
    assert xml.status_code == 200 and b'id="approve_ops"' in xml.data
    pages.clock.advance(days=2)
    assert markers(pages.get(f"/cases/{case}").text, "overdue") == {"approve_ops"}


def test_bpmn_js_is_served_from_node_modules(pages: Pages) -> None:
    pages.sign_in("zhangwei")
    assert pages.get("/vendor/bpmn-js/bpmn-navigated-viewer.production.min.js").status_code == 200
    assert pages.get("/vendor/bpmn-js/assets/bpmn-js.css").status_code == 200
    assert pages.get("/vendor/other/x.js").status_code == 404
    assert pages.get("/vendor/bpmn-js/../../package.json").status_code == 404


def test_case_readers(pages: Pages) -> None:
    case = pages.submitted_change()
    for user, status in (("zhangwei", 200), ("liuyang", 200), ("zhuhong", 200), ("sunyan", 200), ("admin", 200),
                         ("huangmin", 403), ("lina", 403)):
        pages.sign_in(user)
        assert pages.get(f"/cases/{case}").status_code == status, user
        assert pages.get(f"/cases/{case}/diagram.bpmn").status_code == status, user
    pages.sign_in("huangmin")
    response = pages.get(f"/cases/{case}")
    assert "无权操作" in response.text and "<html" in response.text
    assert pages.get("/cases/99999").status_code == 404


def test_case_list_shows_my_cases_and_all_for_supervisors(pages: Pages) -> None:
    case = pages.submitted_change()
    pages.sign_in("zhangwei")
    assert f"#{case}" in pages.get("/cases").text
    pages.sign_in("huangmin")
    assert f"#{case}" not in pages.get("/cases").text
    pages.sign_in("zhuhong")
    assert f"#{case}" in pages.get("/cases?status=running").text


def test_case_attachment_upload(pages: Pages) -> None:
    import io

    case = pages.submitted_change()
    pages.sign_in("zhangwei")
    response = pages.post(f"/cases/{case}/attachments", {"file": (io.BytesIO(b"report"), "r.txt")},
                          content_type="multipart/form-data")
    assert response.status_code == 302
    assert "r.txt" in pages.get(f"/cases/{case}").text
    pages.sign_in("huangmin")
    assert pages.post(f"/cases/{case}/attachments", {"file": (io.BytesIO(b"x"), "x.txt")},
                      content_type="multipart/form-data").status_code == 403


def test_english_case_page(pages: Pages) -> None:
    case = pages.submitted_change()
    pages.sign_in("zhangwei")
    pages.post("/locale", {"locale": "en"})
    html = pages.get(f"/cases/{case}").text
    assert "Process diagram" in html and "History" in html and "Started the case" in html
