"""Per-case KPI figures: what processes/kpis.json names, read from the case data on every save.

The save writes them onto the case row in the UPDATE it runs anyway (engine/cases/store.py), so the
dashboard adds them up in SQL without ever reading a workflow (engine/cases/reports.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from engine.config import ROOT, Settings

# The figure columns of process_instance (engine/storage/models.py), None where a save knows nothing.
FIGURES = ("detected_at", "restored_at", "outcome", "category")
_TIMES = ("detected_at", "restored_at")
NO_FIGURES: dict[str, Any] = dict.fromkeys(FIGURES)
_PLAUSIBLE_YEARS = (1990, 2200)


@dataclass(frozen=True)
class ProcessKpis:
    figures: dict[str, str] = field(default_factory=dict)  # figure column -> case field
    sla_tasks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # response|resolution -> task ids
    successful_outcomes: tuple[str, ...] = ()
    emergency_categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class KpiRules:
    processes: dict[str, ProcessKpis] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> KpiRules:
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text(encoding="utf-8")).get("processes", {})
        processes = {}
        for process_id, spec in raw.items():
            figures = {k: str(v) for k, v in spec.get("figures", {}).items()}
            unknown = set(figures) - set(FIGURES)
            if unknown:
                raise ValueError(f"{path.name}: {process_id} names unknown figures {sorted(unknown)}")
            processes[process_id] = ProcessKpis(
                figures=figures,
                sla_tasks={kind: tuple(ids) for kind, ids in spec.get("sla_tasks", {}).items()},
                successful_outcomes=tuple(spec.get("successful_outcomes", ())),
                emergency_categories=tuple(spec.get("emergency_categories", ())))
        return cls(processes)

    @classmethod
    def of(cls, settings: Settings) -> KpiRules:
        """The processes directory's kpis.json, else the shipped one."""
        own = settings.processes_dir / "kpis.json"
        return cls.load(own if own.exists() else ROOT / "processes" / "kpis.json")

    def sla_tasks(self, kind: str) -> dict[str, tuple[str, ...]]:
        """By process id, the task ids measured against their due time as `kind`."""
        return {pid: p.sla_tasks[kind] for pid, p in self.processes.items() if p.sla_tasks.get(kind)}

    def figures_of(self, process_id: str, data: dict[str, Any], zone: tzinfo) -> dict[str, Any]:
        """The case's figures from its data; None for what it does not (yet) say."""
        spec = self.processes.get(process_id)
        if spec is None or not spec.figures:
            return NO_FIGURES
        found = dict(NO_FIGURES)
        for column, name in spec.figures.items():
            value = data.get(name)
            found[column] = _moment(value, zone) if column in _TIMES else (str(value)[:64] if value else None)
        return found


def _moment(value: Any, zone: tzinfo) -> datetime | None:
    """An ISO 8601 time from a form (local time when it names no offset); None if it is not one."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime) or not _PLAUSIBLE_YEARS[0] <= value.year <= _PLAUSIBLE_YEARS[1]:
        return None  # year 405 or 9999 is a typing error, not a figure (and year 1 overflows in UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)
