"""Failed cases and jobs, for the process owner: list them, retry one (engine: failures)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from webui.api.access import MAX_ID, actor, endpoint, engine


class FailureSchema(Schema):
    instance_id = fields.Integer(allow_none=True, required=True, metadata={"description": "the stuck case, if any"})
    process_id = fields.String(allow_none=True, required=True)
    title = fields.String(allow_none=True, required=True)
    error = fields.String(required=True, metadata={"description": "the latest error: element and reason"})
    since = fields.DateTime(allow_none=True, required=True, metadata={"description": "when it first failed"})
    attempts = fields.Integer(required=True)
    job_id = fields.Integer(allow_none=True, required=True)
    kind = fields.String(allow_none=True, required=True, metadata={"description": "the job's kind (timer, ...)"})
    state = fields.String(required=True, metadata={"enum": ["parked", "retrying", "failed"]})


class FailureList(Schema):
    items = fields.List(fields.Nested(FailureSchema), required=True)


class RetryRequest(Schema):
    instance_id = fields.Integer(validate=validate.Range(1, MAX_ID), metadata={"description": "a stuck case"})
    job_id = fields.Integer(validate=validate.Range(1, MAX_ID), metadata={"description": "or a failed job"})

    @validates_schema
    def _one_of(self, data: dict[str, Any], **_: Any) -> None:
        if ("instance_id" in data) == ("job_id" in data):
            raise ValidationError("name either instance_id or job_id", "instance_id")


class RetriedSchema(Schema):
    job_id = fields.Integer(required=True, metadata={"description": "the job that runs the retry at the next tick"})


@endpoint("GET", "/failures", rule="process.deploy (engine: failures.failures, processes/access.json)",
          summary="Cases stuck on a timer that could not fire, and jobs whose retries ran out", tag="failures",
          response=FailureList, errors=(403,))
def list_failures() -> dict[str, Any]:
    return {"items": engine().failures.failures(actor())}


@endpoint("POST", "/failures/retry", rule="process.deploy (engine: failures.retry); recorded as job.retried",
          summary="Retry a stuck case's timer or a failed job now", tag="failures", body=RetryRequest,
          response=RetriedSchema, errors=(403, 404, 409))
def retry_failure(body: dict[str, Any]) -> dict[str, Any]:
    return {"job_id": engine().failures.retry(actor(), instance_id=body.get("instance_id"),
                                              job_id=body.get("job_id"))}
