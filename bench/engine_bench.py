"""Raw SpiffWorkflow in memory against the OpsFlow engine on a database, in one run, interleaved.

The scenario is a major change (processes/change.bpmn with its DMN change_risk and the forms of
forms/) on its longest everyday path: request, two CAB votes (a multi-instance task), the head of
IT, the wait for the change window (a timer, moved by a frozen clock), implement, review, two
verifications, close. Both sides run it with the same start data and the same form data:

(a) raw: SpiffBpmnParser (parsed once) + BpmnWorkflow, a plain PythonScriptEngine over a
    TaskDataEnvironment, no serialisation and no database. The service tasks call RawServices
    (below): the engine's own trading calendar (pure: files only), and plain in-memory stand-ins
    for the services that read the database, returning what the engine's return on this path.
(b) the engine on a fresh SQLite file; (c) the engine on PostgreSQL, in a schema of its own, when
    OPSFLOW_BENCH_DATABASE_URL or OPSFLOW_TEST_DATABASE_URL is set. The library (processes/) is
    deployed with the demo cast; each case is `runtime.start`, then `tasks.complete` for each step
    by its performer (the task found among the rows the previous call created, or in the
    performer's inbox after the start and after the timer), `runtime.fire_due_timers` at the window.

Raw and engine run in alternating rounds (raw, SQLite, PostgreSQL, raw, ...) so that a machine
getting busier or quieter during the run moves every side alike; the ratio uses the sums.

`tests/fixtures/two_lanes.bpmn` (access_request, two user tasks) is measured the same way as a
second, smaller reference (`access_request` in the results).
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    FIXTURES,
    ROOT,
    describe_database,
    fresh_database,
    ms,
    percentile,
    state_bytes,
    summary_ms,
)
from engine.spiff.workflow import instance_output_item


# sizes --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    raw_instances: int = 2000     # raw SpiffWorkflow change instances, timed
    engine_instances: int = 500   # engine change cases per database, timed
    warmup: int = 20              # untimed cases first on every side (spec cache, compiled snippets, SQL caches)
    rounds: int = 5               # raw and engine alternate this many times
    profile_instances: int = 100  # cases whose complete() calls the profiler watches (--profile)
    reference_raw: int = 1000     # access_request: raw instances
    reference_engine: int = 200   # access_request: engine cases per database

    @classmethod
    def quick(cls) -> Sizes:
        return cls(raw_instances=10, engine_instances=3, warmup=1, rounds=1, profile_instances=2,
                   reference_raw=10, reference_engine=3)

    @classmethod
    def from_env(cls, quick: bool = False) -> Sizes:
        """OPSFLOW_BENCH_RAW_N / _ENGINE_N / _WARMUP / _PROFILE_N override the defaults."""
        base = cls.quick() if quick else cls()

        def pick(name: str, default: int) -> int:
            value = os.environ.get(f"OPSFLOW_BENCH_{name}")
            return int(value) if value else default

        return cls(raw_instances=pick("RAW_N", base.raw_instances),
                   engine_instances=pick("ENGINE_N", base.engine_instances),
                   warmup=pick("WARMUP", base.warmup), rounds=base.rounds,
                   profile_instances=pick("PROFILE_N", base.profile_instances),
                   reference_raw=base.reference_raw, reference_engine=base.reference_engine)


# scenarios ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    bpmn_id: str
    username: str
    data: dict[str, Any]
    # what the engine writes into the case from the configuration register on this step (a form's
    # x-register field); the raw side has no register and is given them
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A process, its cast, and the path both sides drive: each step's task, performer and form data."""

    name: str
    process_id: str
    bpmn: Path                         # the process (raw Spiff parses it with `dmn`)
    dmn: tuple[Path, ...]
    deploy_dir: Path | None            # the engine deploys this directory (the library), else bpmn + dmn
    forms_dir: Path
    users: dict[str, list[str]]        # username -> roles
    starter: str
    start_data: dict[str, Any]
    steps: tuple[Step, ...]
    clock_start: str | None = None     # both sides run on a frozen clock set here at each start (None: real clock)
    # bpmn id of a step -> the moment the clock moves to before it (due timers fire: engine
    # `runtime.fire_due_timers`, raw `refresh_waiting_tasks`).
    timers: dict[str, str] = field(default_factory=dict)
    # the engine's configuration register (rows as `opsflow ci import` reads them), numbered 1, 2, ...
    # in this order on the fresh database: the steps name the items by these ids
    register: tuple[dict[str, Any], ...] = ()
    # data the engine side adds to the first step, made before each case starts and not timed (the
    # change's test evidence: a passed system_testing case serves one change only)
    prepare: Callable[[EngineRig], dict[str, Any]] | None = None


def _demo_cast() -> dict[str, list[str]]:
    users = json.loads((ROOT / "processes" / "demo_users.json").read_text(encoding="utf-8"))
    return {u["username"]: list(u["roles"]) for u in users}


# A major change on a core trading system, window on a Saturday (a non-trading day, so the trading
# calendar passes it); data as tests/processes/test_change.py, cast as processes/demo_users.json. The
# system is picked from the register (item 1); the window check and the risk read its markets and class.
CHANGE_START = "2026-11-20T18:00:00+08:00"   # a Friday evening; the window opens Saturday 10:00
CHANGE_WINDOW = ("2026-11-21T10:00:00+08:00", "2026-11-21T14:00:00+08:00")
APPROVE = {"decision": "approve", "comment": "同意"}
SUCCESS = {"result": "success"}
TRADING = {"name": "集中交易", "class": "核心交易", "system_class": "一类", "category": "集中交易",
           "markets": ["SSE", "SZSE"], "owner_role": "ops_manager", "version": "UF2.0 V202601"}


def test_evidence(rig: EngineRig) -> dict[str, Any]:
    """A system_testing case of the register's items at their versions, passed: the report uploaded,
    signed off by the other test lead, accepted; cited by the next change (its test_case_id)."""
    eng, actors = rig.engine, rig.actors
    items = eng.configuration.list_items()
    case = eng.runtime.start("system_testing", actors["huangmin"], {"title": "集中交易升级测试"}).id

    def do(bpmn_id: str, username: str, data: dict[str, Any]) -> None:
        task = next(t for t in eng.runtime.show(case).open_tasks if t.bpmn_id == bpmn_id)
        if task.assignee is None:
            eng.tasks.claim(task.id, actors[username])
        eng.tasks.complete(task.id, actors[username], data)

    do("plan", "huangmin", {"title": "集中交易升级测试", "systems": [i.id for i in items],
                            "tested_versions": [{"system": i.id, "version": i.version} for i in items],
                            "scope": "委托、撤单接口",
                            "environment": {"name": "UAT", "not_production": True, "data_desensitised": True},
                            "test_types": ["functional", "regression", "rollback", "performance"],
                            "touches_critical_paths": True})
    do("execute", "huangmin", {"results": [{"type": "functional", "passed": True, "cases_run": 10,
                                            "cases_failed": 0}], "defects": []})
    report_task = next(t for t in eng.runtime.show(case).open_tasks if t.bpmn_id == "report")
    row = eng.attachments.add(case, report_task.id, "测试报告.pdf", "application/pdf", b"%PDF-1.7 bench",
                              actors["huangmin"], kind="form")
    do("report", "huangmin", {"summary": "全部用例通过", "conclusion": "passed",
                              "report_file": {"name": row.filename, "sha256": row.sha256}})
    do("signoff", "songtao", {"decision": "approve"})
    do("accept_business", "zhoujie", {"result": "success"})
    do("accept_ops", "liuyang", {"result": "success"})
    if eng.runtime.show(case).data.get("outcome") != "passed":
        raise RuntimeError(f"bench test evidence: system_testing case {case} did not pass")
    return {"test_case_id": case}


CHANGE = Scenario(
    name="change",
    process_id="change",
    bpmn=ROOT / "processes" / "change.bpmn",
    dmn=(ROOT / "processes" / "change_risk.dmn",),
    deploy_dir=ROOT / "processes",
    forms_dir=ROOT / "forms",
    users=_demo_cast(),
    starter="zhangwei",
    start_data={"title": "变更"},
    steps=(
        Step("request", "zhangwei", {
            "title": "集中交易系统参数调整", "change_type": "major",
            "systems": [1],
            "purpose": "调整会话超时参数", "window_start": CHANGE_WINDOW[0], "window_end": CHANGE_WINDOW[1],
            "plan": "1. 备份参数 2. 修改 3. 重启", "rollback_plan": "恢复备份的参数文件并重启",
            "rollback_tested": True, "implementer": "lina", "reviewer": "wangqiang",
            "business_verifier": "zhoujie"},
             facts={"affected_systems": [{"id": 1, "name": "集中交易", "core": True, "markets": ["SSE", "SZSE"]}]}),
        Step("cab_review", "chenjing", APPROVE),
        Step("cab_review", "yangfan", APPROVE),
        Step("approve_it_head", "zhaolei", APPROVE),
        Step("implement", "lina", {"steps": [{"at": "2026-11-21T10:05:00+08:00", "action": "停止服务并更新参数",
                                              "result": "完成"}], "finished_at": "2026-11-21T10:40:00+08:00"}),
        Step("review", "wangqiang", SUCCESS),
        Step("verify_tech", "lina", SUCCESS),
        Step("verify_business", "zhoujie", SUCCESS),
        Step("close", "liuyang", {"outcome": "成功", "config_items_updated": True,
                                  "config_items": ["JY-参数-会话超时"]}),
    ),
    clock_start=CHANGE_START,
    # SpiffWorkflow fires a timer strictly after its due time.
    timers={"implement": (datetime.fromisoformat(CHANGE_WINDOW[0]) + timedelta(seconds=1)).isoformat()},
    register=(TRADING,),
    prepare=test_evidence,
)

# A two-lane access request: staff fill a request (assigned to the starter), an ops manager approves.
ACCESS_REQUEST = Scenario(
    name="access_request",
    process_id="access_request",
    bpmn=FIXTURES / "two_lanes.bpmn",
    dmn=(),
    deploy_dir=None,
    forms_dir=FIXTURES / "forms",
    users={"bench_requester": ["staff"], "bench_manager": ["ops_manager"]},
    starter="bench_requester",
    start_data={"title": "开通清算系统只读权限"},
    steps=(
        Step("request", "bench_requester", {"title": "开通清算系统只读权限", "system": "清算",
                                            "reason": "季度对账需要查询清算结果", "days": 30}),
        Step("approve", "bench_manager", {"decision": "approve", "comment": "同意, 期满自动回收"}),
    ),
)


def _call(_label: str, call: Callable[[], Any]) -> Any:
    return call()


# (a) raw SpiffWorkflow ----------------------------------------------------------------------------
class RawServices:
    """What raw SpiffWorkflow's service tasks call, by operator id (spiffworkflow:serviceTaskOperator).

    - trading_window_check: the engine's own `CalendarService(processes/calendar).check_window`
      (pure: reads sessions.json and holidays.json once, then re-checks their mtime per call, as the
      engine does).
    - check_users: the engine's rule (each named user exists and holds the role; empty names skipped)
      over the scenario's cast in memory instead of the user table.
    - users_with_role: the cast's holders of the role, sorted, the starter left out (the engine
      reads the starter from the case row and the users from the database).
    - check_test_evidence: accepted, as the engine accepts the passed testing case the bench makes
      for each of its changes (Scenario.prepare, untimed); the raw side has no other cases.
    - check_standard_change: the engine's answer when no template is cited (`ok: false`, the same
      reason; the change is not standard, so the precheck ignores it). A template raises.
    - update_item_versions: nothing to update (the path names no target version; any raises).
    - require_case (delivery's gate, not on this path): the engine's answer when no case number is
      given (`ok: false`, the same reason). Any other argument raises: the path has changed.
    Other services (start_case, link_cases, ...) are not on the path and raise if called.
    """

    def __init__(self, scenario: Scenario) -> None:
        from engine.definitions.calendar import CalendarService

        self.cast = {name: set(roles) for name, roles in scenario.users.items()}
        self.starter = scenario.starter
        self.calendar = CalendarService(ROOT / "processes" / "calendar")

    def services(self) -> dict[str, Callable[..., Any]]:
        return {"trading_window_check": self.calendar.check_window, "check_users": self.check_users,
                "users_with_role": self.users_with_role, "require_case": self.require_case,
                "update_item_versions": self.update_item_versions, "check_test_evidence": self.check_test_evidence,
                "check_standard_change": self.check_standard_change}

    def check_users(self, users: dict[str, Any]) -> dict[str, Any]:
        problems = []
        for name, (username, role) in users.items():
            if not username:
                continue
            if username not in self.cast:
                problems.append(f"{name}：用户 {username} 不存在")
            elif role not in self.cast[username]:
                problems.append(f"{name}：用户 {username} 不具备角色 {role}")
        return {"ok": not problems, "problems": problems, "reason": "；".join(problems)}

    def users_with_role(self, role: str, exclude_starter: bool = True) -> list[str]:
        names = sorted(u for u, roles in self.cast.items()
                       if role in roles and not (exclude_starter and u == self.starter))
        if not names:
            raise ValueError(f"no user holds the role {role!r}")
        return names

    @staticmethod
    def require_case(case_id: Any, process_id: str, field: str, expected: Any, kind: str = "evidence") -> dict:
        if case_id in (None, ""):
            return {"ok": False, "reason": f"未提供{process_id}流程编号"}
        raise ValueError(f"raw stand-in for require_case got case {case_id!r}: the bench's path has changed")

    @staticmethod
    def check_test_evidence(test_case_id: Any, systems: Any, target_versions: Any = None) -> dict[str, Any]:
        # the raw side has no testing cases: the engine side cites one made for each case (Scenario.prepare)
        return {"ok": True, "reason": ""}

    @staticmethod
    def check_standard_change(template_id: Any, systems: Any, rollback_tested: Any) -> dict[str, Any]:
        if template_id in (None, ""):
            return {"ok": False, "reason": "标准变更须引用一个生效的标准变更模板"}
        raise ValueError(f"raw stand-in for check_standard_change got template {template_id!r}: the path has changed")

    @staticmethod
    def update_item_versions(versions: Any) -> dict[str, Any]:
        if versions:
            raise ValueError(f"raw stand-in for update_item_versions got {versions!r}: the bench's path has changed")
        return {"updated": [], "unchanged": [], "missing": []}


def raw_script_engine(scenario: Scenario) -> Any:
    """A plain PythonScriptEngine: TaskDataEnvironment (eval/exec, no sandbox) with the engine's
    script globals (datetime, Decimal, json_dumps) and RawServices behind call_service."""
    import datetime as datetime_module
    import decimal

    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment

    services = RawServices(scenario).services()

    class Environment(TaskDataEnvironment):
        def call_service(self, context: dict, operation_name: str, operation_params: dict,
                         task_data: dict | None = None) -> str:
            params = {name: spec["value"] for name, spec in operation_params.items()}
            return json.dumps(services[operation_name](**params), default=str)

    return PythonScriptEngine(environment=Environment(
        {"datetime": datetime_module, "Decimal": decimal.Decimal, "json_dumps": json.dumps}))


@contextmanager
def frozen_timer_clock(now: list[datetime]) -> Iterator[None]:
    """SpiffWorkflow's timers read `now[0]` instead of the wall clock while the block runs.

    (The engine does the same with its own clock; the module attribute is restored afterwards.)
    """
    from SpiffWorkflow.bpmn.specs.event_definitions import timer

    previous = timer.datetime

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return now[0].astimezone(tz)

    timer.datetime = Clock
    try:
        yield
    finally:
        timer.datetime = previous


class RawRunner:
    """Parse once, then run instances to completion in memory along the scenario's path."""

    def __init__(self, scenario: Scenario, script_engine: Any = None, count_steps: bool = False) -> None:
        """`script_engine` defaults to raw_script_engine(); `count_steps` runs the engine steps under
        the sandbox's StepCounter, as the engine does (the sandbox part, bench/sandbox_bench.py)."""
        from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser

        self.scenario = scenario
        parser = SpiffBpmnParser()
        parser.add_bpmn_file(str(scenario.bpmn))
        for dmn in scenario.dmn:
            parser.add_dmn_file(str(dmn))
        self.spec = parser.get_spec(scenario.process_id)
        self.subprocess_specs = parser.get_subprocess_specs(scenario.process_id)
        self.script_engine = script_engine or raw_script_engine(scenario)
        self.count_steps = count_steps
        self.now = [datetime.fromisoformat(scenario.clock_start)] if scenario.clock_start else None
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.instances = 0
        self.starts: list[float] = []
        self.steps: list[float] = []

    def one(self, timed: bool = True) -> None:
        from SpiffWorkflow.bpmn import BpmnWorkflow
        from SpiffWorkflow.util.task import TaskState

        sc = self.scenario
        if self.now is not None:
            self.now[0] = datetime.fromisoformat(sc.clock_start)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        workflow = BpmnWorkflow(self.spec, self.subprocess_specs, script_engine=self.script_engine)
        workflow.task_tree.data.update(sc.start_data)
        self._engine_steps(workflow)
        t1 = time.perf_counter()
        steps = []
        for step in sc.steps:
            ready = [t for t in workflow.get_tasks(state=TaskState.READY, manual=True)
                     if t.task_spec.bpmn_id == step.bpmn_id]
            if not ready and step.bpmn_id in sc.timers:
                if self.now is not None:
                    self.now[0] = datetime.fromisoformat(sc.timers[step.bpmn_id])
                workflow.refresh_waiting_tasks()
                self._engine_steps(workflow)
                ready = [t for t in workflow.get_tasks(state=TaskState.READY, manual=True)
                         if t.task_spec.bpmn_id == step.bpmn_id]
            if not ready:
                raise RuntimeError(f"raw {sc.name}: no ready {step.bpmn_id!r}; ready: "
                                   f"{[t.task_spec.bpmn_id for t in workflow.get_tasks(state=TaskState.READY)]}")
            # Of several (a multi-instance task), the one whose data names the performer (cab_member).
            task = next((t for t in ready if step.username in t.data.values()), ready[0]) if len(ready) > 1 \
                else ready[0]
            s0 = time.perf_counter()
            # as the engine writes it: the task's answers under its id (gateways read them there), and a
            # multi-instance's answers also under its output item (engine/tasks/service.py)
            answers = {step.bpmn_id: dict(step.data)}
            if item := instance_output_item(task):
                answers[item] = dict(step.data)
            task.set_data(**step.data, **step.facts, **answers)
            task.run()
            self._engine_steps(workflow)
            steps.append(time.perf_counter() - s0)
        if not workflow.completed:
            raise RuntimeError(f"raw {sc.name}: the path ended but the workflow did not complete")
        if timed:
            self.starts.append(t1 - t0)
            self.steps.extend(steps)

    def _engine_steps(self, workflow: Any) -> None:
        if self.count_steps:
            from engine.spiff.sandbox import StepCounter

            workflow.do_engine_steps(did_complete_task=StepCounter())
        else:
            workflow.do_engine_steps()

    def run(self, n: int, timed: bool = True) -> None:
        with frozen_timer_clock(self.now) if self.now is not None else ExitStack():
            c0, t0 = time.thread_time(), time.perf_counter()
            for _ in range(n):
                self.one(timed)
            if timed:
                self.seconds += time.perf_counter() - t0
                self.cpu_seconds += time.thread_time() - c0
                self.instances += n

    def result(self) -> dict[str, Any]:
        n = max(self.instances, 1)
        return {"side": "raw SpiffWorkflow in memory (plain PythonScriptEngine, RawServices)",
                "instances": self.instances, "user_tasks_per_instance": len(self.scenario.steps),
                "seconds": round(self.seconds, 4),
                "instances_per_s": round(self.instances / self.seconds, 1) if self.seconds else 0.0,
                "ms_per_instance": ms(self.seconds / n), "cpu_ms_per_instance": ms(self.cpu_seconds / n),
                "start_ms_median": ms(statistics.median(self.starts)) if self.starts else None,
                "step_ms_median": ms(statistics.median(self.steps)) if self.steps else None,
                "step_ms_p95": ms(percentile(self.steps, 95)) if self.steps else None}


# (b)/(c) the engine -------------------------------------------------------------------------------
class EngineRig:
    """A migrated engine with roles, the scenario's users and its processes deployed; drives cases."""

    def __init__(self, scenario: Scenario, database_url: str, tmp: Path) -> None:
        from engine import ProcessEngine, Settings
        from engine.spiff.parsing import SourceFile

        self.scenario = scenario
        self.now = [datetime.fromisoformat(scenario.clock_start)] if scenario.clock_start else None
        settings = Settings(database_url=database_url, processes_dir=ROOT / "processes",
                            forms_dir=scenario.forms_dir, timezone="Asia/Shanghai", var_dir=tmp / "var")
        kwargs: dict[str, Any] = {"clock": lambda: self.now[0]} if self.now is not None else {}  # type: ignore[index]
        self.engine = ProcessEngine(settings, **kwargs)
        self.engine.migrate()
        self.engine.identity.seed_roles(ROOT / "processes" / "roles.json")
        self.actors = {name: self.engine.identity.add_user(name, roles) for name, roles in scenario.users.items()}
        if scenario.register:
            self.engine.configuration.import_items("bench", json.dumps(list(scenario.register), ensure_ascii=False),
                                                   "bench_items.json")
            numbered = {i.name: i.id for i in self.engine.configuration.list_items()}
            if numbered != {item["name"]: n for n, item in enumerate(scenario.register, start=1)}:
                raise RuntimeError(f"bench register numbered {numbered}, not in the scenario's order")
        if scenario.deploy_dir is not None:
            self.engine.repository.deploy_directory(scenario.deploy_dir, "bench")
        else:
            self.engine.repository.deploy([SourceFile(p.name, p.read_bytes())
                                           for p in (scenario.bpmn, *scenario.dmn)], "bench")
        self.database = describe_database(self.engine)
        self.cases = 0
        self.prepared: list[dict[str, Any]] = []  # Scenario.prepare's data, made ahead for the next cases

    def prepare_ahead(self, n: int) -> None:
        """Make the next `n` cases' prepared data now, so the loops that time whole cases leave it out."""
        if self.scenario.prepare is not None:
            self.prepared.extend(self.scenario.prepare(self) for _ in range(n))

    def run_case(self, around: Callable[[str, Callable[[], Any]], Any] | None = None,
                 after_step: Callable[[int], None] | None = None) -> int:
        """Start a case and drive it along the scenario's path to its end.

        `around(label, call)` wraps each engine call ("start", "timer", then each step's bpmn id)
        and must return call(); `after_step(case_id)` runs after the start and each step, unwrapped.
        """
        sc, eng = self.scenario, self.engine
        wrap = around or _call
        if self.now is not None:
            self.now[0] = datetime.fromisoformat(sc.clock_start)  # type: ignore[arg-type]
        starter = self.actors[sc.starter]
        prepared = (self.prepared.pop(0) if self.prepared else sc.prepare(self)) if sc.prepare is not None else {}
        case = wrap("start", lambda: eng.runtime.start(sc.process_id, starter, dict(sc.start_data)))
        case_id = case.id
        if after_step:
            after_step(case_id)
        pending: list[Any] = []  # open task rows of this case the engine has handed back
        looked_up = False
        for index, step in enumerate(sc.steps):
            task = self._pick(pending, step)
            if task is None and step.bpmn_id in sc.timers:
                if self.now is not None:
                    self.now[0] = datetime.fromisoformat(sc.timers[step.bpmn_id])
                fired = wrap("timer", lambda: eng.runtime.fire_due_timers())
                if case_id not in fired:
                    raise RuntimeError(f"engine {sc.name}: the timer before {step.bpmn_id!r} did not fire")
                looked_up = False
            if task is None and not looked_up:  # after the start and after a timer: the performer's inbox
                pending = [t for t in eng.tasks.inbox(self.actors[step.username], "all", process_id=sc.process_id)
                           if t.instance_id == case_id]
                looked_up = True
                task = self._pick(pending, step)
            if task is None:
                raise RuntimeError(f"engine {sc.name}: no open {step.bpmn_id!r} for {step.username}; "
                                   f"open: {sorted(t.bpmn_id for t in pending)}")
            pending.remove(task)
            actor = self.actors[step.username]
            data = {**step.data, **prepared} if index == 0 else dict(step.data)
            created = wrap(step.bpmn_id, lambda t=task, a=actor, d=data: eng.tasks.complete(t.id, a, d))
            pending.extend(created)
            if after_step:
                after_step(case_id)
        self.cases += 1
        return case_id

    @staticmethod
    def _pick(pending: list[Any], step: Step) -> Any:
        mine = [t for t in pending if t.bpmn_id == step.bpmn_id and t.assignee in (None, step.username)]
        return next((t for t in mine if t.assignee == step.username), mine[0] if mine else None)

    def completed_cases(self) -> int:
        from sqlalchemy import func, select

        from engine.storage.models import ProcessInstance

        with self.engine.ctx.db.transaction() as s:
            return s.scalar(select(func.count()).select_from(ProcessInstance).where(
                ProcessInstance.process_id == self.scenario.process_id, ProcessInstance.status == "completed")) or 0

    @contextmanager
    def count_statements(self) -> Iterator[list[str]]:
        """SQL statements sent to the database (first line of each) while the block runs."""
        from sqlalchemy import event

        seen: list[str] = []

        def listener(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            seen.append(statement.split("\n", 1)[0][:60])

        target = self.engine.ctx.db.engine
        event.listen(target, "before_cursor_execute", listener)
        try:
            yield seen
        finally:
            event.remove(target, "before_cursor_execute", listener)

    def close(self) -> None:
        self.engine.close()


class EngineSide:
    """One database's timed figures, accumulated over the rounds."""

    def __init__(self, rig: EngineRig) -> None:
        self.rig = rig
        self.starts: list[float] = []
        self.completes: list[float] = []
        self.timers: list[float] = []
        self.start_cpu: list[float] = []
        self.complete_cpu: list[float] = []
        self.by_task: dict[str, list[float]] = {}
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.instances = 0
        self.cold_case_ms: float | None = None

    def timed(self, label: str, call: Callable[[], Any]) -> Any:
        c0, t0 = time.thread_time(), time.perf_counter()
        result = call()
        seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
        if label == "start":
            self.starts.append(seconds)
            self.start_cpu.append(cpu)
        elif label == "timer":
            self.timers.append(seconds)
        else:
            self.completes.append(seconds)
            self.complete_cpu.append(cpu)
            self.by_task.setdefault(label, []).append(seconds)
        return result

    def warm(self, n: int) -> None:
        t0 = time.perf_counter()
        self.rig.run_case()  # the very first case: spec restored from the database, snippets compiled
        self.cold_case_ms = ms(time.perf_counter() - t0)
        for _ in range(max(0, n - 1)):
            self.rig.run_case()

    def run(self, n: int) -> None:
        self.rig.prepare_ahead(n)  # untimed: each change's test evidence
        c0, t0 = time.thread_time(), time.perf_counter()
        for _ in range(n):
            self.rig.run_case(around=self.timed)
        self.seconds += time.perf_counter() - t0
        self.cpu_seconds += time.thread_time() - c0
        self.instances += n

    def result(self) -> dict[str, Any]:
        """The timed figures, then one more (untimed) case: SQL statements per call and state sizes."""
        rig, n = self.rig, max(self.instances, 1)
        statements: dict[str, int] = {}
        sizes_seen: list[tuple[str, int]] = []
        with rig.count_statements() as seen:

            def counted(label: str, call: Callable[[], Any]) -> Any:
                before = len(seen)
                result = call()
                key = label if label not in statements else f"{label} #2"
                statements[key] = len(seen) - before
                return result

            rig.run_case(around=counted, after_step=lambda case_id: sizes_seen.append(state_bytes(rig.engine,
                                                                                                  case_id)))
        completed = rig.completed_cases()
        if completed != rig.cases:
            raise RuntimeError(f"engine {rig.scenario.name}: {rig.cases} cases driven, {completed} completed")
        running = [size for status, size in sizes_seen if status == "running"]
        return {
            "side": "engine", "database": rig.database, "instances": self.instances,
            "user_tasks": len(self.completes), "seconds": round(self.seconds, 4),
            "instances_per_s": round(self.instances / self.seconds, 1) if self.seconds else 0.0,
            "ms_per_instance": ms(self.seconds / n),
            "cpu_ms_per_instance": ms(self.cpu_seconds / n),
            "start_case_ms_median": ms(statistics.median(self.starts)),
            "start_case_ms_p95": ms(percentile(self.starts, 95)),
            "complete_task_ms_median": ms(statistics.median(self.completes)),
            "complete_task_ms_p95": ms(percentile(self.completes, 95)),
            "complete_task_ms_max": ms(max(self.completes)),
            "start_case_cpu_ms_median": ms(statistics.median(self.start_cpu)),
            "complete_task_cpu_ms_median": ms(statistics.median(self.complete_cpu)),
            "fire_due_timers_ms": summary_ms(self.timers) if self.timers else None,
            "complete_task_ms_median_by_task": {k: ms(statistics.median(v)) for k, v in self.by_task.items()},
            "first_case_cold_ms": self.cold_case_ms,
            "sql_statements_per_call": statements,
            "state_bytes_running_max": max(running, default=0),
            "state_bytes_by_step": [size for _status, size in sizes_seen],
        }


def compare(scenario: Scenario, databases: list[str], raw_n: int, engine_n: int, warmup: int, rounds: int,
            log: Callable[[str], None] = lambda _msg: None) -> dict[str, Any]:
    """Raw and every database's engine, alternating in `rounds`; each database fresh."""
    rounds = max(1, min(rounds, raw_n, engine_n))
    raw = RawRunner(scenario)
    with ExitStack() as stack:
        sides: dict[str, EngineSide] = {}
        for kind in databases:
            url, tmp = stack.enter_context(fresh_database(kind))
            rig = EngineRig(scenario, url, tmp)
            stack.callback(rig.close)
            sides[kind] = EngineSide(rig)
        raw.run(warmup, timed=False)
        for side in sides.values():
            side.warm(warmup)
        for r in range(rounds):
            raw.run(raw_n // rounds + (1 if r < raw_n % rounds else 0))
            for side in sides.values():
                side.run(engine_n // rounds + (1 if r < engine_n % rounds else 0))
            log(f"  {scenario.name}: round {r + 1}/{rounds} done ({', '.join(sides)})")
        raw_result = raw.result()
        out: dict[str, Any] = {"scenario": _describe(scenario), "rounds": rounds, "warmup": warmup,
                               "raw": raw_result}
        for kind, side in sides.items():
            result = side.result()
            result["engine_vs_raw_ratio"] = (round(result["instances_per_s"] / raw_result["instances_per_s"], 4)
                                             if raw_result["instances_per_s"] else None)
            out[kind] = result
    return out


def _describe(scenario: Scenario) -> dict[str, Any]:
    return {"process_id": scenario.process_id, "bpmn": str(scenario.bpmn.relative_to(ROOT)),
            "dmn": [str(p.relative_to(ROOT)) for p in scenario.dmn],
            "deployed": str(scenario.deploy_dir.relative_to(ROOT)) + "/" if scenario.deploy_dir else "bpmn + dmn",
            "forms": str(scenario.forms_dir.relative_to(ROOT)) + "/",
            "path": [f"{s.bpmn_id} ({s.username})" for s in scenario.steps],
            "timers": scenario.timers, "clock_start": scenario.clock_start,
            "start_data": scenario.start_data}


# profile ------------------------------------------------------------------------------------------
# Functions whose cumulative time per complete() call the profile summary reports: (label, file
# suffix or "~" for C functions, function name). Generator context managers (transaction, open)
# count only their own frames: set-up and tear-down, not the body of the `with`. A marker whose
# function no longer exists (the engine is being reworked) is simply left out.
PROFILE_MARKERS = (
    ("TaskService.complete (whole call)", "engine/tasks/service.py", "complete"),
    ("  db.transaction enter/exit (BEGIN, COMMIT, close)", "engine/storage/db.py", "transaction"),
    ("  _lock_open (SELECT task, lock case, refresh)", "engine/tasks/service.py", "_lock_open"),
    ("  CaseStore.open enter/exit (lock, cache take, flush)", "engine/cases/store.py", "open"),
    ("  _check (may-act, performers query)", "engine/tasks/service.py", "_check"),
    ("  identity.find (a user and its roles, ORM; all callers)", "engine/people/identity.py", "find"),
    ("    assignment.named_assignee (assigneeFrom)", "engine/definitions/assignment.py", "named_assignee"),
    ("    service tasks (RestrictedEnvironment.call_service)", "engine/spiff/sandbox.py", "call_service"),
    ("  field_errors (JSON Schema)", "engine/definitions/forms.py", "field_errors"),
    ("  spiff Task.run", "SpiffWorkflow/task.py", "run"),
    ("  run_engine (do_engine_steps)", "engine/cases/store.py", "run_engine"),
    ("  CaseStore.save", "engine/cases/store.py", "save"),
    ("    _sync_inbox (inbox rows)", "engine/cases/store.py", "_sync_inbox"),
    ("    _new_tasks (inbox rows)", "engine/cases/store.py", "_new_tasks"),
    ("    prune (completed tasks out of the state)", "engine/spiff/pruning.py", "prune"),
    ("    dump_state (state JSON)", "engine/spiff/serializer.py", "dump_state"),
    ("    load_state (state JSON, cache miss)", "engine/spiff/serializer.py", "load_state"),
    ("    _sync_subscriptions", "engine/cases/store.py", "_sync_subscriptions"),
    ("  audit.record", "engine/storage/audit.py", "record"),
    ("  SQLAlchemy commit (flush + COMMIT)", "sqlalchemy/orm/session.py", "commit"),
    ("  SQLAlchemy flush (every flush)", "sqlalchemy/orm/session.py", "flush"),
    ("  SQLAlchemy statement execution (all)", "sqlalchemy/engine/base.py", "_execute_context"),
    ("  sqlite3 Cursor.execute (driver)", "~", "<method 'execute' of 'sqlite3.Cursor' objects>"),
    ("  sqlite3 Connection.commit (driver)", "~", "<method 'commit' of 'sqlite3.Connection' objects>"),
    ("  psycopg Cursor.execute (driver)", "psycopg/cursor.py", "execute"),
)


def profile_complete(scenario: Scenario, kind: str, sizes: Sizes, top: int = 25) -> dict[str, Any]:
    """cProfile only the engine.tasks.complete calls; summary in ms per call plus a pstats listing."""
    with fresh_database(kind) as (url, tmp):
        rig = EngineRig(scenario, url, tmp)
        try:
            for _ in range(sizes.warmup):
                rig.run_case()
            profiler = cProfile.Profile()
            calls = 0

            def around(label: str, call: Callable[[], Any]) -> Any:
                nonlocal calls
                if label in ("start", "timer"):
                    return call()
                calls += 1
                profiler.enable()
                try:
                    return call()
                finally:
                    profiler.disable()

            for _ in range(sizes.profile_instances):
                rig.run_case(around=around)
            stats = pstats.Stats(profiler)
            raw = stats.stats  # type: ignore[attr-defined]
            total = sum(tt for (_cc, _nc, tt, _ct, _callers) in raw.values())
            summary: dict[str, float] = {}
            for label, file_suffix, func in PROFILE_MARKERS:
                cum = max((ct for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in raw.items()
                           if name == func and filename.replace(os.sep, "/").endswith(file_suffix)), default=0.0)
                if cum:
                    summary[label] = round(cum / calls * 1000, 3)
            listing = io.StringIO()
            pstats.Stats(profiler, stream=listing).strip_dirs().sort_stats("tottime").print_stats(top)
            return {"scenario": scenario.name, "database": rig.database, "complete_calls": calls,
                    "profiled_ms_per_call": round(total / calls * 1000, 3), "cumulative_ms_per_call": summary,
                    "top_by_own_time": listing.getvalue()}
        finally:
            rig.close()


def profile_report(profile: dict[str, Any]) -> str:
    lines = [f"cProfile of {profile['complete_calls']} engine.tasks.complete calls, {profile['scenario']} scenario, "
             f"on {profile['database']} (profiled time {profile['profiled_ms_per_call']} ms per call; the "
             f"profiler inflates it):", "cumulative ms per complete() call:"]
    width = max((len(k) for k in profile["cumulative_ms_per_call"]), default=10)
    lines += [f"  {k.ljust(width)}  {v:8.3f}" for k, v in profile["cumulative_ms_per_call"].items()]
    lines += ["", profile["top_by_own_time"].rstrip()]
    return "\n".join(lines)


# the part -----------------------------------------------------------------------------------------
def run(sizes: Sizes | None = None, databases: list[str] | None = None, profile: bool = False,
        log: Callable[[str], None] = lambda _msg: None, profile_database: str | None = None) -> dict[str, Any]:
    """The change scenario (the figures), then the access_request reference, then the optional profile."""
    sizes = sizes or Sizes()
    databases = databases or ["sqlite"]
    log(f"engine: change scenario, raw {sizes.raw_instances} instances vs engine {sizes.engine_instances} "
        f"cases on {' and '.join(databases)}, {sizes.rounds} alternating rounds ...")
    change = compare(CHANGE, databases, sizes.raw_instances, sizes.engine_instances, sizes.warmup, sizes.rounds, log)
    log(f"engine: access_request reference, raw {sizes.reference_raw} vs engine {sizes.reference_engine} ...")
    reference = compare(ACCESS_REQUEST, databases, sizes.reference_raw, sizes.reference_engine, sizes.warmup,
                        sizes.rounds, log)
    result: dict[str, Any] = {"change": change, "access_request": reference}
    if profile:
        kind = profile_database or databases[0]
        log(f"engine: profiling complete() over {sizes.profile_instances} change cases on {kind} ...")
        result["profile"] = profile_complete(CHANGE, kind, sizes)
    return result
