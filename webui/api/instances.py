"""Cases: start, list, read, cancel."""

from __future__ import annotations

from typing import Any

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


@endpoint("GET", "/instances/{instance_id}", rule="the starter, participants, holders of an open task's role, "
          "supervisor/compliance/admin (engine: runtime.show)",
          summary="A case: status, data, open tasks, history, links", tag="instances",
          response=InstanceDetailSchema, errors=(403, 404))
def get_instance(instance_id: int) -> Any:
    return engine().runtime.show(instance_id, actor())


@endpoint("POST", "/instances/{instance_id}/cancel",
          rule="the starter, ops_manager, supervisor or admin (engine: runtime.cancel)",
          summary="Cancel a running case, with a reason", tag="instances", body=CancelRequest,
          response=InstanceDetailSchema, errors=(403, 404, 409))
def cancel_instance(instance_id: int, body: dict[str, Any]) -> Any:
    eng = engine()
    eng.runtime.cancel(instance_id, actor(), body["reason"])
    return eng.runtime.show(instance_id)
