"""A form's errors read in Chinese with the field's title: no jsonschema English reaches a user."""

from __future__ import annotations

import json
import re

import pytest

from engine.definitions.forms import field_errors
from tests.conftest import ROOT

FORM = {
    "type": "object", "required": ["title", "minutes"],
    "properties": {
        "title": {"type": "string", "title": "标题", "minLength": 2, "maxLength": 5},
        "minutes": {"type": "integer", "title": "中断时长", "minimum": 0, "maximum": 1440},
        "agree": {"type": "boolean", "title": "确认", "const": True},
        "when": {"type": "string", "title": "发现时间", "format": "date-time"},
        "code": {"type": "string", "title": "编号", "pattern": "^SC-[0-9]{4}$"},
        "kind": {"type": "string", "title": "类型", "oneOf": [{"const": "a", "title": "甲"}]},
        "tags": {"type": "array", "title": "标签", "minItems": 1, "uniqueItems": True, "items": {"type": "string"}},
    },
}


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"minutes": 1}, "title", "标题: 必填"),
    ({"title": "x", "minutes": 1}, "title", "标题: 至少 2 个字符"),
    ({"title": "太长的一个标题", "minutes": 1}, "title", "标题: 最多 5 个字符"),
    ({"title": "ok", "minutes": "十分钟"}, "minutes", "中断时长: 应为整数"),
    ({"title": "ok", "minutes": -1}, "minutes", "中断时长: 不得小于 0"),
    ({"title": "ok", "minutes": 2000}, "minutes", "中断时长: 不得大于 1440"),
    ({"title": "ok", "minutes": 1, "agree": False}, "agree", "确认: 须勾选"),
    ({"title": "ok", "minutes": 1, "when": "昨天"}, "when", "发现时间: 应为日期时间（如 2026-11-21T10:00:00+08:00）"),
    ({"title": "ok", "minutes": 1, "when": "2026-11-21T10:00:00"}, "when",  # no zone: whose 10:00?
     "发现时间: 应为日期时间（如 2026-11-21T10:00:00+08:00）"),
    ({"title": "ok", "minutes": 1, "code": "SC-1"}, "code", "编号: 格式不符"),
    ({"title": "ok", "minutes": 1, "kind": "b"}, "kind", "类型: 不是可选的值之一"),
    ({"title": "ok", "minutes": 1, "tags": []}, "tags", "标签: 至少选择或填写 1 项"),
    ({"title": "ok", "minutes": 1, "tags": ["a", "a"]}, "tags", "标签: 不得有重复项"),
])
def test_each_rule_is_told_in_chinese_with_the_fields_title(data: dict, field: str, message: str) -> None:
    assert [(e.field, e.message) for e in field_errors(FORM, data)] == [(field, message)]


def test_no_english_from_the_validator_on_any_library_form() -> None:
    """Every library form, submitted empty and with wrong types everywhere, answers in Chinese."""
    latin = re.compile(r"\b(is|was|not|should|expected|required|valid|does)\b")
    for path in sorted((ROOT / "forms").glob("*.json")):
        form = json.loads(path.read_text(encoding="utf-8"))
        wrong = {name: ([] if prop.get("type") == "string" else "x") for name, prop in
                 (form.get("properties") or {}).items() if isinstance(prop, dict)}
        for data in ({}, wrong):
            for error in field_errors(form, data):
                assert not latin.search(error.message), (path.name, error.field, error.message)
