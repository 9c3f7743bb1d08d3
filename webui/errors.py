"""HTTP status for each engine error (docs/CONTRACT.md: 400, 401, 403, 404, 409, 422; 429 and 503 below)."""

from __future__ import annotations

from engine.errors import (
    AuditUnavailable,
    BadRequest,
    Conflict,
    Forbidden,
    LintFailed,
    LoginLocked,
    NotFound,
    NotInstalled,
    OpsFlowError,
    ProcessError,
    Unavailable,
    ValidationFailed,
)

STATUS: dict[type[OpsFlowError], int] = {
    BadRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    ValidationFailed: 422,
    LintFailed: 422,
    ProcessError: 422,
    LoginLocked: 429,  # too many failed logins: wait (Retry-After)
    AuditUnavailable: 503,  # nothing is done while the trail cannot be written
    Unavailable: 503,  # the database cannot be reached or written: try again (Retry-After)
    NotInstalled: 503,  # the server lacks something it needs (a font): the operator installs it
}


def status_of(error: OpsFlowError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def headers_of(error: OpsFlowError) -> dict[str, str]:
    """Headers an error answer carries: Retry-After when waiting helps."""
    return {"Retry-After": str(error.retry_after)} if isinstance(error, Unavailable) else {}
