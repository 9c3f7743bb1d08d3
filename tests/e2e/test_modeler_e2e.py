"""In a real browser: a process owner adds a user task in a lane to `change`, sees the lint error, picks a
form and deploys version 2; old cases stay on version 1, new ones run version 2; a migration dry run
reports; every BPMN MIWG reference file opens in the modeler."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.test_inbox_e2e import login

pytestmark = pytest.mark.e2e

CORPUS = ROOT.parent / "shared" / "corpus" / "bpmn-miwg-reference"

# What a user does with the palette: drop a user task into the pool and wire it between `close` and its end.
ADD_TASK = """() => {
  const m = window.opsflowModeler;
  const registry = m.get('elementRegistry'), modeling = m.get('modeling'), factory = m.get('elementFactory');
  const close = registry.get('close'), end = registry.get('end_ok'), flow = registry.get('f_close');
  const pool = close.parent;
  const shape = modeling.createShape(factory.createShape({type: 'bpmn:UserTask'}),
                                     {x: end.x + 20, y: close.y - 200}, pool);
  modeling.reconnectEnd(flow, shape, {x: shape.x, y: shape.y + shape.height / 2});
  modeling.connect(shape, end);
  return shape.id;
}"""


def open_modeler(page, base: str) -> None:
    page.goto(f"{base}/processes/change/edit")
    page.wait_for_selector("#canvas[data-ready='1']", state="attached")


def test_owner_adds_a_task_in_a_lane_and_deploys_version_two(live_server, browser, screenshot_dir: Path) -> None:
    base, engine = live_server
    old_case = engine.runtime.start("change", engine.identity.get("zhangwei"), {"title": "部署前发起的变更"})
    context = browser.new_context(locale="zh-CN", viewport={"width": 1500, "height": 950})
    page = context.new_page()
    page.set_default_timeout(20000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    login(page, base, "maqing")
    page.click("#nav-processes")
    page.click("tr[data-process=change] >> text=编辑")
    page.wait_for_selector("#canvas[data-ready='1']", state="attached")

    task_id = page.evaluate(ADD_TASK)
    page.evaluate("id => { const m = window.opsflowModeler; m.get('selection').select("
                  "m.get('elementRegistry').get(id)); }", task_id)
    page.wait_for_selector("#props-form:not([hidden])")
    assert task_id in page.inner_text("#props-id")
    page.fill("#p-name", "督导确认")
    page.press("#p-name", "Tab")
    page.select_option("#p-lane", "supervisor")
    lane = page.evaluate("id => { const m = window.opsflowModeler; const bo = m.get('elementRegistry').get(id)"
                         ".businessObject; return m.get('elementRegistry').filter(e => e.type === 'bpmn:Lane' && "
                         "(e.businessObject.flowNodeRef || []).includes(bo)).map(e => e.id); }", task_id)
    assert lane == ["lane_supervisor"]

    # Saving lints first: the new task has no form, so it is listed, highlighted, and nothing is deployed.
    page.click("#save")
    page.wait_for_selector("#canvas[data-saved='problems']", state="attached")
    listed = page.inner_text("#problem-list")
    assert page.locator(f"#problem-list li[data-element={task_id}]").count() == 1, listed
    problem = page.locator(f"#problem-list li[data-element={task_id}]")
    assert "has no form" in problem.inner_text()
    assert page.locator(f"g.djs-element.lint-error[data-element-id={task_id}]").count() == 1
    assert engine.repository.definition("change").version == 1
    page.screenshot(path=str(screenshot_dir / "modeler-1-lint-error.png"))

    problem.click()  # selects the offending task again
    page.select_option("#p-form", "approval.json")
    page.fill("#p-due", "P1D")
    page.press("#p-due", "Tab")
    page.click("#save")
    page.wait_for_selector("#canvas[data-saved='2']", state="attached")
    assert "2" in page.inner_text("#modeler-status")
    assert page.locator("#problems").is_hidden()
    page.screenshot(path=str(screenshot_dir / "modeler-2-deployed.png"))

    newest = engine.repository.definition("change")
    assert newest.version == 2 and newest.deployed_by == "maqing"
    rules = engine.repository.load(newest.id).rules[task_id]
    assert (rules.name, rules.lane, rules.form, rules.due_in) == ("督导确认", "supervisor", "approval.json", "P1D")
    assert "preScript" in newest.bpmn_xml and "serviceTaskOperator" in newest.bpmn_xml  # extensions kept

    # The case started before stays on version 1; a new one runs version 2.
    assert engine.runtime.show(old_case.id).version == 1
    new_case = engine.runtime.start("change", engine.identity.get("zhangwei"), {"title": "部署后发起的变更"})
    assert engine.runtime.show(new_case.id).version == 2

    # Versions: who and what changed; a migration dry run says what it would do and changes nothing.
    page.goto(f"{base}/processes/change/versions")
    row = page.locator("tr[data-version='2']")
    assert "maqing" in row.inner_text() and "督导确认" in row.locator(".changes").inner_text()
    assert page.inner_text("tr[data-version='1'] td.running") == "1"
    page.click("#dry-run")
    page.wait_for_selector("#migration-report")
    report = page.locator(f"#migration-report tr[data-case='{old_case.id}']")
    assert report.get_attribute("class") == "ok" and "v1" in report.inner_text()
    assert engine.runtime.show(old_case.id).version == 1
    page.screenshot(path=str(screenshot_dir / "modeler-3-dry-run.png"), full_page=True)
    assert not errors, errors
    context.close()


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the BPMN MIWG corpus is not checked out next to the repository")
def test_every_corpus_file_opens_in_the_modeler(live_server, browser) -> None:
    base, _engine = live_server
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20000)
    login(page, base, "maqing")
    open_modeler(page, base)
    failed = {}
    for path in sorted(CORPUS.glob("*.bpmn")):
        page.evaluate("document.getElementById('canvas').dataset.ready = 'pending'")
        page.set_input_files("#open-file", str(path))
        page.wait_for_selector("#canvas[data-ready='1'], #canvas[data-ready='error']", state="attached")
        if page.evaluate("document.getElementById('canvas').dataset.ready") != "1":
            failed[path.name] = page.inner_text("#modeler-status")
        page.evaluate("document.getElementById('open-file').value = ''")
    assert not failed, failed
    context.close()
