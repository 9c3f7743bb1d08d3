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


class WeakPassword(BadRequest):
    """A new password the policy refuses (engine/people/passwords.py); `rule` names which rule:
    length, letters_and_digits, username or common."""

    code = "weak_password"

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message, {"rule": rule})
        self.rule = rule


class WrongPassword(Forbidden):
    """The current password given to change one's own password does not match."""

    def __init__(self) -> None:
        super().__init__("the current password is wrong", rule="current_password")


class LoginLocked(OpsFlowError):
    """Too many failed logins for this user name (or from this address) within the window: refused,
    whatever the password, for `retry_after` more seconds."""

    code = "login_locked"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        self.minutes = max(1, -(-retry_after // 60))
        super().__init__(f"too many failed logins: try again in {self.minutes} minute(s)",
                         {"retry_after": retry_after})


class NotInstalled(OpsFlowError):
    """Something the server needs is not installed (a font, a program): the operator must install what the
    message names; trying again does not help until then (HTTP 503)."""

    code = "not_installed"


class Unavailable(OpsFlowError):
    """The database cannot be reached or written right now (unreachable, locked, timed out, read-only):
    the action was rolled back (unless the connection dropped during the commit itself, which the database
    alone can tell); try again after `retry_after` seconds (HTTP 503 with Retry-After)."""

    code = "unavailable"

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(f"the database is unavailable ({reason}): try again in a few seconds",
                         {"reason": reason, "retry_after": retry_after})
