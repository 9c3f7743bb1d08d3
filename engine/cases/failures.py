"""A user action the process itself failed (a script, condition or service error, or a budget run out):
the action rolls back as always, and one `action.failed` event records who tried what, on which case
and element, in a transaction of its own (issue 14: "a run over budget ... rolls back and is recorded").

Used at the three doors a user drives a case through: start, task completion, message delivery. Inside
another action's transaction (a linked case started by a service task) the record joins that transaction
and rolls back with it; the outer action's door records the failure once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from engine.context import EngineContext
from engine.errors import ProcessError
from engine.storage.audit import AuditService
from engine.storage.models import HumanTask

log = logging.getLogger("opsflow.cases")

MAX_ERROR = 1000  # characters of the error kept in the record: one bounded event per failed action
_NAMED = re.compile(r"element '([^']{1,128})'")


def failed_element(exc: BaseException) -> str | None:
    """The BPMN element the failure stopped at: from Spiff's task error, else from the message."""
    seen: BaseException | None = exc
    for _depth in range(8):
        if seen is None:
            break
        spec = getattr(seen, "task_spec", None)
        if spec is not None:
            return str(getattr(spec, "bpmn_id", None) or getattr(spec, "name", ""))[:128] or None
        cause = seen.__cause__ or getattr(seen, "error", None) or getattr(seen, "exception", None)
        seen = cause if isinstance(cause, BaseException) else None
    found = _NAMED.search(str(getattr(exc, "message", None) or exc))
    return found.group(1) if found else None


@contextmanager
def failures_recorded(ctx: EngineContext, audit: AuditService, actor: str, action: str, *,
                      instance_id: int | None = None, task_id: str | None = None,
                      **what: Any) -> Iterator[None]:
    """Wrap a user action (outside its transaction): a ProcessError is re-raised after one `action.failed`
    event (actor, action, case, task, element, error) is written in a new transaction."""
    try:
        yield
    except ProcessError as failure:
        data = {"action": action, **{k: v for k, v in what.items() if v is not None},
                "element": failed_element(failure), "error": failure.message[:MAX_ERROR]}
        try:
            with ctx.db.transaction() as s:
                if task_id is not None and instance_id is None:  # a task names its case and its element
                    found = s.execute(select(HumanTask.instance_id, HumanTask.bpmn_id)
                                      .where(HumanTask.id == task_id)).first()
                    if found is not None:
                        instance_id, data["task"] = found
                audit.record(s, actor, "action.failed", instance_id=instance_id, task_id=task_id, data=data)
        except Exception:  # noqa: BLE001 (the user is told the process failed either way; the log keeps the rest)
            log.exception("could not record the failed %s of %s", action, actor)
        raise
