"""Sandboxed evaluation of BPMN conditions, scripts and timer expressions.

SpiffWorkflow's default engine is plain eval/exec with full builtins: a BPMN author would own the
server. Every snippet is compiled by RestrictedPython (cached per source text), attribute access
goes through guards that refuse dunder names, and only a curated set of builtins is visible.
"""

from __future__ import annotations

import ast
import builtins
import datetime as _datetime
import decimal
import functools
import importlib
import json
import time
import types
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from RestrictedPython import (
    RestrictingNodeTransformer,
    compile_restricted_eval,
    compile_restricted_exec,
    utility_builtins,
)
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
    safer_getattr,
)
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment

_EXTRA_BUILTINS = (
    "sum", "min", "max", "any", "all", "sorted", "enumerate", "zip", "dict", "list", "tuple",
    "map", "filter", "reversed", "set", "frozenset",
)
# str.format / format_map reach attributes through the format mini-language ("{0.__class__}").
_UNSAFE_STR_METHODS = frozenset({"format", "format_map"})
# The datetime module itself leaks `sys` (datetime.sys.modules["os"]): expose only its public API.
_DATETIME = types.SimpleNamespace(**{name: getattr(_datetime, name) for name in (
    "date", "datetime", "time", "timedelta", "timezone", "tzinfo", "UTC", "MINYEAR", "MAXYEAR")})
# Modules CPython's C code imports lazily through the caller's __import__ (date.today, strftime,
# strptime). Scripts cannot import at all (refused at compile time); only these internal imports pass.
_INTERNAL_IMPORTS = frozenset({"time", "_strptime"})


class ScriptPolicyError(Exception):
    """A snippet the sandbox refuses to compile or run."""


class BudgetExceeded(ScriptPolicyError):
    """An action went over one of its budgets; the message names the element and the setting."""


@dataclass(frozen=True)
class Budget:
    """What one action may spend (engine/config.py Settings: OPSFLOW_MAX_STEPS, _MAX_INSTANCES, _SCRIPT_TIMEOUT)."""

    max_steps: int = 2000
    max_instances: int = 1000
    script_timeout: float = 2.0

    @property
    def action_timeout(self) -> float:
        """Seconds an action's automatic steps may take in all: many scripts each under their own limit."""
        return self.script_timeout * 10


# The budget of the action running in this thread (set by the case store around engine steps).
BUDGET: ContextVar[Budget] = ContextVar("opsflow_budget", default=Budget())  # noqa: B039 (frozen)


class StepCounter:
    """Counts the automatic steps of one action; stops it past the step or time budget."""

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget or BUDGET.get()
        self.steps = 0
        self.deadline = time.monotonic() + self.budget.action_timeout

    def __call__(self, task: Any) -> None:
        self.steps += 1
        element = task.task_spec.bpmn_id or task.task_spec.name
        if self.steps > self.budget.max_steps:
            raise BudgetExceeded(
                f"element {element!r}: {self.budget.max_steps} automatic steps in one action without reaching "
                f"a wait state (OPSFLOW_MAX_STEPS); does a loop lack a user task, timer or message?")
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(
                f"element {element!r}: the action's automatic steps ran over {self.budget.action_timeout:g} s "
                f"(ten times OPSFLOW_SCRIPT_TIMEOUT)")


def _guarded_getattr(obj: Any, name: str, default: Any = None, getattr: Callable = getattr) -> Any:  # noqa: A002
    if isinstance(obj, str) and name in _UNSAFE_STR_METHODS:
        raise ScriptPolicyError(f"str.{name} is not allowed in BPMN expressions")
    value = safer_getattr(obj, name, default, getattr)
    if isinstance(value, types.ModuleType):  # a module reached through an attribute leads anywhere
        raise ScriptPolicyError(f"attribute {name!r} is a module, which BPMN expressions may not use")
    return value


def _internal_import(name: str, globals: Any = None, locals: Any = None,  # noqa: A002
                     fromlist: Any = (), level: int = 0) -> Any:
    if level == 0 and name in _INTERNAL_IMPORTS:
        return importlib.import_module(name)
    raise ImportError(f"importing {name!r} is not allowed in BPMN scripts")


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's policy, plus: no import statements (everything usable is already there)."""

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> Any:
        self.error(node, "import statements are not allowed; datetime, math, random and json_dumps "
                         "are available without importing")
        return node

    visit_ImportFrom = visit_Import


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    ops = {"+=": lambda: x + y, "-=": lambda: x - y, "*=": lambda: x * y, "/=": lambda: x / y,
           "//=": lambda: x // y, "%=": lambda: x % y, "|=": lambda: x | y, "&=": lambda: x & y}
    if op not in ops:
        raise ScriptPolicyError(f"operator {op} is not allowed")
    return ops[op]()


@functools.lru_cache(maxsize=8192)
def compile_snippet(source: str, mode: str) -> Any:
    """Compile restricted code once per distinct text; raise ScriptPolicyError with the reasons."""
    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    result = compiler(source, filename="<bpmn>", policy=_Policy)
    if result.errors:
        # Not a SyntaxError: SpiffWorkflow's formatter crashes on one without lineno.
        raise ScriptPolicyError("; ".join(result.errors))
    return result.code


def check_snippet(source: str, mode: str) -> str | None:
    """The reason a snippet would be refused, or None if it compiles under the sandbox."""
    try:
        compile_snippet(source, mode)
    except ScriptPolicyError as exc:
        return str(exc)
    except (SyntaxError, ValueError, TypeError) as exc:
        return str(exc)
    return None


def _sandbox_globals(functions: dict[str, Any]) -> dict[str, Any]:
    allowed = {**safe_builtins, **utility_builtins}
    allowed.update({name: getattr(builtins, name) for name in _EXTRA_BUILTINS})
    for name in ("setattr", "delattr", "getattr"):
        allowed.pop(name, None)
    allowed["__import__"] = _internal_import
    allowed["_getattr_"] = _guarded_getattr
    return {
        "__builtins__": allowed,
        "_getattr_": _guarded_getattr,
        "_getitem_": default_guarded_getitem,
        "_getiter_": default_guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": full_write_guard,
        "_inplacevar_": _inplacevar,
        "_print_": None,
        "datetime": _DATETIME,
        "Decimal": decimal.Decimal,
        "json_dumps": json.dumps,
        **functions,
    }


class RestrictedEnvironment(TaskDataEnvironment):
    """A TaskDataEnvironment that compiles with RestrictedPython instead of plain compile()."""

    def __init__(self, functions: dict[str, Any] | None = None,
                 services: dict[str, Callable[..., Any]] | None = None) -> None:
        super().__init__(_sandbox_globals(functions or {}))
        self.services = services or {}

    def evaluate(self, expression: str, context: dict, external_context: dict | None = None) -> Any:
        code = compile_snippet(expression, "eval")
        return eval(code, {**self.globals, **(external_context or {}), **context})  # noqa: S307 (restricted)

    def execute(self, script: str, context: dict, external_context: dict | None = None) -> bool:
        code = compile_snippet(script, "exec")
        self.check_for_overwrite(context, external_context or {})
        context.update({**self.globals, **(external_context or {})})
        try:
            exec(code, context)  # noqa: S102 (restricted)
        finally:
            self._remove_globals_and_functions_from_context(context, external_context)
        return True

    def call_service(self, context: dict, operation_name: str, operation_params: dict,
                     task_data: dict | None = None) -> str:
        service = self.services.get(operation_name)
        if service is None:
            raise ScriptPolicyError(f"unknown service {operation_name!r}")
        params = {name: spec["value"] for name, spec in operation_params.items()}
        return json.dumps(service(**params), default=str)


class ScriptEngine(PythonScriptEngine):
    """Spiff's engine with the call_service error path fixed (3.2 masks errors as NameError), and a
    multi-instance cardinality held to the budget before any instance is created."""

    def evaluate(self, task: Any, expression: str, external_context: dict | None = None) -> Any:
        value = super().evaluate(task, expression, external_context)
        if isinstance(value, int) and expression == getattr(task.task_spec, "cardinality", None):
            limit = BUDGET.get().max_instances
            if value > limit:
                raise BudgetExceeded(
                    f"element {task.task_spec.bpmn_id or task.task_spec.name!r}: multi-instance cardinality "
                    f"{value} is over the limit of {limit} instances (OPSFLOW_MAX_INSTANCES)")
        return value

    def call_service(self, task: Any, **kwargs: Any) -> Any:
        try:
            return self.environment.call_service(task.data, **kwargs)
        except Exception as exc:  # surfaced as itself, attached to the task
            raise WorkflowTaskException(
                f"service {kwargs.get('operation_name')!r} failed: {exc}", task=task, exception=exc
            ) from exc
