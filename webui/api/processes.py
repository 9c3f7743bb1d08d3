"""Process definitions: list, deploy, and read the BPMN XML."""

from __future__ import annotations

from typing import Any

from flask import Response

from engine.views import SourceFile
from webui.api.access import actor, endpoint, engine
from webui.api.schemas import BpmnQuery, DeployRequest, DeployResult, PageQuery, ProcessPage


@endpoint("GET", "/processes", rule="any user", summary="Deployed processes (the latest version of each)",
          tag="processes", query=PageQuery, response=ProcessPage)
def list_processes(query: dict[str, Any]) -> dict[str, Any]:
    rows = engine().repository.definitions()
    limit, offset = query["limit"], query["offset"]
    return {"items": rows[offset:offset + limit], "total": len(rows), "limit": limit, "offset": offset}


@endpoint("POST", "/processes", rule="process.deploy (engine: repository.deploy_as)",
          summary="Lint and deploy BPMN/DMN files; a new version of each changed process", tag="processes",
          body=DeployRequest, response=DeployResult, status=201, errors=(403,))
def deploy_processes(body: dict[str, Any]) -> dict[str, Any]:
    sources = [SourceFile(f["name"], f["content"].encode("utf-8")) for f in body["files"]]
    return {"deployed": engine().repository.deploy_as(actor(), sources, check_only=body["check"])}


@endpoint("GET", "/processes/{process_id}/bpmn", rule="any user",
          summary="The BPMN XML of the latest version (or ?version=N)", tag="processes", query=BpmnQuery,
          errors=(404,), content_type="application/xml")
def process_bpmn(process_id: str, query: dict[str, Any]) -> Response:
    row = engine().repository.definition(process_id, query.get("version"))
    return Response(row.bpmn_xml, mimetype="application/xml",
                    headers={"X-Process-Version": str(row.version)})
