"""An admin adds a role and its grants as data: roles.json and access.json beside the processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine import ProcessEngine
from engine.errors import BadRequest, Forbidden
from tests.conftest import ROOT, Clock, deploy_fixture, make_settings


def test_a_new_role_with_grants_needs_no_code(database_url: str, tmp_path: Path) -> None:
    processes = tmp_path / "processes"
    processes.mkdir()
    roles = json.loads((ROOT / "processes" / "roles.json").read_text(encoding="utf-8"))
    roles.append({"key": "auditor", "name_zh": "内审", "name_en": "Internal auditor", "description": "reads"})
    (processes / "roles.json").write_text(json.dumps(roles, ensure_ascii=False), encoding="utf-8")
    policy = json.loads((ROOT / "processes" / "access.json").read_text(encoding="utf-8"))
    for grant in ("case.read_all", "audit.read_all"):
        policy["grants"][grant]["roles"].append("auditor")
    (processes / "access.json").write_text(json.dumps(policy, ensure_ascii=False), encoding="utf-8")
    engine = ProcessEngine(make_settings(database_url, tmp_path, processes_dir=processes), clock=Clock())
    try:
        engine.init()
        deploy_fixture(engine, "two_lanes.bpmn")
        zhang = engine.identity.add_user("zhang", ["staff"])
        audit_reader = engine.identity.add_user("qian", ["auditor"])
        case = engine.runtime.start("access_request", zhang).id
        assert engine.runtime.show(case, audit_reader).id == case
        assert engine.runtime.history(audit_reader)[1] > 0  # the whole trail
        assert engine.may(audit_reader, "case.read_all") and not engine.may(audit_reader, "case.cancel")
        with pytest.raises(Forbidden) as refused:
            engine.runtime.cancel(case, audit_reader, "只读角色")
        assert refused.value.rule == "case.cancel"
    finally:
        engine.close()


def test_a_broken_policy_file_stops_the_engine_with_the_reason(database_url: str, tmp_path: Path) -> None:
    processes = tmp_path / "processes"
    processes.mkdir()
    shutil.copy(ROOT / "processes" / "roles.json", processes)
    (processes / "access.json").write_text('{"grants": {"case.read_all": {"roles": "admin"}}}', encoding="utf-8")
    with pytest.raises(BadRequest, match="case.read_all: 'roles' must be a list"):
        ProcessEngine(make_settings(database_url, tmp_path, processes_dir=processes))
    (processes / "access.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BadRequest, match="access.json: cannot read the access policy"):
        ProcessEngine(make_settings(database_url, tmp_path, processes_dir=processes))
