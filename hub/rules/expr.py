"""The rule engine's safe expression language and its ``{{ expression }}`` templates.

Expressions are Python-like (``states('sensor.t') > 20 and trigger.to == 'on'``) and are
evaluated by simpleeval over an AST that is parsed and checked once, at compile time; nothing
ever reaches Python's ``eval``/``exec``. The compile-time check allows only a small set of
syntax: literals, names, operators, ``x if c else y``, subscripts, attribute reads, calls of
the functions below and of a few harmless methods. Lambdas, comprehensions, f-strings, ``:=``,
unpacking, bit operators and private (``_``) names or attributes are refused with their
offset, as are unknown function names ("did you mean ...").

Names: the rule's variables plus ``trigger``, ``wait``, ``repeat`` and ``this`` (plain dicts;
``trigger.to`` and ``trigger['to']`` are the same). ``trigger.from`` works although ``from``
is a Python keyword: before parsing, an attribute that is a keyword (``.from``) is rewritten to
the same name plus ``_`` (``.from_``), and an attribute ``kw_`` on a dict reads key ``kw``
when the dict has no ``kw_`` key. So ``trigger.from``, ``trigger.from_`` and
``trigger['from']`` all work. Offsets in errors always refer to the text as written.

Datetimes: ``now()`` and ``today_at('22:00')`` are aware local datetimes; they compare with
each other, ``datetime +/- seconds`` is a datetime, ``datetime - datetime`` is seconds (a
float), and only ``hour minute second day month year weekday() isoweekday() timestamp()`` can
be read from them.

Limits: text and lists built with ``+``, ``*``, ``.replace()`` and ``.join()`` stay under
``MAX_SIZE`` (simpleeval's ``MAX_STRING_LENGTH``) characters or items (for ``*``, nested items
count), integer powers under ``MAX_POWER_BITS`` bits, source text under
``MAX_EXPRESSION_LENGTH`` characters, nesting under ``MAX_DEPTH`` levels. Any failure while
evaluating (a type mismatch, a missing key, division by zero, a limit) is raised as
:class:`ExpressionError` with a plain message naming the expression, never as a bare Python
exception.

Compiling is cached by text; a compiled Expression keeps its checked AST and every evaluation
walks that AST (about 4 µs for a typical condition), on a per-thread evaluator.

In a mixed template (text with ``{{ }}`` parts) ``None`` renders as ``unknown`` and every other
value as ``str(value)``; a template that is exactly one ``{{ expression }}`` returns the value
itself, with its type.
"""

from __future__ import annotations

import ast
import bisect
import difflib
import functools
import inspect
import io
import keyword
import operator
import re
import threading
import tokenize
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import simpleeval  # type: ignore[import-untyped]

from hub.model import Context, Origin, State

MAX_EXPRESSION_LENGTH = 4000
MAX_DEPTH = 100
MAX_SIZE: int = simpleeval.MAX_STRING_LENGTH
MAX_POWER_BITS = 4096

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_POWER_BITS",
    "MAX_SIZE",
    "Expression",
    "ExpressionError",
    "Scope",
    "SimpleScope",
    "Template",
    "compile_expression",
    "compile_template",
    "render_value",
    "validate_expression",
    "validate_template",
]


class ExpressionError(Exception):
    """An expression or template is invalid, or failed while being evaluated."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset  # 0-based character offset in the source text, if known

    def __reduce__(self) -> tuple[type[ExpressionError], tuple[str, int | None]]:
        return ExpressionError, (self.message, self.offset)

    def shifted(self, by: int) -> ExpressionError:
        """Return the same error with its offset moved by ``by`` (an expression in a template)."""
        return ExpressionError(self.message, None if self.offset is None else self.offset + by)


class Scope(Protocol):
    """What an expression can see: entity states, the clock and the run's variables."""

    def state(self, entity_id: str) -> State | None:
        """Return the entity's current state, or None if it is unknown; for a group
        (``group:<id>`` or a bare id) its aggregated state, as group triggers see it."""
        ...

    def now(self) -> datetime:
        """Return the current timezone-aware local time."""
        ...

    @property
    def variables(self) -> Mapping[str, Any]:
        """The rule variables plus ``trigger``, ``wait``, ``repeat`` and ``this``."""
        ...


class SimpleScope:
    """A fixed scope: states from a dict, a fixed ``now`` and variables (tests, rule tests).

    A state may be given as a :class:`State`, as ``{"state": value, <attribute>: value}`` or as
    a bare value.
    """

    def __init__(
        self,
        states: Mapping[str, Any] | None = None,
        now: datetime | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        moment = now if now is not None else datetime(2026, 1, 5, 12, 0)
        # a naive time is read as local time, so that ``now()`` is always aware
        self._now = moment if moment.tzinfo is not None else moment.astimezone()
        self.variables: dict[str, Any] = dict(variables or {})
        self.states: dict[str, State] = {
            entity_id: self._as_state(entity_id, value)
            for entity_id, value in (states or {}).items()
        }

    def _as_state(self, entity_id: str, value: Any) -> State:
        if isinstance(value, State):
            return value
        attributes: dict[str, Any] = {}
        if isinstance(value, Mapping):
            attributes = {k: v for k, v in value.items() if k != "state"}
            value = value.get("state")
        stamp = self._now.timestamp()
        return State(
            entity_id=entity_id,
            value=value,
            attributes=attributes,
            last_changed=stamp,
            last_updated=stamp,
            context=Context(origin=Origin.HUB, source="simple-scope"),
        )

    def state(self, entity_id: str) -> State | None:
        """Return the entity's state, or None if it was not given."""
        return self.states.get(entity_id)

    def now(self) -> datetime:
        """Return the fixed local time."""
        return self._now


# ----- the internal failure and its wording -----------------------------------------------


class _Failure(Exception):
    """An evaluation failure at ``node``; Expression.evaluate turns it into ExpressionError."""

    def __init__(self, message: str, node: ast.AST | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node


_KEYWORD_ATTRS = {f"{word}_": word for word in keyword.kwlist}
_KEYWORD_ATTR_RE = re.compile(r"\.(" + "|".join(keyword.kwlist) + r")_\b")
_ENTITY_FUNCTIONS = frozenset({"states", "state_attr", "is_state", "last_changed"})
_UNKNOWN_WHEN_NONE = frozenset({"states", "state_attr", "last_changed"})
_NUMBER_TEXT = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_MISSING: Any = object()


def _unparse(node: ast.AST) -> str:
    text = _KEYWORD_ATTR_RE.sub(r".\1", ast.unparse(node))
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, datetime):
        return "a datetime"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _hint(node: ast.AST, value: Any) -> str:
    """Say why an operand is probably wrong: unknown state, None, or a number in text."""
    if isinstance(node, ast.Constant):
        return ""
    text = _unparse(node)
    if value is None:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _UNKNOWN_WHEN_NONE
        ):
            return f"{text} is unknown"
        return f"{text} is None"
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        return f"{text} is text; float({text}) makes it a number"
    return ""


def _hints(pairs: Iterable[tuple[ast.AST, Any]]) -> str:
    found = [hint for node, value in pairs if (hint := _hint(node, value))]
    return f" ({'; '.join(dict.fromkeys(found))})" if found else ""


def _suggest(name: str, candidates: Iterable[Any]) -> str:
    words = [c for c in candidates if isinstance(c, str)]
    close = difflib.get_close_matches(name, words, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ----- bounded operators --------------------------------------------------------------------


def _size(value: Any, budget: int = MAX_SIZE) -> int:
    """Count characters and items in ``value``, stopping once past ``budget``."""
    kind = type(value)
    if kind is str:
        return len(value)
    if kind in (list, tuple, set, frozenset):
        total = len(value)
        for item in value:
            if total > budget:
                break
            total += _size(item, budget - total)
        return total
    if kind is dict:
        total = len(value)
        for key, item in value.items():
            if total > budget:
                break
            total += _size(key, budget - total) + _size(item, budget - total)
        return total
    return 1


def _too_long() -> _Failure:
    return _Failure(f"the result would be too long (more than {MAX_SIZE} characters or items)")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_SIZED = (str, list, tuple)
_NUMBERS = (int, float)


def _add(a: Any, b: Any) -> Any:
    if type(a) in _NUMBERS and type(b) in _NUMBERS:
        return a + b
    if isinstance(a, datetime) and _is_number(b):
        return a + timedelta(seconds=b)
    if _is_number(a) and isinstance(b, datetime):
        return b + timedelta(seconds=a)
    # concatenation copies characters, or references to items: shallow lengths are the cost
    if isinstance(a, _SIZED) and isinstance(b, _SIZED) and len(a) + len(b) > MAX_SIZE:
        raise _too_long()
    return a + b


def _sub(a: Any, b: Any) -> Any:
    if type(a) in _NUMBERS and type(b) in _NUMBERS:
        return a - b
    if isinstance(a, datetime):
        if _is_number(b):
            return a - timedelta(seconds=b)
        if isinstance(b, datetime):
            return (a - b).total_seconds()
    return a - b


def _mul(a: Any, b: Any) -> Any:
    if type(a) in _NUMBERS and type(b) in _NUMBERS:
        return a * b
    # repetition is where sizes multiply ([[1] * 10000] * 10000), so nested sizes count
    for seq, times in ((a, b), (b, a)):
        if isinstance(seq, _SIZED) and isinstance(times, int) and times * _size(seq) > MAX_SIZE:
            raise _too_long()
    return a * b


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str):
        # '%' formatting could build huge text ('%999999999d'); templates do this job
        raise _Failure("'%' formatting of text is not supported; use a template")
    return a % b


def _pow(a: Any, b: Any) -> Any:
    if (
        isinstance(a, int)
        and isinstance(b, int)
        and b > 0
        and abs(a) > 1
        and b * a.bit_length() > MAX_POWER_BITS
    ):
        raise _Failure(f"{_describe(a)} ** {_describe(b)} would be too large")
    return a**b


_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: _add,
    ast.Sub: _sub,
    ast.Mult: _mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: _mod,
    ast.Pow: _pow,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: operator.contains(b, a),
    ast.NotIn: lambda a, b: not operator.contains(b, a),
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}

_BINOP_WORDS: dict[type[ast.AST], str] = {
    ast.Add: "cannot add {l} and {r}",
    ast.Sub: "cannot subtract {r} from {l}",
    ast.Mult: "cannot multiply {l} by {r}",
    ast.Div: "cannot divide {l} by {r}",
    ast.FloorDiv: "cannot divide {l} by {r}",
    ast.Mod: "cannot take {l} modulo {r}",
    ast.Pow: "cannot raise {l} to the power {r}",
}
_SYMBOLS: dict[type[ast.AST], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.USub: "-",
    ast.UAdd: "+",
    ast.Not: "not",
}
_REFUSED_OPERATORS: dict[type[ast.AST], str] = {
    ast.BitAnd: "'&' is not supported (did you mean 'and'?)",
    ast.BitOr: "'|' is not supported (did you mean 'or'?)",
    ast.BitXor: "'^' is not supported (for a power write '**')",
    ast.LShift: "'<<' is not supported",
    ast.RShift: "'>>' is not supported",
    ast.MatMult: "'@' is not supported",
    ast.Invert: "'~' is not supported (did you mean 'not'?)",
}


# ----- attributes and methods ---------------------------------------------------------------


def _safe_replace(text: str) -> Callable[..., str]:
    def replace(old: str, new: str, count: int = -1) -> str:
        if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
            times = text.count(old) if old else len(text) + 1
            if count >= 0:
                times = min(times, count)
            if len(text) + times * (len(new) - len(old)) > MAX_SIZE:
                raise _too_long()
        return text.replace(old, new, count)

    return replace


def _safe_join(separator: str) -> Callable[[Iterable[Any]], str]:
    def join(items: Iterable[Any]) -> str:
        parts = list(items)
        if sum(map(_size, parts)) + len(separator) * max(len(parts) - 1, 0) > MAX_SIZE:
            raise _too_long()
        return separator.join(parts)

    return join


# fmt: off
_STR_METHODS = frozenset({
    "lower", "upper", "title", "capitalize", "casefold", "strip", "lstrip", "rstrip",
    "startswith", "endswith", "split", "rsplit", "splitlines", "find", "count", "removeprefix",
    "removesuffix", "isdigit", "isnumeric", "isdecimal", "isalpha", "isalnum", "isspace",
    "replace", "join",
})
# fmt: on
_DATETIME_ATTRIBUTES = frozenset(
    {"hour", "minute", "second", "day", "month", "year", "weekday", "isoweekday", "timestamp"}
)
_MAPPING_METHODS = frozenset({"get", "keys", "values", "items"})
_SEQUENCE_METHODS = frozenset({"index", "count"})
_ATTRIBUTES: dict[type, frozenset[str]] = {
    str: _STR_METHODS,
    datetime: _DATETIME_ATTRIBUTES,
    list: _SEQUENCE_METHODS,
    tuple: _SEQUENCE_METHODS,
}
_WRAPPED: dict[tuple[type, str], Callable[[Any], Any]] = {
    (str, "replace"): _safe_replace,
    (str, "join"): _safe_join,
}
_METHOD_NAMES = (
    _STR_METHODS
    | _MAPPING_METHODS
    | _SEQUENCE_METHODS
    | frozenset({"weekday", "isoweekday", "timestamp"})
)


def _allowed_attributes(value: Any) -> tuple[type | None, frozenset[str]]:
    allowed = _ATTRIBUTES.get(type(value))
    if allowed is not None:
        return type(value), allowed
    for kind, names in _ATTRIBUTES.items():
        if isinstance(value, kind):
            return kind, names
    return None, frozenset()


# ----- the evaluator ------------------------------------------------------------------------


class _Evaluator(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]
    """simpleeval with our names, functions, operators and plain-worded failures.

    One per thread (it holds the scope of the evaluation in progress); evaluation never
    awaits, and no function evaluates another expression, so it is never re-entered.
    """

    def __init__(self) -> None:
        super().__init__(operators=dict(_OPERATORS), functions={}, names={})
        self.functions: dict[str, Callable[..., Any]] = {
            name: getattr(self, f"_fn_{name}") for name in _FUNCTION_NAMES
        }
        self.functions.update(_BUILTINS)
        self.expr: str = ""
        self.scope: Scope | None = None
        self.variables: Mapping[str, Any] = {}

    def run(self, node: ast.expr, scope: Scope, source: str) -> Any:
        """Evaluate a checked AST against ``scope``."""
        saved = self.scope, self.variables, self.expr
        self.scope, self.variables, self.expr = scope, scope.variables, source
        try:
            return self._eval(node)
        finally:
            self.scope, self.variables, self.expr = saved

    def _now(self) -> datetime:
        assert self.scope is not None
        return self.scope.now()

    def _state(self, entity_id: Any) -> State | None:
        if not isinstance(entity_id, str) or self.scope is None:
            return None
        return self.scope.state(entity_id)

    # -- nodes --

    def _eval(self, node: ast.AST) -> Any:
        # simpleeval also walks every intermediate result looking for modules and forbidden
        # builtins; with a large JSON payload in ``trigger`` that costs milliseconds per
        # evaluation. Here no such object can appear: values come from literals, plain rule
        # and trigger data, our own functions and the allowlisted attributes, and every node
        # type was checked at compile time.
        return self.nodes[type(node)](node)

    def _eval_name(self, node: ast.Name) -> Any:
        try:
            return self.variables[node.id]
        except KeyError:
            pass
        if node.id in self.functions:
            raise _Failure(f"{node.id!r} is a function: call it, e.g. {node.id}(...)", node)
        raise _Failure(
            f"unknown name {node.id!r}{_suggest(node.id, self.variables)}", node
        ) from None

    def _eval_binop(self, node: ast.BinOp) -> Any:
        left = self._eval(node.left)
        right = self._eval(node.right)
        try:
            return self.operators[type(node.op)](left, right)
        except _Failure as failure:
            failure.node = failure.node or node
            raise
        except ZeroDivisionError as exc:
            hint = "" if isinstance(node.right, ast.Constant) else f" ({_unparse(node.right)} is 0)"
            raise _Failure(f"division by zero{hint}", node) from exc
        except (TypeError, ValueError, ArithmeticError) as exc:
            words = _BINOP_WORDS[type(node.op)].format(l=_describe(left), r=_describe(right))
            hints = _hints(((node.left, left), (node.right, right)))
            if not hints and isinstance(exc, ValueError | OverflowError):
                hints = f" ({exc})"
            raise _Failure(words + hints, node) from exc

    def _eval_unaryop(self, node: ast.UnaryOp) -> Any:
        value = self._eval(node.operand)
        try:
            return self.operators[type(node.op)](value)
        except TypeError as exc:
            symbol = _SYMBOLS[type(node.op)]
            raise _Failure(
                f"cannot apply '{symbol}' to {_describe(value)}{_hints([(node.operand, value)])}",
                node,
            ) from exc

    def _eval_compare(self, node: ast.Compare) -> Any:
        left_node: ast.expr = node.left
        left = self._eval(left_node)
        result: Any = True
        for op_node, right_node in zip(node.ops, node.comparators, strict=True):
            right = self._eval(right_node)
            try:
                result = self.operators[type(op_node)](left, right)
            except (TypeError, ValueError) as exc:
                symbol = _SYMBOLS[type(op_node)]
                if isinstance(op_node, ast.In | ast.NotIn):
                    words = f"cannot look for {_describe(left)} in {_describe(right)}"
                else:
                    words = f"cannot compare {_describe(left)} {symbol} {_describe(right)}"
                hints = _hints(((left_node, left), (right_node, right)))
                raise _Failure(words + hints, node) from exc
            if not result:
                return result
            left_node, left = right_node, right
        return result

    def _eval_call(self, node: ast.Call) -> Any:
        func_node = node.func
        if isinstance(func_node, ast.Name):
            name = func_node.id
            func = self.functions[name]  # the compile-time check made sure it exists
        else:
            name = f".{func_node.attr}" if isinstance(func_node, ast.Attribute) else "?"
            func = self._eval(func_node)
        args = [self._eval(arg) for arg in node.args]
        kwargs = {kw.arg: self._eval(kw.value) for kw in node.keywords if kw.arg is not None}
        try:
            return func(*args, **kwargs)
        except _Failure as failure:
            if failure.node is None:
                failure.node = node
                failure.message += _hints(zip(node.args, args, strict=True))
            raise
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            hints = _hints(zip(node.args, args, strict=True))
            raise _Failure(f"{name}() failed: {exc}{hints}", node) from exc

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        value = self._eval(node.value)
        name = node.attr
        if type(value) is dict or isinstance(value, Mapping):
            try:
                return value[name]
            except KeyError:
                pass
            word = _KEYWORD_ATTRS.get(name)
            if word is not None and word in value:
                return value[word]
            if name in _MAPPING_METHODS:
                return getattr(value, name)
            key = word or name
            owner = _unparse(node.value)
            known = ", ".join(sorted(map(str, value))[:12])
            extra = _suggest(key, value) or (f" (it has: {known})" if known else " (it is empty)")
            raise _Failure(f"{owner} has no field {key!r}{extra}", node)
        kind, allowed = _allowed_attributes(value)
        if kind is not None and name in allowed:
            wrap = _WRAPPED.get((kind, name))
            return wrap(value) if wrap is not None else getattr(value, name)
        hint = _hints([(node.value, value)])
        raise _Failure(f"{_kind(value)} has no attribute {name!r}{hint}", node)

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        key = self._eval(node.slice)
        try:
            return container[key]
        except KeyError as exc:
            owner = _unparse(node.value)
            hint = _suggest(key, container) if isinstance(key, str) else ""
            raise _Failure(f"{owner} has no key {_describe(key)}{hint}", node) from exc
        except IndexError as exc:
            owner = _unparse(node.value)
            raise _Failure(
                f"index {_describe(key)} is out of range ({owner} has {len(container)} items)",
                node,
            ) from exc
        except (TypeError, ValueError) as exc:
            hint = _hints([(node.value, container)])
            raise _Failure(
                f"cannot take [{_describe(key)}] of {_kind(container)}{hint} ({exc})", node
            ) from exc

    # -- functions (names listed in _FUNCTION_NAMES; `self` is the evaluator) --

    def _fn_states(self, entity_id: str) -> Any:
        state = self._state(entity_id)
        return None if state is None else state.value

    def _fn_state_attr(self, entity_id: str, name: str) -> Any:
        state = self._state(entity_id)
        return None if state is None else state.attributes.get(name)

    def _fn_is_state(self, entity_id: str, value: Any) -> bool:
        state = self._state(entity_id)
        if state is None:
            return False
        if isinstance(value, list | tuple | set | frozenset):
            return any(state.value == item for item in value)
        return bool(state.value == value)

    def _fn_last_changed(self, entity_id: str) -> float | None:
        state = self._state(entity_id)
        return None if state is None else state.last_changed

    def _fn_now(self) -> datetime:
        return self._now()

    def _fn_today_at(self, time: str = "00:00") -> datetime:
        hour, minute, second = _time_of_day(time)
        return self._now().replace(hour=hour, minute=minute, second=second, microsecond=0)

    def _fn_as_timestamp(self, value: Any, default: Any = _MISSING) -> Any:
        try:
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    value = value.replace(tzinfo=self._now().tzinfo)
                return value.timestamp()
            if _is_number(value):
                return float(value)
            if isinstance(value, str):
                if _NUMBER_TEXT.fullmatch(value):
                    return float(value)
                return self._fn_as_timestamp(datetime.fromisoformat(value.strip()))
        except (ValueError, OverflowError, OSError):
            pass
        if default is not _MISSING:
            return default
        raise _Failure(f"as_timestamp() cannot turn {_describe(value)} into a time")

    def _fn_float(self, value: Any, default: Any = _MISSING) -> Any:
        try:
            if isinstance(value, str):
                return float(value.strip())
            if isinstance(value, int | float):
                return float(value)
        except (ValueError, OverflowError):
            pass
        if default is not _MISSING:
            return default
        raise _Failure(f"float() cannot turn {_describe(value)} into a number")

    def _fn_int(self, value: Any, default: Any = _MISSING) -> Any:
        try:
            if isinstance(value, int):
                return int(value)
            if isinstance(value, float):
                return int(value)
            if isinstance(value, str):
                text = value.strip()
                # "21.7" is a common sensor reading; int() of it should not need float() first
                return int(text) if text.lstrip("+-").isdigit() else int(float(text))
        except (ValueError, OverflowError):
            pass
        if default is not _MISSING:
            return default
        raise _Failure(f"int() cannot turn {_describe(value)} into a whole number")

    def _fn_lower(self, value: Any) -> str | None:
        return None if value is None else str(value).lower()

    def _fn_upper(self, value: Any) -> str | None:
        return None if value is None else str(value).upper()


_FUNCTION_NAMES = (
    "states",
    "state_attr",
    "is_state",
    "last_changed",
    "now",
    "today_at",
    "as_timestamp",
    "float",
    "int",
    "lower",
    "upper",
)
_BUILTINS: dict[str, Callable[..., Any]] = {
    "str": str,
    "round": round,
    "min": min,
    "max": max,
    "abs": abs,
    "len": len,
    "bool": bool,
}
FUNCTIONS: frozenset[str] = frozenset(_FUNCTION_NAMES) | frozenset(_BUILTINS)


def _signature(func: Callable[..., Any], *, bound: bool) -> inspect.Signature | None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None  # min/max and friends have no single signature; checked when called
    if bound:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return signature


_SIGNATURES: dict[str, inspect.Signature | None] = {
    **{
        name: _signature(getattr(_Evaluator, f"_fn_{name}"), bound=True) for name in _FUNCTION_NAMES
    },
    **{name: _signature(func, bound=False) for name, func in _BUILTINS.items()},
}


def _time_of_day(text: Any) -> tuple[int, int, int]:
    match = _TIME_OF_DAY.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is not None:
        hour, minute, second = (int(part or 0) for part in match.groups())
        if hour < 24 and minute < 60 and second < 60:
            return hour, minute, second
    raise _Failure(f"today_at() needs a time like '07:30' or '22:15:30', got {_describe(text)}")


_local = threading.local()


def _evaluator() -> _Evaluator:
    evaluator: _Evaluator | None = getattr(_local, "evaluator", None)
    if evaluator is None:
        evaluator = _local.evaluator = _Evaluator()
    return evaluator


# ----- compiling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SourceMap:
    """Maps positions in the text that was parsed back to the text as written."""

    parsed: str
    lead: int  # leading whitespace removed before parsing
    inserted: tuple[int, ...]  # positions in ``parsed`` of the '_' added after keywords
    line_starts: tuple[int, ...]

    @classmethod
    def of(cls, parsed: str, lead: int, inserted: tuple[int, ...]) -> _SourceMap:
        starts = [0]
        starts.extend(m.end() for m in re.finditer(r"\r\n|\r|\n", parsed))
        return cls(parsed, lead, inserted, tuple(starts))

    def offset(self, position: int) -> int:
        """Return the written offset for a character offset in ``parsed``."""
        return self.lead + position - bisect.bisect_left(self.inserted, position)

    def at_line(self, lineno: int, column: int) -> int:
        """Return the written offset of a 1-based line and a 0-based character column."""
        start = self.line_starts[min(max(lineno, 1), len(self.line_starts)) - 1]
        return self.offset(min(start + max(column, 0), len(self.parsed)))

    def at_node(self, node: ast.AST | None) -> int | None:
        """Return the written offset where ``node`` starts (AST columns count UTF-8 bytes)."""
        lineno = getattr(node, "lineno", None)
        column = getattr(node, "col_offset", None)
        if lineno is None or column is None:
            return None
        start = self.line_starts[lineno - 1]
        line = self.parsed[start:]
        chars = len(line.encode()[:column].decode(errors="ignore"))
        return self.at_line(lineno, chars)


def _prepare(body: str) -> tuple[str, tuple[int, ...]]:
    """Rewrite ``.keyword`` attributes to ``.keyword_`` and blank newlines and comments.

    Newlines outside strings become spaces (same length, so offsets hold) because an
    expression may span lines in YAML but Python's eval mode only allows that in brackets.
    Tokenising inside an extra pair of brackets makes every line break a plain NL token.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(f"({body}\n)").readline))
    except (tokenize.TokenError, SyntaxError):
        return body, ()  # the parser will report the problem
    starts = [0]
    starts.extend(m.end() for m in re.finditer("\n", f"({body}\n)"))
    chars = list(body)
    keyword_ends: list[int] = []
    previous: tokenize.TokenInfo | None = None
    for token in tokens:
        if token.type == tokenize.ENDMARKER:
            break
        start = starts[token.start[0] - 1] + token.start[1] - 1  # -1: the added "("
        end = starts[token.end[0] - 1] + token.end[1] - 1
        if token.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            for index in range(max(start, 0), min(end, len(body))):
                if token.type == tokenize.COMMENT or chars[index] in "\r\n":
                    chars[index] = " "
            continue
        if (
            token.type == tokenize.NAME
            and keyword.iskeyword(token.string)
            and previous is not None
            and previous.type == tokenize.OP
            and previous.string == "."
        ):
            keyword_ends.append(end)
        if token.type not in (tokenize.INDENT, tokenize.DEDENT):
            previous = token
    for count, end in enumerate(keyword_ends):
        chars.insert(end + count, "_")
    return "".join(chars), tuple(end + count for count, end in enumerate(keyword_ends))


def _syntax_message(exc: SyntaxError, text: str, offset: int | None) -> str:
    message = re.sub(r"\s*\(detected at line \d+\)", "", exc.msg or "invalid syntax")
    if offset is None:
        return message
    rest = text[offset:].strip()
    if not rest:
        return f"{message}, at the end"
    return f"{message}, near {rest[:20]!r}"


_ALLOWED_NODES = (
    ast.Constant,
    ast.Name,
    ast.UnaryOp,
    ast.BinOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.keyword,
    ast.Subscript,
    ast.Attribute,
    ast.Slice,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Set,
)
_UNPOSITIONED = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
_REFUSED_NODES: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda functions are not allowed",
    ast.ListComp: "comprehensions are not supported",
    ast.SetComp: "comprehensions are not supported",
    ast.DictComp: "comprehensions are not supported",
    ast.GeneratorExp: "comprehensions are not supported",
    ast.NamedExpr: "assignment with ':=' is not allowed",
    ast.JoinedStr: "f-strings are not supported; use a template with {{ }} parts",
    ast.Starred: "'*' unpacking is not supported",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
}


def _problem(node: ast.AST) -> tuple[str, ast.AST] | None:
    """Return why ``node`` is not allowed (and the node to point at), or None."""
    refused = _REFUSED_NODES.get(type(node))
    if refused is not None:
        return refused, node
    if not isinstance(node, _ALLOWED_NODES):
        return f"{type(node).__name__} is not allowed in an expression", node
    if isinstance(node, ast.BinOp | ast.UnaryOp) and type(node.op) in _REFUSED_OPERATORS:
        return _REFUSED_OPERATORS[type(node.op)], node
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for index, op in enumerate(node.ops):
            pair = operands[index : index + 2]
            if isinstance(op, ast.Is | ast.IsNot) and not any(
                isinstance(o, ast.Constant) and o.value is None for o in pair
            ):
                return "'is' only compares with None; use '==' to compare values", node
    if isinstance(node, ast.Constant):
        value = node.value
        if value is not None and not isinstance(value, bool | int | float | str):
            return f"{type(value).__name__} literals are not supported", node
        if isinstance(value, str) and len(value) > MAX_SIZE:
            return f"the text literal is too long (more than {MAX_SIZE} characters)", node
    if isinstance(node, ast.Name) and node.id.startswith("_"):
        return f"names starting with '_' are not allowed ({node.id!r})", node
    if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
        return f"access to private attribute {node.attr!r} is not allowed", node
    if isinstance(node, ast.Dict) and any(key is None for key in node.keys):
        return "'**' unpacking is not supported", node
    if isinstance(node, ast.Call):
        return _call_problem(node)
    return None


def _call_problem(node: ast.Call) -> tuple[str, ast.AST] | None:
    if any(kw.arg is None for kw in node.keywords):
        return "'**' unpacking is not supported", node
    func = node.func
    if isinstance(func, ast.Attribute):
        if func.attr.startswith("_"):
            return None  # reported by the attribute check, which points at the same place
        if func.attr not in _METHOD_NAMES:
            return (
                f"unknown method '.{func.attr}()'{_suggest(func.attr, _METHOD_NAMES)}",
                func,
            )
        return None
    if not isinstance(func, ast.Name):
        return "only functions and methods can be called", node
    if func.id not in FUNCTIONS:
        return f"unknown function {func.id!r}{_suggest(func.id, sorted(FUNCTIONS))}", func
    if any(isinstance(arg, ast.Starred) for arg in node.args):
        return None  # reported as refused syntax
    signature = _SIGNATURES.get(func.id)
    if signature is not None:
        try:
            signature.bind(*node.args, **{kw.arg: kw.value for kw in node.keywords if kw.arg})
        except TypeError as exc:
            return f"{func.id}(): {exc}", node
    if func.id == "today_at" and node.args and isinstance(node.args[0], ast.Constant):
        try:
            _time_of_day(node.args[0].value)
        except _Failure as failure:
            return failure.message, node.args[0]
    return None


def _check(root: ast.expr, source_map: _SourceMap) -> frozenset[str]:
    """Refuse what the language does not allow; return the entity ids named as literals."""
    references: set[str] = set()
    stack: list[tuple[ast.AST, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, _UNPOSITIONED):
            continue
        if depth > MAX_DEPTH:
            raise ExpressionError(
                f"the expression is nested too deeply (more than {MAX_DEPTH} levels)",
                source_map.at_node(node),
            )
        problem = _problem(node)
        if problem is not None:
            message, where = problem
            raise ExpressionError(message, source_map.at_node(where))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _ENTITY_FUNCTIONS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            references.add(node.args[0].value)
        # children in reverse so that the leftmost problem is reported first
        stack.extend((child, depth + 1) for child in reversed(list(ast.iter_child_nodes(node))))
    return frozenset(references)


def _parse(text: str) -> tuple[ast.expr, _SourceMap, frozenset[str]]:
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text, got {_describe(text)}")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"the expression is too long ({len(text)} characters; at most {MAX_EXPRESSION_LENGTH})",
            MAX_EXPRESSION_LENGTH,
        )
    if "\0" in text:
        raise ExpressionError("the expression contains a NUL character", text.index("\0"))
    body = text.lstrip()
    if not body.strip():
        raise ExpressionError("the expression is empty", 0)
    parsed, inserted = _prepare(body)
    # a leading comment became spaces; the parser would take them for an indent
    skipped = len(parsed) - len(parsed.lstrip())
    parsed, inserted = parsed[skipped:], tuple(position - skipped for position in inserted)
    source_map = _SourceMap.of(parsed, len(text) - len(body) + skipped, inserted)
    try:
        # SyntaxWarnings ("is" with a literal, odd escapes) are either refused by _check or
        # harmless; they must not reach the log or, under pytest, become errors
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(parsed, mode="eval")
    except SyntaxError as exc:
        offset: int | None = None
        if exc.lineno is not None and exc.offset is not None:
            # offset 0 is what the parser gives when the text ends too early
            column = exc.offset - 1 if exc.offset > 0 else len(parsed)
            offset = source_map.at_line(exc.lineno, column)
        raise ExpressionError(_syntax_message(exc, text, offset), offset) from None
    except (RecursionError, MemoryError):
        raise ExpressionError("the expression is nested too deeply", None) from None
    references = _check(tree.body, source_map)
    return tree.body, source_map, references


def _plain(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "the data or the expression is nested too deeply"
    if isinstance(exc, MemoryError):
        return "the result would be too large"
    if isinstance(exc, simpleeval.InvalidExpression):
        return str(exc)
    return f"{exc}" if str(exc) else type(exc).__name__


@dataclass(frozen=True)
class Expression:
    """A compiled safe expression; ``Expression(text)`` raises ExpressionError if invalid."""

    source: str
    _node: ast.expr = field(init=False, repr=False, compare=False)
    _map: _SourceMap = field(init=False, repr=False, compare=False)
    _references: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        node, source_map, references = _parse(self.source)
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_map", source_map)
        object.__setattr__(self, "_references", references)

    def evaluate(self, scope: Scope) -> Any:
        """Evaluate against ``scope``; any failure is raised as ExpressionError."""
        try:
            return _evaluator().run(self._node, scope, self.source)
        except _Failure as failure:
            raise ExpressionError(
                f"in {self.source!r}: {failure.message}", self._map.at_node(failure.node)
            ) from failure.__cause__
        except Exception as exc:
            raise ExpressionError(f"in {self.source!r}: {_plain(exc)}") from exc

    def entity_references(self) -> frozenset[str]:
        """Return the entity ids given as text literals to states() and friends."""
        return self._references


def compile_expression(text: str) -> Expression:
    """Compile a safe expression; raise ExpressionError (with an offset) if it is invalid."""
    return _compiled_expression(text) if isinstance(text, str) else Expression(text)


@functools.lru_cache(maxsize=4096)
def _compiled_expression(text: str) -> Expression:
    return Expression(text)


# ----- templates ----------------------------------------------------------------------------


def _split(text: str) -> list[str | tuple[int, str]]:
    """Split a template into literal text and (offset, expression text) parts.

    An expression ends at the first ``}}`` outside brackets and quotes, so that
    ``{{ {'a': {'b': 1}} }}`` is one expression.
    """
    parts: list[str | tuple[int, str]] = []
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            if position < len(text):
                parts.append(text[position:])
            return parts
        if start > position:
            parts.append(text[position:start])
        index, depth, quote = start + 2, 0, ""
        while index < len(text):
            char = text[index]
            if quote:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = ""
            elif char in "'\"":
                quote = char
            elif char in "([{":
                depth += 1
            elif char in ")]}":
                if depth == 0 and text.startswith("}}", index):
                    break
                depth = max(depth - 1, 0)
            index += 1
        else:
            raise ExpressionError("'{{' is not closed by '}}'", start)
        inner = text[start + 2 : index]
        if not inner.strip():
            raise ExpressionError("the expression inside '{{ }}' is empty", start)
        parts.append((start + 2, inner))
        position = index + 2


@dataclass(frozen=True)
class Template:
    """Text with ``{{ expression }}`` parts; ``Template(text)`` raises ExpressionError."""

    source: str
    is_static: bool = field(init=False, compare=False)
    _parts: tuple[str | tuple[int, Expression], ...] = field(init=False, repr=False, compare=False)
    _single: tuple[int, Expression] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise ExpressionError(f"a template must be text, got {_describe(self.source)}")
        parts: list[str | tuple[int, Expression]] = []
        for part in _split(self.source):
            if isinstance(part, str):
                parts.append(part)
                continue
            offset, inner = part
            offset += len(inner) - len(inner.lstrip())  # errors then quote 'x', not ' x '
            try:
                parts.append((offset, compile_expression(inner.strip())))
            except ExpressionError as exc:
                raise exc.shifted(offset) from None
        expressions = [part for part in parts if not isinstance(part, str)]
        literal = "".join(part for part in parts if isinstance(part, str))
        single = expressions[0] if len(expressions) == 1 and not literal.strip() else None
        object.__setattr__(self, "is_static", not expressions)
        object.__setattr__(self, "_parts", tuple(parts))
        object.__setattr__(self, "_single", single)

    def render(self, scope: Scope) -> Any:
        """Return the value of a single-expression template, else the rendered text."""
        if self.is_static:
            return self.source
        if self._single is not None:
            return self._evaluate(self._single, scope)
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            else:
                value = self._evaluate(part, scope)
                out.append("unknown" if value is None else str(value))
        return "".join(out)

    @staticmethod
    def _evaluate(part: tuple[int, Expression], scope: Scope) -> Any:
        offset, expression = part
        try:
            return expression.evaluate(scope)
        except ExpressionError as exc:
            raise exc.shifted(offset) from exc.__cause__

    def entity_references(self) -> frozenset[str]:
        """Return the entity ids named as text literals in any of the expressions."""
        found: frozenset[str] = frozenset()
        for part in self._parts:
            if not isinstance(part, str):
                found |= part[1].entity_references()
        return found


def compile_template(text: str) -> Template:
    """Compile a template; raise ExpressionError (offset into ``text``) if it is invalid."""
    return _compiled_template(text) if isinstance(text, str) else Template(text)


@functools.lru_cache(maxsize=4096)
def _compiled_template(text: str) -> Template:
    return Template(text)


def render_value(value: Any, scope: Scope) -> Any:
    """Render templates in strings inside dicts, lists and tuples; return other values as is."""
    if isinstance(value, str):
        return compile_template(value).render(scope) if "{{" in value else value
    if isinstance(value, dict):
        return {key: render_value(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, scope) for item in value]
    if isinstance(value, tuple):
        return tuple(render_value(item, scope) for item in value)
    return value


def validate_expression(text: str) -> str | None:
    """Return why ``text`` is not a valid expression, or None if it is."""
    try:
        compile_expression(text)
    except ExpressionError as exc:
        return exc.message
    return None


def validate_template(text: str) -> str | None:
    """Return why ``text`` is not a valid template, or None if it is."""
    try:
        compile_template(text)
    except ExpressionError as exc:
        return exc.message
    return None
