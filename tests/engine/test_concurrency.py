"""Two OS processes race to complete one task: exactly one wins, the other gets a conflict."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from engine import ProcessEngine
from tests.conftest import deploy_fixture, make_settings


def _complete(database_url: str, tmp: str, task_id: str, username: str, barrier, results) -> None:
    from engine.errors import OpsFlowError

    engine = ProcessEngine(make_settings(database_url, Path(tmp)))
    actor = engine.identity.get(username)
    barrier.wait()
    try:
        engine.tasks.complete(task_id, actor, {"decision": "approve"})
        results.put((username, "ok"))
    except OpsFlowError as exc:
        results.put((username, exc.code))
    finally:
        engine.close()


def test_two_processes_completing_one_task_one_succeeds_one_conflicts(engine: ProcessEngine, people,
                                                                      database_url: str, tmp_path: Path) -> None:
    deploy_fixture(engine, "two_lanes.bpmn")
    for round_no in range(3):
        case = engine.runtime.start("access_request", people["zhang"])
        request = next(t for t in engine.tasks.inbox(people["zhang"]) if t.instance_id == case.id)
        engine.tasks.complete(request.id, people["zhang"],
                              {"title": "并发", "system": "清算", "reason": "并发测试用例"})
        approval = next(t for t in engine.tasks.inbox(people["li"]) if t.instance_id == case.id)

        ctx = mp.get_context("spawn")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_complete, args=(database_url, str(tmp_path), approval.id, who, barrier, results))
                 for who in ("li", "zhou")]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes = sorted(results.get(timeout=5)[1] for _ in procs)
        assert outcomes == ["conflict", "ok"], f"round {round_no}: {outcomes}"
        detail = engine.runtime.show(case.id)
        assert detail.status == "completed"
        assert [e.action for e in detail.history].count("task.completed") == 2
    assert engine.audit.verify().ok
