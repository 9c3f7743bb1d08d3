"""What changed between two versions of a process: BPMN elements added, removed and changed, by id.

Diagram layout (BPMNDI) is not a change; an element's own attributes, text and id-less children
(extension properties, scripts, conditions, incoming/outgoing) are. A lane changes when a node
moves into or out of it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree

from engine.context import EngineContext
from engine.definitions.forms import schema_problem
from engine.definitions.repository import DeployedVersion, RepositoryService
from engine.errors import BadRequest, LintFailed, NotFound
from engine.people.identity import Actor
from engine.spiff.parsing import Problem, SourceFile, read_xml
from engine.storage.audit import AuditService
from engine.storage.models import ProcessDefinition

_DI_NAMESPACES = ("http://www.omg.org/spec/BPMN/20100524/DI", "http://www.omg.org/spec/DD/20100524/DC",
                  "http://www.omg.org/spec/DD/20100524/DI", "https://www.omg.org/spec/DMN/20191111/DMNDI/")
_FLOW_REFS = ("incoming", "outgoing")


@dataclass(frozen=True)
class Element:
    id: str
    kind: str  # the local tag: userTask, sequenceFlow, lane...
    name: str


@dataclass
class VersionDiff:
    added: list[Element] = field(default_factory=list)
    removed: list[Element] = field(default_factory=list)
    changed: list[Element] = field(default_factory=list)
    # Of the changed ones, those whose only change is where they lead (incoming/outgoing flows).
    rerouted: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def touched(self) -> set[str]:
        return {e.id for e in [*self.removed, *self.changed]}


@dataclass(frozen=True)
class _Signature:
    element: Element
    full: str
    without_flows: str


def _is_di(el: etree._Element) -> bool:
    return etree.QName(el).namespace in _DI_NAMESPACES


def _canonical(el: etree._Element, skip_flows: bool) -> str:
    """The element's content, leaving out children that carry an id of their own (compared separately)."""
    parts = [etree.QName(el).localname, repr(sorted((k, v) for k, v in el.attrib.items())),
             (el.text or "").strip()]
    for child in el:
        if not isinstance(child.tag, str) or _is_di(child) or child.get("id"):
            continue
        if skip_flows and etree.QName(child).localname in _FLOW_REFS:
            continue
        parts.append("<" + _canonical(child, False) + ">")
        parts.append((child.tail or "").strip())
    return "\x1f".join(parts)


def elements(xml: str | bytes) -> dict[str, _Signature]:
    root = read_xml(SourceFile("diff", xml.encode("utf-8") if isinstance(xml, str) else xml))
    out: dict[str, _Signature] = {}
    for el in root.iter():
        if not isinstance(el.tag, str) or _is_di(el):
            continue
        element_id = el.get("id")
        if not element_id or element_id in out:
            continue
        info = Element(element_id, etree.QName(el).localname, el.get("name") or "")
        out[element_id] = _Signature(info, hashlib.sha256(_canonical(el, False).encode()).hexdigest(),
                                     hashlib.sha256(_canonical(el, True).encode()).hexdigest())
    return out


def diff(old_xml: str | bytes, new_xml: str | bytes) -> VersionDiff:
    """Elements of new_xml that old_xml lacks, that it has and new_xml lacks, and that differ."""
    old, new = elements(old_xml), elements(new_xml)
    result = VersionDiff()
    for element_id, sig in new.items():
        before = old.get(element_id)
        if before is None:
            result.added.append(sig.element)
        elif before.full != sig.full or before.element.kind != sig.element.kind:
            result.changed.append(sig.element)
            if before.without_flows == sig.without_flows and before.element.kind == sig.element.kind:
                result.rerouted.add(element_id)
    result.removed = [sig.element for element_id, sig in old.items() if element_id not in new]
    return result


@dataclass(frozen=True)
class VersionInfo:
    """One row of a process's version history: who, when, what changed since the one before."""

    id: int
    version: int
    name: str
    deployed_by: str
    deployed_at: datetime
    running: int
    changes: VersionDiff | None  # None for the first version
    forms: tuple[str, ...]
    decisions: tuple[str, ...]


FORM_NAME = re.compile(r"^[A-Za-z0-9_][\w.-]{0,120}\.json$")


class VersionService:
    """Editing in the browser: save BPMN, DMN and forms as new versions, history, redeploy an old one."""

    def __init__(self, ctx: EngineContext, repository: RepositoryService, audit: AuditService) -> None:
        self.ctx = ctx
        self.repository = repository
        self.audit = audit

    def history(self, process_id: str) -> list[VersionInfo]:
        rows = self.repository.versions(process_id)  # newest first
        if not rows:
            raise NotFound(f"unknown process {process_id!r}")
        out = []
        for i, (row, running) in enumerate(rows):
            previous = rows[i + 1][0] if i + 1 < len(rows) else None
            out.append(VersionInfo(row.id, row.version, row.name, row.deployed_by, row.deployed_at, running,
                                   diff(previous.bpmn_xml, row.bpmn_xml) if previous else None,
                                   tuple(sorted(row.forms or {})), tuple(sorted(row.dmn_xml or {}))))
        return out

    # saving ---------------------------------------------------------------------------------------
    def _sources(self, row: ProcessDefinition, bpmn: bytes | None = None,
                 decisions: dict[str, bytes] | None = None) -> list[SourceFile]:
        files = {row.source_name: bpmn if bpmn is not None else row.bpmn_xml.encode("utf-8")}
        for name, xml in (row.dmn_xml or {}).items():
            files[name] = xml.encode("utf-8")
        files.update(decisions or {})
        return [SourceFile(name, content) for name, content in files.items()]

    def save_bpmn(self, actor: Actor, process_id: str, xml: bytes, check_only: bool = False) -> list[DeployedVersion]:
        """The modeler's save: lint the edited diagram with the DMN it uses; deploy when clean."""
        latest = self.repository.definition(process_id)
        return self.repository.deploy_as(actor, self._sources(latest, bpmn=xml), check_only)

    def save_decision(self, actor: Actor, process_id: str, file: str, xml: bytes,
                      check_only: bool = False) -> list[DeployedVersion]:
        """A decision table edited in the browser deploys together with the BPMN that uses it."""
        latest = self.repository.definition(process_id)
        if file not in (latest.dmn_xml or {}):
            raise NotFound(f"process {process_id!r} uses no decision file {file!r}")
        return self.repository.deploy_as(actor, self._sources(latest, decisions={file: xml}), check_only)

    def redeploy(self, actor: Actor, process_id: str, version: int) -> list[DeployedVersion]:
        """An earlier version, exactly as it was (its own forms and DMN), deployed as the newest."""
        row = self.repository.definition(process_id, version)
        result = self.repository.deploy_as(actor, self._sources(row), forms=row.forms)
        with self.ctx.db.transaction() as s:
            self.audit.record(s, actor.username, "definition.redeployed",
                              data={"process_id": process_id, "from_version": version,
                                    "as_version": [d.version for d in result if d.process_id == process_id]})
        return result

    def users_of_form(self, name: str) -> list[ProcessDefinition]:
        return [row for row in self.repository.definitions() if name in (row.forms or {})]

    def form_names(self) -> list[str]:
        """The forms in the database and those only in forms_dir (an engine never initialised)."""
        directory = self.ctx.settings.forms_dir
        files = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
        documents = self.repository.documents
        return sorted(files | set(documents.versions("form") if documents is not None else {}))

    def save_form(self, actor: Actor, name: str, schema: Any, check_only: bool = False) -> list[DeployedVersion]:
        """Check the schema, lint every process that uses the form with it, then save it as the form's next
        version in the database (every node's deploys read it there) and redeploy them, in one transaction.

        Forms are frozen into each process version, so a changed form is a new version of its processes.
        """
        self.repository.access.require(actor, "process.deploy", "edit forms (each save deploys new versions)")
        if not FORM_NAME.match(name):
            raise BadRequest(f"{name!r} is not a form file name (letters, digits, _ . - and .json)")
        problem = schema_problem(schema)
        if problem:
            raise LintFailed([Problem(name, 1, problem)])
        sources: dict[str, SourceFile] = {}
        for row in self.users_of_form(name):
            for source in self._sources(row):
                sources.setdefault(source.name, source)
        if sources:
            self.repository.deploy_as(actor, sources.values(), check_only=True, forms={name: schema})
        if check_only:
            return []
        text = json.dumps(schema, ensure_ascii=False, indent=2) + "\n"
        documents = self.repository.documents
        if documents is None:
            raise RuntimeError("forms are saved in the database: this repository has no documents service")
        with self.ctx.db.transaction() as s:
            documents.save("form", name, text, actor.username)
            result = self.repository.deploy_as(actor, sources.values(), forms={name: schema}) if sources else []
            self.audit.record(s, actor.username, "form.saved", data={
                "form": name, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "deployed": [f"{d.process_id} v{d.version}" for d in result if d.changed]})
        return result
