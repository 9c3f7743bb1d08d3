"""Deploying process definitions: parse, lint, version, and cache the parsed specs per version."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.context import EngineContext
from engine.definitions.deadlines import lint_deadlines, reassign_roles
from engine.definitions.documents import RegisterDocuments
from engine.definitions.forms import outcome_field, read_form, schema_problem
from engine.definitions.rules import (
    STARTER,
    UserTaskRules,
    all_task_specs,
    case_field_problems,
    computed_before,
    computed_fields,
    expression_names,
    is_human,
    user_task_rules,
)
from engine.errors import LintFailed, NotFound
from engine.people.access import AccessPolicy
from engine.people.identity import Actor, IdentityService
from engine.spiff.parsing import (
    BundleError,
    ParsedBundle,
    Problem,
    SourceFile,
    build_specs,
    executable_process_ids,
    is_bare_iso,
    parse_bundle,
    snippets,
)
from engine.spiff.sandbox import check_snippet
from engine.spiff.specs import is_start_event, is_user_task
from engine.spiff.timers import cycle_problem, parse_iso_duration, timer_expression
from engine.storage.audit import AuditService
from engine.storage.db import Sql
from engine.storage.models import ProcessDefinition, ProcessInstance

MAX_FILE_BYTES = 5 * 1024 * 1024
_LATEST = Sql("SELECT id FROM process_definition WHERE process_id = :process_id ORDER BY version DESC LIMIT 1")


@dataclass(frozen=True)
class DeployedVersion:
    process_id: str
    name: str
    version: int
    changed: bool


@dataclass(frozen=True)
class LoadedDefinition:
    """A deployed version with its specs restored, shared read-only by every case on it."""

    id: int
    process_id: str
    version: int
    name: str
    spec: Any
    subprocess_specs: dict[str, Any]
    rules: dict[str, UserTaskRules]
    forms: dict[str, Any]
    start_role: str | None
    # "by_task" or "shared" (engine/definitions/rules.py): where a submission goes in the case.
    answers: str = "by_task"
    computed: dict[str, str] = field(default_factory=dict)  # field -> the element computing it

    @property
    def by_task(self) -> bool:
        return self.answers == "by_task"

    @property
    def answer_keys(self) -> frozenset[str]:
        """The case keys that hold a task's answers: the ids of the user tasks."""
        return frozenset(self.rules)

    @property
    def record_keys(self) -> frozenset[str]:
        """Case keys whose content the approval record or the 已退回 banner shows (answers, return
        reasons): a page's case-data panel leaves them out, so each person's words appear once."""
        reasons = {r.return_reason for r in self.rules.values() if r.return_reason and r.return_reason.isidentifier()}
        return self.answer_keys | reasons


class RepositoryService:
    def __init__(self, ctx: EngineContext, identity: IdentityService, audit: AuditService,
                 access: AccessPolicy) -> None:
        self.ctx = ctx
        self.access = access
        self.identity = identity
        self.audit = audit
        self._cache: dict[int, LoadedDefinition] = {}
        self._lock = threading.Lock()
        # The forms saved in the browser (the database's, before forms_dir's files); set by ProcessEngine.
        self.documents: RegisterDocuments | None = None
        # Called in the deploying transaction with each new version and its spec (timer start events).
        self.on_deployed: list[Callable[[Session, ProcessDefinition, Any], None]] = []

    # deploy -----------------------------------------------------------------------------------
    def deploy(self, sources: Iterable[SourceFile], actor: str = "system",
               check_only: bool = False, forms: dict[str, Any] | None = None) -> list[DeployedVersion]:
        """Lint every file; deploy a new version of each process whose content changed.

        `forms` (file -> schema) stand in for files of the forms directory (the form editor, a redeploy).
        Raises LintFailed with every problem found; nothing is deployed then.
        """
        sources = list(sources)
        overrides = dict(forms or {})
        oversize = [Problem(s.name, 1, f"file is larger than {MAX_FILE_BYTES // 1024 // 1024} MiB")
                    for s in sources if len(s.content) > MAX_FILE_BYTES]
        if oversize:
            raise LintFailed(oversize)
        try:
            bundle = parse_bundle(sources)
        except BundleError as exc:
            raise LintFailed(exc.problems) from None
        problems: list[Problem] = []
        executable = executable_process_ids(bundle)
        for name in sorted(set(bundle.bpmn_files) - {bundle.process_files[p] for p in executable}):
            problems.append(Problem(name, bundle.bpmn_files[name], "no executable process: mark the process "
                                    "isExecutable=\"true\" for OpsFlow to run it"))
        built: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {}
        for process_id in executable:
            try:
                spec, subs = build_specs(bundle, process_id)
            except BundleError as exc:
                problems.extend(exc.problems)
                continue
            forms, found = self._lint(bundle, process_id, spec, subs, overrides)
            problems.extend(found)
            built[process_id] = (spec, subs, forms)
        if problems:
            raise LintFailed(problems)
        if check_only:
            return [DeployedVersion(pid, bundle.names.get(pid) or pid, 0, False) for pid in built]
        by_name = {s.name: s for s in sources}
        results = []
        with self.ctx.db.transaction() as s:
            for process_id, (spec, subs, forms) in built.items():
                spec_json = self.ctx.codec.dump_spec(spec, subs)
                source = by_name[bundle.process_files[process_id]]
                dmn = {name: by_name[name].content.decode("utf-8") for name in
                       sorted(set(bundle.decision_files.values()))
                       if any(f'"{d}"' in spec_json for d, f in bundle.decision_files.items() if f == name)}
                digest = hashlib.sha256()
                for part in (source.content.decode("utf-8"), spec_json,
                             json.dumps(forms, sort_keys=True, ensure_ascii=False)):
                    digest.update(part.encode())
                sha = digest.hexdigest()
                latest = s.scalars(select(ProcessDefinition).where(ProcessDefinition.process_id == process_id)
                                   .order_by(ProcessDefinition.version.desc()).limit(1)).first()
                name = bundle.names.get(process_id) or process_id
                if latest is not None and latest.sha256 == sha:
                    results.append(DeployedVersion(process_id, name, latest.version, False))
                    continue
                version = (latest.version if latest else 0) + 1
                row = ProcessDefinition(process_id=process_id, version=version, name=name, sha256=sha,
                                        source_name=source.name, bpmn_xml=source.content.decode("utf-8"),
                                        dmn_xml=dmn, forms=forms, spec_json=spec_json, deployed_by=actor,
                                        deployed_at=self.ctx.now())
                s.add(row)
                s.flush()
                for listener in self.on_deployed:
                    listener(s, row, spec)
                self.audit.record(s, actor, "definition.deployed",
                                  data={"process_id": process_id, "version": version, "sha256": sha,
                                        "file": source.name})
                results.append(DeployedVersion(process_id, name, version, True))
        return results

    def deploy_as(self, actor: Actor, sources: Iterable[SourceFile], check_only: bool = False,
                  forms: dict[str, Any] | None = None) -> list[DeployedVersion]:
        """Deploy on a user's behalf: only a process owner may (docs/CONTRACT.md)."""
        self.access.require(actor, "process.deploy", "deploy process versions")
        return self.deploy(sources, actor.username, check_only, forms)

    def deploy_directory(self, directory: Path | None = None, actor: str = "system") -> list[DeployedVersion]:
        directory = directory or self.ctx.settings.processes_dir
        files = sorted(p for p in directory.iterdir() if p.suffix in (".bpmn", ".dmn"))
        return self.deploy([SourceFile(p.name, p.read_bytes()) for p in files], actor) if files else []

    # lint -------------------------------------------------------------------------------------
    def _lint(self, bundle: ParsedBundle, process_id: str, spec: Any, subs: dict[str, Any],
              overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Problem]]:
        problems: list[Problem] = []
        forms: dict[str, Any] = {}
        file_of = {spec.name: bundle.process_files.get(process_id, "?")}
        for name in subs:
            file_of[name] = bundle.process_files.get(name, file_of[spec.name])
        human_ids = {ts.bpmn_id for ts in all_task_specs(spec, subs) if is_human(ts)}
        computed = computed_before(spec, subs)
        # each instance's item of a multi-instance activity is the engine's, set from its collection
        instance_items = {str(ts.input_item.bpmn_id): "multi-instance item" for ts in all_task_specs(spec, subs)
                          if getattr(getattr(ts, "input_item", None), "bpmn_id", None)}

        def add(file: str, element: str | None, message: str) -> None:
            problems.append(Problem(file, bundle.line_of(file, element), message, element))

        for owner in [spec, *subs.values()]:
            file = file_of.get(owner.name, "?")
            for ts in owner.task_specs.values():
                if is_human(ts):
                    rules = UserTaskRules.from_spec(ts)
                    self._lint_user_task(rules, ts, human_ids, forms, lambda m, f=file, e=ts.bpmn_id: add(f, e, m),
                                         overrides or {}, {**computed.get(ts.bpmn_id, {}), **instance_items})
                for snippet in snippets([ts]):
                    if snippet.kind == "timer" and is_bare_iso(snippet.source):
                        add(file, snippet.element, f"timer {snippet.source.strip()!r} is an ISO 8601 literal "
                                                   f"and must be quoted: \"{snippet.source.strip()}\"")
                        continue
                    reason = check_snippet(snippet.source, snippet.mode)
                    if reason:
                        add(file, snippet.element, f"{snippet.kind} refused by the script sandbox: {reason}")
                expression = timer_expression(ts)
                if expression is not None and not expression.strip():
                    add(file, ts.bpmn_id, "timer has no expression")
                elif expression is not None and (cycle := cycle_problem(ts)):
                    add(file, ts.bpmn_id, f"{ts.bpmn_id}: {cycle}")
        return forms, problems

    def _lint_user_task(self, rules: UserTaskRules, ts: Any, human_ids: set[str],
                        forms: dict[str, Any], add: Any, overrides: dict[str, Any] | None = None,
                        computed: dict[str, str] | None = None) -> None:
        label = f"user task {rules.bpmn_id!r}"
        if not rules.lane:
            add(f"{label} is not in a lane; put it in the lane of the role that performs it")
        elif self.identity.resolve_role(rules.lane) is None:
            known = ", ".join(r.key for r in self.identity.roles())
            add(f"{label}: lane {rules.lane!r} names no role (known roles: {known})")
        if rules.form:
            if rules.form not in forms:
                override = (overrides or {}).get(rules.form)
                # an editor's unsaved form is checked as a file's would be (linear-time patterns too)
                problem = schema_problem(override) if override is not None else None
                schema, reason = ((override, None) if problem is None else (None, f"form {rules.form!r}: {problem}")) \
                    if override is not None else read_form(self.ctx.settings.forms_dir, rules.form, self.documents)
                if reason:
                    add(f"{label}: {reason}")
                else:
                    forms[rules.form] = schema
        elif is_user_task(ts):
            add(f"{label} has no form (set the formJsonSchemaFilename property)")
        for message in case_field_problems(rules, forms.get(rules.form) if rules.form else None,
                                           computed or {}, human_ids):
            add(f"{label}: {message}")
        if rules.role_from:
            read = expression_names(rules.role_from)
            if read is None:
                add(f"{label}: roleFrom {rules.role_from!r} is not an expression")
            elif unsafe := sorted(read - set(computed or {})):
                add(f"{label}: roleFrom reads {', '.join(unsafe)}, which a form or start data could set; it may "
                    "read only what the process computes before this task (a script, a service's result, a "
                    "multi-instance item)")
        if rules.due_in:
            try:
                parse_iso_duration(rules.due_in)
            except Exception:  # noqa: BLE001 (any parse failure is the author's problem)
                add(f"{label}: dueIn {rules.due_in!r} is not an ISO 8601 duration such as P1D or PT4H")
        for ref in rules.separation_of_duties:
            if ref != STARTER and ref not in human_ids:
                add(f"{label}: separationOfDuties names {ref!r}, which is no user task of this process")
        for name in (rules.assignee_from, rules.due_from, *rules.distinct_users):
            if name and not name.isidentifier():
                add(f"{label}: {name!r} is not a data field name")
        for message in lint_deadlines(rules, self.identity.resolve_role):
            add(f"{label}: {message}")
        form = forms.get(rules.form) if rules.form else None
        if form is not None and outcome_field(form) is not None and rules.lane:
            lane = self.identity.resolve_role(rules.lane) or rules.lane
            for role in reassign_roles(rules, self.identity.resolve_role, self.access.manager_of(lane)):
                if not self.access.may_take_approval(role, lane):
                    add(f"{label}: escalation reassigns this approval to {role!r}, which may not approve for "
                        f"{lane!r} (processes/access.json approves_for); notify them instead")

    # definitions ------------------------------------------------------------------------------
    def definitions(self) -> list[ProcessDefinition]:
        """The latest version of every deployed process."""
        with self.ctx.db.transaction() as s:
            latest = (select(ProcessDefinition.process_id, func.max(ProcessDefinition.version).label("v"))
                      .group_by(ProcessDefinition.process_id).subquery())
            query = (select(ProcessDefinition)
                     .join(latest, (ProcessDefinition.process_id == latest.c.process_id)
                           & (ProcessDefinition.version == latest.c.v))
                     .order_by(ProcessDefinition.process_id))
            return list(s.scalars(query))

    def versions(self, process_id: str) -> list[tuple[ProcessDefinition, int]]:
        """Every version, newest first, with how many running cases are on each."""
        with self.ctx.db.transaction() as s:
            counts = dict(s.execute(select(ProcessInstance.definition_id, func.count())
                                    .where(ProcessInstance.process_id == process_id,
                                           ProcessInstance.status == "running")
                                    .group_by(ProcessInstance.definition_id)).all())
            rows = s.scalars(select(ProcessDefinition).where(ProcessDefinition.process_id == process_id)
                             .order_by(ProcessDefinition.version.desc()))
            return [(row, counts.get(row.id, 0)) for row in rows]

    def definition(self, process_id: str, version: int | None = None) -> ProcessDefinition:
        with self.ctx.db.transaction() as s:
            query = select(ProcessDefinition).where(ProcessDefinition.process_id == process_id)
            query = (query.where(ProcessDefinition.version == version) if version
                     else query.order_by(ProcessDefinition.version.desc()))
            row = s.scalars(query.limit(1)).first()
        if row is None:
            what = f"version {version} of process" if version else "process"
            raise NotFound(f"unknown {what} {process_id!r}")
        return row

    def latest_id(self, process_id: str) -> int:
        """The id of the newest version (what a new case starts on), without reading its texts."""
        with self.ctx.db.read() as s:
            row = self.ctx.db.run(s, _LATEST, {"process_id": process_id}).first()
        if row is None:
            raise NotFound(f"unknown process {process_id!r}")
        return int(row[0])

    def load(self, definition_id: int) -> LoadedDefinition:
        """Restored specs for a version, from memory after the first time."""
        loaded = self._cache.get(definition_id)
        if loaded is not None:
            return loaded
        with self._lock:
            if (loaded := self._cache.get(definition_id)) is not None:
                return loaded
            with self.ctx.db.transaction() as s:
                row = s.get(ProcessDefinition, definition_id)
                if row is None:
                    raise NotFound(f"no process definition with id {definition_id}")
                spec, subs = self.ctx.codec.load_spec(row.spec_json)
                answers = row.answers
            start_lanes = [ts.lane for ts in spec.task_specs.values()
                           if is_start_event(ts) and ts.lane]
            loaded = LoadedDefinition(row.id, row.process_id, row.version, row.name, spec, subs,
                                      user_task_rules(spec, subs), row.forms,
                                      self.identity.resolve_role(start_lanes[0]) if start_lanes else None,
                                      answers=answers, computed=computed_fields(spec, subs))
            self._cache[definition_id] = loaded
            return loaded
