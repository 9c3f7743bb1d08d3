"""事件定级 (issue 15, part 1): the incident is regraded whenever a step records new facts.

The regulatory grading (processes/incident_level.dmn) is chosen by the discovery date: the 2012 办法
before 2021-06-04, the 2021 办法 (证监会公告〔2021〕12号) from then on. An upgrade to reportable opens
the linked emergency at once; a downgrade never takes back a report already due; every change of
level or reportability is kept in the case's grading_history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import select

from engine.configuration import picker
from engine.errors import ValidationFailed
from engine.storage.models import CaseItem
from tests.conftest import ROOT
from tests.processes.conftest import Flow, system_ids
from tests.processes.test_incident import RESOLVED, incident_report, links, reported

BEFORE_2021 = "2020-11-20T18:05:00+08:00"  # 2012 办法
UNDER_2021 = "2026-11-20T18:05:00+08:00"  # 2021 办法 (the test clock's day)


def resolved(flow: Flow, case: int, **facts: Any) -> None:
    flow.do(case, "resolve", "lina", {**RESOLVED, **facts})


def history(flow: Flow, case: int) -> list[tuple[str, str | None, str, bool]]:
    return [(h["after"], h["from_level"], h["level"], h["reportable"]) for h in flow.data(case)["grading_history"]]


def emergency_of(flow: Flow, case: int) -> int:
    [emergency] = [x["instance_id"] for x in flow.links(case) if x["kind"] == "emergency"]
    return emergency


@pytest.mark.parametrize(("discovered_at", "rule_set"), [(BEFORE_2021, "2012"), (UNDER_2021, "2021")])
def test_an_outage_reported_at_0_and_restored_after_25_minutes_opens_reporting_when_resolved(
        flow: Flow, discovered_at: str, rule_set: str) -> None:
    case = reported(flow, system_class="集中交易", outage_minutes=0, discovered_at=discovered_at)
    data = flow.data(case)
    assert (data["rule_set"], data["level"], data["reportable"], data["priority"]) == (rule_set, "一般", False, "P3")
    assert links(flow, case) == []
    flow.do(case, "respond", "lina", {"assessment": "集中交易主机故障"})
    assert links(flow, case) == []  # nothing new recorded yet
    if rule_set == "2012":  # discovered years ago: the resolution, due from discovery, is long overdue
        assert flow.open_names(case) == ["escalate_resolve", "resolve"]
        flow.do(case, "escalate_resolve", "liuyang", {"note": "已督促处置"})

    resolved(flow, case, outage_minutes=25)  # the restore records the real outage
    data = flow.data(case)
    assert (data["level"], data["reportable"]) == ("较大", True)
    assert flow.open_names(case) == ["confirm"]
    assert links(flow, case) == [("emergency", "to", "emergency")]  # reporting opened at once
    emergency = emergency_of(flow, case)
    assert links(flow, emergency) == [("emergency", "from", "incident")]
    assert flow.open_names(emergency) == ["declare"]
    facts = flow.data(emergency)
    assert (facts["level"], facts["reportable"], facts["outage_minutes"], facts["discovered_at"]) == (
        "较大", True, 25, discovered_at)
    # audited: the regrade is on the case, with the rule it applied; the link on the case history
    assert history(flow, case) == [("grade", None, "一般", False), ("resolve", "一般", "较大", True)]
    last = flow.data(case)["grading_history"][-1]
    assert last["rule_set"] == rule_set and last["outage_minutes"] == 25 and last["basis"] == data["level_basis"]
    assert ("2012 办法第十二条（四）" if rule_set == "2012" else "≥ 10 分钟") in last["basis"]
    assert [e.data["to"] for e in flow.engine.runtime.show(case).history if e.action == "case.linked"] == [emergency]


def test_facts_recorded_at_the_response_regrade_before_the_resolution(flow: Flow) -> None:
    opened = flow.engine.alerts.receive(flow.user("zabbix"), source="zabbix", fingerprint="trade-down",
                                        status="firing", severity="minor", system="集中交易",
                                        text="集中交易委托报送失败")
    case = opened.instance_id
    assert (flow.data(case)["outage_minutes"], flow.data(case)["reportable"]) == (0, False)  # alerts carry 0
    flow.do(case, "respond", "lina", {"assessment": "委托报送中断", "outage_minutes": 12})
    assert flow.open_names(case) == ["resolve"]
    assert (flow.data(case)["level"], flow.data(case)["reportable"]) == ("较大", True)
    assert links(flow, case) == [("emergency", "to", "emergency")]
    resolved(flow, case, outage_minutes=14)  # still 较大: no second emergency, no new history entry
    assert links(flow, case) == [("emergency", "to", "emergency")]
    assert history(flow, case) == [("grade", None, "一般", False), ("respond", "一般", "较大", True)]


@pytest.mark.parametrize("discovered_at", [BEFORE_2021, UNDER_2021])
def test_a_leak_of_5000_investors_records_is_reportable(flow: Flow, discovered_at: str) -> None:
    case = reported(flow, system_class="其他", leaked_records=5000, discovered_at=discovered_at)
    data = flow.data(case)
    assert (data["reportable"], data["level"]) == (True, "一般")
    assert "第十六条（四）" in data["level_basis"]  # reported at once, whatever the volume
    assert links(flow, case) == [("emergency", "to", "emergency")]
    assert flow.data(emergency_of(flow, case))["leaked_records"] == 5000


def test_a_leak_found_while_resolving_opens_reporting(flow: Flow) -> None:
    case = reported(flow)
    flow.do(case, "respond", "lina", {"assessment": "登录网关异常"})
    resolved(flow, case, leaked_records=120000)
    assert (flow.data(case)["level"], flow.data(case)["reportable"]) == ("重大", True)
    assert links(flow, case) == [("emergency", "to", "emergency")]


def test_a_downgrade_keeps_the_report_due_and_opens_nothing_more(flow: Flow) -> None:
    case = reported(flow, system_class="集中交易", outage_minutes=12)
    assert (flow.data(case)["level"], flow.data(case)["reportable"]) == ("较大", True)
    assert links(flow, case) == [("emergency", "to", "emergency")]
    flow.do(case, "respond", "lina", {"assessment": "误报，实际中断较短", "outage_minutes": 3})
    data = flow.data(case)
    assert (data["level"], data["reportable"]) == ("一般", True)  # the report once due stays due
    assert data["grading_history"][-1]["report_kept_due"] is True
    assert history(flow, case)[-1] == ("respond", "较大", "一般", True)
    resolved(flow, case, outage_minutes=3)
    assert links(flow, case) == [("emergency", "to", "emergency")]  # still the one emergency
    assert flow.status(emergency_of(flow, case)) == "running"


def test_an_upgrade_of_an_incident_already_reported_opens_no_second_emergency(flow: Flow) -> None:
    case = reported(flow, system_class="集中交易", outage_minutes=12)
    flow.do(case, "respond", "lina", {"assessment": "主机宕机"})
    resolved(flow, case, outage_minutes=40)
    assert (flow.data(case)["level"], flow.data(case)["reportable"]) == ("重大", True)
    assert history(flow, case)[-1] == ("resolve", "较大", "重大", True)
    assert links(flow, case) == [("emergency", "to", "emergency")]


@pytest.mark.parametrize(("discovered_at", "rule_set"), [
    ("2021-06-03T23:59:00+08:00", "2012"),
    ("2021-06-04T00:01:00+08:00", "2021"),
])
def test_the_rule_set_follows_the_discovery_date(flow: Flow, discovered_at: str, rule_set: str) -> None:
    case = reported(flow, system_class="集中交易", outage_minutes=35, discovered_at=discovered_at)
    # 2012 Art 12(四): ≥ 5 min is 较大; 2021 附表 (press reading): ≥ 30 min is 重大
    assert (flow.data(case)["rule_set"], flow.data(case)["level"]) == (
        rule_set, "较大" if rule_set == "2012" else "重大")


@pytest.mark.parametrize(("discovered_at", "facts", "level", "reportable"), [
    # 集中交易 / 网上交易 / 期货交易 (实时交易): 2012 ≥ 5 min 较大; 2021 ≥ 10 较大, ≥ 30 重大, 5–9 reportable 一般
    (BEFORE_2021, {"system_class": "集中交易", "outage_minutes": 7}, "较大", True),
    (UNDER_2021, {"system_class": "集中交易", "outage_minutes": 7}, "一般", True),
    (UNDER_2021, {"system_class": "网上交易", "outage_minutes": 10}, "较大", True),
    (UNDER_2021, {"system_class": "网上交易", "outage_minutes": 4}, "一般", False),
    (BEFORE_2021, {"system_class": "期货交易", "outage_minutes": 5}, "较大", True),
    (BEFORE_2021, {"system_class": "期货交易", "outage_minutes": 4}, "一般", False),
    (UNDER_2021, {"system_class": "期货交易", "outage_minutes": 30}, "重大", True),
    # 行情: share of branches / trading units affected, 2012 Art 12(一) 5 %
    (BEFORE_2021, {"system_class": "行情", "affected_share": 5}, "较大", True),
    (BEFORE_2021, {"system_class": "行情", "affected_share": 4.5}, "一般", False),
    (UNDER_2021, {"system_class": "行情", "affected_share": 8, "outage_minutes": 3}, "较大", True),
    # 清算: interrupted or delayed more than 4 h, 2012 Art 12(三)
    (BEFORE_2021, {"system_class": "清算", "outage_minutes": 241}, "较大", True),
    (UNDER_2021, {"system_class": "清算", "outage_minutes": 240}, "一般", False),
    # 银期转账 and the like: ≥ 30 min, 2012 Art 12(五) (carried into 2021 pending verification)
    (UNDER_2021, {"system_class": "银期转账", "outage_minutes": 30}, "较大", True),
    # a leak outranks an outage: the most severe row applies
    (UNDER_2021, {"system_class": "网上交易", "outage_minutes": 12, "leaked_records": 100000}, "重大", True),
])
def test_each_system_class_has_its_rule(flow: Flow, discovered_at: str, facts: dict[str, Any], level: str,
                                        reportable: bool) -> None:
    case = reported(flow, discovered_at=discovered_at, **facts)
    assert (flow.data(case)["level"], flow.data(case)["reportable"]) == (level, reportable)
    assert (links(flow, case) == [("emergency", "to", "emergency")]) is reportable


def test_every_grading_row_cites_its_source_and_whether_it_is_verified() -> None:
    ns = {"dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/"}
    table = etree.parse(str(Path(ROOT) / "processes" / "incident_level.dmn")).getroot()
    rules = table.findall(".//dmn:rule", ns)
    assert len(rules) >= 16
    for rule in rules:
        text = rule.findtext("dmn:description", namespaces=ns) or ""
        rule_set = rule.findtext("dmn:inputEntry/dmn:text", namespaces=ns)
        assert rule_set in ('"2012"', '"2021"'), rule.get("id")
        assert ("证监会公告〔2012〕46号" if rule_set == '"2012"' else "证监会公告〔2021〕12号") in text, rule.get("id")
        assert ("2013-02-01" if rule_set == '"2012"' else "2021-06-04") in text, rule.get("id")
        cites = "第" in text or "附表" in text  # an article, or the 2021 rules' 附表
        assert cites or "未达" in text, f"{rule.get('id')} names no article"
        if cites:
            assert "已核实" in text or "待核实" in text, f"{rule.get('id')} does not say whether it is verified"
    unverified = [r for r in rules if "UNVERIFIED" in (r.findtext("dmn:description", namespaces=ns) or "")]
    assert len(unverified) == 2  # the press reading of the 2021 附表 (≥ 10 and ≥ 30 minutes)


# The system's record, not the reporter ----------------------------------------------------------
# Grading reads the category and the 2021 class (一类–五类) from the configuration register.

@pytest.mark.parametrize(("system", "minutes", "level"), [
    ("期货交易", 30, "重大"),  # 一类: the 附表's real-time trading rows apply
    ("期货交易中继", 446, "一般"),  # 三类: 华金期货's relay, 7 h 26 min, was only 一般 (2021 Art 13(1)), still reported
])
def test_under_2021_the_systems_class_in_the_register_decides_the_level(flow: Flow, system: str, minutes: int,
                                                                        level: str) -> None:
    case = reported(flow, systems=[system], outage_minutes=minutes, discovered_at=UNDER_2021)
    data = flow.data(case)
    assert (data["level"], data["reportable"]) == (level, True)
    [record] = data["system_records"]
    assert (record["name"], record["category"], data["system_class"]) == (system, "期货交易", "期货交易")
    assert data["system_level"] == (1 if system == "期货交易" else 3)
    assert data["grading_history"][0]["system_level"] == data["system_level"]


def test_a_reclassified_system_is_graded_by_its_new_class(flow: Flow) -> None:
    relay = [i for i in flow.engine.configuration.list_items() if i.name == "期货交易中继"]
    assert relay[0].system_class_label == "三类"
    register = json.loads((ROOT / "processes" / "demo_config_items.json").read_text(encoding="utf-8"))
    for item in register:
        if item["name"] == "期货交易中继":
            item["system_class"] = "一类"
    flow.engine.configuration.import_items("opsflow", json.dumps(register, ensure_ascii=False), "register.json")
    case = reported(flow, systems=["期货交易中继"], outage_minutes=446, discovered_at=UNDER_2021)
    assert flow.data(case)["level"] == "重大"


def test_the_most_severe_category_named_is_graded(flow: Flow) -> None:
    case = reported(flow, systems=["办公自动化", "清算", "集中交易"], outage_minutes=7, discovered_at=BEFORE_2021)
    data = flow.data(case)
    assert (data["system_class"], data["level"]) == ("集中交易", "较大")
    assert data["affected_systems"] == ["办公自动化", "清算", "集中交易"]


def test_a_reporter_cannot_type_the_systems_class_or_its_record(flow: Flow) -> None:
    case = flow.start("incident", "zhangwei", {"title": "事件"})
    report = incident_report(flow.engine, systems=["办公自动化"], outage_minutes=40, discovered_at=UNDER_2021)
    for forged in ({"system_class": "其他"}, {"system_level": 5},
                   {"system_records": [{"name": "集中交易", "category": "其他", "system_class": 5}]}):
        with pytest.raises(ValidationFailed) as refused:
            flow.do(case, "report", "zhangwei", {**report, **forged})
        assert [e.field for e in refused.value.errors] == list(forged)
    with pytest.raises(ValidationFailed) as refused:
        flow.do(case, "report", "zhangwei", {**report, "systems": [999999]})
    [error] = refused.value.errors
    assert error.field == "systems[0]" and "不是登记簿中在用的配置项" in error.message
    assert flow.open_names(case) == ["report"]  # nothing saved


def test_a_retired_system_is_not_offered_and_not_accepted(flow: Flow) -> None:
    register = json.loads((ROOT / "processes" / "demo_config_items.json").read_text(encoding="utf-8"))
    for item in register:
        if item["name"] == "办公自动化":
            item["status"] = "已下线"
    flow.engine.configuration.import_items("opsflow", json.dumps(register, ensure_ascii=False), "register.json")
    case = flow.start("incident", "zhangwei", {"title": "事件"})
    detail = flow.engine.tasks.get(flow.task(case, "report").id, flow.user("zhangwei"))
    offered = {o["title"].split("（")[0] for o in detail.form["properties"]["systems"]["items"]["oneOf"]}
    assert "集中交易" in offered and "办公自动化" not in offered
    assert "集中交易（核心交易·一类）" in {o["title"] for o in detail.form["properties"]["systems"]["items"]["oneOf"]}
    with pytest.raises(ValidationFailed):
        flow.do(case, "report", "zhangwei", incident_report(flow.engine, systems=["集中交易"]) | {
            "systems": system_ids(flow.engine, "办公自动化")})


def test_a_case_and_the_systems_it_names_are_linked_both_ways(flow: Flow) -> None:
    case = reported(flow, systems=["集中交易", "行情"])
    with flow.engine.ctx.db.read() as s:
        assert sorted(i.name for i in picker.case_items(s, case)) == sorted(["集中交易", "行情"])
        linked = list(s.scalars(select(CaseItem).where(CaseItem.instance_id == case)))
    assert {row.linked_by for row in linked} == {"zhangwei"} and len(linked) == 2


def test_start_data_names_systems_by_id_and_never_carries_their_record(flow: Flow) -> None:
    [trading] = system_ids(flow.engine, "集中交易")
    with pytest.raises(ValidationFailed) as refused:
        flow.start("incident", "zhangwei", {"title": "事件", "systems": [trading],
                                             "system_records": [{"name": "集中交易", "category": "其他"}]})
    assert [e.field for e in refused.value.errors] == ["system_records"]
    case = flow.start("incident", "zhangwei", {"title": "事件", "source": "monitoring", "systems": [trading],
                                               "outage_minutes": 12, "discovered_at": UNDER_2021,
                                               "impact": "high", "urgency": "high", "description": "告警"})
    data = flow.data(case)
    assert data["system_records"][0]["category"] == "集中交易" and data["level"] == "较大"


def test_the_record_names_the_systems_picked_even_after_one_is_retired(flow: Flow) -> None:
    case = reported(flow, systems=["集中交易", "办公自动化"])
    register = json.loads((ROOT / "processes" / "demo_config_items.json").read_text(encoding="utf-8"))
    for item in register:
        if item["name"] == "办公自动化":
            item["status"] = "已下线"
    flow.engine.configuration.import_items("opsflow", json.dumps(register, ensure_ascii=False), "register.json")
    [report] = [e for e in flow.record(case) if e.bpmn_id == "report"]
    [systems] = [f for f in report.facts if f["field"] == "systems"]
    assert systems["label"] == "受影响系统"
    assert systems["text"] == ["集中交易（核心交易·一类）", "办公自动化（非核心·五类）"]


def test_a_problem_opened_by_an_incident_names_its_systems_even_one_retired_since(flow: Flow) -> None:
    case = reported(flow, systems=["网上交易", "办公自动化"])
    register = json.loads((ROOT / "processes" / "demo_config_items.json").read_text(encoding="utf-8"))
    for item in register:
        if item["name"] == "办公自动化":
            item["status"] = "已下线"  # retired while the incident ran: its problem still names it
    flow.engine.configuration.import_items("opsflow", json.dumps(register, ensure_ascii=False), "register.json")
    flow.do(case, "respond", "lina", {"assessment": "登录网关连接池耗尽"})
    flow.do(case, "resolve", "lina", RESOLVED)
    flow.do(case, "confirm", "wuhao", {"result": "success"})
    flow.do(case, "close", "liuyang", {"problem_needed": True, "comment": "同类事件第三次发生"})
    [problem] = [x["instance_id"] for x in flow.links(case) if x["kind"] == "problem"]
    assert [r["name"] for r in flow.data(problem)["system_records"]] == ["网上交易", "办公自动化"]
    with flow.engine.ctx.db.read() as s:
        assert sorted(i.name for i in picker.case_items(s, problem)) == sorted(["网上交易", "办公自动化"])
