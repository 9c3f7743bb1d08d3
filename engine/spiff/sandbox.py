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
import math
import random
import re
import resource
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
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import ParallelMultiInstanceTask

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


# What one value may weigh: strings, bytes and sequences over 16 MiB and integers over 100,000 bits
# (about 30,000 digits) are refused before they are built: 3**10**8 or [0]*10**9 would take the server.
MAX_BYTES = 16 * 1024 * 1024
MAX_INT_BITS = 100_000
MAX_ITEMS = MAX_BYTES // 8  # a sequence holds a pointer per item


class ScriptTimeout(BudgetExceeded):
    """A script or condition ran past OPSFLOW_SCRIPT_TIMEOUT."""


def _weight(value: Any) -> int:
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) * 8
    return 0


def _too_big(what: str) -> BudgetExceeded:
    return BudgetExceeded(f"{what} is over the sandbox's size limit (16 MiB, integers of {MAX_INT_BITS} bits)")


def rendered_size(value: Any, limit: int = MAX_BYTES) -> int:
    """About how many characters str(), repr() or JSON make of a value, counting shared references
    each time they are rendered ([s] * 10**6 renders s a million times). Stops once past the limit,
    so a nest of shared lists costs at most ~limit visits, never their expanded size."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1
        else:
            total += 8
        if total > limit:
            return total
    return total


def _check_rendered(what: str, *values: Any) -> None:
    if rendered_size(values) > MAX_BYTES:
        raise _too_big(what)


# %-format widths and precisions ('%*d', '%.999999999d') are sizes too.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent(template: str | bytes, args: Any) -> None:
    text = template if isinstance(template, str) else template.decode("latin-1")
    starred = False
    for width, precision in _PERCENT_SPEC.findall(text):
        for number in (width, precision):
            if number == "*":
                starred = True
            elif number and int(number) > MAX_BYTES:
                raise _too_big(f"a %-format width of {number}")
    values = args if isinstance(args, tuple) else (args,)
    if starred and any(isinstance(v, int) and abs(v) > MAX_BYTES for v in values):
        raise _too_big("a %-format * width")
    if len(text) + rendered_size(args) > MAX_BYTES:
        raise _too_big("the %-formatted text")


_SPEC_NUMBER = re.compile(r"\d+")


def _format_value(value: Any, conversion: int, spec: str) -> str:
    """One f-string field: the conversion (!s, !r, !a), then the format spec, sizes checked first."""
    if spec and any(int(n) > MAX_BYTES for n in _SPEC_NUMBER.findall(spec)):
        raise _too_big(f"an f-string width of {spec!r}")
    if not isinstance(value, int | float | str) and rendered_size(value) > MAX_BYTES:  # a str is its own size
        raise _too_big(f"an f-string field's {type(value).__name__}")
    if conversion == ord("r"):
        value = repr(value)
    elif conversion == ord("a"):
        value = ascii(value)
    elif conversion == ord("s"):
        value = str(value)
    return format(value, spec)


class _StrType(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, str)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, str)


class _Str(str, metaclass=_StrType):
    """The script's `str`: str(x) with the rendered size checked first; isinstance(x, str) as usual."""

    def __new__(cls, *args: Any, **kwargs: Any) -> str:  # type: ignore[misc]
        if args:
            _check_rendered(f"str() of a {type(args[0]).__name__}", args[0])
        return str(*args, **kwargs)


def _repr(value: Any) -> str:
    _check_rendered(f"repr() of a {type(value).__name__}", value)
    return repr(value)


def _json_dumps(value: Any, **options: Any) -> str:
    indent = options.get("indent")
    if isinstance(indent, int) and indent > 16 or isinstance(indent, str) and len(indent) > 16:
        raise _too_big(f"a JSON indent of {indent!r}")
    _check_rendered("the JSON text", value)
    return json.dumps(value, **options)


def _sum(items: Any, start: Any = 0) -> Any:
    """sum() of numbers as usual; of lists or tuples one checked + at a time (built-in sum of lists is
    quadratic, uninterruptible C)."""
    if isinstance(start, int | float | decimal.Decimal | complex):
        return sum(items, start)
    total = start
    for item in items:
        _tick()
        total = _binop("+", total, item)
    return total


def _listed(items: Any, already: int) -> list[Any]:
    """An iterable's items, refused once there are more than a sequence may hold (l.extend(x for x in l)
    would otherwise grow l until memory runs out)."""
    listed: list[Any] = []
    for item in items:
        listed.append(item)
        if already + len(listed) > MAX_ITEMS:
            raise _too_big(f"a sequence of over {MAX_ITEMS} items")
    return listed


class _SliceChecked:
    """What `l[a:b] = v` writes through: a list or bytearray grown by slice assignment is size-checked."""

    __slots__ = ("target",)

    def __init__(self, target: list[Any] | bytearray) -> None:
        self.target = target

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(key, slice):
            value = value if hasattr(value, "__len__") else _listed(value, len(self.target))
            if (len(self.target) + len(value)) * (8 if isinstance(self.target, list) else 1) > MAX_BYTES:
                raise _too_big(f"a {type(self.target).__name__} grown by slice assignment")
        self.target[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.target[key]


def _write(obj: Any) -> Any:
    return _SliceChecked(obj) if isinstance(obj, list | bytearray) else full_write_guard(obj)


def _checked_method(obj: Any, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """str/bytes/list methods whose result can outgrow their inputs, checked before they run."""

    def call(*args: Any, **kwargs: Any) -> Any:
        size = len(obj)
        if name in ("ljust", "rjust", "center", "zfill"):
            width = args[0] if args else kwargs.get("width", 0)
            if isinstance(width, int) and width > MAX_BYTES:
                raise _too_big(f"{type(obj).__name__}.{name}({width})")
        elif name == "expandtabs":
            tabsize = args[0] if args else kwargs.get("tabsize", 8)
            tabs = obj.count("\t" if isinstance(obj, str) else b"\t")
            if isinstance(tabsize, int) and size + tabs * tabsize > MAX_BYTES:
                raise _too_big(f"{type(obj).__name__}.expandtabs({tabsize})")
        elif name == "replace" and len(args) >= 2:
            old, new = args[0], args[1]
            count = args[2] if len(args) > 2 else kwargs.get("count", -1)
            found = obj.count(old) if len(old) else size + 1
            if isinstance(count, int) and count >= 0:
                found = min(found, count)
            if size + found * max(len(new) - len(old), 0) > MAX_BYTES:
                raise _too_big(f"{type(obj).__name__}.replace()")
        elif name == "join" and args:
            parts = _listed(args[0], 0)
            total = sum(len(p) for p in parts if isinstance(p, str | bytes | bytearray))
            if total + size * max(len(parts) - 1, 0) > MAX_BYTES:
                raise _too_big(f"{type(obj).__name__}.join()")
            return method(parts)
        elif name == "extend" and args:
            items = args[0] if hasattr(args[0], "__len__") else _listed(args[0], size)
            if (size + len(items)) * (8 if isinstance(obj, list) else 1) > MAX_BYTES:
                raise _too_big(f"{type(obj).__name__}.extend()")
            return method(items)
        return method(*args, **kwargs)

    return call


_GROWING_METHODS: dict[type, frozenset[str]] = {
    str: frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join"}),
    bytes: frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join"}),
    bytearray: frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join", "extend"}),
    list: frozenset({"extend"}),
}


def _binop(op: str, left: Any, right: Any) -> Any:
    """**, *, <<, + and % with the size of the result checked before it is computed."""
    ints = isinstance(left, int) and isinstance(right, int)
    if op == "**":
        if ints and right > 0 and abs(left) > 1 and right * left.bit_length() > MAX_INT_BITS:
            raise _too_big(f"{left}**{right}")
        return left**right
    if op == "*":
        if ints:
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise _too_big("the product")
        elif isinstance(right, int) and _weight(left) * right > MAX_BYTES:
            raise _too_big(f"a {type(left).__name__} repeated {right} times")
        elif isinstance(left, int) and _weight(right) * left > MAX_BYTES:
            raise _too_big(f"a {type(right).__name__} repeated {left} times")
        return left * right
    if op == "<<":
        if ints and left and right + left.bit_length() > MAX_INT_BITS:
            raise _too_big(f"{left} << {right}")
        return left << right
    if op == "%":
        if isinstance(left, str | bytes):
            _check_percent(left, right)
        return left % right
    if not ints and _weight(left) + _weight(right) > MAX_BYTES:  # +: a value doubled in a loop
        raise _too_big(f"a {type(left).__name__} of {_weight(left) + _weight(right)} bytes")
    return left + right


_BINOPS: dict[type, str] = {ast.Pow: "**", ast.Mult: "*", ast.LShift: "<<", ast.Add: "+", ast.Mod: "%"}


def _pow(base: Any, exp: Any, mod: Any = None) -> Any:
    return pow(base, exp, mod) if mod is not None else _binop("**", base, exp)


def _range(*args: int) -> range:
    found = range(*args)
    if len(found) > MAX_ITEMS:
        raise _too_big(f"a range of {len(found)} numbers")
    return found


# math and random without the calls whose cost has no bound (factorial(10**8), randbytes(10**10)).
_MATH = types.SimpleNamespace(**{name: getattr(math, name) for name in dir(math) if not name.startswith("_")
                                 and name not in ("factorial", "comb", "perm", "prod", "lcm")})
_RANDOM = types.SimpleNamespace(**{name: getattr(random, name) for name in (
    "random", "randint", "randrange", "choice", "uniform", "shuffle", "gauss")})


# The deadline of the snippet running in this thread; _tick_ (put by the compiler at the top of every
# loop body, comprehension and function) checks it. A bare except cannot swallow the timeout: the next
# tick, outside that try, raises again. C code is not interrupted; the size guards bound it instead.
_DEADLINE: ContextVar[float] = ContextVar("opsflow_script_deadline", default=float("inf"))


# What a loop may add to the process's peak memory, looked at every 16 ticks (getrusage, ~1 us):
# growth a size check cannot see (items appended one by one, a list grown through slices) is stopped
# long before the machine runs out. Peak, not current: memory the process once held is affordable.
MAX_GROWTH_KIB = 512 * 1024
_PEAK_AT_START: ContextVar[int] = ContextVar("opsflow_script_peak", default=0)
_ticks = 0


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _tick() -> bool:
    global _ticks  # noqa: PLW0603 (a sampling counter: exactness does not matter, speed does)
    if time.monotonic() > _DEADLINE.get():
        raise ScriptTimeout(f"ran over {BUDGET.get().script_timeout:g} s (OPSFLOW_SCRIPT_TIMEOUT)")
    _ticks += 1
    if not _ticks & 15 and _peak_kib() - _PEAK_AT_START.get() > MAX_GROWTH_KIB:
        raise BudgetExceeded(f"used over {MAX_GROWTH_KIB // 1024} MiB of memory in one script")
    return True


def run_with_deadline(run: Callable[[], Any]) -> Any:
    """Run a snippet under OPSFLOW_SCRIPT_TIMEOUT (measured: no cost for a snippet without loops)."""
    token = _DEADLINE.set(time.monotonic() + BUDGET.get().script_timeout)
    peak = _PEAK_AT_START.set(_peak_kib())
    try:
        return run()
    finally:
        _PEAK_AT_START.reset(peak)
        _DEADLINE.reset(token)


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
    if name in _GROWING_METHODS.get(type(obj), ()):
        return _checked_method(obj, name, value)
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

    def _ticking(self, node: Any, visit: str) -> Any:
        node = getattr(super(), visit)(node)
        node.body.insert(0, ast.Expr(ast.Call(func=ast.Name("_tick_", ast.Load()), args=[], keywords=[])))
        return ast.fix_missing_locations(node)

    def visit_While(self, node: ast.While) -> Any:
        return self._ticking(node, "visit_While")

    def visit_For(self, node: ast.For) -> Any:
        return self._ticking(node, "visit_For")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        return self._ticking(node, "visit_FunctionDef")

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        node: Any = super().visit_comprehension(node)  # type: ignore[no-redef]
        node.ifs.insert(0, ast.Call(func=ast.Name("_tick_", ast.Load()), args=[], keywords=[]))
        return ast.fix_missing_locations(node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
        """f"{x:>{n}}" goes through _format_, which checks the field's width and size first."""
        node: Any = super().visit_FormattedValue(node)  # type: ignore[no-redef]
        spec = node.format_spec or ast.Constant("")
        call = ast.Call(func=ast.Name("_format_", ast.Load()), args=[node.value, ast.Constant(node.conversion), spec],
                        keywords=[])
        return ast.fix_missing_locations(ast.copy_location(
            ast.FormattedValue(value=call, conversion=-1, format_spec=None), node))

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        """**, *, << and + go through _binop_, which checks the result's size before building it."""
        node: Any = super().visit_BinOp(node)  # type: ignore[no-redef]
        op = _BINOPS.get(type(node.op)) if isinstance(node, ast.BinOp) else None
        if op is None:
            return node
        call = ast.Call(func=ast.Name("_binop_", ast.Load()), args=[ast.Constant(op), node.left, node.right],
                        keywords=[])
        return ast.fix_missing_locations(ast.copy_location(call, node))


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": lambda x, y: _binop("+", x, y), "-=": lambda x, y: x - y, "*=": lambda x, y: _binop("*", x, y),
    "/=": lambda x, y: x / y, "//=": lambda x, y: x // y, "%=": lambda x, y: _binop("%", x, y),
    "|=": lambda x, y: x | y, "&=": lambda x, y: x & y}


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    run = _INPLACE.get(op)
    if run is None:
        raise ScriptPolicyError(f"operator {op} is not allowed")
    return run(x, y)


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
    allowed.update(pow=_pow, range=_range, math=_MATH, random=_RANDOM, str=_Str, repr=_repr, sum=_sum)
    return {
        "__builtins__": allowed,
        "_getattr_": _guarded_getattr,
        "_getitem_": default_guarded_getitem,
        "_getiter_": default_guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": _write,
        "_inplacevar_": _inplacevar,
        "_binop_": _binop,
        "_format_": _format_value,
        "_tick_": _tick,
        "_print_": None,
        "datetime": _DATETIME,
        "Decimal": decimal.Decimal,
        "json_dumps": _json_dumps,
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
        scope = {**self.globals, **(external_context or {}), **context}
        return run_with_deadline(lambda: eval(code, scope))  # noqa: S307 (restricted)

    def execute(self, script: str, context: dict, external_context: dict | None = None) -> bool:
        code = compile_snippet(script, "exec")
        self.check_for_overwrite(context, external_context or {})
        context.update({**self.globals, **(external_context or {})})
        try:
            run_with_deadline(lambda: exec(code, context))  # noqa: S102 (restricted)
        finally:
            self._remove_globals_and_functions_from_context(context, external_context)
        if rendered_size(context) > MAX_BYTES:  # [s] * 10**6 is small in memory, not once saved as JSON
            raise _too_big("the case data this script leaves")
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
        try:
            value = super().evaluate(task, expression, external_context)
        except WorkflowTaskException as exc:
            raise _over_budget(task, exc) or exc from exc
        if isinstance(value, int) and expression == getattr(task.task_spec, "cardinality", None):
            limit = BUDGET.get().max_instances
            if value > limit:
                raise BudgetExceeded(
                    f"element {task.task_spec.bpmn_id or task.task_spec.name!r}: multi-instance cardinality "
                    f"{value} is over the limit of {limit} instances (OPSFLOW_MAX_INSTANCES)")
        return value

    def execute(self, task: Any, script: str, external_context: dict | None = None) -> Any:
        try:
            return super().execute(task, script, external_context)
        except WorkflowTaskException as exc:
            raise _over_budget(task, exc) or exc from exc

    def call_service(self, task: Any, **kwargs: Any) -> Any:
        try:
            return self.environment.call_service(task.data, **kwargs)
        except Exception as exc:  # surfaced as itself, attached to the task
            raise WorkflowTaskException(
                f"service {kwargs.get('operation_name')!r} failed: {exc}", task=task, exception=exc
            ) from exc


def _check_instances(spec: Any, my_task: Any) -> None:
    """A parallel multi-instance over an input collection makes one task per item at once: the
    collection's length is held to OPSFLOW_MAX_INSTANCES like a cardinality."""
    if spec.data_input is None:
        return
    items = spec.data_input.get(my_task)
    limit = BUDGET.get().max_instances
    if hasattr(items, "__len__") and len(items) > limit:
        raise BudgetExceeded(
            f"element {spec.bpmn_id or spec.name!r}: multi-instance input {spec.data_input.bpmn_id!r} holds "
            f"{len(items)} items, over the limit of {limit} instances (OPSFLOW_MAX_INSTANCES)")


_create_children = ParallelMultiInstanceTask.create_children


def _create_children_within_budget(self: Any, my_task: Any) -> Any:
    _check_instances(self, my_task)
    return _create_children(self, my_task)


ParallelMultiInstanceTask.create_children = _create_children_within_budget


def _over_budget(task: Any, exc: WorkflowTaskException) -> BudgetExceeded | None:
    """A budget error Spiff wrapped, named by the element it stopped (None for other errors)."""
    cause = exc.__cause__ or exc.__context__  # Spiff raises its wrapper inside `except`: the budget error
    if not isinstance(cause, BudgetExceeded):
        return None
    return type(cause)(f"element {task.task_spec.bpmn_id or task.task_spec.name!r}: {cause}")
