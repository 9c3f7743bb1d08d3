"""Budgets (issue 14): deploy refuses timers and form patterns that would run without bound, and the
engine stops a run that would never end, rolling the action back while other users are served."""

from __future__ import annotations

import json
import time

import pytest

from engine import ProcessEngine
from engine.definitions.forms import field_errors
from engine.errors import LintFailed
from engine.spiff.parsing import SourceFile
from tests.conftest import FIXTURES

TIMER_BOUNDARY = (FIXTURES / "timer_boundary.bpmn").read_text(encoding="utf-8")
TWO_LANES = (FIXTURES / "two_lanes.bpmn").read_text(encoding="utf-8")
APPROVAL = json.loads((FIXTURES / "forms" / "approval.json").read_text(encoding="utf-8"))
EVIL = "^(a+)+$"


def refused(engine: ProcessEngine, text: str, forms: dict | None = None) -> list[str]:
    with pytest.raises(LintFailed) as info:
        engine.repository.deploy([SourceFile("p.bpmn", text.encode())], "owner", forms=forms)
    assert engine.repository.definitions() == []
    return [str(p) for p in info.value.problems]


# deploy lints -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cycle", ["R/PT0S", "R/PT59S", "R5/PT1S"])
def test_a_timer_cycle_under_a_minute_is_refused_naming_the_element(engine: ProcessEngine, cycle: str) -> None:
    problems = refused(engine, TIMER_BOUNDARY.replace('"R2/PT1H"', f'"{cycle}"'))
    assert any("remind" in p and cycle in p and "at least a minute" in p for p in problems), problems


def test_a_timer_cycle_of_a_minute_deploys(engine: ProcessEngine) -> None:
    engine.repository.deploy([SourceFile("p.bpmn", TIMER_BOUNDARY.replace('"R2/PT1H"', '"R/PT1M"').encode())],
                             "owner")
    assert [d.process_id for d in engine.repository.definitions()] == ["timer_boundary"]


def _with_pattern(pattern: str, where: str = "pattern") -> dict:
    form = json.loads(json.dumps(APPROVAL))
    if where == "pattern":
        form["properties"]["comment"]["pattern"] = pattern
    else:
        form["patternProperties"] = {pattern: {"type": "string"}}
    return form


@pytest.mark.parametrize("pattern", ["(a)\\1", "^(?=a)a+$", "(?<!x)y"])
def test_a_form_pattern_without_a_linear_time_match_is_refused_at_deploy(engine: ProcessEngine,
                                                                        pattern: str) -> None:
    problems = refused(engine, TWO_LANES, forms={"approval.json": _with_pattern(pattern)})
    assert any("approval.json" in p and "'comment'" in p and "linear time" in p and "approve" in p
               for p in problems), problems


def test_a_pattern_properties_key_is_checked_too(engine: ProcessEngine) -> None:
    problems = refused(engine, TWO_LANES, forms={"approval.json": _with_pattern("(x)\\1", "patternProperties")})
    assert any("linear time" in p and "(x)\\\\1" in p for p in problems), problems


def test_the_form_editor_refuses_the_pattern_on_save(engine: ProcessEngine) -> None:
    owner = engine.identity.add_user("owner", ["process_owner"], password="Kunlun-2026-pw")
    with pytest.raises(LintFailed) as info:
        engine.versions.save_form(owner, "approval.json", _with_pattern("(a)\\1"))
    assert "linear time" in str(info.value.problems[0]) and "'comment'" in str(info.value.problems[0])
    assert json.loads((FIXTURES / "forms" / "approval.json").read_text(encoding="utf-8")) == APPROVAL


@pytest.mark.parametrize("where", ["pattern", "patternProperties"])
def test_a_backtracking_pattern_is_matched_in_linear_time(engine: ProcessEngine, where: str) -> None:
    """^(a+)+$ takes Python's re minutes on 40 a's and a b; the form validator answers at once."""
    engine.repository.deploy([SourceFile("p.bpmn", TWO_LANES.encode())], "owner",
                             forms={"approval.json": _with_pattern(EVIL, where)})
    form = _with_pattern(EVIL, where)
    attack = "a" * 40 + "b"
    started = time.monotonic()
    data = {"decision": "approve", "comment": attack} if where == "pattern" else {"decision": "approve", attack: "x"}
    errors = field_errors(form, data)
    assert time.monotonic() - started < 1
    if where == "pattern":
        assert [e.field for e in errors] == ["comment"] and "does not match" in errors[0].message
    assert field_errors(form, {"decision": "approve", "comment": "aaa"}) == []
