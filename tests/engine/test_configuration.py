"""The configuration items register (配置项): import creates and updates items with their relations,
audited; a bad file is refused whole, naming its rows; only ci.manage (配置管理员) imports as a user."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
from sqlalchemy import select

from engine import ProcessEngine
from engine.errors import Forbidden, ValidationFailed
from engine.people.identity import Actor
from engine.storage.models import AuditEvent
from tests.conftest import FIXTURES, ROOT
from tests.engine.test_cli import cli_env, ok, opsflow  # noqa: F401

ITEMS = json.loads((FIXTURES / "config_items.json").read_text(encoding="utf-8"))


@pytest.fixture
def manager(engine: ProcessEngine) -> Actor:
    return engine.identity.add_user("mazhen", ["config_manager"], "马振", password="Kunlun-2026-pw")


def ci_events(engine: ProcessEngine) -> list[tuple[str, str, dict[str, Any]]]:
    with engine.ctx.db.read() as s:
        return [(e.actor, e.action, e.data) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action.like("ci.%")).order_by(AuditEvent.id))]


def dump(items: list[dict[str, Any]]) -> str:
    return json.dumps(items, ensure_ascii=False)


def test_import_registers_the_systems_with_their_class_markets_and_relations(engine: ProcessEngine,
                                                                            manager: Actor) -> None:
    summary = engine.configuration.import_items(manager, dump(ITEMS), "config_items.json")
    assert summary.created == [i["name"] for i in ITEMS] and not summary.updated
    items = {i.name: i for i in engine.configuration.list_items()}
    trading = items["集中交易"]
    assert (trading.core, trading.class_label, trading.system_class, trading.system_class_label) == (
        True, "核心交易", 1, "一类")
    assert trading.markets == ["SSE", "SZSE"]
    assert (trading.owner_role, trading.maintainer_a, trading.maintainer_b) == ("ops_manager", "wang", "chen")
    assert trading.depends_on == ["清算", "行情"] and trading.runs_on == ["交易主机集群"]
    assert (items["清算"].core, items["清算"].system_class_label) == (False, "三类")
    assert items["期货交易"].markets == ["CFFEX", "CZCE", "DCE", "INE", "SHFE"]
    categories = (trading.category, items["期货交易"].category, items["期货主机"].category)
    assert categories == ("集中交易", "期货交易", "其他")
    assert items["期货交易"].system_class == 1  # a number is read as the class too
    assert items["交易主机集群"].system_class is None and items["交易主机集群"].status == "在用"
    events = ci_events(engine)
    assert [a for _, a, _ in events] == ["ci.created"] * len(ITEMS) + ["ci.imported"]
    assert {actor for actor, _, _ in events} == {"mazhen"}
    created = next(d for _, _, d in events if d["name"] == "集中交易")
    assert created["fields"]["version"] == "UF2.0 V202601"
    assert created["fields"]["relations"] == {"depends_on": ["清算", "行情"], "runs_on": ["交易主机集群"]}
    assert [i.name for i in engine.configuration.list_items("期货")] == ["期货主机", "期货交易"]
    assert [i.name for i in engine.configuration.list_items("cffex")] == ["期货交易"]


def test_a_reimport_updates_what_changed_records_the_change_and_deletes_nothing(engine: ProcessEngine,
                                                                               manager: Actor) -> None:
    engine.configuration.import_items(manager, dump(ITEMS), "config_items.json")
    changed = [dict(i) for i in ITEMS if i["name"] != "期货主机"]  # left out of the file: kept, not deleted
    trading = next(i for i in changed if i["name"] == "集中交易")
    trading["version"] = "UF2.0 V202612"
    trading["depends_on"] = ["行情"]
    summary = engine.configuration.import_items(manager, dump(changed), "config_items.json")
    assert (summary.created, summary.updated, summary.kept) == ([], ["集中交易"], ["期货主机"])
    assert len(summary.unchanged) == len(ITEMS) - 2
    items = {i.name: i for i in engine.configuration.list_items()}
    assert len(items) == len(ITEMS)
    assert items["集中交易"].version == "UF2.0 V202612" and items["集中交易"].depends_on == ["行情"]
    assert items["期货交易"].runs_on == ["期货主机"]
    updates = [d for _, a, d in ci_events(engine) if a == "ci.updated"]
    assert updates == [{"name": "集中交易", "changes": {
        "version": {"from": "UF2.0 V202601", "to": "UF2.0 V202612"},
        "relations": {"from": {"depends_on": ["清算", "行情"], "runs_on": ["交易主机集群"]},
                      "to": {"depends_on": ["行情"], "runs_on": ["交易主机集群"]}}}}]
    again = engine.configuration.import_items(manager, dump(changed), "config_items.json")
    assert not again.updated and not again.created  # the same file twice changes nothing


def test_a_bad_file_is_refused_whole_naming_each_row(engine: ProcessEngine, manager: Actor) -> None:
    engine.configuration.import_items(manager, dump(ITEMS[:1] + ITEMS[2:]), "config_items.json")
    before = ci_events(engine)
    bad = [dict(i) for i in ITEMS]
    bad[0]["version"] = "UF3.0"  # a good change, refused with the rest
    bad[1]["class"] = "重要"
    bad[2]["depends_on"] = ["核心数据库"]
    bad[4]["markets"] = ["CFFEX", "NYSE"]
    bad[5]["category"] = "交易"  # not a category the grading rules know
    bad.append({"name": "清算", "class": "非核心"})
    with pytest.raises(ValidationFailed) as refused:
        engine.configuration.import_items(manager, dump(bad), "config_items.json")
    problems = {(e.field, e.message) for e in refused.value.errors}
    assert ("item 2 (网上交易)", "unknown class '重要' (one of: 核心交易, 非核心)") in problems
    assert ("item 3 (行情)",
            "depends_on names '核心数据库', which is neither in the file nor in the register") in problems
    assert any(f == "item 5 (期货交易)" and "unknown market 'NYSE'" in m for f, m in problems)
    assert any(f == "item 6 (交易主机集群)" and m.startswith("unknown category '交易'") for f, m in problems)
    assert ("item 8 (清算)", "duplicate name '清算' (also item 4 (清算))") in problems
    assert "nothing imported" in refused.value.message
    assert engine.configuration.list_items("集中交易")[0].version == "UF2.0 V202601"
    assert "网上交易" not in {i.name for i in engine.configuration.list_items()}
    assert ci_events(engine) == before
    with pytest.raises(ValidationFailed) as refused:
        engine.configuration.import_items(manager, "{not json", "config_items.json")
    assert refused.value.errors[0].field == "config_items.json"


def test_only_a_config_manager_imports_as_a_user(engine: ProcessEngine, people, manager: Actor) -> None:
    with pytest.raises(Forbidden, match="ci.manage"):
        engine.configuration.import_items(people["li"], dump(ITEMS), "config_items.json")
    assert engine.configuration.list_items() == [] and ci_events(engine) == []
    assert engine.may(manager, "ci.manage") and not engine.may(people["du"], "ci.manage")


# the command line ---------------------------------------------------------------------------------
def test_ci_import_and_list_from_the_command_line(opsflow, cli_env, tmp_path) -> None:  # noqa: F811
    shutil.copytree(ROOT / "processes" / "calendar", tmp_path / "processes" / "calendar")
    ok(opsflow("init"))
    ok(opsflow("user", "add", "mazhen", "--role", "config_manager"))
    ok(opsflow("user", "add", "zhang", "--role", "staff"))
    refused = opsflow("ci", "import", str(FIXTURES / "config_items.json"), "--as", "zhang")
    assert refused.returncode == 1 and "ci.manage" in refused.stderr
    assert "no configuration items" in ok(opsflow("ci", "list"))

    out = ok(opsflow("ci", "import", str(FIXTURES / "config_items.json")))  # the operator at the shell
    assert "created 集中交易" in out and "7 created, 0 updated, 0 unchanged" in out
    listed = json.loads(ok(opsflow("ci", "list", "--json")))
    trading = next(i for i in listed if i["name"] == "集中交易")
    assert (trading["class_label"], trading["system_class_label"], trading["markets"]) == (
        "核心交易", "一类", ["SSE", "SZSE"])
    assert trading["depends_on"] == ["清算", "行情"] and trading["runs_on"] == ["交易主机集群"]
    assert trading["updated_by"] == "cli"
    found = ok(opsflow("ci", "list", "--search", "期货交易"))
    assert found.startswith("期货交易  核心交易 一类  CFFEX,CZCE,DCE,INE,SHFE") and "runs_on 期货主机" in found

    csv_file = tmp_path / "items.csv"
    csv_file.write_text("name,class,system_class,markets,version,depends_on\n"
                        "集中交易,核心交易,一类,SSE;SZSE,UF2.0 V202612,行情;清算\n"
                        "融资融券,核心交易,二类,SSE;SZSE,3.0,集中交易\n", encoding="utf-8")
    out = ok(opsflow("ci", "import", str(csv_file), "--as", "mazhen"))
    assert "created 融资融券" in out and "updated 集中交易" in out
    listed = {i["name"]: i for i in json.loads(ok(opsflow("ci", "list", "--json")))}
    assert len(listed) == 8 and listed["集中交易"]["version"] == "UF2.0 V202612"
    assert listed["集中交易"]["updated_by"] == "mazhen"

    bad = tmp_path / "bad.csv"
    bad.write_text("name,class,runs_on\n新柜台,核心,\n新网关,非核心,不存在的主机\n", encoding="utf-8")
    result = opsflow("ci", "import", str(bad))
    assert result.returncode == 1
    assert "line 2 (新柜台): unknown class '核心'" in result.stderr
    assert "line 3 (新网关): runs_on names '不存在的主机'" in result.stderr
    assert len(json.loads(ok(opsflow("ci", "list", "--json")))) == 8
