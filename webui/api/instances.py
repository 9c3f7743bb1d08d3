"""Cases: start, list, read, cancel."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from webui.api.access import actor, endpoint, engine
from webui.api.schemas import (
    CancelRequest,
    InstanceDetailSchema,
    InstancePage,
    InstanceQuery,
    InstanceSchema,
    StartRequest,
)


@endpoint("POST", "/instances", rule="any user, or the process's start role when it has one (engine: runtime.start)",
          summary="Start a case on the latest version of a process", tag="instances", body=StartRequest,
          response=InstanceSchema, status=201, errors=(403, 404, 409))
def start_instance(body: dict[str, Any]) -> Any:
    return engine().runtime.start(body["process_id"], actor(), body["data"], body.get("business_key"))


@endpoint("GET", "/instances", rule="any user; lists only the cases they may read (engine: runtime.visible_cases)",
          summary="Cases the caller may read, newest first; filter by process_id, status, started_by",
          tag="instances", query=InstanceQuery, response=InstancePage)
def list_instances(query: dict[str, Any]) -> dict[str, Any]:
    rows, total = engine().runtime.visible_cases(actor(), query.get("process_id"), query.get("status"),
                                                 query.get("started_by"), query["limit"], query["offset"])
    return {"items": rows, "total": total, "limit": query["limit"], "offset": query["offset"]}


@endpoint("GET", "/instances/{instance_id}", rule="the starter, whoever has or had a task in it, the queue of an open "
          "unassigned task, an active substitute, case.read_all (engine: runtime.show)",
          summary="A case: status, data, open tasks, history, links", tag="instances",
          response=InstanceDetailSchema, errors=(403, 404))
def get_instance(instance_id: int) -> Any:
    return engine().runtime.show(instance_id, actor())


@endpoint("POST", "/instances/{instance_id}/cancel",
          rule="case.cancel, or the starter (case.cancel_own) unless the case is reportable; a reportable "
               "case (and its linked cases) is cancelled by case.cancel then signed off by case.cancel_signoff, "
               "another person: 202 while it waits (engine: runtime.cancel, processes/access.json)",
          summary="Cancel a running case, with a reason", tag="instances", body=CancelRequest,
          response=InstanceDetailSchema, status=(200, 202), errors=(403, 404, 409))
def cancel_instance(instance_id: int, body: dict[str, Any]) -> Any:
    eng = engine()
    outcome = eng.runtime.cancel(instance_id, actor(), body["reason"])
    detail = InstanceDetailSchema().dump(eng.runtime.show(instance_id))
    return jsonify(detail), 200 if outcome == "cancelled" else 202
