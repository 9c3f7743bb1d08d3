"""State-only serialisation of running workflows.

A case row stores only its task tree and data; the spec is stored once per definition version and
restored from an in-process cache. The script engine is not serialised by SpiffWorkflow, so it is
re-attached here on every load (otherwise a case would come back with the unrestricted default).

Every save first prunes the history the workflow no longer needs (engine/spiff/pruning.py), on the
live object, so the copy a request keeps in its cache and the copy restored from the row are the
same; the spec names of the completed steps pruned away are stored with the state ("pruned").
"""

from __future__ import annotations

import json
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

from engine.spiff.pruning import completed_spec_names, prune, set_completed_spec_names
from engine.spiff.sandbox import ScriptEngine

STATE_FORMAT = "opsflow-state-1"
PRUNED_KEY = "pruned"  # spec names of completed steps pruned from the tree, stored beside it


class _StateOnlyConverter(BpmnWorkflowConverter):
    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        pruned = completed_spec_names(workflow)
        if pruned:
            dct[PRUNED_KEY] = sorted(pruned)
        return dct

    def restore(self, dct: dict[str, Any], spec: Any, subprocess_specs: dict[str, Any],
                script_engine: ScriptEngine) -> BpmnWorkflow:
        workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=script_engine, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        set_completed_spec_names(workflow, dct.pop(PRUNED_KEY, ()))
        return workflow


class WorkflowCodec:
    """Encodes specs (once per version) and case state (every save) as JSON text."""

    def __init__(self, zone: tzinfo) -> None:
        registry = BpmnWorkflowSerializer.configure(SPIFF_CONFIG)
        # Naive datetimes would later be read in the server's zone; pin them to the firm's.
        registry.register(
            datetime,
            lambda v: {"value": (v if v.tzinfo else v.replace(tzinfo=zone)).isoformat()},
            lambda v: datetime.fromisoformat(v["value"]),
        )
        registry.register(date, lambda v: {"value": v.isoformat()}, lambda v: date.fromisoformat(v["value"]))
        registry.register(Decimal, lambda v: {"value": str(v)}, lambda v: Decimal(v["value"]))
        self._serializer = BpmnWorkflowSerializer(registry)
        self._registry = registry
        self._state = _StateOnlyConverter(BpmnWorkflow, registry)

    def _dumps(self, build: Any) -> str:
        self._registry._encoder_mode = True
        try:
            return json.dumps(build(), cls=self._serializer._encoder_cls, separators=(",", ":"))
        finally:
            self._registry._encoder_mode = False

    def dump_spec(self, spec: Any, subprocess_specs: dict[str, Any]) -> str:
        return self._dumps(lambda: {
            "spec": self._registry.convert(spec),
            "subprocess_specs": {k: self._registry.convert(v) for k, v in subprocess_specs.items()},
        })

    def load_spec(self, text: str) -> tuple[Any, dict[str, Any]]:
        dct = json.loads(text)
        spec = self._registry.restore(dct["spec"])
        subs = {k: self._registry.restore(v) for k, v in dct["subprocess_specs"].items()}
        return spec, subs

    def dump_state(self, workflow: BpmnWorkflow, prune_history: bool = True) -> str:
        """The case's state as JSON, after pruning the live workflow's history (see above)."""
        if prune_history:
            prune(workflow)
        return self._dumps(lambda: {"format": STATE_FORMAT, **self._state.to_dict(workflow)})

    def load_state(self, text: str, spec: Any, subprocess_specs: dict[str, Any],
                   script_engine: ScriptEngine) -> BpmnWorkflow:
        dct = json.loads(text)
        if dct.pop("format", None) != STATE_FORMAT:
            raise ValueError("unknown case state format")
        return self._state.restore(dct, spec, subprocess_specs, script_engine)

    def to_plain(self, value: Any) -> Any:
        """Task data as JSON-safe values (dates, decimals and datetimes as ISO strings)."""
        return json.loads(json.dumps(value, default=_plain_default))


def _plain_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
