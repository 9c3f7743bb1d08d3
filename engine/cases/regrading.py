"""A case regraded as new facts come in hands its new grading to the cases it opened for it.

An incident regraded after its emergency is open (较大 -> 重大 once the outage is known) must not
leave the emergency, and the reports it drives, on the old level. The emergency's own record says
what changed: its data, its `grading_history` and its audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from engine.cases.runtime import RuntimeService
from engine.context import EngineContext
from engine.errors import BadRequest
from engine.spiff.live_data import set_live_data
from engine.spiff.messages import send_message
from engine.spiff.workflow import case_data
from engine.storage.models import CaseLink

# The grading facts a linked case takes over; the rest of an entry (basis, rule set) is history only.
GRADING_FACTS = ("level", "reportable", "priority", "outage_minutes", "leaked_records", "affected_share",
                 "system_class", "system_level")


class LinkedRegrading:
    def __init__(self, ctx: EngineContext, runtime: RuntimeService) -> None:
        self.ctx = ctx
        self.runtime = runtime

    def services(self) -> dict[str, Callable[..., Any]]:
        return {"regrade_linked_cases": self.regrade_linked_cases}

    def regrade_linked_cases(self, kind: str, grading: dict[str, Any], message: str | None = None) -> dict[str, Any]:
        """Record `grading` (a grading_history entry) onto the running cases this case opened as `kind`.

        Each takes the grading facts, except that `reportable` never goes back to false (a report
        once due stays due, so a downgrade cancels none), appends the change to its own
        grading_history and is audited `case.regraded`. Ended cases are left as they are. A case
        waiting for BPMN `message` then receives it, so its process can act on the new grading
        (re-time a report); one not waiting for it just keeps the facts.
        """
        current = self.ctx.current_case.get()
        if current is None:
            raise BadRequest("regrade_linked_cases can only run inside a case")
        if not isinstance(grading, dict):
            raise BadRequest("regrade_linked_cases: grading must be a mapping (a grading_history entry)")
        current_id, username = current
        store, audit = self.runtime.store, self.runtime.audit
        regraded, left = [], []
        with self.ctx.db.transaction() as s:  # the calling case's transaction: both saves or neither
            targets = list(s.scalars(select(CaseLink.to_instance_id).where(
                CaseLink.from_instance_id == current_id, CaseLink.kind == kind).order_by(CaseLink.id)))
            for target in targets:
                row = store.lock(s, target)
                if row.status != "running":
                    left.append(target)
                    continue
                with store.open(s, target, row) as case:
                    before = case_data(case.workflow)
                    facts = {k: grading[k] for k in GRADING_FACTS if k in grading}
                    kept_due = bool(before.get("reportable")) and not facts.get("reportable", True)
                    if "reportable" in facts:
                        facts["reportable"] = bool(facts["reportable"]) or bool(before.get("reportable"))
                    entry = {**grading, **facts, "after": grading.get("after"), "source_case": current_id,
                             "at": self.ctx.now().isoformat(timespec="seconds"),
                             "from_level": before.get("level"), "from_priority": before.get("priority"),
                             "report_kept_due": bool(grading.get("report_kept_due")) or kept_due}
                    history = list(before.get("grading_history") or []) + [entry]
                    set_live_data(case.workflow, {**facts, "grading_history": history})
                    if message:
                        with store.clock():
                            delivered = send_message(case.workflow, message, {"source_case": current_id})
                        if delivered:
                            store.run_engine(case.workflow, target, username)
                    store.save(s, case)
                    audit.record(s, username, "case.regraded", instance_id=target, data={
                        "from_case": current_id, "from_level": entry["from_level"], "level": entry.get("level"),
                        "reportable": entry.get("reportable"), "report_kept_due": entry["report_kept_due"]})
                regraded.append(target)
        return {"regraded": regraded, "left": left}
