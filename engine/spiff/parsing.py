"""Safe loading of BPMN/DMN documents into SpiffWorkflow specs, with located problems.

XML is parsed by us (never by SpiffWorkflow from bytes): no DTD, no entities, no network, so no
file or URL is ever read because of an uploaded document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
DMN_NAMESPACES = (
    "http://www.omg.org/spec/DMN/20151101/dmn.xsd",
    "https://www.omg.org/spec/DMN/20191111/MODEL/",
    "http://www.omg.org/spec/DMN/20180521/MODEL/",
)
# A timer literal written bare (PT4H, R/P1D, 2030-01-01T09:00) instead of as a quoted string.
_BARE_ISO = re.compile(r"^\s*(R\d*/)?(P[\dTYMWDHS.]+|\d{4}-\d{2}-\d{2}[T\d:+\-Z.]*)\s*$")


@dataclass(frozen=True)
class SourceFile:
    name: str
    content: bytes


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str
    element: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ParsedBundle:
    """What a set of files yields: executable processes and the files each depends on."""

    parser: SpiffBpmnParser
    process_files: dict[str, str] = field(default_factory=dict)     # process id -> file name
    decision_files: dict[str, str] = field(default_factory=dict)    # decision id -> file name
    lines: dict[tuple[str, str], int] = field(default_factory=dict)  # (file, element id) -> line
    names: dict[str, str] = field(default_factory=dict)             # process id -> display name
    bpmn_files: dict[str, int] = field(default_factory=dict)        # BPMN file -> line of its first process

    def line_of(self, file: str, element_id: str | None) -> int:
        return self.lines.get((file, element_id or ""), 1)


class BundleError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
)


def read_xml(source: SourceFile) -> etree._Element:
    """Parse bytes safely; a DOCTYPE (the carrier of entity and DTD tricks) is refused outright."""
    if re.search(rb"<!DOCTYPE|<!ENTITY", source.content[:65536], re.IGNORECASE):
        raise BundleError([Problem(source.name, _line_of_bytes(source.content, rb"<!"),
                                   "DOCTYPE and entity declarations are not allowed")])
    try:
        root = etree.fromstring(source.content, _SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise BundleError([Problem(source.name, exc.lineno or 1, f"not well-formed XML: {exc.msg}")]) from None
    if root.getroottree().docinfo.doctype:
        raise BundleError([Problem(source.name, 1, "DOCTYPE declarations are not allowed")])
    return root


def _line_of_bytes(content: bytes, needle: bytes) -> int:
    index = content.upper().find(needle.upper())
    return content.count(b"\n", 0, max(index, 0)) + 1


def parse_bundle(sources: Iterable[SourceFile]) -> ParsedBundle:
    """Parse and XSD-validate every file; raise BundleError listing every problem found."""
    parser = SpiffBpmnParser(validator=VALIDATOR)
    bundle = ParsedBundle(parser)
    problems: list[Problem] = []
    for source in sources:
        try:
            root = read_xml(source)
        except BundleError as exc:
            problems.extend(exc.problems)
            continue
        ns = etree.QName(root).namespace
        for element in root.iter():
            element_id = element.get("id") if isinstance(element.tag, str) else None
            if element_id:
                bundle.lines.setdefault((source.name, element_id), element.sourceline or 1)
        try:
            if ns == BPMN_NS:
                first = root.find(f"{{{BPMN_NS}}}process")
                bundle.bpmn_files[source.name] = first.sourceline if first is not None else 1
                before = set(parser.process_parsers)
                parser.add_bpmn_xml(root, filename=source.name)
                for process_id in set(parser.process_parsers) - before:
                    bundle.process_files[process_id] = source.name
                    bundle.names[process_id] = parser.process_parsers[process_id].get_name()
            elif ns in DMN_NAMESPACES:
                before = set(parser.dmn_parsers)
                parser.add_dmn_xml(root, filename=source.name)
                for decision_id in set(parser.dmn_parsers) - before:
                    bundle.decision_files[decision_id] = source.name
            else:
                problems.append(Problem(source.name, root.sourceline or 1,
                                        f"not a BPMN or DMN document (root element {root.tag})"))
        except ValidationException as exc:
            problems.append(_problem(exc, source.name, bundle))
        except (etree.LxmlError, ValueError, KeyError, AttributeError, TypeError) as exc:
            problems.append(Problem(source.name, 1, f"cannot read the document: {exc}"))
    if problems:
        raise BundleError(problems)
    return bundle


def _problem(exc: ValidationException, file: str, bundle: ParsedBundle) -> Problem:
    element = getattr(exc, "id", None)
    line = getattr(exc, "line_number", None) or bundle.line_of(getattr(exc, "file_name", None) or file, element)
    message = str(exc).split("\n")[0]
    message = re.sub(r"^\s*", "", message) or exc.__class__.__name__
    return Problem(getattr(exc, "file_name", None) or file, int(line or 1), message, element)


def executable_process_ids(bundle: ParsedBundle) -> list[str]:
    return sorted(bundle.parser.get_process_ids())


def build_specs(bundle: ParsedBundle, process_id: str) -> tuple[Any, dict[str, Any]]:
    """The process spec and the specs of everything it calls; located problems on failure."""
    file = bundle.process_files.get(process_id, "?")
    try:
        spec = bundle.parser.get_spec(process_id)
        subprocess_specs = bundle.parser.get_subprocess_specs(process_id)
    except ValidationException as exc:
        raise BundleError([_problem(exc, file, bundle)]) from None
    except (KeyError, ValueError, AttributeError, TypeError) as exc:
        raise BundleError([Problem(file, 1, f"cannot build process {process_id!r}: {exc}")]) from None
    return spec, subprocess_specs


@dataclass(frozen=True)
class Snippet:
    """A piece of Python a spec will evaluate: gateway condition, script, timer, MI expression."""

    element: str
    mode: str  # "eval" or "exec"
    source: str
    kind: str


def snippets(task_specs: Iterable[Any]) -> Iterator[Snippet]:
    for ts in task_specs:
        element = ts.bpmn_id or ts.name
        for attr in ("script", "prescript", "postscript"):
            src = getattr(ts, attr, None)
            if isinstance(src, str) and src.strip():
                yield Snippet(element, "exec", src, attr)
        for cond, _target in getattr(ts, "cond_task_specs", None) or []:
            if cond is not None and getattr(cond, "args", None):
                yield Snippet(element, "eval", cond.args[0], "condition")
        event = getattr(ts, "event_definition", None)
        for definition in getattr(event, "event_definitions", None) or ([event] if event else []):
            expr = getattr(definition, "expression", None)
            if isinstance(expr, str) and expr.strip():
                kind = "timer" if isinstance(definition, TimerEventDefinition) else "event"
                yield Snippet(element, "eval", expr, kind)
        for attr in ("cardinality", "condition", "completion_condition"):
            src = getattr(ts, attr, None)
            if isinstance(src, str) and src.strip():
                yield Snippet(element, "eval", src, attr)


def is_bare_iso(expression: str) -> bool:
    return bool(_BARE_ISO.match(expression))
