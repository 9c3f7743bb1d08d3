"""The audit trail, read through the API."""

from __future__ import annotations

from typing import Any

from webui.api.access import actor, endpoint, engine
from webui.api.schemas import AuditPage, AuditQuery


@endpoint("GET", "/audit", rule="with instance_id: whoever may read the case; without: audit.read_all "
          "(engine: runtime.history)",
          summary="Audit events, oldest first (?instance_id= for one case)", tag="audit", query=AuditQuery,
          response=AuditPage, errors=(403, 404))
def list_audit(query: dict[str, Any]) -> dict[str, Any]:
    events, total = engine().runtime.history(actor(), query.get("instance_id"), query["limit"], query["offset"])
    return {"items": events, "total": total, "limit": query["limit"], "offset": query["offset"]}
