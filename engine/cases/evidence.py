"""Test evidence (测试证据, JR/T 0099-2012 §6.2, issue 16): a change may cite a system_testing case only
if that case passed with a report signed off by a test lead who did not write it, tested every
system the change names at the version the change brings, and no other change has cited it yet.

`judge` decides from plain facts (no I/O); `TestEvidence.check` gathers them and records the use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from engine.cases.record import ApprovalEntry
from engine.cases.runtime import RuntimeService
from engine.configuration import ConfigurationService
from engine.context import EngineContext
from engine.errors import NotFound
from engine.storage.models import Attachment, CaseLink, ProcessInstance

TESTING_PROCESS = "system_testing"
EVIDENCE_KIND = "test_evidence"
# The steps of processes/system_testing.bpmn whose record shows who wrote the report and who signed it.
REPORT_STEP, SIGNOFF_STEP = "report", "signoff"


@dataclass(frozen=True)
class TestedCase:
    """What the evidence check reads of a system_testing case."""

    __test__ = False  # a domain name, not a pytest class

    id: int
    status: str
    data: Mapping[str, Any]
    record: Sequence[ApprovalEntry]
    stored_files: frozenset[str]  # sha256 of the files attached to the case
    cited_by: frozenset[int]  # other cases of the citing process that already use it as evidence


def signed_off(case: TestedCase) -> bool:
    """The last report was signed off (approve) by someone other than its author."""
    steps = list(case.record)
    written = [i for i, e in enumerate(steps) if e.bpmn_id == REPORT_STEP]
    if not written:
        return False
    author = steps[written[-1]].completed_by
    return any(e.bpmn_id == SIGNOFF_STEP and e.outcome == "approve" and e.completed_by != author
               for e in steps[written[-1] + 1:])


def _holds_evidence(change: ProcessInstance) -> bool:
    """A change keeps the test it cited while it runs and once it was implemented (its outcome, 成功 or
    失败, is recorded); one rejected before implementation or cancelled gives it back for the next try."""
    return change.status == "running" or (change.status == "completed" and change.outcome is not None)


def judge(case: TestedCase, systems: Sequence[int], wanted: Mapping[int, str], names: Mapping[int, str]) -> list[str]:
    """Why `case` is no evidence for a change of `systems` bringing each to `wanted[system]`; [] if it is."""
    if case.status != "completed" or case.data.get("outcome") != "passed":
        return [f"系统测试流程 {case.id} 尚未完成或结论不是通过"
                f"（状态 {case.status}，结论 {case.data.get('outcome')!r}）"]
    problems = []
    report = case.data.get("report_file")
    if not isinstance(report, dict) or report.get("sha256") not in case.stored_files:
        problems.append(f"系统测试流程 {case.id} 没有以附件上传的测试报告")
    elif not signed_off(case):
        problems.append(f"系统测试流程 {case.id} 的测试报告未经另一名测试负责人签署")
    tested = {v.get("system"): str(v.get("version", "")).strip()
              for v in case.data.get("tested_versions") or [] if isinstance(v, dict)}
    for system in systems:
        name = names.get(system, f"配置项 {system}")
        if system not in tested:
            problems.append(f"系统测试流程 {case.id} 未测试{name}")
        elif tested[system] != wanted[system]:
            problems.append(f"系统测试流程 {case.id} 测试的{name}版本为 {tested[system]}，"
                            f"本次变更的版本为 {wanted[system]}")
    if case.cited_by:
        users = "、".join(str(c) for c in sorted(case.cited_by))
        problems.append(f"系统测试流程 {case.id} 已作为流程 {users} 的测试证据，不能再次使用")
    return problems


def _ids(value: Any) -> list[int] | None:
    """Register ids from a form's value (ints, or the facts dicts a picker writes); None if any is no id."""
    out = []
    values: list[Any] = value if isinstance(value, list) else [] if value in (None, "") else [value]
    for given in values:
        raw: Any = given.get("id") if isinstance(given, dict) else given
        if isinstance(raw, bool) or raw is None:
            return None
        try:
            out.append(int(raw))
        except (TypeError, ValueError):
            return None
    return out


class TestEvidence:
    __test__ = False

    def __init__(self, ctx: EngineContext, runtime: RuntimeService, configuration: ConfigurationService) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.configuration = configuration

    def check(self, current_id: int, username: str, test_case_id: Any, systems: Any,
              target_versions: Any) -> dict[str, Any]:
        """{ok, reason}: whether case `test_case_id` is test evidence for case `current_id`; if it is, the use
        is recorded (a test_evidence link current -> testing case), so no other case of the same process can
        cite it. The same case checking again (after a return) is accepted."""
        if test_case_id in (None, ""):
            return _refused("未提供系统测试流程编号")
        try:
            testing_id = int(test_case_id)
        except (TypeError, ValueError):
            return _refused(f"系统测试流程编号 {test_case_id!r} 无效")
        system_ids = _ids(systems)
        if not system_ids:
            return _refused("未列出涉及的系统（配置项编号），无法核对测试证据")
        targets: dict[int, str] = {}
        for entry in target_versions if isinstance(target_versions, list) else []:
            ids = _ids(entry.get("system")) if isinstance(entry, dict) else None
            version = str(entry.get("version") or "").strip() if isinstance(entry, dict) else ""
            if ids and version:
                targets[ids[0]] = version
        register = {i.id: i for i in self.configuration.list_items()}
        unknown = [str(s) for s in system_ids if s not in register]
        if unknown:
            return _refused(f"配置项 {'、'.join(unknown)} 不在配置项登记簿中")
        wanted = {s: targets.get(s, register[s].version.strip()) for s in system_ids}
        names = {s: f"“{register[s].name}”" for s in system_ids}
        with self.ctx.db.transaction() as s:
            # the testing case's row, locked: two changes citing it at once are decided one after the other
            row = s.get(ProcessInstance, testing_id, with_for_update=True)
            if row is None:
                return _refused(f"流程 {testing_id} 不存在")
            if row.process_id != TESTING_PROCESS:
                return _refused(f"流程 {testing_id} 不是 {TESTING_PROCESS} 流程（是 {row.process_id}）")
            current = s.get(ProcessInstance, current_id)
            citing_process = current.process_id if current is not None else None
            cited_by = frozenset(
                link.from_instance_id for link in s.scalars(select(CaseLink).where(
                    CaseLink.to_instance_id == testing_id, CaseLink.kind == EVIDENCE_KIND,
                    CaseLink.from_instance_id != current_id))
                if (other := s.get(ProcessInstance, link.from_instance_id)) is not None
                and other.process_id == citing_process and _holds_evidence(other))
            stored = frozenset(s.scalars(select(Attachment.sha256).where(Attachment.instance_id == testing_id)))
            try:
                detail = self.runtime.show(testing_id)
            except NotFound:
                return _refused(f"流程 {testing_id} 不存在")
            case = TestedCase(testing_id, detail.status, detail.data, detail.record, stored, cited_by)
            problems = judge(case, system_ids, wanted, names)
            if problems:
                return _refused("；".join(problems))
            self.runtime.link(current_id, testing_id, EVIDENCE_KIND, username)
        return {"ok": True, "reason": "", "instance_id": testing_id, "title": detail.title}


def _refused(reason: str) -> dict[str, Any]:
    return {"ok": False, "reason": reason}
