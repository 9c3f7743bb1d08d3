"""The task page: the form from its JSON Schema, errors next to fields with values kept, uploads."""

from __future__ import annotations

import hashlib
import io
import re

from tests.processes.test_change import demo_systems
from tests.webui.test_pages_support import CHANGE_FORM, Pages, page_clock, page_engine, pages  # noqa: F401


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'id="err-([^"]+)" role="alert">([^<]*)<', html))


def test_request_form_widgets(pages: Pages) -> None:
    task = pages.open_task(pages.start_change(), "request")
    pages.sign_in("zhangwei")
    html = pages.get(f"/tasks/{task.id}").text
    assert "填写变更申请" in html and 'id="instructions"' in html  # instructions from the BPMN
    assert 'name="title"' in html and 'maxlength="200"' in html  # text
    assert '<textarea id="f-purpose"' in html  # long text
    assert 'type="radio" name="change_type" value="normal"' in html and "一般变更" in html  # enum as radios
    assert 'type="datetime-local" name="window_start"' in html and "北京时间" in html  # firm's zone
    assert 'value="add:target_versions"' in html  # array rows
    office = demo_systems("办公自动化")[0]
    assert f'type="checkbox" name="systems" value="{office}"' in html  # the register's systems, ticked
    assert "集中交易（核心交易·一类）" in html and "办公自动化（非核心·五类）" in html  # by name and class
    assert 'name="rollback_tested" value="true"' in html  # required boolean as yes/no
    assert '<select id="f-implementer" name="implementer"' in html and 'value="lina"' in html  # user picker
    assert 'value="liuyang"' not in html.split('id="f-implementer"')[1].split("</select>")[0]  # role's users only
    assert 'type="file" name="plan_document.__file"' in html  # attachment field


def test_errors_sit_next_to_fields_and_values_are_kept(pages: Pages) -> None:
    case = pages.start_change()
    task = pages.open_task(case, "request")
    pages.sign_in("zhangwei")
    form = dict(CHANGE_FORM, title="x", reviewer="lina", test_case_id="abc")
    response = pages.post(f"/tasks/{task.id}", form)
    assert response.status_code == 422
    errors = field_errors(response.text)
    assert set(errors) >= {"title", "reviewer", "test_case_id"}
    assert "变更标题" in errors["title"]
    html = response.text
    assert 'value="x"' in html and 'value="abc"' in html  # the typed text is kept, even a wrong number
    assert 'value="2026-11-21T10:00"' in html
    assert re.search(r'<option value="lina" selected>', html)
    assert pages.open_task(case, "request").state == "open"


def test_valid_form_completes_and_the_next_task_goes_to_its_role(pages: Pages) -> None:
    case = pages.start_change()
    task = pages.open_task(case, "request")
    pages.sign_in("zhangwei")
    response = pages.post(f"/tasks/{task.id}", CHANGE_FORM)
    assert response.status_code == 302
    data = pages.engine.tasks.get(pages.open_task(case, "approve_ops").id).case_data
    assert data["window_start"] == "2026-11-21T10:00:00+08:00" and data["rollback_tested"] is True
    assert [(s["name"], s["core"], s["markets"]) for s in data["affected_systems"]] == [("办公自动化", False, [])]
    pages.sign_in("liuyang")
    approval = pages.open_task(case, "approve_ops")
    html = pages.get(f"/tasks/{approval.id}").text
    assert 'id="claim"' in html and "办公系统参数调整" in html  # earlier data, read-only
    assert 'value="approve"' in html and "批准" in html  # enum labels from the form's description
    assert pages.post(f"/tasks/{approval.id}", {"decision": "reject"}).status_code == 422
    assert pages.post(f"/tasks/{approval.id}", {"decision": "approve"}).status_code == 302
    assert pages.engine.tasks.get(approval.id).task.completed_by == "liuyang"


def test_add_row_keeps_what_was_typed(pages: Pages) -> None:
    task = pages.open_task(pages.start_change(), "request")
    pages.sign_in("zhangwei")
    typed = {"target_versions.__rows": "1", "target_versions[0].system": str(demo_systems("办公自动化")[0]),
             "target_versions[0].version": "e-cology 10.1"}
    response = pages.post(f"/tasks/{task.id}", dict(CHANGE_FORM, **typed, _action="add:target_versions"))
    assert response.status_code == 200
    assert 'name="target_versions[1].version"' in response.text and 'value="e-cology 10.1"' in response.text


def test_upload_fills_the_attachment_field(pages: Pages) -> None:
    case = pages.start_change()
    task = pages.open_task(case, "request")
    pages.sign_in("zhangwei")
    content = "方案书内容".encode()
    form = dict(CHANGE_FORM, title="x")
    form["plan_document.__file"] = (io.BytesIO(content), "方案书.pdf")
    response = pages.post(f"/tasks/{task.id}", form, content_type="multipart/form-data")
    assert response.status_code == 422  # the title is still wrong, the file is kept
    digest = hashlib.sha256(content).hexdigest()
    assert f'value="{digest}"' in response.text and "方案书.pdf" in response.text
    form = dict(CHANGE_FORM, **{"plan_document.name": "方案书.pdf", "plan_document.sha256": digest})
    assert pages.post(f"/tasks/{task.id}", form).status_code == 302
    files = pages.engine.attachments.list(case)
    assert [(f.filename, f.sha256, f.uploaded_by) for f in files] == [("方案书.pdf", digest, "zhangwei")]
    download = pages.get(f"/attachments/{files[0].id}")
    assert download.data == content and "attachment;" in download.headers["Content-Disposition"]
    pages.sign_in("huangmin")
    assert pages.get(f"/attachments/{files[0].id}").status_code == 403


def test_someone_elses_task_is_a_403_page(pages: Pages) -> None:
    task = pages.open_task(pages.start_change(), "request")
    pages.sign_in("lina")
    assert pages.get(f"/tasks/{task.id}").status_code == 403
    response = pages.post(f"/tasks/{task.id}", CHANGE_FORM)
    assert response.status_code == 403 and "无权操作" in response.text
    assert pages.get("/tasks/no-such-task").status_code == 404


def test_completed_task_cannot_be_submitted_twice(pages: Pages) -> None:
    task = pages.open_task(pages.start_change(), "request")
    pages.sign_in("zhangwei")
    assert pages.post(f"/tasks/{task.id}", CHANGE_FORM).status_code == 302
    assert pages.post(f"/tasks/{task.id}", CHANGE_FORM).status_code == 409
    assert 'id="task-form"' not in pages.get(f"/tasks/{task.id}").text


def test_a_posted_field_the_form_does_not_declare_is_an_error_in_place(pages: Pages) -> None:
    case = pages.submitted_change()
    approval = pages.open_task(case, "approve_ops")
    pages.sign_in("liuyang")
    response = pages.post(f"/tasks/{approval.id}", {"decision": "approve", "approval_route": "none"})
    assert response.status_code == 422
    assert "表单中没有这些字段：approval_route" in response.text and 'id="form-errors"' in response.text
    assert pages.open_task(case, "approve_ops").state == "open"


def test_a_returned_request_shows_the_banner_and_the_approvers_words_once(pages: Pages) -> None:
    case = pages.submitted_change()
    approval = pages.open_task(case, "approve_ops")
    pages.sign_in("liuyang")
    assert pages.post(f"/tasks/{approval.id}", {"decision": "return", "comment": "请补充回退验证"}).status_code == 302
    request = pages.open_task(case, "request")
    pages.sign_in("zhangwei")
    html = pages.get(f"/tasks/{request.id}").text
    banner = html.split('id="returned"')[1].split("</div>")[0]
    assert "已退回" in banner and "运维负责人退回：请补充回退验证" in banner and "退回人：" in banner
    assert html.count("请补充回退验证") == 2  # the banner and the approval record; never in the form
    assert 'id="f-comment"' not in html
    record = html.split('id="approval-record"')[1].split("</table>")[0]
    assert "运维负责人审批" in record and "退回" in record and "请补充回退验证" in record
    assert 'value="办公系统参数调整"' in html  # the requester's own facts, to edit and resubmit
    case_page = pages.get(f"/cases/{case}").text
    assert case_page.count("请补充回退验证") == 1  # once, in the record (the history says 退回)
    history = case_page.split('id="history"')[1].split("</table>")[0]
    assert "退回" in history
