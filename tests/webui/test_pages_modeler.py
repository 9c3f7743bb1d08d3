"""Process owners in the browser: modeler save (lint, deploy), uploads, versions, migration, forms, DMN."""

from __future__ import annotations

import html
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import ProcessEngine
from tests.conftest import ROOT, Clock
from tests.webui.test_pages_support import Pages, library_engine, page_clock, pages  # noqa: F401

CHANGE = (ROOT / "processes" / "change.bpmn").read_text(encoding="utf-8")
RISK = (ROOT / "processes" / "change_risk.dmn").read_text(encoding="utf-8")
CORPUS = ROOT.parent / "shared" / "corpus" / "bpmn-miwg-reference"
APPROVE_OPS = '<bpmn:userTask id="approve_ops" name="运维负责人审批">'


@pytest.fixture
def page_engine(database_url: str, tmp_path: Path, page_clock: Clock) -> Iterator[ProcessEngine]:  # noqa: F811
    """As the other page tests, but with a private copy of forms/ (the form editor must leave it alone)."""
    forms = tmp_path / "forms"
    shutil.copytree(ROOT / "forms", forms)
    eng = library_engine(database_url, tmp_path, page_clock, forms_dir=forms)
    yield eng
    eng.close()


def latest_version(pages: Pages) -> int:
    return pages.engine.repository.definition("change").version


def save(pages: Pages, xml: str, check: bool = False):
    return pages.post("/processes/change/save", {"xml": xml, **({"check": "1"} if check else {})})


def upload(pages: Pages, name: str, content: bytes):
    return pages.post("/processes/upload", {"files": (io.BytesIO(content), name)},
                      content_type="multipart/form-data")


def test_only_a_process_owner_sees_the_processes_pages(pages: Pages) -> None:
    pages.sign_in("maqing")
    listing = pages.get("/processes")
    assert listing.status_code == 200 and 'data-process="change"' in listing.text
    assert "change_request.json" in listing.text
    assert 'id="nav-processes"' in listing.text
    pages.sign_in("liuyang")
    assert 'id="nav-processes"' not in pages.get("/inbox").text
    for path in ("/processes", "/processes/change/edit", "/processes/change/versions", "/processes/change/source.bpmn",
                 "/forms/approval.json/edit", "/processes/change/decisions/change_risk.dmn"):
        assert pages.get(path).status_code == 403, path
    assert save(pages, CHANGE.replace("运维负责人审批", "主管审批")).status_code == 403
    assert pages.post("/processes/change/versions/1/redeploy").status_code == 403
    assert pages.post("/processes/change/migrate", {"run": "1"}).status_code == 403
    assert pages.post("/forms/approval.json", {"schema": "{}"}).status_code == 403
    assert latest_version(pages) == 1


def test_modeler_page_serves_the_latest_version_to_edit(pages: Pages) -> None:
    pages.sign_in("maqing")
    page = pages.get("/processes/change/edit")
    assert page.status_code == 200
    assert "bpmn-modeler.production.min.js" in page.text and 'id="p-form"' in page.text
    assert '<option value="approval.json">' in page.text and "change_risk.dmn" in page.text
    source = pages.get("/processes/change/source.bpmn")
    assert source.mimetype == "application/xml" and 'id="approve_ops"' in source.text
    assert pages.get("/vendor/bpmn-js/bpmn-modeler.production.min.js").status_code == 200
    assert pages.get("/vendor/dmn-js/dmn-modeler.production.min.js").status_code == 200
    assert pages.get("/static/spiffworkflow-moddle.json").json["prefix"] == "spiffworkflow"


def test_a_lint_problem_is_listed_with_its_element_and_nothing_is_deployed(pages: Pages) -> None:
    pages.sign_in("maqing")
    no_form = CHANGE.replace(
        APPROVE_OPS + '<bpmn:extensionElements><spiffworkflow:properties><spiffworkflow:property '
        'name="formJsonSchemaFilename" value="approval.json" />', APPROVE_OPS + '<bpmn:extensionElements>'
        '<spiffworkflow:properties>')
    assert no_form != CHANGE
    response = save(pages, no_form)
    assert response.status_code == 422
    body = response.json
    assert body["ok"] is False
    assert any(p["element"] == "approve_ops" and "has no form" in p["message"] and p["file"] == "change.bpmn"
               for p in body["problems"])
    assert latest_version(pages) == 1


def test_a_clean_save_deploys_a_new_version_and_a_check_does_not(pages: Pages) -> None:
    pages.sign_in("maqing")
    edited = CHANGE.replace('name="运维负责人审批"', 'name="运维主管审批"')
    checked = save(pages, edited, check=True)
    assert checked.status_code == 200 and checked.json["ok"] and latest_version(pages) == 1
    saved = save(pages, edited)
    assert saved.json["deployed"][0] == {"process_id": "change", "name": saved.json["deployed"][0]["name"],
                                         "version": 2, "changed": True}
    row = pages.engine.repository.definition("change")
    assert row.deployed_by == "maqing" and "change_risk.dmn" in row.dmn_xml


@pytest.mark.parametrize("name, content, expected", [
    ("notes.bpmn", b"just some text, not XML", "not well-formed XML"),
    ("page.bpmn", b"<html><body>hello</body></html>", "not a BPMN or DMN document"),
    ("hostile.bpmn", CHANGE.replace('cab_votes = []</bpmn:script>',
                                    'change_failed = __import__("os").system("id")</bpmn:script>').encode(),
     "refused by the script sandbox"),
    ("entity.bpmn", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
     "DOCTYPE and entity declarations are not allowed"),
    ("big.bpmn", CHANGE.encode() + b"<!--" + b"x" * (5 * 1024 * 1024) + b"-->", "larger than 5 MiB"),
    ("lane.bpmn", CHANGE.replace('<bpmn:lane id="lane_cab" name="cab">',
                                 '<bpmn:lane id="lane_cab" name="trading_desk">').encode(),
     "lane 'trading_desk' names no role"),
])
def test_bad_uploads_list_their_problems_and_deploy_nothing(pages: Pages, name: str, content: bytes,
                                                            expected: str) -> None:
    pages.sign_in("maqing")
    response = pages.post("/processes/upload", {"files": [(io.BytesIO(content), name),
                                                          (io.BytesIO(RISK.encode()), "change_risk.dmn")]},
                          content_type="multipart/form-data")  # with the decision table it calls
    assert response.status_code == 422
    assert 'id="problems"' in response.text and expected in html.unescape(response.text)
    assert latest_version(pages) == 1
    assert [d.process_id for d in pages.engine.repository.definitions()] == ["change"]


def test_an_upload_over_the_request_limit_is_refused(pages: Pages) -> None:
    pages.sign_in("maqing")
    response = upload(pages, "huge.bpmn", b"x" * (21 * 1024 * 1024))
    assert response.status_code == 413
    assert latest_version(pages) == 1


def test_a_clean_upload_deploys(pages: Pages) -> None:
    pages.sign_in("maqing")
    two_lanes = (ROOT / "tests" / "fixtures" / "two_lanes.bpmn").read_bytes()
    response = upload(pages, "two_lanes.bpmn", two_lanes)
    assert response.status_code == 422  # its forms are not in forms/: listed, nothing deployed
    assert "access_request.json" in response.text
    response = upload(pages, "change.bpmn", CHANGE.replace("运维负责人审批", "主管审批").encode())
    assert response.status_code == 422  # the DMN it calls must come along
    response = pages.post("/processes/upload", {"files": [
        (io.BytesIO(CHANGE.replace("运维负责人审批", "主管审批").encode()), "change.bpmn"),
        (io.BytesIO(RISK.encode()), "change_risk.dmn")]}, content_type="multipart/form-data")
    assert response.status_code == 200 and 'id="deployed"' in response.text
    assert latest_version(pages) == 2


def test_versions_page_shows_who_when_what_changed_and_running_cases(pages: Pages) -> None:
    old = pages.start_change()
    pages.sign_in("maqing")
    save(pages, CHANGE.replace('name="运维负责人审批"', 'name="运维主管审批"'))
    page = pages.get("/processes/change/versions")
    assert page.status_code == 200
    assert page.text.count('data-version="') == 2
    assert 'data-id="approve_ops"' in page.text  # changed between v1 and v2
    v1 = page.text.split('data-version="1"')[1]
    assert '<td class="running">1</td>' in v1 and "maqing" in page.text.split('data-version="1"')[0]
    assert pages.engine.runtime.show(old).version == 1


def test_redeploying_an_earlier_version_makes_it_the_newest_and_is_audited(pages: Pages) -> None:
    pages.sign_in("maqing")
    save(pages, CHANGE.replace('name="运维负责人审批"', 'name="运维主管审批"'))
    response = pages.post("/processes/change/versions/1/redeploy")
    assert response.status_code == 302
    newest = pages.engine.repository.definition("change")
    assert newest.version == 3 and newest.bpmn_xml == pages.engine.repository.definition("change", 1).bpmn_xml
    events = [e for e in pages.engine.audit.events() if e.action == "definition.redeployed"]
    assert events and events[-1].actor == "maqing" and events[-1].data["from_version"] == 1


def test_migration_dry_run_then_run_from_the_versions_page(pages: Pages) -> None:
    old = pages.start_change()
    pages.sign_in("maqing")
    save(pages, CHANGE.replace('name="运维负责人审批"', 'name="运维主管审批"'))
    dry = pages.post("/processes/change/migrate", {"to_version": "2", "run": "0"})
    assert dry.status_code == 200 and f'data-case="{old}"' in dry.text and 'class="ok"' in dry.text
    assert pages.engine.runtime.show(old).version == 1
    done = pages.post("/processes/change/migrate", {"to_version": "2", "run": "1"})
    assert done.status_code == 200 and pages.engine.runtime.show(old).version == 2
    assert any(e.action == "case.migrated" and e.instance_id == old for e in pages.engine.audit.events())


def test_form_editor_previews_as_the_inbox_and_refuses_an_invalid_schema(pages: Pages) -> None:
    pages.sign_in("maqing")
    page = pages.get("/forms/approval.json/edit")
    assert page.status_code == 200 and 'data-field="decision"' in page.text and "change v1" in page.text
    preview = pages.post("/forms/approval.json/preview", {"schema": json.dumps(
        {"type": "object", "properties": {"note": {"type": "string", "title": "备注"}}})})
    assert 'data-field="note"' in preview.text and "备注" in preview.text
    assert 'id="preview-problem"' in pages.post("/forms/approval.json/preview", {"schema": "{"}).text
    bad = pages.post("/forms/approval.json", {"schema": json.dumps({"type": "nonsense"})})
    assert bad.status_code == 422 and "not a valid JSON Schema" in bad.text
    assert latest_version(pages) == 1


def test_saving_a_form_redeploys_the_processes_that_use_it(pages: Pages) -> None:
    pages.sign_in("maqing")
    schema = json.loads((ROOT / "forms" / "approval.json").read_text(encoding="utf-8"))
    schema["properties"]["comment"]["title"] = "审批意见（必要时）"
    response = pages.post("/forms/approval.json", {"schema": json.dumps(schema, ensure_ascii=False)})
    assert response.status_code == 200 and 'id="deployed"' in response.text
    newest = pages.engine.repository.definition("change")
    assert newest.version == 2
    assert newest.forms["approval.json"]["properties"]["comment"]["title"] == "审批意见（必要时）"
    assert pages.engine.repository.definition("change", 1).forms["approval.json"] != newest.forms["approval.json"]
    saved = pages.engine.documents.latest("form", "approval.json")  # in the database, for every node
    assert saved is not None and saved.data() == schema and saved.created_by == "maqing"
    assert json.loads((pages.engine.ctx.settings.forms_dir / "approval.json").read_text(encoding="utf-8")) != schema
    page = pages.get("/forms/approval.json/edit").text
    assert "审批意见（必要时）" in page and "maqing" in page.split('id="form-version"')[1].split("</p>")[0]
    assert pages.post("/forms/../x.json", {"schema": "{}"}).status_code in (404, 422)


def test_decision_tables_open_and_save_as_a_new_version(pages: Pages) -> None:
    pages.sign_in("maqing")
    page = pages.get("/processes/change/decisions/change_risk.dmn")
    assert page.status_code == 200 and "dmn-modeler.production.min.js" in page.text
    assert "change_risk_table" in pages.get("/processes/change/decisions/change_risk.dmn/source.dmn").text
    assert pages.get("/processes/change/decisions/other.dmn").status_code == 404
    broken = pages.post("/processes/change/decisions/change_risk.dmn", {"xml": "<definitions"})
    assert broken.status_code == 422 and broken.json["problems"] and latest_version(pages) == 1
    edited = RISK.replace("紧急变更：信息技术负责人审批，事后评审", "紧急变更：信息技术负责人审批")
    saved = pages.post("/processes/change/decisions/change_risk.dmn", {"xml": edited})
    assert saved.status_code == 200 and saved.json["deployed"][0]["version"] == 2
    assert "事后评审" not in pages.engine.repository.definition("change").dmn_xml["change_risk.dmn"]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the BPMN MIWG corpus is not checked out next to the repository")
def test_every_corpus_file_deploys_or_lists_its_problems(pages: Pages) -> None:
    pages.sign_in("maqing")
    for path in sorted(CORPUS.glob("*.bpmn")):
        response = upload(pages, path.name, path.read_bytes())
        assert response.status_code in (200, 422), path.name
        assert ('id="problems"' in response.text) == (response.status_code == 422), path.name
        if response.status_code == 422:
            assert path.name in response.text.split('id="problems"')[1], path.name
