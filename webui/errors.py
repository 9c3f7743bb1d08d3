"""HTTP status for each engine error (docs/CONTRACT.md: 400, 401, 403, 404, 409, 422)."""

from __future__ import annotations

from engine.errors import (
    AuditUnavailable,
    BadRequest,
    Conflict,
    Forbidden,
    LintFailed,
    LoginLocked,
    NotFound,
    OpsFlowError,
    ProcessError,
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
}


def status_of(error: OpsFlowError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400
