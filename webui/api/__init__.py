"""REST API v1 (docs/CONTRACT.md). Endpoints live in the modules of this package.

Each view is declared with `access.endpoint`, which puts it in the route table that the OpenAPI
document (`/api/v1/openapi.json`, readable at `/api/v1/docs`) and the authorisation tests read.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__)

from webui.api import (  # noqa: E402, F401
    audit,
    auth,
    configuration,
    failures,
    instances,
    intake,
    openapi,
    processes,
    regulatory,
    tasks,
)
