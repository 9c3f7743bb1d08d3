"""A form's register field (x-register) is checked when the form is deployed: it holds item ids, and
the facts the engine writes for it are out of any form's reach."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.forms import schema_problem


def form(field: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"systems": field, **more}}


def test_a_register_field_of_ids_is_accepted() -> None:
    assert schema_problem(form({"type": "array", "items": {"type": "integer"}, "x-register": "config_item"})) is None
    assert schema_problem(form({"type": "integer", "x-register": "config_item", "x-facts": "system"})) is None


@pytest.mark.parametrize(("schema", "problem"), [
    (form({"type": "array", "items": {"type": "string"}, "x-register": "config_item"}), "holds item ids"),
    (form({"type": "string", "x-register": "config_item"}), "holds item ids"),
    (form({"type": "integer", "x-register": "people"}), "names no register"),
    # a field of the same form could carry forged facts
    (form({"type": "integer", "x-register": "config_item", "x-facts": "records"}, records={"type": "array"}),
     "must be a data name the form does not declare"),
    (form({"type": "integer", "x-register": "config_item", "x-facts": "not a name"}), "must be a data name"),
])
def test_a_bad_register_field_is_refused_naming_it(schema: dict[str, Any], problem: str) -> None:
    found = schema_problem(schema)
    assert found is not None and found.startswith("field 'systems':") and problem in found
