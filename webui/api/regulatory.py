"""The register of regulatory reports, read through the API (engine: regulatory.reports)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from engine.views import REPORT_STATUSES
from webui.api.access import MAX_ID, actor, endpoint, engine


class RegulatoryReportQuery(Schema):
    status = fields.String(validate=validate.OneOf(REPORT_STATUSES),
                           metadata={"description": "due (not yet due), overdue (due, unsent), sent (on time), late"})
    kind = fields.String(validate=validate.Length(1, 64), metadata={"description": "首报, 续报, 预警, 解除, 总结, ..."})
    instance_id = fields.Integer(validate=validate.Range(1, MAX_ID), metadata={"description": "one case"})


class FileRefSchema(Schema):
    name = fields.String(required=True)
    sha256 = fields.String(required=True)


class RegulatoryReportSchema(Schema):
    instance_id = fields.Integer(required=True)
    case_title = fields.String(required=True)
    kind = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(REPORT_STATUSES)})
    due_at = fields.DateTime(allow_none=True, required=True)
    drafted_by = fields.String(allow_none=True, required=True)
    drafted_at = fields.DateTime(allow_none=True, required=True)
    signer = fields.String(allow_none=True, required=True, metadata={"description": "签发人: who approved it"})
    signed_at = fields.DateTime(allow_none=True, required=True)
    sent_at = fields.DateTime(allow_none=True, required=True,
                              metadata={"description": "as declared, never after sent_recorded_at"})
    sent_recorded_at = fields.DateTime(allow_none=True, required=True)
    sent_by = fields.String(allow_none=True, required=True)
    recipients = fields.List(fields.String(), required=True)
    channel = fields.String(allow_none=True, required=True)
    attachment = fields.Nested(FileRefSchema, allow_none=True, required=True,
                               metadata={"description": "the signed report"})
    receipt = fields.Nested(FileRefSchema, allow_none=True, required=True)


class RegulatoryReportList(Schema):
    items = fields.List(fields.Nested(RegulatoryReportSchema), required=True)


@endpoint("GET", "/regulatory-reports", rule="case.read_all (engine: regulatory.reports, processes/access.json)",
          summary="The register of regulatory reports: due, overdue, sent and late", tag="regulatory",
          query=RegulatoryReportQuery, response=RegulatoryReportList, errors=(403,))
def list_regulatory_reports(query: dict[str, Any]) -> dict[str, Any]:
    now = engine().ctx.now()
    reports = engine().regulatory.reports(actor(), status=query.get("status"), kind=query.get("kind"),
                                          instance_id=query.get("instance_id"))
    return {"items": [{**vars(r), "status": r.status(now)} for r in reports]}
