"""Uploaded XML is never trusted: no entity, DTD, XInclude or schema hint reads a file or a URL.

Each hostile or broken document is refused with LintFailed whose problems print as
`FILE:LINE: message` in plain words, and nothing at all is deployed, through the engine facade and
through `opsflow deploy` (exit status 1, the problems on stderr, no traceback).
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine import ProcessEngine
from engine.cli import main
from engine.errors import LintFailed
from engine.spiff.parsing import Problem, SourceFile
from tests.conftest import FIXTURES, ROOT

TWO_LANES = (FIXTURES / "two_lanes.bpmn").read_bytes()
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
assert TWO_LANES.startswith(DECLARATION)
BODY = TWO_LANES[len(DECLARATION):]
START_NAME = 'name="开始"'.encode()


# a web server that records every request, to prove nothing is ever fetched ----------------------
@dataclass
class Server:
    url: str
    hits: list[str]


@pytest.fixture
def server() -> Iterator[Server]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            hits.append(self.path)
            body = b'<!ENTITY leak "fetched">' if self.path.endswith(".dtd") else b"<x/>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_port}", hits)
    finally:
        httpd.shutdown()
        httpd.server_close()


# hostile and broken documents -------------------------------------------------------------------
def with_doctype(doctype: str, start_name: str = "&e;", encoding: str = "utf-8") -> bytes:
    """two_lanes.bpmn with a DOCTYPE on line 2 and the start event named by an entity."""
    text = DECLARATION + doctype.encode() + b"\n" + BODY.replace(START_NAME, f'name="{start_name}"'.encode())
    if encoding == "utf-8":
        return text
    return text.decode().replace('encoding="UTF-8"', f'encoding="{encoding.upper()}"').encode(encoding)


def billion_laughs() -> str:
    entities = "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    return f'<!DOCTYPE lolz [\n<!ENTITY lol0 "lol">\n{entities}\n]>'


def documents(url: str) -> dict[str, tuple[bytes, int, str]]:
    """name -> (content, line of the first problem, text the message must contain)."""
    xinclude = (b'<bpmn:laneSet id="lanes">\n    <xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
                + f'href="{url}/secret.txt" parse="text" />'.encode())
    xinclude_doc = TWO_LANES.replace(b'<bpmn:laneSet id="lanes">', xinclude)
    broken = TWO_LANES.replace(b"</bpmn:laneSet>", b"</bpmn:laneSett>")
    # Not ASCII-compatible, so the byte-level DOCTYPE check cannot see it; the parser still refuses
    # (an external entity in an attribute; the entity amplification limit), at the line using it.
    used_at = line_of(with_doctype(billion_laughs(), "&lol9;"), b"&lol9;")
    xxe_used_at = line_of(with_doctype('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'), b'"&e;"')
    return {
        "external_entity": (with_doctype('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'),
                            2, "DOCTYPE and entity declarations are not allowed"),
        "external_entity_url": (with_doctype(f'<!DOCTYPE x [<!ENTITY e SYSTEM "{url}/e.txt">]>'),
                                2, "DOCTYPE and entity declarations are not allowed"),
        "billion_laughs": (with_doctype(billion_laughs(), "&lol9;"),
                           2, "DOCTYPE and entity declarations are not allowed"),
        "parameter_entity_url": (with_doctype(f'<!DOCTYPE x [<!ENTITY % remote SYSTEM "{url}/evil.dtd"> '
                                              f"%remote;]>", "&leak;"),
                                 2, "DOCTYPE and entity declarations are not allowed"),
        "external_entity_utf16": (with_doctype('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
                                               encoding="utf-16"), xxe_used_at, "references external entity"),
        "billion_laughs_utf16": (with_doctype(billion_laughs(), "&lol9;", encoding="utf-16"), used_at,
                                 "entity amplification factor exceeded"),
        "xinclude": (xinclude_doc, line_of(xinclude_doc, b"<xi:include"), "XInclude}include"),
        "not_well_formed": (broken, line_of(broken, b"</bpmn:laneSett>"), "not well-formed XML"),
        "not_bpmn": (DECLARATION + b'<svg xmlns="http://www.w3.org/2000/svg">\n<circle r="1"/></svg>\n',
                     2, "not a BPMN or DMN document"),
        "empty": (b"", 1, "not well-formed XML: Document is empty"),
        "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), 1, "not well-formed XML"),
    }


def line_of(content: bytes, needle: bytes) -> int:
    return content.count(b"\n", 0, content.index(needle)) + 1


DOCUMENT_NAMES = list(documents("http://127.0.0.1:9"))
PROBLEM_LINE = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+): (?P<message>\S[^\n]*)$")


def assert_readable(problem: Problem, name: str, line: int, needle: str) -> None:
    assert (problem.file, problem.line) == (name, line)
    assert str(problem) == f"{name}:{line}: {problem.message}"
    assert PROBLEM_LINE.match(str(problem))
    assert needle in problem.message
    assert problem.message.isprintable() and len(problem.message) < 2000
    for noise in ("Traceback", "object at 0x", "\\x", "b'", "<lxml", "_Element"):
        assert noise not in problem.message


# through the engine ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", DOCUMENT_NAMES)
def test_hostile_or_broken_document_is_refused_with_a_located_readable_problem(
        engine: ProcessEngine, server: Server, kind: str) -> None:
    content, line, needle = documents(server.url)[kind]
    name = f"{kind}.bpmn"
    started = time.monotonic()
    with pytest.raises(LintFailed) as info:
        engine.repository.deploy([SourceFile(name, content)], actor="owner")
    assert time.monotonic() - started < 5
    assert_readable(info.value.problems[0], name, line, needle)
    assert engine.repository.definitions() == []
    assert server.hits == []


def test_external_entity_is_refused_before_any_file_is_read(engine: ProcessEngine) -> None:
    content = with_doctype('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>')
    with pytest.raises(LintFailed) as info:
        engine.repository.deploy([SourceFile("xxe.bpmn", content)], actor="owner")
    assert [str(p) for p in info.value.problems] == [
        "xxe.bpmn:2: DOCTYPE and entity declarations are not allowed"]
    assert "root:" not in str(info.value.details)


def test_one_hostile_file_among_good_ones_deploys_nothing(engine: ProcessEngine, server: Server) -> None:
    content, _line, _needle = documents(server.url)["parameter_entity_url"]
    with pytest.raises(LintFailed) as info:
        engine.repository.deploy([SourceFile("two_lanes.bpmn", TWO_LANES), SourceFile("evil.bpmn", content)],
                                 actor="owner")
    assert [p.file for p in info.value.problems] == ["evil.bpmn"]
    assert engine.repository.definitions() == []
    assert server.hits == []


def test_every_bad_file_is_reported_not_just_the_first(engine: ProcessEngine) -> None:
    docs = documents("http://127.0.0.1:9")
    sources = [SourceFile(f"{kind}.bpmn", docs[kind][0]) for kind in ("external_entity", "empty", "not_bpmn")]
    with pytest.raises(LintFailed) as info:
        engine.repository.deploy(sources, actor="owner")
    assert [str(p).split(":")[0] for p in info.value.problems] == [s.name for s in sources]


def test_xinclude_inside_extension_elements_is_never_expanded(engine: ProcessEngine, server: Server) -> None:
    """Where the BPMN schema allows foreign elements an XInclude is kept as inert data, never followed."""
    xi = 'xmlns:xi="http://www.w3.org/2001/XInclude"'
    include = (f'<xi:include {xi} href="{server.url}/x.xml" />'
               f'<xi:include {xi} href="file:///etc/passwd" parse="text" />')
    content = TWO_LANES.replace(b"<spiffworkflow:properties>",
                                include.encode() + b"<spiffworkflow:properties>", 1)
    engine.repository.deploy([SourceFile("inert.bpmn", content)], actor="owner")
    [row] = engine.repository.definitions()
    assert "root:" not in row.bpmn_xml and "root:" not in row.spec_json
    assert server.hits == []


@pytest.mark.parametrize("attribute", [
    'xsi:schemaLocation="http://www.omg.org/spec/BPMN/20100524/MODEL {url}/BPMN20.xsd"',
    'xsi:noNamespaceSchemaLocation="{url}/any.xsd"',
])
def test_schema_location_pointing_at_a_url_is_never_fetched(engine: ProcessEngine, server: Server,
                                                            attribute: str) -> None:
    """Validation uses the engine's own BPMN schema; a schema hint in the file is ignored, never fetched.

    Modelers (Signavio, Bizagi) write such hints into ordinary files, so they are not refused.
    """
    hint = ('xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ' + attribute.format(url=server.url)
            + ' id="defs_access"').encode()
    content = TWO_LANES.replace(b'id="defs_access"', hint)
    [deployed] = engine.repository.deploy([SourceFile("hinted.bpmn", content)], actor="owner")
    assert deployed.process_id == "access_request"
    assert server.hits == []


def test_oversized_file_is_refused_before_it_is_parsed(engine: ProcessEngine) -> None:
    content = TWO_LANES.replace(b"</bpmn:definitions>", b"<!--" + b"x" * (5 * 1024 * 1024) + b"-->\n"
                                + b"</bpmn:definitions>")
    with pytest.raises(LintFailed) as info:
        engine.repository.deploy([SourceFile("huge.bpmn", content)], actor="owner")
    assert [str(p) for p in info.value.problems] == ["huge.bpmn:1: file is larger than 5 MiB"]
    assert engine.repository.definitions() == []


# through the command line ---------------------------------------------------------------------
@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Path:
    """An initialised installation driven by environment variables, as `opsflow` is in production."""
    processes = tmp_path / "processes"
    processes.mkdir()
    shutil.copy(ROOT / "processes" / "roles.json", processes / "roles.json")
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("OPSFLOW_PROCESSES_DIR", str(processes))
    monkeypatch.setenv("OPSFLOW_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("OPSFLOW_FORMS_DIR", str(FIXTURES / "forms"))
    assert main(["init"]) == 0
    capsys.readouterr()
    return tmp_path


def deployed_process_ids() -> list[str]:
    engine = ProcessEngine.from_env()
    try:
        return [row.process_id for row in engine.repository.definitions()]
    finally:
        engine.close()


@pytest.mark.parametrize("kind", DOCUMENT_NAMES)
def test_cli_deploy_of_a_bad_file_exits_1_with_file_line_message_on_stderr(
        cli: Path, server: Server, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    content, line, needle = documents(server.url)[kind]
    path = cli / f"{kind}.bpmn"
    path.write_bytes(content)
    assert main(["deploy", str(path)]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines and all(PROBLEM_LINE.match(text) for text in lines), err
    assert lines[0].startswith(f"{path}:{line}: ")
    assert needle in lines[0]
    assert "Traceback" not in err and "error: unexpected" not in err
    assert out == ""
    assert deployed_process_ids() == []
    assert server.hits == []


def test_cli_deploy_lists_one_line_per_problem_and_deploys_none_of_the_files(
        cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = documents("http://127.0.0.1:9")
    paths = []
    for kind in ("external_entity", "binary"):
        paths.append(cli / f"{kind}.bpmn")
        paths[-1].write_bytes(docs[kind][0])
    good = cli / "two_lanes.bpmn"
    good.write_bytes(TWO_LANES)
    assert main(["deploy", str(good), *map(str, paths)]) == 1
    _out, err = capsys.readouterr()
    assert [PROBLEM_LINE.match(text)["file"] for text in err.splitlines()] == list(map(str, paths))
    assert deployed_process_ids() == []


def test_cli_deploy_of_the_clean_file_still_works(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = cli / "two_lanes.bpmn"
    good.write_bytes(TWO_LANES)
    assert main(["deploy", str(good)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("deployed access_request v1") and err == ""
    assert deployed_process_ids() == ["access_request"]
