"""The configuration items register (配置项) read through the API: the list with search, and one item
with its relations both ways, its history and the cases linked to it that the caller may read
(engine: configuration.list_items, configuration/browse.item_detail). Anyone with a token reads it.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from engine.errors import NotFound
from engine.views import item_detail
from webui.api.access import MAX_ID, actor, endpoint, engine


class ConfigItemQuery(Schema):
    search = fields.String(validate=validate.Length(0, 200),
                           metadata={"description": "items whose name, class, category, markets, people, vendor, "
                                                    "version or status contain it"})


class ConfigItemSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    core = fields.Boolean(required=True, metadata={"description": "核心交易 (true) or 非核心"})
    class_label = fields.String(required=True)
    system_class = fields.Integer(allow_none=True, required=True, metadata={"description": "2021 class 1..5"})
    system_class_label = fields.String(allow_none=True, required=True, metadata={"description": "一类..五类"})
    category = fields.String(required=True)
    markets = fields.List(fields.String(), required=True)
    environment = fields.String(required=True)
    owner_role = fields.String(required=True)
    maintainer_a = fields.String(required=True)
    maintainer_b = fields.String(required=True)
    vendor = fields.String(required=True)
    version = fields.String(required=True)
    status = fields.String(required=True)
    depends_on = fields.List(fields.String(), required=True, metadata={"description": "item names"})
    runs_on = fields.List(fields.String(), required=True, metadata={"description": "item names"})
    updated_at = fields.DateTime(required=True)
    updated_by = fields.String(required=True)


class ConfigItemList(Schema):
    items = fields.List(fields.Nested(ConfigItemSchema), required=True)


class RelatedItemSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": ["depends_on", "runs_on"]})


class FieldChangeSchema(Schema):
    field = fields.String(required=True)
    before = fields.Raw(allow_none=True, required=True, metadata={"description": "null when the item was created"})
    after = fields.Raw(allow_none=True, required=True)


class ItemChangeSchema(Schema):
    at = fields.DateTime(required=True)
    actor = fields.String(required=True)
    action = fields.String(required=True, metadata={"enum": ["ci.created", "ci.updated"]})
    changes = fields.List(fields.Nested(FieldChangeSchema), required=True)


class LinkedCaseSchema(Schema):
    instance_id = fields.Integer(required=True)
    process_id = fields.String(required=True)
    process_name = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.String(required=True)
    started_at = fields.DateTime(required=True)
    linked_at = fields.DateTime(required=True)
    linked_by = fields.String(required=True)


class ConfigItemDetail(Schema):
    item = fields.Nested(ConfigItemSchema, required=True)
    relations = fields.List(fields.Nested(RelatedItemSchema), required=True,
                            metadata={"description": "what the item depends on and runs on"})
    used_by = fields.List(fields.Nested(RelatedItemSchema), required=True,
                          metadata={"description": "items that depend on or run on this one"})
    history = fields.List(fields.Nested(ItemChangeSchema), required=True, metadata={"description": "oldest first"})
    cases = fields.List(fields.Nested(LinkedCaseSchema), required=True,
                        metadata={"description": "linked cases the caller may read (the cases list's rule)"})


@endpoint("GET", "/config-items", rule="anyone with a token (engine: configuration.list_items)",
          summary="The configuration items register, searched", tag="configuration",
          query=ConfigItemQuery, response=ConfigItemList)
def list_config_items(query: dict[str, Any]) -> dict[str, Any]:
    return {"items": engine().configuration.list_items((query.get("search") or "").strip() or None)}


@endpoint("GET", "/config-items/{item_id}",
          rule="anyone with a token; linked cases only those the caller may read (engine: configuration "
               "browse.item_detail)",
          summary="One configuration item: relations both ways, history, linked cases", tag="configuration",
          response=ConfigItemDetail, errors=(404,))
def get_config_item(item_id: str) -> Any:
    if not (item_id.isascii() and item_id.isdigit()) or not 1 <= int(item_id) <= MAX_ID:
        raise NotFound(f"unknown configuration item {item_id!r}")
    return item_detail(engine().configuration, actor(), int(item_id))
