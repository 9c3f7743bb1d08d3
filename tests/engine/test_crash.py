"""A process killed with SIGKILL mid-stream leaves every case consistent and the audit chain whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from engine import ProcessEngine
from engine.storage.models import HumanTask, ProcessInstance
from tests.conftest import ROOT, deploy_fixture

WORKER = """
import sys
from pathlib import Path
from engine import ProcessEngine
from tests.conftest import make_settings
engine = ProcessEngine(make_settings(sys.argv[1], Path(sys.argv[2])))
zhang, li = engine.identity.get("zhang"), engine.identity.get("li")
print("ready", flush=True)
while True:
    case = engine.runtime.start("access_request", zhang)
    task = next(t for t in engine.tasks.inbox(zhang, "mine") if t.instance_id == case.id)
    engine.tasks.complete(task.id, zhang, {"title": "崩溃测试", "system": "清算", "reason": "崩溃一致性"})
    approval = next(t for t in engine.tasks.inbox(li, "group") if t.instance_id == case.id)
    engine.tasks.complete(approval.id, li, {"decision": "approve"})
"""


def test_sigkill_mid_stream_leaves_cases_consistent(engine: ProcessEngine, people, database_url: str,
                                                   tmp_path: Path) -> None:
    deploy_fixture(engine, "two_lanes.bpmn")
    proc = subprocess.Popen([sys.executable, "-c", WORKER, database_url, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    with engine.ctx.db.transaction() as s:
        cases = list(s.scalars(select(ProcessInstance)))
        open_rows = {(t.instance_id, t.id) for t in s.scalars(select(HumanTask).where(HumanTask.state == "open"))}
    assert len(cases) >= 3, "the worker should have got through a few cases"
    engine.store.cache.clear()
    from SpiffWorkflow.util.task import TaskState

    for case in cases:
        workflow = engine.store.read(None, case)
        ready = {(case.id, str(t.id)) for t in workflow.get_tasks(state=TaskState.READY, manual=True)}
        assert ready == {row for row in open_rows if row[0] == case.id}, f"case {case.id} inbox out of step"
        assert (case.status == "completed") == workflow.completed
    assert engine.audit.verify().ok
    # and work carries on: every open task can still be completed
    for case in [c for c in cases if c.status == "running"]:
        for task in [t for t in engine.tasks.inbox(people["zhang"], "mine") if t.instance_id == case.id]:
            engine.tasks.complete(task.id, people["zhang"],
                                  {"title": "继续处理", "system": "清算", "reason": "恢复后继续"})
    assert engine.audit.verify().ok
