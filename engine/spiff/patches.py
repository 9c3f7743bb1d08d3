"""Fixes for SpiffWorkflow 3.2.0 defects, applied once at import.

Task iteration stops at depth 1000, so a rework loop silently stalls after ~333 rounds
(spiffworkflow-notes §9.1). A case's tree depth is bounded by its history, not by 1000.
"""

from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime as _dt
from datetime import tzinfo

from SpiffWorkflow.bpmn.specs.event_definitions import timer as _timer
from SpiffWorkflow.bpmn.util import task as _bpmn_task
from SpiffWorkflow.util import task as _core_task

UNBOUNDED_DEPTH = 10**9

# Signatures: (task, end_at_spec=None, max_depth=1000, depth_first=True, [skip_subprocesses=False,] task_filter=None)
_core_task.TaskIterator.__init__.__defaults__ = (None, UNBOUNDED_DEPTH, True, None)
_bpmn_task.BpmnTaskIterator.__init__.__defaults__ = (None, UNBOUNDED_DEPTH, True, False, None)

# SpiffWorkflow's timers read the wall clock; the engine's clock (controllable in tests, and the one
# every due time is computed from) is installed for the duration of each engine step instead.
TIMER_CLOCK: ContextVar[Callable[[], _dt] | None] = ContextVar("opsflow_timer_clock", default=None)


class _EngineClockDatetime(_dt):
    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _dt:  # type: ignore[override]  # a plain datetime
        clock = TIMER_CLOCK.get()
        return clock().astimezone(tz) if clock is not None else _dt.now(tz)


_timer.datetime = _EngineClockDatetime
