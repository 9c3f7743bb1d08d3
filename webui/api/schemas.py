"""Marshmallow schemas of the REST API: what each endpoint loads and dumps (and the OpenAPI document shows).

Field names follow docs/CONTRACT.md and `opsflow ... --json`: a task's `name` is its BPMN id and
its `title` the name people read.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import inspect

from engine.views import SEVERITIES, STATUSES

MAX_PAGE = 500
NAME = validate.Length(min=1, max=128)


def _no_surrogates(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("text is not valid Unicode (lone surrogate)") from None


class Text(fields.String):
    """A string that must encode as UTF-8 (JSON allows lone surrogates; databases do not)."""

    def __init__(self, **kwargs: Any) -> None:
        validators = kwargs.pop("validate", None)
        extra = [validators] if callable(validators) else list(validators or [])
        super().__init__(validate=[_no_surrogates, *extra], **kwargs)


class JSONObject(fields.Dict):
    """Free-form JSON object (case and form data)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=Text(), **kwargs)


# errors and pages --------------------------------------------------------------------------------
class ErrorBody(Schema):
    code = fields.String(required=True, metadata={"example": "forbidden"})
    message = fields.String(required=True)
    details = fields.Raw(allow_none=True, metadata={
        "description": "field errors as [{field, message}] (422), lint problems as [{file, line, message}], "
                       "or {rule} naming the refusing rule (403)"})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBody, required=True)


class PageQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))


def page_of(item: type[Schema], name: str) -> type[Schema]:
    """`{items, total, limit, offset}` of the given item schema, named for the OpenAPI document."""
    return type(name, (Schema,), {
        "items": fields.List(fields.Nested(item), required=True),
        "total": fields.Integer(required=True, metadata={"description": "how many match, over all pages"}),
        "limit": fields.Integer(required=True),
        "offset": fields.Integer(required=True),
    })


# auth --------------------------------------------------------------------------------------------
class Credentials(Schema):
    username = Text(required=True, validate=validate.Length(min=1, max=64))
    password = Text(required=True, validate=validate.Length(min=1, max=1024))


class TokenSchema(Schema):
    token = fields.String(required=True, metadata={"description": "send as `Authorization: Bearer TOKEN`"})
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    username = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)
    expires_at = fields.DateTime(required=True)


class RevokedSchema(Schema):
    revoked = fields.Boolean(required=True)


# processes ---------------------------------------------------------------------------------------
class ProcessSchema(Schema):
    id = fields.String(attribute="process_id", required=True)
    name = fields.String(required=True)
    version = fields.Integer(required=True)
    source_name = fields.String(required=True)
    deployed_by = fields.String(required=True)
    deployed_at = fields.DateTime(required=True)


class SourceFileSchema(Schema):
    name = Text(required=True, validate=[validate.Length(min=1, max=256),
                                         validate.Regexp(r"^[^/\\]+\.(bpmn|dmn)$",
                                                         error="a .bpmn or .dmn file name without a path")])
    content = Text(required=True, validate=validate.Length(min=1), metadata={"description": "the XML"})


class DeployRequest(Schema):
    files = fields.List(fields.Nested(SourceFileSchema), required=True, validate=validate.Length(min=1, max=50))
    check = fields.Boolean(load_default=False, metadata={"description": "lint only, deploy nothing"})


class DeployedSchema(Schema):
    id = fields.String(attribute="process_id", required=True)
    name = fields.String(required=True)
    version = fields.Integer(required=True)
    changed = fields.Boolean(required=True, metadata={"description": "false when the content was already deployed"})


class DeployResult(Schema):
    deployed = fields.List(fields.Nested(DeployedSchema), required=True)


class BpmnQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    version = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1))


# tasks -------------------------------------------------------------------------------------------
class TaskSchema(Schema):
    id = fields.String(required=True)
    instance_id = fields.Integer(required=True)
    process_id = fields.String(required=True)
    name = fields.String(attribute="bpmn_id", required=True, metadata={"description": "BPMN id of the task"})
    title = fields.String(attribute="name", required=True)
    role = fields.String(required=True)
    assignee = fields.String(allow_none=True, required=True)
    state = fields.String(required=True, metadata={"enum": ["open", "completed", "cancelled"]})
    priority = fields.Integer(required=True)
    form = fields.String(attribute="form_key", allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    due_at = fields.DateTime(allow_none=True, required=True)
    claimed_at = fields.DateTime(allow_none=True, required=True)
    completed_at = fields.DateTime(allow_none=True, required=True)
    completed_by = fields.String(allow_none=True, required=True)
    acting_for = fields.String(allow_none=True, metadata={"description": "the holder a substitute (A/B角) acted for"})
    return_reason = fields.String(allow_none=True, metadata={
        "description": "set when the task reopened because the case was sent back (退回): why"})
    returned_by = fields.String(allow_none=True, metadata={
        "description": "who sent it back; null for an automatic check"})


class AnswerSchema(Schema):
    field = fields.String(required=True)
    label = fields.String(required=True, metadata={"description": "the form's title for the field"})
    value = fields.Raw(required=True, allow_none=True)
    text = fields.Raw(required=True, allow_none=True, metadata={"description": "the form's label for the value"})


class RecordEntrySchema(Schema):
    """One completed step of the approval record (审批记录)."""
    task_id = fields.String(required=True)
    bpmn_id = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    completed_by = fields.String(required=True)
    completed_by_name = fields.String(required=True)
    acting_for = fields.String(allow_none=True, required=True)
    completed_at = fields.DateTime(allow_none=True, required=True)
    outcome = fields.Raw(allow_none=True, required=True, metadata={"description": "approve / reject / return …"})
    outcome_label = fields.String(allow_none=True, required=True, metadata={"description": "批准 / 驳回 / 退回 …"})
    answers = fields.List(fields.Nested(AnswerSchema), required=True, metadata={
        "description": "the person's own words (comment, conditions …) under the form's labels"})
    facts = fields.List(fields.Nested(AnswerSchema), required=True, metadata={
        "description": "what the step wrote as case fields (a request's title, systems, window …)"})
    return_reason = fields.String(allow_none=True, required=True)
    returned_by = fields.String(allow_none=True, required=True)


class TaskDetailSchema(TaskSchema):
    case_title = fields.String(required=True)
    form_schema = fields.Dict(allow_none=True, required=True, metadata={"description": "JSON Schema of the form"})
    data = fields.Dict(required=True, metadata={
        "description": "what the form opens with: the case fields this task edits, never another task's answers"})
    case_data = fields.Dict(required=True, metadata={"description": "the case's facts so far (read-only)"})
    record = fields.List(fields.Nested(RecordEntrySchema), required=True, metadata={
        "description": "the approval record so far: each completed step with who, when, outcome and answers"})
    documentation = fields.String(allow_none=True, required=True)
    instructions = fields.String(allow_none=True, required=True)


class TaskQuery(PageQuery):
    scope = fields.String(load_default="all", validate=validate.OneOf(["mine", "group", "all", "everyone"]),
                          metadata={"description": "mine: assigned to me; group: my roles' unclaimed; all: both; "
                                                   "everyone: every open task (supervisors, managers)"})
    overdue = fields.Boolean(load_default=False)
    process_id = Text(validate=NAME)


class AssignRequest(Schema):
    user = Text(required=True, validate=validate.Length(min=1, max=64))


class CompleteRequest(Schema):
    data = JSONObject(required=True, metadata={"description": "the form's fields"})


class CompletedSchema(Schema):
    id = fields.String(required=True)
    state = fields.String(required=True)
    next_tasks = fields.List(fields.Nested(TaskSchema), required=True,
                             metadata={"description": "tasks the case opened next"})


# instances ---------------------------------------------------------------------------------------
class InstanceSchema(Schema):
    id = fields.Integer(required=True)
    process_id = fields.String(required=True)
    version = fields.Method("_version", required=True, metadata={"type": "integer"})
    business_key = fields.String(allow_none=True, required=True)
    title = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["running", "completed", "cancelled", "error"]})
    started_by = fields.String(required=True)
    started_at = fields.DateTime(required=True)
    ended_at = fields.DateTime(allow_none=True, required=True)
    error = fields.Method("_error", allow_none=True, required=True, metadata={
        "type": "string", "description": "why a running case is stuck (its timer could not fire): element and "
        "reason; null otherwise"})

    def _error(self, row: Any) -> str | None:
        return row.error if row.status == "running" else None

    def _version(self, row: Any) -> int:
        if "definition" in inspect(row).unloaded:  # a row just written: the version from the spec cache
            return current_app.extensions["opsflow"].repository.load(row.definition_id).version
        return row.definition.version


class AuditEventSchema(Schema):
    id = fields.Integer(required=True)
    at = fields.DateTime(required=True)
    actor = fields.String(required=True)
    action = fields.String(required=True)
    instance_id = fields.Integer(allow_none=True, required=True)
    task_id = fields.String(allow_none=True, required=True)
    data = fields.Dict(required=True)
    source = fields.String(allow_none=True, required=True, metadata={
        "description": "where the action came from: 'web ADDRESS', 'api ADDRESS', 'cli OS-USER', 'ticker', "
                       "'system'; null on events from before sources were kept"})
    prev_hash = fields.String(required=True)
    hash = fields.String(required=True)


class LinkSchema(Schema):
    kind = fields.String(required=True)
    direction = fields.String(required=True, metadata={"enum": ["to", "from"]})
    instance_id = fields.Integer(required=True)
    process_id = fields.String(allow_none=True, required=True)
    title = fields.String(allow_none=True, required=True)


class InstanceDetailSchema(Schema):
    id = fields.Integer(required=True)
    process_id = fields.String(required=True)
    process_name = fields.String(required=True)
    version = fields.Integer(required=True)
    business_key = fields.String(allow_none=True, required=True)
    title = fields.String(required=True)
    status = fields.String(required=True)
    started_by = fields.String(required=True)
    started_at = fields.DateTime(required=True)
    ended_at = fields.DateTime(allow_none=True, required=True)
    data = fields.Dict(required=True)
    open_tasks = fields.List(fields.Nested(TaskSchema), required=True)
    history = fields.List(fields.Nested(AuditEventSchema), required=True)
    links = fields.List(fields.Nested(LinkSchema), required=True)
    record = fields.List(fields.Nested(RecordEntrySchema), required=True, metadata={
        "description": "the approval record (审批记录): each completed step with who, when, outcome and answers"})
    error = fields.String(allow_none=True, required=True, metadata={
        "description": "why a running case is stuck (its timer could not fire): element and reason; null otherwise"})


class StartRequest(Schema):
    process_id = Text(required=True, validate=NAME)
    data = JSONObject(load_default=dict)
    business_key = Text(validate=validate.Length(min=1, max=128), allow_none=True)


class InstanceQuery(PageQuery):
    process_id = Text(validate=NAME)
    status = fields.String(validate=validate.OneOf(["running", "completed", "cancelled", "error"]))
    started_by = Text(validate=validate.Length(min=1, max=64))


class CancelRequest(Schema):
    reason = Text(required=True, validate=validate.Length(min=1, max=2000))

    @validates_schema
    def _reason_not_blank(self, data: dict[str, Any], **_: Any) -> None:
        if not data["reason"].strip():
            raise ValidationError("a reason is required", "reason")


# messages and alerts -----------------------------------------------------------------------------
class MessageRequest(Schema):
    name = Text(required=True, validate=validate.Length(min=1, max=256))
    correlation = JSONObject(load_default=dict, metadata={
        "description": "values of the BPMN correlation properties, e.g. {\"change_ref\": \"CHG-1\"}"})
    payload = JSONObject(load_default=dict)


class DeliveredSchema(Schema):
    instance_id = fields.Integer(required=True)


class AlertRequest(Schema):
    source = Text(required=True, validate=validate.Length(min=1, max=64),
                  metadata={"example": "zabbix"})
    fingerprint = Text(required=True, validate=validate.Length(min=1, max=256),
                       metadata={"description": "stable identity of the alert at its source"})
    status = fields.String(load_default="firing", validate=validate.OneOf(STATUSES))
    severity = fields.String(required=True, validate=validate.OneOf(list(SEVERITIES)),
                             metadata={"description": "critical→P1, major→P2, minor→P3, warning/info→P4 "
                                                      "(via the incident_grading DMN)"})
    system = Text(required=True, validate=validate.Length(min=1, max=128),
                  metadata={"description": "the affected system", "example": "网上交易"})
    text = Text(required=True, validate=validate.Length(min=1, max=10000))
    occurred_at = fields.AwareDateTime(allow_none=True, default_timezone=None,
                                       metadata={"description": "when the source saw it; retries repeat it"})
    system_class = Text(allow_none=True, validate=validate.Length(min=1, max=64),
                        metadata={"description": "class for incident levels (集中交易, 网上交易, ...); "
                                                 "defaults to the system when it names a class, else 其他"})


class AlertResultSchema(Schema):
    action = fields.String(required=True, metadata={"enum": ["opened", "appended", "resolved"]})
    duplicate = fields.Boolean(required=True, metadata={"description": "a retry: nothing changed"})
    alert_id = fields.Integer(required=True)
    instance_id = fields.Integer(required=True)
    status = fields.String(required=True)
    occurrences = fields.Integer(required=True, metadata={"description": "occurrences recorded on the case"})


# audit -------------------------------------------------------------------------------------------
class AuditQuery(PageQuery):
    instance_id = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1))


ProcessPage = page_of(ProcessSchema, "ProcessPage")
InstancePage = page_of(InstanceSchema, "InstancePage")
TaskPage = page_of(TaskSchema, "TaskPage")
AuditPage = page_of(AuditEventSchema, "AuditPage")
