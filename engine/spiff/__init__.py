"""The one place where OpsFlow talks to SpiffWorkflow.

Everything else in `engine/` speaks in definitions, cases and tasks; this package owns the parser,
the sandboxed script engine, the state-only serializer (which prunes the task history a case no
longer needs, pruning.py) and the patches for SpiffWorkflow 3.2 bugs.
"""

from engine.spiff import patches as _patches  # noqa: F401  (applied on import)
