"""The sandbox's cost (issue 14): the same workloads through SpiffWorkflow's plain PythonScriptEngine
and through OpsFlow's sandboxed ScriptEngine, in one run, in alternating rounds.

    python -m bench.sandbox_bench [--quick] [--rounds 5]

Workloads, each timed on both sides, the ratio being sandbox time / raw time (1.10 = 10 % slower):

- change: processes/change.bpmn (DMN, scripts, pre/post scripts, service tasks, a multi-instance
  task, conditions) driven to its end in memory along the engine part's path (bench/engine_bench.py
  RawRunner). raw: PythonScriptEngine over a TaskDataEnvironment, no StepCounter, SpiffWorkflow's own
  ParallelMultiInstanceTask.create_children (the sandbox's multi-instance check swapped out for the
  raw rounds). sandbox: engine/spiff/sandbox.py ScriptEngine(RestrictedEnvironment) with the
  budgets at their defaults (sandbox.Budget()), a StepCounter per do_engine_steps, the check in.
  The services are RawServices on both sides.
- script: a BPMN script task looping 1,000 times (+=, *, %, an f-string with a format spec,
  list.append), then a str.join and len: one workflow per instance, start to end.
- condition: a gateway-like condition (comparisons, `in`, len) evaluated through
  script_engine.evaluate(task, ...) on one task, many times.
- engine: the change process through the whole engine on SQLite (start, 9 completes, the timer),
  three engines on fresh databases taking turns: "on" is the engine as shipped; "plain" has its
  ctx.script_engine replaced by a plain PythonScriptEngine with the same services and globals (no
  RestrictedPython, no budgets); "budgets_off" keeps the sandbox (RestrictedPython's compile and
  guards) with the budget hooks plain (without_budgets, budget_hooks_off: no deadline ticks, plain
  binops and f-string fields, built-in str/repr/sum/range/pow/json.dumps, no walk of the case data
  after a script, no StepCounter, no multi-instance check). During the plain and budgets_off
  rounds the module-level hooks are swapped back. All of it done by the bench on its own objects:
  production code has no switch to turn the budgets off. (ctx.environment's own evaluate for timer
  and retrieval expressions and return reasons is not on this path.)
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from bench.common import fresh_database, load_average, ms

# A script task: a loop of 1,000 rounds with arithmetic (checked binops), an f-string with a spec
# (_format_), list.append, then str.join (a checked str method); leaves `lines` (1,000 strings) in
# the data, which the sandbox walks after the script (rendered_size).
SCRIPT = """lines = []
total = 0
for i in range(1000):
    total += i * 3 % 7
    lines.append(f"{title}-{i:04d}: {total}")
summary = ", ".join(lines[-3:])
count = len(lines)"""
EXPECTED_SUMMARY = "bench-0997: 2993, bench-0998: 2998, bench-0999: 2999"
CONDITION = 'amount > 1000 and risk in ("high", "major") or len(systems) > 2 and not rollback_tested'
CONDITION_DATA = {"amount": 1500, "risk": "medium", "systems": ["a", "b", "c"], "rollback_tested": False,
                  "title": "bench"}

SCRIPT_BPMN = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="bench">
  <bpmn:process id="script_loop" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="loop" name="loop"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{SCRIPT}</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="loop" />
    <bpmn:sequenceFlow id="f2" sourceRef="loop" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>"""


@dataclass(frozen=True)
class Sizes:
    change: int = 1000        # change instances per side (Spiff in memory)
    script: int = 300         # script_loop workflows per side
    conditions: int = 20_000  # condition evaluations per side
    engine: int = 150         # change cases through the engine per side (SQLite)
    warmup: int = 10          # untimed first, every side
    rounds: int = 5

    @classmethod
    def quick(cls) -> Sizes:
        return cls(change=4, script=4, conditions=50, engine=2, warmup=1, rounds=1)


# the two script engines ---------------------------------------------------------------------------
def plain_engine(functions: dict[str, Any] | None = None,
                 services: dict[str, Callable[..., Any]] | None = None) -> Any:
    """SpiffWorkflow's PythonScriptEngine over a TaskDataEnvironment (eval/exec, no sandbox) with the
    script globals the sandbox gives (datetime, Decimal, json_dumps, the functions) and `services`."""
    import datetime as datetime_module
    import decimal

    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment

    calls = services or {}

    class Environment(TaskDataEnvironment):
        def call_service(self, context: dict, operation_name: str, operation_params: dict,
                         task_data: dict | None = None) -> str:
            params = {name: spec["value"] for name, spec in operation_params.items()}
            return json.dumps(calls[operation_name](**params), default=str)

    return PythonScriptEngine(environment=Environment(
        {"datetime": datetime_module, "Decimal": decimal.Decimal, "json_dumps": json.dumps, **(functions or {})}))


def sandbox_engine(services: dict[str, Callable[..., Any]] | None = None) -> Any:
    """OpsFlow's ScriptEngine as engine/context.py builds it."""
    from engine.spiff.sandbox import RestrictedEnvironment, ScriptEngine

    return ScriptEngine(environment=RestrictedEnvironment(None, services))


@contextmanager
def without_multi_instance_check() -> Iterator[None]:
    """SpiffWorkflow's own ParallelMultiInstanceTask.create_children while the block runs (the sandbox
    replaces it at import with one that checks OPSFLOW_MAX_INSTANCES first)."""
    from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import ParallelMultiInstanceTask

    from engine.spiff import sandbox

    patched = ParallelMultiInstanceTask.create_children
    ParallelMultiInstanceTask.create_children = sandbox._create_children
    try:
        yield
    finally:
        ParallelMultiInstanceTask.create_children = patched


class _NoCounter:
    def __init__(self, *_args: Any) -> None:
        pass

    def __call__(self, _task: Any) -> None:
        pass


@contextmanager
def budgets_off() -> Iterator[None]:
    """The engine's StepCounter a no-op and the multi-instance check out, while the block runs."""
    from engine.spiff import workflow

    counter = workflow.StepCounter
    workflow.StepCounter = _NoCounter  # type: ignore[misc, assignment]
    try:
        with without_multi_instance_check():
            yield
    finally:
        workflow.StepCounter = counter  # type: ignore[misc]


# a side: accumulated seconds over the rounds --------------------------------------------------------
class Side:
    def __init__(self, run_one: Callable[[], object], around: Callable[[], Any] | None = None) -> None:
        self.run_one = run_one
        self.around = around or ExitStack
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.n = 0

    def run(self, n: int, timed: bool = True) -> None:
        with self.around():
            c0, t0 = time.thread_time(), time.perf_counter()
            for _ in range(n):
                self.run_one()
            if timed:
                self.seconds += time.perf_counter() - t0
                self.cpu_seconds += time.thread_time() - c0
                self.n += n

    def figures(self, unit: str) -> dict[str, Any]:
        n = max(self.n, 1)
        return {unit: self.n, "seconds": round(self.seconds, 4), f"ms_per_{unit[:-1]}": ms(self.seconds / n),
                f"cpu_ms_per_{unit[:-1]}": ms(self.cpu_seconds / n)}


def alternate(sides: list[Side], n: int, warmup: int, rounds: int) -> int:
    """Warm every side, then let them take turns in `rounds`, n each in all; the rounds run."""
    rounds = max(1, min(rounds, n))
    for side in sides:
        side.run(warmup, timed=False)
    for r in range(rounds):
        count = n // rounds + (1 if r < n % rounds else 0)
        for side in sides:
            side.run(count)
    return rounds


def interleave(raw: Side, sandbox: Side, n: int, warmup: int, rounds: int, unit: str) -> dict[str, Any]:
    """Warm both, then raw and sandbox alternate in `rounds`; the ratio is of the totals."""
    rounds = alternate([raw, sandbox], n, warmup, rounds)
    return {"raw": raw.figures(unit), "sandbox": sandbox.figures(unit), "rounds": rounds, "warmup": warmup,
            "sandbox_vs_raw": round(sandbox.seconds / raw.seconds, 4) if raw.seconds else None,
            "sandbox_vs_raw_cpu": round(sandbox.cpu_seconds / raw.cpu_seconds, 4) if raw.cpu_seconds else None}


# the workloads --------------------------------------------------------------------------------------
def change_workload(sizes: Sizes) -> dict[str, Any]:
    from bench.engine_bench import CHANGE, RawRunner, RawServices

    raw = RawRunner(CHANGE)
    sandboxed = RawRunner(CHANGE, script_engine=sandbox_engine(RawServices(CHANGE).services()), count_steps=True)
    # RawRunner keeps its own clock and counts; one instance per call here, timed by Side.
    out = interleave(Side(lambda: raw.run(1, timed=False), without_multi_instance_check),
                     Side(lambda: sandboxed.run(1, timed=False)), sizes.change, sizes.warmup, sizes.rounds,
                     "instances")
    out["process"] = "processes/change.bpmn along bench/engine_bench.py CHANGE's path, in memory"
    return out


def _script_spec() -> tuple[Any, dict[str, Any]]:
    from lxml import etree
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser

    parser = SpiffBpmnParser()
    parser.add_bpmn_xml(etree.fromstring(SCRIPT_BPMN.encode("utf-8")), filename="script_loop.bpmn")
    return parser.get_spec("script_loop"), parser.get_subprocess_specs("script_loop")


def script_workload(sizes: Sizes) -> dict[str, Any]:
    from SpiffWorkflow.bpmn import BpmnWorkflow

    from engine.spiff.sandbox import StepCounter

    spec, subprocesses = _script_spec()
    raw_engine, safe_engine = plain_engine(), sandbox_engine()

    def one(engine: Any, counted: bool) -> Callable[[], None]:
        def run() -> None:
            workflow = BpmnWorkflow(spec, subprocesses, script_engine=engine)
            workflow.task_tree.data.update(title="bench")
            if counted:
                workflow.do_engine_steps(did_complete_task=StepCounter())
            else:
                workflow.do_engine_steps()
            data = workflow.data if workflow.completed else {}
            if data.get("count") != 1000 or data.get("summary") != EXPECTED_SUMMARY:
                raise RuntimeError(f"script_loop did not finish as expected: {data.get('summary')!r}")
        return run

    out = interleave(Side(one(raw_engine, False)), Side(one(safe_engine, True)), sizes.script, sizes.warmup,
                     sizes.rounds, "instances")
    out["script"] = SCRIPT
    return out


def condition_workload(sizes: Sizes) -> dict[str, Any]:
    from SpiffWorkflow.bpmn import BpmnWorkflow

    spec, subprocesses = _script_spec()
    engines = {"raw": plain_engine(), "sandbox": sandbox_engine()}
    tasks = {}
    for side, engine in engines.items():
        workflow = BpmnWorkflow(spec, subprocesses, script_engine=engine)
        task = workflow.task_tree
        task.data.update(CONDITION_DATA)
        tasks[side] = task

    def one(side: str) -> Callable[[], None]:
        engine, task = engines[side], tasks[side]

        def run() -> None:
            if engine.evaluate(task, CONDITION) is not True:
                raise RuntimeError("the condition did not hold")
        return run

    out = interleave(Side(one("raw")), Side(one("sandbox")), sizes.conditions, sizes.warmup * 10, sizes.rounds,
                     "evaluations")
    out["condition"] = CONDITION
    return out


def _plain_binop(op: str, left: Any, right: Any) -> Any:
    return OPERATORS[op](left, right)


def _plain_format(value: Any, conversion: int, spec: str) -> str:
    converted = {ord("r"): repr, ord("a"): ascii, ord("s"): str}.get(conversion)
    return format(converted(value) if converted else value, spec)


def _plain_inplacevar(op: str, x: Any, y: Any) -> Any:
    return INPLACE[op](x, y)


OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "**": operator.pow, "*": operator.mul, "<<": operator.lshift, "+": operator.add, "%": operator.mod}
INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.add, "-=": operator.sub, "*=": operator.mul, "/=": operator.truediv, "//=": operator.floordiv,
    "%=": operator.mod, "|=": operator.or_, "&=": operator.and_}


def without_budgets(environment: Any) -> None:
    """The sandbox of one engine with its budget hooks plain (its own globals, for good): no deadline
    ticks, plain **, *, <<, +, % and f-string fields, and the built-in str, repr, sum, range, pow and
    json.dumps. What stays: RestrictedPython's compile and guards (attribute, item and write guards,
    no imports, the curated builtins)."""
    env = environment.globals
    env["__builtins__"] = {**env["__builtins__"], "str": str, "repr": repr, "sum": sum, "range": range,
                           "pow": pow}
    env.update(_tick_=lambda: True, _binop_=_plain_binop, _format_=_plain_format, _inplacevar_=_plain_inplacevar,
               json_dumps=json.dumps)


@contextmanager
def budget_hooks_off() -> Iterator[None]:
    """While the block runs, the module-level budget checks of engine/spiff/ are plain: no StepCounter,
    no OPSFLOW_SCRIPT_TIMEOUT deadline set per snippet, no walk of the case data after a script
    (rendered_size), no multi-instance check."""
    from engine.spiff import sandbox

    saved = sandbox.rendered_size, sandbox.run_with_deadline
    sandbox.rendered_size = lambda _value, limit=0: 0
    sandbox.run_with_deadline = lambda run: run()
    try:
        with budgets_off():
            yield
    finally:
        sandbox.rendered_size, sandbox.run_with_deadline = saved


def engine_workload(sizes: Sizes, log: Callable[[str], None]) -> dict[str, Any]:
    """The change process through the engine on SQLite, three engines on fresh databases in turn: Spiff's
    plain script engine, the sandbox without its budget checks, the sandbox as shipped."""
    from bench.engine_bench import CHANGE, EngineRig

    with ExitStack() as stack:
        rigs: dict[str, EngineRig] = {}
        for side in ("plain", "budgets_off", "on"):
            url, tmp = stack.enter_context(fresh_database("sqlite", f"opsflow-sandbox-{side}-"))
            rigs[side] = EngineRig(CHANGE, url, tmp)
            stack.callback(rigs[side].close)
            rigs[side].prepare_ahead(sizes.warmup + sizes.engine)  # each change's test evidence, untimed
        plain = rigs["plain"].engine.ctx
        plain.script_engine = plain_engine(None, plain.environment.services)
        without_budgets(rigs["budgets_off"].engine.ctx.environment)
        sides = {"plain": Side(rigs["plain"].run_case, budgets_off),
                 "budgets_off": Side(rigs["budgets_off"].run_case, budget_hooks_off),
                 "on": Side(rigs["on"].run_case)}
        rounds = alternate(list(sides.values()), sizes.engine, sizes.warmup, sizes.rounds)
        for side, rig in rigs.items():
            completed = rig.completed_cases()
            if completed != rig.cases:
                raise RuntimeError(f"sandbox engine {side}: {rig.cases} cases driven, {completed} completed")
        log(f"  sandbox: engine plain / budgets off / on done ({sizes.engine} cases each)")
    out: dict[str, Any] = {name: side.figures("cases") for name, side in sides.items()}
    on = sides["on"]
    for name in ("plain", "budgets_off"):
        ref = sides[name]
        out[f"on_vs_{name}"] = round(on.seconds / ref.seconds, 4) if ref.seconds else None
        out[f"on_vs_{name}_cpu"] = round(on.cpu_seconds / ref.cpu_seconds, 4) if ref.cpu_seconds else None
    out.update(rounds=rounds, warmup=sizes.warmup, database="sqlite")
    return out


def run(sizes: Sizes | None = None, log: Callable[[str], None] = lambda _msg: None) -> dict[str, Any]:
    sizes = sizes or Sizes()
    load_start = load_average()
    log(f"sandbox: change x{sizes.change}, script x{sizes.script}, condition x{sizes.conditions}, "
        f"engine x{sizes.engine} per side, {sizes.rounds} alternating rounds ...")
    result: dict[str, Any] = {"change": change_workload(sizes)}
    log("  sandbox: change done")
    result["script"] = script_workload(sizes)
    result["condition"] = condition_workload(sizes)
    log("  sandbox: script and condition done")
    result["engine"] = engine_workload(sizes, log)
    result["load_average_1m"] = [load_start, load_average()]
    return result


def report(result: dict[str, Any]) -> list[str]:
    from bench.__main__ import fmt, render

    rows = []
    for name, unit in (("change", "instance"), ("script", "instance"), ("condition", "evaluation")):
        w = result[name]
        rows.append([f"{name} (Spiff, ms per {unit})", fmt(w["raw"][f"ms_per_{unit}"]),
                     fmt(w["sandbox"][f"ms_per_{unit}"]), fmt(w["sandbox_vs_raw"]), fmt(w["sandbox_vs_raw_cpu"])])
    e = result["engine"]
    rows.append(["change, engine SQLite, vs plain Spiff engine (ms per case)", fmt(e["plain"]["ms_per_case"]),
                 fmt(e["on"]["ms_per_case"]), fmt(e["on_vs_plain"]), fmt(e["on_vs_plain_cpu"])])
    rows.append(["change, engine SQLite, vs sandbox without budgets", fmt(e["budgets_off"]["ms_per_case"]),
                 fmt(e["on"]["ms_per_case"]), fmt(e["on_vs_budgets_off"]), fmt(e["on_vs_budgets_off_cpu"])])
    return render(["sandbox cost", "raw (ms)", "sandbox (ms)", "ratio", "CPU ratio"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.rounds:
        sizes = Sizes(sizes.change, sizes.script, sizes.conditions, sizes.engine, sizes.warmup, args.rounds)
    result = run(sizes, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print("\n".join(report(result)))
    print(f"load average (1 min) at start and end: {result['load_average_1m']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
