"""Errors a user can act on. Each carries a stable code (the API's `error.code`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class OpsFlowError(Exception):
    code = "error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(OpsFlowError):
    code = "not_found"


class Forbidden(OpsFlowError):
    """Refused by role or by a separation-of-duties rule (named in `rule`)."""

    code = "forbidden"

    def __init__(self, message: str, rule: str | None = None) -> None:
        super().__init__(message, {"rule": rule} if rule else None)
        self.rule = rule


class Conflict(OpsFlowError):
    code = "conflict"


class BadRequest(OpsFlowError):
    code = "bad_request"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ValidationFailed(OpsFlowError):
    code = "validation_failed"

    def __init__(self, message: str, errors: list[FieldError]) -> None:
        super().__init__(message, [e.as_dict() for e in errors])
        self.errors = errors


class LintFailed(OpsFlowError):
    code = "lint_failed"

    def __init__(self, problems: list[Any]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the process files",
                         [{"file": p.file, "line": p.line, "message": p.message} for p in problems])
        self.problems = problems


class ProcessError(OpsFlowError):
    """The process itself failed (a script, condition or service); nothing was saved."""

    code = "process_error"


class AuditUnavailable(OpsFlowError):
    """The trail cannot be written (its head is missing or unsigned, or the key is wrong): nothing is done."""

    code = "audit_unavailable"
