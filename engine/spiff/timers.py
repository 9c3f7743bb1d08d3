"""BPMN timers as the engine reads them: a case's next due timer, a process's timer start event,
and ISO 8601 durations parsed the way the timers parse them."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)

from engine.spiff.specs import is_start_event

# A cycle due long ago: a timer start event set to it fires once, at once.
EPOCH = "1970-01-01T00:00:00+00:00"


# durations ----------------------------------------------------------------------------------------
def parse_iso_duration(text: str) -> dict[str, float]:
    """{'days': 5, 'hours': 4} for 'P5DT4H'; raises (a bare Exception) when it is no duration."""
    return TimerEventDefinition.parse_iso_duration(text)


def duration_from(start: datetime, parsed: dict[str, float]) -> timedelta:
    """The span of a parsed duration counted from start: months and years by the calendar."""
    return TimerEventDefinition.get_timedelta_from_start(dict(parsed), start)


# A repeating timer faster than this fires without pause (R/PT0S fires on every engine step).
MIN_CYCLE_INTERVAL = timedelta(minutes=1)


def cycle_problem(ts: Any) -> str | None:
    """Why a task spec's timer cycle is refused: a literal repeating interval under a minute."""
    event = getattr(ts, "event_definition", None)
    for definition in getattr(event, "event_definitions", None) or [event]:
        if not isinstance(definition, CycleTimerEventDefinition) or not definition.expression:
            continue
        try:
            text = ast.literal_eval(definition.expression.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue  # computed at run time; the engine's step budget bounds it there
        if not isinstance(text, str):
            continue
        try:
            _cycles, _start, interval = TimerEventDefinition.parse_iso_recurring_interval(text)
        except Exception:  # noqa: BLE001 (Spiff raises bare Exceptions for malformed cycles)
            return f"timer cycle {text!r} is not an ISO 8601 repeating interval such as R/PT1H"
        if interval < MIN_CYCLE_INTERVAL:
            return (f"timer cycle {text!r} repeats every {interval.total_seconds():g} s; "
                    f"a repeating timer must wait at least a minute between cycles")
    return None


# case timers --------------------------------------------------------------------------------------
def timer_expression(ts: Any) -> str | None:
    """The expression of a task spec's timer ('' when it has none); None when it is no timer."""
    event = getattr(ts, "event_definition", None)
    return (event.expression or "") if isinstance(event, TimerEventDefinition) else None


def next_timer_due(workflow: Any) -> datetime | None:
    """The earliest due time of any waiting timer, in the case or its subprocesses."""
    dues = []
    for task in workflow.event_manager.tasks.values():
        event = task.task_spec.event_definition
        for definition in getattr(event, "event_definitions", None) or [event]:
            if not isinstance(definition, TimerEventDefinition):
                continue
            value = task.internal_data.get("event_value")
            if value is None:
                continue
            if isinstance(definition, CycleTimerEventDefinition):
                due = datetime.fromisoformat(value["next"]) if value.get("cycles", 0) != 0 else None
            elif isinstance(definition, TimeDateEventDefinition):
                due = TimerEventDefinition.parse_time_or_duration(value)
            else:
                due = TimerEventDefinition.get_datetime(value)
            if due is not None:
                dues.append(due)
    return min(dues, default=None)


# timer start events -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartTimer:
    """A process's timer start event: its element, the kind of timer and the expression it reads."""

    element: str
    kind: str  # "cycle", "duration" or "date"
    expression: str


def start_timer(spec: Any) -> StartTimer | None:
    """The timer start event of the process, if it starts on a timer."""
    for ts in spec.task_specs.values():
        event = getattr(ts, "event_definition", None)
        if is_start_event(ts) and isinstance(event, TimerEventDefinition):
            kind = ("cycle" if isinstance(event, CycleTimerEventDefinition) else
                    "duration" if isinstance(event, DurationTimerEventDefinition) else "date")
            return StartTimer(ts.bpmn_id, kind, event.expression)
    return None


def fire_start_timer(workflow: Any) -> None:
    """Make the timer start event of a new workflow fire at once (a job was its timer)."""
    for task in workflow.get_tasks():
        event = getattr(task.task_spec, "event_definition", None)
        if not is_start_event(task.task_spec) or not isinstance(event, TimerEventDefinition):
            continue
        if isinstance(event, CycleTimerEventDefinition):  # one cycle, due long ago: spawns one path
            task.internal_data["event_value"] = {"cycles": 1, "next": EPOCH, "duration": 0}
        else:
            task.internal_data["event_fired"] = True
