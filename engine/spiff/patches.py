"""Fixes for SpiffWorkflow 3.2.0 defects, applied once at import.

Task iteration stops at depth 1000, so a rework loop silently stalls after ~333 rounds
(spiffworkflow-notes §9.1). A case's tree depth is bounded by its history, not by 1000.
"""

from SpiffWorkflow.bpmn.util import task as _bpmn_task
from SpiffWorkflow.util import task as _core_task

UNBOUNDED_DEPTH = 10**9

# Signatures: (task, end_at_spec=None, max_depth=1000, depth_first=True, [skip_subprocesses=False,] task_filter=None)
_core_task.TaskIterator.__init__.__defaults__ = (None, UNBOUNDED_DEPTH, True, None)
_bpmn_task.BpmnTaskIterator.__init__.__defaults__ = (None, UNBOUNDED_DEPTH, True, False, None)
