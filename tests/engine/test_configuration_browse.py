"""Browsing the configuration items register: an item's relations both ways, its history from the audit
trail (a re-import's version change as from -> to), the cases linked to it filtered by the cases list's
read rule, and the CSV / JSON / XLSX exports, which re-import unchanged."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import load_workbook

from engine import ProcessEngine
from engine.configuration.browse import (
    EXPORT_COLUMNS,
    FieldChange,
    RelatedItem,
    export_csv,
    export_json,
    export_xlsx,
    item_detail,
)
from engine.errors import NotFound
from engine.people.identity import Actor
from engine.storage.models import CaseItem
from tests.conftest import FIXTURES, ROOT, Clock, make_settings
from tests.processes.conftest import START, Flow

ITEMS = json.loads((FIXTURES / "config_items.json").read_text(encoding="utf-8"))
DEMO_USERS = json.loads((ROOT / "processes" / "demo_users.json").read_text(encoding="utf-8"))


def library_engine(database_url: str, tmp_path: Path) -> ProcessEngine:
    """The process library and the demo cast, with an empty register (the tests import their own)."""
    eng = ProcessEngine(make_settings(database_url, tmp_path, forms_dir=ROOT / "forms"), clock=Clock(START))
    eng.migrate()
    eng.identity.seed_roles(ROOT / "processes" / "roles.json")
    eng.repository.deploy_directory(ROOT / "processes")
    for u in DEMO_USERS:
        eng.identity.add_user(u["username"], u["roles"], u["display_name"])
    if eng.identity.find("mazhen") is None:  # the config manager, where the demo cast has none
        eng.identity.add_user("mazhen", ["config_manager"], "马振")
    return eng


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[ProcessEngine]:
    eng = library_engine(database_url, tmp_path)
    yield eng
    eng.close()


@pytest.fixture
def flow(engine: ProcessEngine) -> Flow:
    return Flow(engine)


@pytest.fixture
def manager(engine: ProcessEngine) -> Actor:
    return engine.identity.get("mazhen")


@pytest.fixture
def register(engine: ProcessEngine, manager: Actor) -> dict[str, int]:
    """The fixture register imported; item ids by name."""
    engine.configuration.import_items(manager, json.dumps(ITEMS, ensure_ascii=False), "config_items.json")
    return {i.name: i.id for i in engine.configuration.list_items()}


def link(engine: ProcessEngine, instance_id: int, item_id: int) -> None:
    with engine.ctx.db.transaction() as s:
        s.add(CaseItem(instance_id=instance_id, item_id=item_id, linked_at=engine.ctx.now(), linked_by="zhangwei"))


def test_an_item_shows_its_relations_both_ways_and_a_reimported_version_as_from_to(
        engine: ProcessEngine, manager: Actor, register: dict[str, int], flow: Flow) -> None:
    changed = [dict(i, version="UF2.0 V202612") if i["name"] == "集中交易" else i for i in ITEMS]
    engine.configuration.import_items(manager, json.dumps(changed, ensure_ascii=False), "config_items.json")
    detail = item_detail(engine.configuration, flow.user("zhangwei"), register["集中交易"])
    assert detail.item.version == "UF2.0 V202612"
    assert detail.relations == [RelatedItem(register["清算"], "清算", "depends_on"),
                                RelatedItem(register["行情"], "行情", "depends_on"),
                                RelatedItem(register["交易主机集群"], "交易主机集群", "runs_on")]
    # 清算 depends on 集中交易 and 网上交易 depends on it: both shown on 集中交易's page
    assert detail.used_by == [RelatedItem(register["清算"], "清算", "depends_on"),
                              RelatedItem(register["网上交易"], "网上交易", "depends_on")]
    assert [(h.action, h.actor) for h in detail.history] == [("ci.created", "mazhen"), ("ci.updated", "mazhen")]
    assert detail.history[1].changes == [FieldChange("version", "UF2.0 V202601", "UF2.0 V202612")]
    created = {c.field: c.after for c in detail.history[0].changes}
    assert created["markets"] == ["SSE", "SZSE"] and created["core"] is True
    # another item's history holds only its own events
    assert [h.action for h in item_detail(engine.configuration, flow.user("zhangwei"), register["清算"]).history] == [
        "ci.created"]
    host = item_detail(engine.configuration, flow.user("zhangwei"), register["交易主机集群"])
    assert host.relations == [] and [r.name for r in host.used_by] == ["网上交易", "行情", "集中交易"]


def test_linked_cases_are_only_those_the_viewer_may_read(engine: ProcessEngine, register: dict[str, int],
                                                        flow: Flow) -> None:
    incident = flow.start("incident", "zhangwei", {"title": "集中交易委托超时"})
    other = flow.start("incident", "zhangwei", {"title": "行情延迟"})
    link(engine, incident, register["集中交易"])
    link(engine, other, register["行情"])
    seen = item_detail(engine.configuration, flow.user("zhangwei"), register["集中交易"]).cases
    assert [(c.instance_id, c.process_id, c.title, c.status, c.linked_by) for c in seen] == [
        (incident, "incident", "集中交易委托超时", "running", "zhangwei")]
    assert seen[0].process_name  # the process's name, as the cases list shows it
    # a test lead takes no part in zhangwei's incident: the item's page does not reveal it
    assert item_detail(engine.configuration, flow.user("huangmin"), register["集中交易"]).cases == []
    assert [c.instance_id for c in item_detail(engine.configuration, flow.user("liuyang"),  # case.read_all
                                               register["集中交易"]).cases] == [incident]


def test_an_unknown_item_is_not_found(engine: ProcessEngine, register: dict[str, int], flow: Flow) -> None:
    with pytest.raises(NotFound, match="unknown configuration item 99999"):
        item_detail(engine.configuration, flow.user("zhangwei"), 99999)


def test_the_csv_export_reimports_unchanged(engine: ProcessEngine, manager: Actor,
                                            register: dict[str, int]) -> None:
    before = engine.configuration.list_items()
    exported = export_csv(before)
    lines = exported.splitlines()
    assert lines[0] == ",".join(EXPORT_COLUMNS)
    assert ("集中交易,核心交易,一类,集中交易,SSE;SZSE,生产,ops_manager,wang,chen,恒生电子,UF2.0 V202601,在用,"
            "清算;行情,交易主机集群") in lines
    summary = engine.configuration.import_items(manager, exported, "config-items.csv")
    assert (summary.created, summary.updated, sorted(summary.unchanged)) == ([], [], sorted(register))
    assert engine.configuration.list_items() == before
    # and an edited cell comes back as a change of that one item
    edited = exported.replace("CTP 6.7.2", "CTP 6.7.5")
    assert engine.configuration.import_items(manager, edited, "config-items.csv").updated == ["期货交易"]


def test_the_json_export_reimports_unchanged(engine: ProcessEngine, manager: Actor,
                                             register: dict[str, int]) -> None:
    before = engine.configuration.list_items()
    summary = engine.configuration.import_items(manager, export_json(before), "config-items.json")
    assert (summary.created, summary.updated) == ([], []) and engine.configuration.list_items() == before


def test_the_xlsx_export_opens_with_every_item_and_no_formula(engine: ProcessEngine, manager: Actor,
                                                              register: dict[str, int]) -> None:
    engine.configuration.import_items(manager, json.dumps([{"name": "办公网关", "class": "非核心",
                                                            "vendor": "=HYPERLINK(\"http://x\")"}]), "x.json")
    items = engine.configuration.list_items()
    sheet = load_workbook(io.BytesIO(export_xlsx(items))).active
    rows = [[c if c is not None else "" for c in r] for r in sheet.iter_rows(values_only=True)]
    assert sheet.title == "配置项" and rows[0] == list(EXPORT_COLUMNS)
    assert [r[0] for r in rows[1:]] == [i.name for i in items]
    trading = next(r for r in rows if r[0] == "集中交易")
    assert trading[4] == "SSE;SZSE" and trading[12:] == ["清算;行情", "交易主机集群"]
    gateway = next(c for c in sheet[1 + [i.name for i in items].index("办公网关") + 1] if c.column_letter == "J")
    assert gateway.value == '=HYPERLINK("http://x")' and gateway.data_type == "s"  # text, not a formula
