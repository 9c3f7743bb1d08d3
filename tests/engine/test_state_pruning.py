"""History pruning: a case's stored state is bounded by what it is doing, not by what it has done.

Two kinds of test. Through the engine (SQLite, and PostgreSQL when configured): a rework loop's
stored state stays flat for 100 rounds, the case diagram still shows the steps pruned from the tree,
migration still judges them, and a state written before pruning existed is pruned on its next save.
Without the engine: each fixture process is driven side by side as plain SpiffWorkflow (never pruned,
never serialised) and through the codec after every action (pruned, on the live object and on a copy
restored from the JSON); users must see the same open tasks with the same data, the same waits,
the same completed steps and the same final data.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.specs.mixins.none_task import NoneTask
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.spiff.specs.event_definitions import MessageEventDefinition
from SpiffWorkflow.util.task import TaskState

from engine import ProcessEngine
from engine.spiff.parsing import SourceFile
from engine.spiff.patches import TIMER_CLOCK
from engine.spiff.pruning import pruned_bpmn_ids
from engine.spiff.sandbox import RestrictedEnvironment, ScriptEngine
from engine.spiff.serializer import WorkflowCodec
from engine.storage.models import ProcessInstance
from tests.conftest import FIXTURES, deploy_fixture


# through the engine ------------------------------------------------------------------------------
def stored(engine: ProcessEngine, case_id: int) -> str:
    with engine.ctx.db.transaction() as s:
        row = s.get(ProcessInstance, case_id)
        assert row is not None
        return row.state


def fix_round(engine: ProcessEngine, person: Any, again: bool) -> None:
    task = engine.tasks.inbox(person)[0]
    assert task.bpmn_id == "fix"
    engine.tasks.complete(task.id, person, {"defects_remaining": again})


def test_rework_loop_state_stays_flat_for_100_rounds(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "loop.bpmn")
    wang = people["wang"]
    case = engine.runtime.start("rework_loop", wang, {"target": 3, "rounds": 0})
    sizes = [len(stored(engine, case.id).encode())]
    for n in range(100):
        if n % 10 == 5:
            engine.store.cache.clear()  # every tenth round starts from the row, not the cached workflow
        fix_round(engine, wang, again=True)
        sizes.append(len(stored(engine, case.id).encode()))
    assert max(sizes[2:]) - min(sizes[2:]) <= 64, sizes  # flat, while every round used to add ~0.7 KB
    assert sizes[100] <= sizes[2] + 64
    detail = engine.runtime.show(case.id)
    assert [t.bpmn_id for t in detail.open_tasks] == ["fix"] and detail.data["rounds"] == 3
    fix_round(engine, wang, again=False)
    done = engine.runtime.show(case.id)
    assert done.status == "completed" and done.data["defects_remaining"] is False
    completions = [e for e in done.history if e.action == "task.completed"]
    assert len(completions) == 101  # the history users see is the audit trail, untouched


def test_case_diagram_shows_the_steps_pruned_from_the_tree(engine: ProcessEngine, people) -> None:
    deploy_fixture(engine, "loop.bpmn")
    wang = people["wang"]
    case = engine.runtime.start("rework_loop", wang, {"target": 2, "rounds": 0})
    for _ in range(3):
        fix_round(engine, wang, again=True)
    state = json.loads(stored(engine, case.id))
    in_tree = {t["task_spec"] for t in state["tasks"].values()}
    assert "rework" not in in_tree and "check" not in in_tree  # pruned: only their names remain
    assert {"rework", "check"} <= set(state["pruned"])
    with engine.ctx.db.transaction() as s:
        row = s.get(ProcessInstance, case.id)
        assert row is not None
        cached = engine.store.cache.take(case.id, row.revision)  # the pruned live workflow, kept by the save
        assert cached is not None and engine.ctx.codec.dump_state(cached[0]) == row.state
    progress = engine.progress(case.id)
    assert progress.completed == ["again", "check", "rework", "start"]
    assert progress.active == ["fix"]
    fix_round(engine, wang, again=False)
    assert engine.progress(case.id).completed == ["again", "check", "end", "fix", "rework", "start"]


def driver(engine: ProcessEngine, person: Any, case_id: int) -> Any:
    """Claim and complete the case's open task `bpmn_id`; returns the open tasks after it, by id."""
    def do(bpmn_id: str, data: dict[str, Any] | None = None) -> list[str]:
        task = next(t for t in engine.runtime.show(case_id).open_tasks if t.bpmn_id == bpmn_id)
        engine.tasks.claim(task.id, person)
        engine.tasks.complete(task.id, person, data or {})
        return sorted(t.bpmn_id for t in engine.runtime.show(case_id).open_tasks)
    return do


def test_parallel_join_in_a_loop_waits_for_every_branch_of_the_new_round(engine: ProcessEngine, people) -> None:
    """SpiffWorkflow 3.2 alone counts the last round's branches: c first in round 2 would fire the join."""
    deploy_fixture(engine, "pruning_gateways.bpmn")
    case = engine.runtime.start("prune_parallel_loop", people["wang"], {})
    do = driver(engine, people["wang"], case.id)
    assert [do("a"), do("b"), do("c")] == [["b", "c"], ["c"], ["review"]]
    assert do("review", {"again": True}) == ["a", "b", "c"]
    assert [do("c"), do("a")] == [["a", "b"], ["b"]]  # the join still waits for b
    assert do("b") == ["review"]
    assert do("review", {"again": False}) == []
    assert engine.runtime.show(case.id).status == "completed"


def test_inclusive_join_in_a_loop_waits_for_every_branch_of_the_new_round(engine: ProcessEngine, people) -> None:
    """SpiffWorkflow 3.2 alone lets an inclusive join fire on the first branch of every later round."""
    deploy_fixture(engine, "pruning_gateways.bpmn")
    case = engine.runtime.start("prune_inclusive_loop", people["wang"], {})
    do = driver(engine, people["wang"], case.id)
    for _ in range(2):
        assert do("i_choose", {"want_x": True, "want_y": True}) == ["i_x", "i_y"]
        assert do("i_x") == ["i_y"]
        assert do("i_y") == ["i_review"]
        assert do("i_review", {"again": True}) == ["i_choose"]
    assert do("i_choose", {"want_x": False, "want_y": False}) == ["i_review"]  # the default: z, a script
    assert engine.runtime.show(case.id).data["z_done"] is True


def test_migration_still_refuses_a_change_to_a_completed_step_pruned_from_the_tree(
        engine: ProcessEngine, people) -> None:
    owner = engine.identity.add_user("owner", ["process_owner"], password="Kunlun-2026-pw")
    v1 = (FIXTURES / "loop.bpmn").read_text(encoding="utf-8")
    engine.repository.deploy([SourceFile("loop.bpmn", v1.encode())], "owner")
    wang = people["wang"]
    case = engine.runtime.start("rework_loop", wang, {"target": 1, "rounds": 0})
    fix_round(engine, wang, again=True)
    assert "rework" in json.loads(stored(engine, case.id))["pruned"]
    v2 = v1.replace("rounds = rounds + 1", "rounds = rounds + 2")  # behind the case: it has run `rework`
    engine.repository.deploy([SourceFile("loop.bpmn", v2.encode())], "owner")
    [report] = engine.migration.migrate(owner, "rework_loop", dry_run=True)
    assert not report.ok
    assert report.reason == "step 'rework' (自动返工), which the case has completed, was changed"
    v3 = v1.replace('<bpmn:endEvent id="end">', '<bpmn:endEvent id="end" name="结束">')  # ahead of it
    engine.repository.deploy([SourceFile("loop.bpmn", v3.encode())], "owner")
    [moved] = engine.migration.migrate(owner, "rework_loop", to_version=3, dry_run=False)
    assert moved.migrated
    assert engine.progress(case.id).completed == ["again", "check", "rework", "start"]
    fix_round(engine, wang, again=False)
    assert engine.runtime.show(case.id).status == "completed"


def test_a_state_saved_before_pruning_is_pruned_on_its_next_save(engine: ProcessEngine, people,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    deploy_fixture(engine, "loop.bpmn")
    wang = people["wang"]
    codec = engine.ctx.codec
    with monkeypatch.context() as m:  # an engine from before history pruning
        m.setattr(codec, "dump_state", functools.partial(codec.dump_state, prune_history=False))
        case = engine.runtime.start("rework_loop", wang, {"target": 5, "rounds": 0})
        for _ in range(20):
            fix_round(engine, wang, again=True)
    old = stored(engine, case.id)
    assert "pruned" not in json.loads(old)
    engine.store.cache.clear()
    before = engine.progress(case.id)
    fix_round(engine, wang, again=True)
    assert len(stored(engine, case.id)) < len(old) / 4
    after = engine.progress(case.id)
    assert (after.completed, after.active) == (before.completed, before.active)
    assert engine.runtime.show(case.id).data["rounds"] == 5


# without the engine: plain SpiffWorkflow against pruned and restored copies --------------------
ENGINE = ScriptEngine(environment=RestrictedEnvironment())
CODEC = WorkflowCodec(UTC)
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Run:
    """One way of running a process: plain (never saved), pruned (live object) or restored (from JSON)."""

    def __init__(self, spec: Any, subprocess_specs: dict[str, Any], mode: str, data: dict[str, Any]) -> None:
        self.spec, self.subprocess_specs, self.mode = spec, subprocess_specs, mode
        self.now = START
        self.sizes: list[int] = []
        self.workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=ENGINE)
        self.workflow.task_tree.data.update(data)
        self._settle()

    def _clocked(self, call: Any) -> Any:
        token = TIMER_CLOCK.set(lambda: self.now)
        try:
            return call()
        finally:
            TIMER_CLOCK.reset(token)

    def _settle(self, refresh: bool = False) -> None:
        """Engine steps as engine/cases/store.py runs them, then a save (except in plain mode)."""
        wf = self.workflow

        def steps() -> None:
            if refresh:
                wf.refresh_timers()
            wf.do_engine_steps()
            while abstract := [t for t in wf.get_tasks(state=TaskState.READY, manual=True)
                               if isinstance(t.task_spec, NoneTask)]:
                for task in abstract:
                    task.run()
                wf.do_engine_steps()

        self._clocked(steps)
        text = CODEC.dump_state(wf, prune_history=self.mode != "plain")
        self.sizes.append(len(text))
        if self.mode == "restored":
            assert CODEC.dump_state(wf) == text  # a second save finds nothing more to prune
            self.workflow = CODEC.load_state(text, self.spec, self.subprocess_specs, ENGINE)
            assert CODEC.dump_state(self.workflow) == text  # restoring and saving again changes nothing

    def ready(self, bpmn_id: str | None = None) -> list[Any]:
        return [t for t in self.workflow.get_tasks(state=TaskState.READY, manual=True)
                if bpmn_id is None or t.task_spec.bpmn_id == bpmn_id]

    def complete(self, bpmn_id: str, data: dict[str, Any], index: int = 0) -> None:
        task = self.ready(bpmn_id)[index]
        task.set_data(**data)
        self._clocked(task.run)
        self._settle()

    def message(self, name: str, payload: dict[str, Any]) -> None:
        self._clocked(lambda: self.workflow.send_event(BpmnEvent(MessageEventDefinition(name), payload=payload)))
        self._settle()

    def advance(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)
        self._settle(refresh=True)

    def cancel(self) -> None:
        self.workflow.cancel()
        self._settle()

    def view(self) -> dict[str, Any]:
        """What users see: open tasks with their data, waits, completed steps, the case's data."""
        wf = self.workflow
        done = {t.task_spec.bpmn_id for t in wf.get_tasks() if t.state == TaskState.COMPLETED} - {None}
        return {
            "open": [(t.task_spec.name, CODEC.to_plain(dict(t.data))) for t in self.ready()],
            "waiting": sorted((e.name, e.event_type, str(e.value)) for e in wf.waiting_events()),
            "steps_done": sorted(done | pruned_bpmn_ids(wf)),
            "completed": wf.completed,
            "data": CODEC.to_plain(dict(wf.data)),
            "last": CODEC.to_plain(dict(wf.last_task.data)) if wf.last_task is not None else None,
        }


def drive(file: str, process_id: str, script: list[tuple[Any, ...]], data: dict[str, Any] | None = None,
          ) -> dict[str, Run]:
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_bpmn_files([str(FIXTURES / file)])
    spec, subs = parser.get_spec(process_id), parser.get_subprocess_specs(process_id)
    runs = {mode: Run(spec, subs, mode, dict(data or {})) for mode in ("plain", "pruned", "restored")}
    for step, (action, *args) in enumerate(script):
        views = {}
        for mode, run in runs.items():
            getattr(run, action)(*args)
            views[mode] = run.view()
        assert views["pruned"] == views["plain"], f"step {step} {action}{args}: pruned differs"
        assert views["restored"] == views["plain"], f"step {step} {action}{args}: restored differs"
    return runs


def rounds(n: int, *actions: Any) -> list[tuple[Any, ...]]:
    """The same actions n times; a callable action is called with the round number."""
    return [a(r) if callable(a) else a for r in range(n) for a in actions]


def again(r: int, last: int) -> dict[str, Any]:
    return {"again": r < last, "round": r}


def flat(sizes: list[int], period: int, slack: int = 64) -> bool:
    """The same point of every round after the first saves within `slack` bytes of each other."""
    points = sizes[period::period]
    return max(points) - min(points) <= slack


def test_parallel_loop_behaves_as_before_and_stays_flat() -> None:
    runs = drive("pruning_gateways.bpmn", "prune_parallel_loop", rounds(
        6, ("complete", "a", {"va": 1}), ("complete", "b", {"vb": 2}), ("complete", "c", {"vc": 3}),
        lambda r: ("complete", "review", again(r, 5))))
    assert runs["plain"].workflow.completed
    assert flat(runs["restored"].sizes[:-1], 4)
    assert runs["restored"].sizes[-2] < runs["plain"].sizes[-2] / 3


def test_join_fed_back_by_its_own_loop_behaves_as_before() -> None:
    """SpiffWorkflow credits the first input of such a join from history (SpiffWorkflow #341)."""
    runs = drive("pruning_gateways.bpmn", "prune_join_back_loop", rounds(
        8, lambda r: ("complete", "j_work", again(r, 7))))
    assert runs["plain"].workflow.completed
    assert flat(runs["restored"].sizes[1:-1], 1)


def test_event_gateway_loop_behaves_as_before() -> None:
    runs = drive("pruning_gateways.bpmn", "prune_event_gateway_loop", rounds(
        4, lambda r: ("message", "ping", {"n": r}), ("complete", "e_handle", {"again": True}),
        ("advance", 61), lambda r: ("complete", "e_late", again(r, 3))))
    assert runs["plain"].workflow.data["ping"] == {"n": 3}
    assert flat(runs["restored"].sizes[:-1], 4)


def test_multi_instance_loop_behaves_as_before() -> None:
    def votes(r: int) -> list[tuple[Any, ...]]:  # round 1 is vetoed by its first voter
        first = [("complete", "m_par", {"vote": "yes"}, 1),
                 ("complete", "m_par", {"vote": "veto" if r == 1 else "yes"})]
        return first + ([] if r == 1 else [("complete", "m_par", {"vote": "yes"})])

    script = []
    for r in range(4):
        script += [("complete", "m_seq", {"ack": f"ok{r}{i}"}) for i in range(3)]
        script += votes(r) + [("complete", "m_review", again(r, 3))]
    runs = drive("pruning_activities.bpmn", "prune_mi_loop", script, {"rounds": 0})
    assert runs["plain"].workflow.data["rounds"] == 4
    sizes = runs["restored"].sizes  # rounds 3 and 4 (seven steps each) save the same sizes step by step
    assert all(abs(a - b) <= 64 for a, b in zip(sizes[14:20], sizes[21:27], strict=True)), sizes


def test_boundary_event_loop_behaves_as_before() -> None:
    runs = drive("pruning_activities.bpmn", "prune_boundary_loop", rounds(
        4, ("advance", 90), lambda r: ("message", "note", {"text": f"n{r}"}),
        lambda r: ("complete", "b_chase", {"chased": r}), ("complete", "b_work", {"again": True}),
        ("advance", 30), ("message", "abort", {}), lambda r: ("complete", "b_aborted", again(r, 3))),
        {"notes": []})
    assert runs["plain"].workflow.data["chased"] == 3  # from a side branch, merged in at the end
    # What stays per round is the end-join bookkeeping of the two side branches that ended (an end
    # event and a cancelled join each): SpiffWorkflow merges their data into the case's at the end.
    growth = [b - a for a, b in zip(runs["restored"].sizes[6:-1:7], runs["restored"].sizes[13:-1:7], strict=False)]
    assert all(g < 2000 for g in growth), growth
    assert runs["restored"].sizes[-2] < runs["plain"].sizes[-2] / 2


def test_subprocess_and_call_activity_loop_behaves_as_before() -> None:
    runs = drive("pruning_activities.bpmn", "prune_subprocess_loop", rounds(
        3, ("complete", "s_inner", {"outcome": "help"}), lambda r: ("complete", "s_help", {"helped": r}),
        ("complete", "s_inner_after", {}), lambda r: ("complete", "c_task", {"c": r, "again": True}),
        ("complete", "s_inner", {"outcome": "fail"}), ("complete", "s_handle_failure", {"again": True}),
        lambda r: ("complete", "c_task", again(r, 2))), {"calls": 0})
    assert runs["plain"].workflow.data["calls"] == 6
    assert len(runs["restored"].workflow.subprocesses) == 0 and len(runs["plain"].workflow.subprocesses) == 12
    assert runs["restored"].sizes[-2] < runs["plain"].sizes[-2] / 3


def test_cycle_timer_reminders_behave_as_before() -> None:
    runs = drive("pruning_activities.bpmn", "prune_cycle", rounds(
        12, ("advance", 61), lambda r: ("complete", "y_report", {f"report_{r}": r})) + [
        ("complete", "y_wait", {"recovered": True})])
    assert runs["plain"].workflow.data["report_0"] == 0  # reminder branches' data reaches the case's
    # Each reminder leaves three tasks of four: SpiffWorkflow's own waiting boundary join (active) and
    # the end-join bookkeeping of the finished branch; only the branch's steps go.
    assert runs["restored"].sizes[-2] < runs["plain"].sizes[-2]


def test_cancelling_a_pruned_case_behaves_as_before() -> None:
    runs = drive("pruning_gateways.bpmn", "prune_parallel_loop", rounds(
        2, ("complete", "a", {}), ("complete", "b", {}), ("complete", "c", {}),
        ("complete", "review", {"again": True})) + [("complete", "b", {}), ("cancel",)])
    assert all(run.workflow.completed and not run.ready() for run in runs.values())
