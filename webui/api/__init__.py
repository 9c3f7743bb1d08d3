"""REST API v1 (docs/CONTRACT.md). Endpoints live in the modules of this package."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__)
