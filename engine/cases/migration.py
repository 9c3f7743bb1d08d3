"""Moving running cases to a newer version of their process, where the change lies ahead of them.

A case may move when every task it has completed or is waiting at still exists in the new version
with the same type and the same content (a task it waits at may lead somewhere new: that change is
ahead of it). Completed steps pruned from the case's tree (engine/spiff/pruning.py) are judged by
the names the state keeps of them. Predicted tasks (not reached yet) are dropped and predicted again
from the new version. Always check first (`dry_run=True`); a real run migrates each case under its
lock and audits it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from engine.cases.store import CaseStore, OpenCase
from engine.context import EngineContext
from engine.definitions.repository import LoadedDefinition, RepositoryService
from engine.definitions.versions import VersionDiff, diff
from engine.errors import BadRequest
from engine.people.access import AccessPolicy
from engine.people.identity import Actor
from engine.spiff.state import drop_predicted, stored_steps
from engine.spiff.workflow import predict
from engine.storage.audit import AuditService
from engine.storage.models import ProcessInstance


@dataclass(frozen=True)
class CaseMigration:
    """What migrating one case would do (or did): moved, or refused with the reason."""

    instance_id: int
    title: str
    from_version: int
    to_version: int
    ok: bool
    reason: str | None = None
    waiting_at: tuple[str, ...] = ()
    migrated: bool = False


class MigrationService:
    def __init__(self, ctx: EngineContext, repository: RepositoryService, store: CaseStore,
                 audit: AuditService, access: AccessPolicy) -> None:
        self.ctx = ctx
        self.access = access
        self.repository = repository
        self.store = store
        self.audit = audit

    def migrate(self, actor: Actor, process_id: str, to_version: int | None = None,
                instance_ids: list[int] | None = None, dry_run: bool = True) -> list[CaseMigration]:
        """Check (dry run) or migrate the running cases of older versions; one result per case."""
        self.access.require(actor, "process.migrate", "migrate cases")
        target_row = self.repository.definition(process_id, to_version)
        target = self.repository.load(target_row.id)
        with self.ctx.db.transaction() as s:
            query = select(ProcessInstance.id).where(ProcessInstance.process_id == process_id,
                                                     ProcessInstance.status == "running",
                                                     ProcessInstance.definition_id != target.id)
            if instance_ids is not None:
                query = query.where(ProcessInstance.id.in_(instance_ids))
            ids = list(s.scalars(query.order_by(ProcessInstance.id)))
        if instance_ids is not None and set(instance_ids) - set(ids):
            missing = sorted(set(instance_ids) - set(ids))
            raise BadRequest(f"not running cases of {process_id!r} on another version: {missing}")
        diffs: dict[int, VersionDiff] = {}
        results = []
        for instance_id in ids:
            with self.ctx.db.transaction() as s:
                row = self.store.lock(s, instance_id)
                source = self.repository.load(row.definition_id)
                if source.version > target.version:
                    results.append(CaseMigration(row.id, row.title, source.version, target.version, False,
                                                 f"the case is on version {source.version}, newer than "
                                                 f"version {target.version}"))
                    continue
                if source.id not in diffs:
                    diffs[source.id] = diff(self.repository.definition(process_id, source.version).bpmn_xml,
                                            target_row.bpmn_xml)
                state = json.loads(row.state)
                reason, waiting = self._refusal(state, source, target, diffs[source.id])
                result = CaseMigration(row.id, row.title, source.version, target.version, reason is None,
                                       reason, waiting)
                if reason is None and not dry_run:
                    self._move(s, row, state, source.version, target, actor)
                    result = CaseMigration(row.id, row.title, source.version, target.version, True, None,
                                           waiting, migrated=True)
                results.append(result)
        if not dry_run:
            moved = [r.instance_id for r in results if r.migrated]
            with self.ctx.db.transaction() as s:
                self.audit.record(s, actor.username, "cases.migrated", data={
                    "process_id": process_id, "to_version": target.version, "migrated": moved,
                    "refused": {str(r.instance_id): r.reason for r in results if not r.ok}})
        return results

    # rules ----------------------------------------------------------------------------------------
    def _refusal(self, state: dict[str, Any], source: LoadedDefinition, target: LoadedDefinition,
                 changes: VersionDiff) -> tuple[str | None, tuple[str, ...]]:
        if source.answers != target.answers:
            # the new version reads each decision by task; a case whose decisions sit in shared keys
            # would reach a gateway that cannot find them
            return (f"version {target.version} keeps each task's answers by task and version {source.version} "
                    "in shared keys: the case finishes on its own version"), ()
        old_specs = _task_specs(source)
        new_specs = _task_specs(target)
        touched = changes.touched()
        waiting: list[str] = []
        for step in stored_steps(state):  # the completed steps pruned from the tree included
            name = step.name
            if not step.reached:
                if step.next and name not in new_specs:
                    return f"step {name!r}, which the case is about to reach, was removed", tuple(waiting)
                continue
            old = old_specs.get(name)
            label = _label(old, name)
            done = step.completed
            where = "has completed" if done else "is waiting at"
            if step.waiting and old is not None and old.bpmn_id:
                waiting.append(label)
            new = new_specs.get(name)
            if new is None:
                return f"step {label}, which the case {where}, was removed", tuple(waiting)
            if old is not None and type(old) is not type(new):
                return (f"step {label}, which the case {where}, changed type "
                        f"({type(old).__name__} → {type(new).__name__})"), tuple(waiting)
            bpmn_id = getattr(old, "bpmn_id", None)
            if bpmn_id and bpmn_id in touched and (done or bpmn_id not in changes.rerouted):
                return f"step {label}, which the case {where}, was changed", tuple(waiting)
            if bpmn_id in source.rules and source.rules[bpmn_id] != target.rules.get(bpmn_id):
                return (f"step {label}, which the case {where}, has a different role, form or rules"
                        ), tuple(waiting)
        return None, tuple(waiting)

    def _move(self, s: Any, row: ProcessInstance, state: dict[str, Any], from_version: int,
              target: LoadedDefinition, actor: Actor) -> None:
        """Re-load the state against the new version's spec and save it under the case lock."""
        drop_predicted(state)
        text = json.dumps(state, separators=(",", ":"))
        workflow = self.ctx.codec.load_state(text, target.spec, target.subprocess_specs, self.ctx.script_engine)
        predict(workflow)
        row.definition_id = target.id
        self.store.save(s, OpenCase(row, target, workflow))
        self.audit.record(s, actor.username, "case.migrated", instance_id=row.id,
                          data={"process_id": target.process_id, "from_version": from_version,
                                "to_version": target.version})


def _task_specs(definition: LoadedDefinition) -> dict[str, Any]:
    specs = dict(definition.spec.task_specs)
    for sub in definition.subprocess_specs.values():
        for name, ts in sub.task_specs.items():
            specs.setdefault(name, ts)
    return specs


def _label(ts: Any, name: str) -> str:
    title = getattr(ts, "bpmn_name", None)
    return f"{name!r} ({title})" if title else repr(name)
