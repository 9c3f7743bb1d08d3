"""What other systems send in: BPMN messages for waiting cases, and monitoring alerts."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from webui.api.access import actor, endpoint, engine
from webui.api.schemas import AlertRequest, AlertResultSchema, DeliveredSchema, MessageRequest


@endpoint("POST", "/messages", rule="case.message, into a case the user may read; the message goes only to the one "
          "case waiting for it with these correlation values (engine: runtime.deliver_message)",
          summary="Deliver a BPMN message to the case waiting for it", tag="intake", body=MessageRequest,
          response=DeliveredSchema, errors=(403, 404, 409))
def deliver_message(body: dict[str, Any]) -> dict[str, Any]:
    instance_id = engine().runtime.deliver_message(body["name"], body["correlation"], body["payload"], actor())
    return {"instance_id": instance_id}


@endpoint("POST", "/alerts", rule="alerts.post (a monitoring service account); an alert is appended to or "
          "resolved only by the account that raised it; the case is started as them (engine: alerts.receive)",
          summary="Monitoring alert intake: a new fingerprint opens an incident, a repeat is appended, "
                  "a resolved alert is noted; retries change nothing", tag="intake", body=AlertRequest,
          response=AlertResultSchema, status=(201, 200), errors=(403, 404, 409))
def receive_alert(body: dict[str, Any]) -> Any:
    outcome = engine().alerts.receive(actor(), **body)
    status = 201 if outcome.action == "opened" and not outcome.duplicate else 200
    return jsonify(AlertResultSchema().dump(outcome)), status
