"""Every library diagram opens cleanly in bpmn-js: complete DI, no shapes on top of each other,
every node drawn inside its lane."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import ROOT

NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
      "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
      "dc": "http://www.omg.org/spec/DD/20100524/DC"}
FLOW_NODES = ("startEvent", "endEvent", "userTask", "serviceTask", "scriptTask", "businessRuleTask", "manualTask",
              "exclusiveGateway", "parallelGateway", "inclusiveGateway", "intermediateCatchEvent",
              "intermediateThrowEvent", "boundaryEvent", "callActivity", "subProcess", "task")
DIAGRAMS = sorted((ROOT / "processes").glob("*.bpmn"))


def _bounds(shape: etree._Element) -> tuple[float, float, float, float]:
    b = shape.find("dc:Bounds", NS)
    return float(b.get("x")), float(b.get("y")), float(b.get("width")), float(b.get("height"))


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _inside(inner: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    return (outer[0] <= inner[0] and inner[0] + inner[2] <= outer[0] + outer[2]
            and outer[1] <= inner[1] and inner[1] + inner[3] <= outer[1] + outer[3])


@pytest.mark.parametrize("path", DIAGRAMS, ids=lambda p: p.name)
def test_diagram_is_complete_and_readable(path: Path) -> None:
    root = etree.parse(str(path)).getroot()
    process = root.find("bpmn:process", NS)
    nodes = {e.get("id"): e for tag in FLOW_NODES for e in process.findall(f"bpmn:{tag}", NS)}
    flows = {e.get("id") for e in process.findall("bpmn:sequenceFlow", NS)}
    shapes = {s.get("bpmnElement"): _bounds(s) for s in root.iterfind(".//bpmndi:BPMNShape", NS)}
    edges = {e.get("bpmnElement") for e in root.iterfind(".//bpmndi:BPMNEdge", NS)}
    assert set(nodes) <= set(shapes), f"nodes without a shape: {sorted(set(nodes) - set(shapes))}"
    assert flows <= edges, f"flows without an edge: {sorted(flows - edges)}"

    hosts = {i: e.get("attachedToRef") for i, e in nodes.items() if e.get("attachedToRef")}
    ids = sorted(nodes)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if hosts.get(a) == b or hosts.get(b) == a:
                continue
            assert not _overlap(shapes[a], shapes[b]), f"{a} and {b} overlap"

    lanes = process.findall(".//bpmn:lane", NS)
    assert lanes, "a library process has lanes"
    for lane in lanes:
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            node = ref.text
            if node in hosts:
                continue
            assert _inside(shapes[node], shapes[lane.get("id")]), f"{node} is drawn outside lane {lane.get('name')}"
    laned = {ref.text for ref in process.iterfind(".//bpmn:flowNodeRef", NS)}
    assert set(nodes) <= laned, f"nodes in no lane: {sorted(set(nodes) - laned)}"
