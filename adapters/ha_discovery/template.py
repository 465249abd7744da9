"""A safe evaluator for the Jinja subset that MQTT discovery payloads use in their templates.

Firmwares put Jinja templates in their discovery configs (``{{ value_json.temperature }}``,
``{{ value_json['ENERGY'].Power | float(0) | round(1) }}``, ``{% if ... %}``). Those templates
come from the network, so they are never handed to a real template engine: this module
parses the subset real devices use into closures and evaluates them with no access to Python
objects beyond plain JSON values, a short list of string methods and a fixed set of filters
and functions. No loops exist in the subset, so evaluation time is bounded by the template's
length; repetition, powers and output size are bounded too.

Supported: ``{{ expr }}``, ``{% if %}/{% elif %}/{% else %}/{% endif %}``, ``{% set x = expr %}``,
``{# comments #}``, whitespace control (``{{-``, ``-}}``); literals (numbers, strings, true/false/
none, lists, dicts), attribute and item access, slices, arithmetic, ``~``, comparisons, ``in``,
``and/or/not``, ``a if c else b``, tests (``is defined``, ``is number`` ...), the filters in
``FILTERS`` and the functions in ``FUNCTIONS`` (Home Assistant's semantics: ``float`` and ``int``
without a default fail on bad input, ``round(0)`` gives an int).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson

MAX_TEMPLATE_CHARS: Final = 4096
MAX_OUTPUT_CHARS: Final = 65536
MAX_DEPTH: Final = 48  # nesting of parentheses / sub-expressions
MAX_SEQUENCE: Final = 10_000  # longest string or list a template may build by repetition
MAX_EXPONENT: Final = 128


class TemplateError(ValueError):
    """A template cannot be parsed, or failed while it was evaluated."""


class _Undefined:
    """What a missing variable, key or attribute evaluates to (renders as nothing)."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return ""

    def __repr__(self) -> str:
        return "Undefined"

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


UNDEFINED: Final = _Undefined()
_MISSING: Final = object()

Scope = dict[str, Any]
Expr = Callable[[Scope], Any]


def is_undefined(value: Any) -> bool:
    """True for the value of a missing variable, key or attribute."""
    return value is UNDEFINED


# ----- value conversions (Home Assistant's forgiving filters, without the forgiveness) ----------


def _fail(name: str, value: Any) -> TemplateError:
    return TemplateError(f"{name} got invalid input {_short(value)} and no default was given")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_float(value: Any, default: Any = _MISSING) -> Any:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    if default is _MISSING:
        raise _fail("float", value)
    return default


def _to_int(value: Any, default: Any = _MISSING, base: Any = 10) -> Any:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and isinstance(base, int) and 2 <= base <= 36:
        text = value.strip()
        try:
            return int(text, base)
        except ValueError:
            try:
                number = float(text)
                if math.isfinite(number):
                    return int(number)
            except ValueError:
                pass
    if default is _MISSING:
        raise _fail("int", value)
    return default


_TRUE_WORDS = frozenset({"1", "true", "yes", "on", "enable"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off", "disable"})


def _to_bool(value: Any, default: Any = _MISSING) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    if default is _MISSING:
        raise _fail("bool", value)
    return default


def _round(value: Any, precision: Any = 0, method: Any = "common", default: Any = _MISSING) -> Any:
    try:
        number = float(value)
        digits = int(precision)
    except (TypeError, ValueError):
        if default is _MISSING:
            raise _fail("round", value) from None
        return default
    if not math.isfinite(number) or not -15 <= digits <= 15:
        if default is _MISSING:
            raise _fail("round", value)
        return default
    multiplier = 10.0**digits
    if method == "ceil":
        number = math.ceil(number * multiplier) / multiplier
    elif method == "floor":
        number = math.floor(number * multiplier) / multiplier
    elif method == "half":
        number = round(number * 2) / 2
    else:
        number = round(number, digits)
    return int(number) if digits == 0 else number


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            return math.isfinite(float(value))
        except ValueError:
            return False
    return False


def _iif(
    condition: Any, if_true: Any = True, if_false: Any = False, if_none: Any = _MISSING
) -> Any:
    if condition is None and if_none is not _MISSING:
        return if_none
    return if_true if condition else if_false


def to_text(value: Any) -> str:
    """Render a value the way Jinja prints it (``True``, ``21.5``, nothing for undefined)."""
    if value is UNDEFINED:
        return ""
    if isinstance(value, str):
        return value
    return str(value)


def _string_filter(method: Callable[[str], str]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        return value if value is UNDEFINED else method(to_text(value))

    return apply


def _default(value: Any, default: Any = "", boolean: Any = False) -> Any:
    if value is UNDEFINED or (boolean and not value):
        return default
    return value


def _replace(value: Any, old: Any, new: Any, count: Any = None) -> Any:
    if value is UNDEFINED:
        return value
    text = to_text(value)
    result = text.replace(to_text(old), to_text(new), -1 if count is None else int(count))
    if len(result) > MAX_SEQUENCE * 10:
        raise TemplateError("replace would build a string that is too long")
    return result


def _tojson(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise TemplateError(f"cannot convert {_short(value)} to JSON") from exc


def _from_json(value: Any) -> Any:
    try:
        return orjson.loads(to_text(value))
    except orjson.JSONDecodeError as exc:
        raise TemplateError(f"from_json got invalid JSON {_short(value)}") from exc


# Only conversions whose width and precision are bounded: "%0.1f", "%s", "%05d", "%x".
_FORMAT_SPEC = re.compile(r"%(?:%|[-+ 0#]*\d{0,2}(?:\.\d{1,2})?[sdifeEgGxXo])")


def _format(pattern: Any, *args: Any) -> str:
    text = to_text(pattern)
    if _FORMAT_SPEC.sub("", text).count("%"):
        raise TemplateError(f"unsupported format string {_short(text)}")
    try:
        return text % args
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"format {_short(text)}: {exc}") from exc


def _multiply(value: Any, factor: Any, default: Any = _MISSING) -> Any:
    try:
        return float(value) * float(factor)
    except (TypeError, ValueError):
        if default is _MISSING:
            raise _fail("multiply", value) from None
        return default


def _join(value: Any, separator: Any = "") -> str:
    return to_text(separator).join(to_text(item) for item in _sequence(value))


def _sequence(value: Any) -> Sequence[Any]:
    if isinstance(value, list | tuple | str):
        return value
    if isinstance(value, dict):
        return list(value)
    if value is UNDEFINED:
        return ()
    raise TemplateError(f"expected a list, got {_short(value)}")


def _first(value: Any) -> Any:
    items = _sequence(value)
    return items[0] if items else UNDEFINED


def _last(value: Any) -> Any:
    items = _sequence(value)
    return items[-1] if items else UNDEFINED


def _min(*values: Any) -> Any:
    items = _sequence(values[0]) if len(values) == 1 else values
    return min(items) if items else UNDEFINED


def _max(*values: Any) -> Any:
    items = _sequence(values[0]) if len(values) == 1 else values
    return max(items) if items else UNDEFINED


def _abs(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TemplateError(f"abs needs a number, got {_short(value)}")
    return abs(value)


#: Filters, called as ``value | name(args)``; the value is the first argument.
FILTERS: Final[Mapping[str, Callable[..., Any]]] = {
    "float": _to_float,
    "int": _to_int,
    "bool": _to_bool,
    "round": _round,
    "default": _default,
    "d": _default,
    "lower": _string_filter(str.lower),
    "upper": _string_filter(str.upper),
    "title": _string_filter(str.title),
    "capitalize": _string_filter(str.capitalize),
    "trim": _string_filter(str.strip),
    "string": to_text,
    "abs": _abs,
    "tojson": _tojson,
    "to_json": _tojson,
    "from_json": _from_json,
    "replace": _replace,
    "length": lambda value: len(_sequence(value)),
    "count": lambda value: len(_sequence(value)),
    "first": _first,
    "last": _last,
    "join": _join,
    "list": lambda value: list(_sequence(value)),
    "min": _min,
    "max": _max,
    "format": _format,
    "multiply": _multiply,
    "iif": _iif,
    "is_number": _is_number,
}

#: Functions, called as ``name(args)``.
FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    "float": _to_float,
    "int": _to_int,
    "bool": _to_bool,
    "round": _round,
    "iif": _iif,
    "is_number": _is_number,
    "min": _min,
    "max": _max,
    "abs": _abs,
}

#: Tests, used as ``value is name`` / ``value is not name``.
TESTS: Final[Mapping[str, Callable[[Any], bool]]] = {
    "defined": lambda v: v is not UNDEFINED,
    "undefined": lambda v: v is UNDEFINED,
    "none": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, float),
    "string": lambda v: isinstance(v, str),
    "mapping": lambda v: isinstance(v, dict),
    "sequence": lambda v: isinstance(v, list | tuple | str),
    "iterable": lambda v: isinstance(v, list | tuple | str | dict),
    "boolean": lambda v: isinstance(v, bool),
    "true": lambda v: v is True,
    "false": lambda v: v is False,
    "even": lambda v: isinstance(v, int) and v % 2 == 0,
    "odd": lambda v: isinstance(v, int) and v % 2 == 1,
}


class _Method:
    """A whitelisted method bound to a plain value (``value.split(',')``)."""

    __slots__ = ("function", "owner")

    def __init__(self, owner: Any, function: Callable[..., Any]) -> None:
        self.owner = owner
        self.function = function


def _dict_get(mapping: dict[Any, Any], key: Any, default: Any = None) -> Any:
    return mapping.get(key, default)


_STR_METHODS: Final[Mapping[str, Callable[..., Any]]] = {
    "lower": str.lower,
    "upper": str.upper,
    "strip": str.strip,
    "lstrip": str.lstrip,
    "rstrip": str.rstrip,
    "title": str.title,
    "capitalize": str.capitalize,
    "split": lambda s, sep=None, maxsplit=-1: s.split(sep, maxsplit),
    "replace": lambda s, old, new, count=-1: _replace(s, old, new, count),
    "startswith": str.startswith,
    "endswith": str.endswith,
    "isdigit": str.isdigit,
}
_DICT_METHODS: Final[Mapping[str, Callable[..., Any]]] = {
    "get": _dict_get,
    "keys": lambda d: list(d.keys()),
    "values": lambda d: list(d.values()),
    "items": lambda d: [list(pair) for pair in d.items()],
}


def _attribute(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        if name in obj:
            return obj[name]
        method = _DICT_METHODS.get(name)
        return _Method(obj, method) if method else UNDEFINED
    if isinstance(obj, str):
        method = _STR_METHODS.get(name)
        return _Method(obj, method) if method else UNDEFINED
    return UNDEFINED


def _item(obj: Any, key: Any) -> Any:
    if isinstance(obj, dict):
        try:
            return obj.get(key, UNDEFINED)
        except TypeError:  # an unhashable key
            return UNDEFINED
    if isinstance(obj, list | tuple | str) and isinstance(key, int) and not isinstance(key, bool):
        return obj[key] if -len(obj) <= key < len(obj) else UNDEFINED
    if isinstance(obj, list | tuple | str) and isinstance(key, slice):
        return obj[key]
    if isinstance(obj, str | list | tuple | dict) or obj is UNDEFINED or obj is None:
        return UNDEFINED
    return UNDEFINED


def _number(value: Any, op: str) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    raise TemplateError(f"operator {op!r} needs numbers, got {_short(value)}")


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        return _bounded(a + b)
    if isinstance(a, list) and isinstance(b, list):
        return _bounded(a + b)
    return _number(a, "+") + _number(b, "+")


def _mul(a: Any, b: Any) -> Any:
    for seq, count in ((a, b), (b, a)):
        if isinstance(seq, str | list) and isinstance(count, int) and not isinstance(count, bool):
            if len(seq) * max(count, 0) > MAX_SEQUENCE:
                raise TemplateError("repetition would build a value that is too long")
            return seq * count
    return _number(a, "*") * _number(b, "*")


def _pow(a: Any, b: Any) -> Any:
    base, exponent = _number(a, "**"), _number(b, "**")
    if abs(exponent) > MAX_EXPONENT or abs(base) > 1e100:
        raise TemplateError("power is too large")
    return base**exponent


def _div(a: Any, b: Any) -> Any:
    divisor = _number(b, "/")
    if divisor == 0:
        raise TemplateError("division by zero")
    return _number(a, "/") / divisor


def _floordiv(a: Any, b: Any) -> Any:
    divisor = _number(b, "//")
    if divisor == 0:
        raise TemplateError("division by zero")
    return _number(a, "//") // divisor


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str):
        return _format(a, *(b if isinstance(b, list | tuple) else (b,)))
    divisor = _number(b, "%")
    if divisor == 0:
        raise TemplateError("division by zero")
    return _number(a, "%") % divisor


def _bounded(value: Any) -> Any:
    if len(value) > MAX_OUTPUT_CHARS:
        raise TemplateError("value is too long")
    return value


def _contains(item: Any, container: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, dict):
        try:
            return item in container
        except TypeError:
            return False
    if isinstance(container, list | tuple):
        return item in container
    return False


def _equal(a: Any, b: Any) -> bool:
    if a is UNDEFINED or b is UNDEFINED:
        return a is b
    return bool(a == b)


_COMPARE: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "in": _contains,
}
_ARITHMETIC: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "+": _add,
    "-": lambda a, b: _number(a, "-") - _number(b, "-"),
    "*": _mul,
    "/": _div,
    "//": _floordiv,
    "%": _mod,
    "**": _pow,
    "~": lambda a, b: _bounded(to_text(a) + to_text(b)),
}

# ----- lexing ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>\*\*|//|==|!=|<=|>=|[-+*/%~<>()\[\]{}.,:|=])
    )""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "is", "if", "else"})


def _unquote(text: str) -> str:
    body = text[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _tokenize(source: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    end = len(source)
    while pos < end:
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if match is None:
            raise TemplateError(f"unexpected character {source[pos:].lstrip()[:10]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "number":
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            tokens.append(("value", value))
        elif kind == "string":
            tokens.append(("value", _unquote(text)))
        elif kind == "name":
            if text in _KEYWORDS:
                tokens.append(("op", text))
            elif text in ("true", "True"):
                tokens.append(("value", True))
            elif text in ("false", "False"):
                tokens.append(("value", False))
            elif text in ("none", "None"):
                tokens.append(("value", None))
            else:
                tokens.append(("name", text))
        else:
            tokens.append(("op", text))
    tokens.append(("end", None))
    return tokens


# ----- parsing expressions into closures --------------------------------------------------------


def _guard(name: str, function: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    try:
        return function(*args, **kwargs)
    except TemplateError:
        raise
    except (TypeError, ValueError, OverflowError, KeyError, IndexError) as exc:
        raise TemplateError(f"{name}: {exc}") from exc


def _or_node(left: Expr, right: Expr) -> Expr:
    return lambda scope: left(scope) or right(scope)


def _and_node(left: Expr, right: Expr) -> Expr:
    return lambda scope: left(scope) and right(scope)


def _item_node(node: Expr, key: Any) -> Expr:
    return lambda scope: _item(node(scope), key)


def _attribute_node(node: Expr, name: str) -> Expr:
    return lambda scope: _attribute(node(scope), name)


def _test_node(node: Expr, test: Callable[[Any], bool], negate: bool) -> Expr:
    return lambda scope: test(node(scope)) != negate


class _ExprParser:
    """Recursive descent over Jinja's expression grammar, building closures."""

    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.pos = 0
        self.depth = 0
        self.names: set[str] = set()

    # token helpers
    def peek(self, offset: int = 0) -> tuple[str, Any]:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def at(self, *ops: str) -> bool:
        kind, value = self.peek()
        return kind == "op" and value in ops

    def take(self, op: str) -> None:
        kind, value = self.peek()
        if kind != "op" or value != op:
            raise TemplateError(f"expected {op!r}, found {value!r}")
        self.pos += 1

    def parse_all(self) -> Expr:
        expr = self.expression()
        kind, value = self.peek()
        if kind != "end":
            raise TemplateError(f"unexpected {value!r} after the expression")
        return expr

    def expression(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TemplateError("expression is nested too deeply")
        try:
            return self.conditional()
        finally:
            self.depth -= 1

    def conditional(self) -> Expr:
        expr = self.or_expr()
        while self.at("if"):
            self.pos += 1
            condition = self.or_expr()
            otherwise: Expr | None = None
            if self.at("else"):
                self.pos += 1
                otherwise = self.expression()
            expr = self._make_if(expr, condition, otherwise)
        return expr

    @staticmethod
    def _make_if(then: Expr, condition: Expr, otherwise: Expr | None) -> Expr:
        def run(scope: Scope) -> Any:
            if condition(scope):
                return then(scope)
            return otherwise(scope) if otherwise is not None else UNDEFINED

        return run

    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.at("or"):
            self.pos += 1
            right = self.and_expr()
            left = _or_node(left, right)
        return left

    def and_expr(self) -> Expr:
        left = self.not_expr()
        while self.at("and"):
            self.pos += 1
            right = self.not_expr()
            left = _and_node(left, right)
        return left

    def not_expr(self) -> Expr:
        if self.at("not"):
            self.pos += 1
            inner = self.not_expr()
            return lambda s: not inner(s)
        return self.compare()

    def compare(self) -> Expr:
        left = self.concat()
        while True:
            negate = False
            if self.at("==", "!=", "<", ">", "<=", ">=", "in"):
                op = self.peek()[1]
                self.pos += 1
            elif self.at("not") and self.peek(1) == ("op", "in"):
                op, negate = "in", True
                self.pos += 2
            else:
                return left
            right = self.concat()
            left = self._binary(_COMPARE[op], left, right, op, negate=negate)

    def concat(self) -> Expr:
        left = self.additive()
        while self.at("~"):
            self.pos += 1
            right = self.additive()
            left = self._binary(_ARITHMETIC["~"], left, right, "~")
        return left

    def additive(self) -> Expr:
        left = self.multiplicative()
        while self.at("+", "-"):
            op = self.peek()[1]
            self.pos += 1
            right = self.multiplicative()
            left = self._binary(_ARITHMETIC[op], left, right, op)
        return left

    def multiplicative(self) -> Expr:
        left = self.power()
        while self.at("*", "/", "//", "%"):
            op = self.peek()[1]
            self.pos += 1
            right = self.power()
            left = self._binary(_ARITHMETIC[op], left, right, op)
        return left

    def power(self) -> Expr:
        left = self.unary()
        while self.at("**"):
            self.pos += 1
            right = self.unary()
            left = self._binary(_ARITHMETIC["**"], left, right, "**")
        return left

    @staticmethod
    def _binary(
        function: Callable[[Any, Any], Any],
        left: Expr,
        right: Expr,
        op: str,
        *,
        negate: bool = False,
    ) -> Expr:
        def run(scope: Scope) -> Any:
            a, b = left(scope), right(scope)
            if op not in ("==", "!=", "in", "~") and (a is UNDEFINED or b is UNDEFINED):
                raise TemplateError(f"operator {op!r} on an undefined value")
            try:
                result = function(a, b)
            except TemplateError:
                raise
            except (TypeError, ValueError, OverflowError) as exc:
                raise TemplateError(f"{_short(a)} {op} {_short(b)}: {exc}") from exc
            return (not result) if negate else result

        return run

    def unary(self, *, with_filter: bool = True) -> Expr:
        if self.at("-", "+"):
            op = self.peek()[1]
            self.pos += 1
            inner = self.unary(with_filter=False)

            def run(scope: Scope) -> Any:
                value = _number(inner(scope), op)
                return -value if op == "-" else value

            node: Expr = run
        else:
            node = self.primary()
        node = self.postfix(node)
        if with_filter:
            node = self.filters(node)
        return node

    def primary(self) -> Expr:
        kind, value = self.peek()
        if kind == "value":
            self.pos += 1
            return lambda s: value
        if kind == "name":
            self.pos += 1
            self.names.add(value)
            name: str = value
            return lambda s: s.get(name, FUNCTIONS.get(name, UNDEFINED))
        if self.at("("):
            self.pos += 1
            inner = self.expression()
            self.take(")")
            return inner
        if self.at("["):
            self.pos += 1
            items: list[Expr] = []
            while not self.at("]"):
                items.append(self.expression())
                if not self.at(","):
                    break
                self.pos += 1
            self.take("]")
            return lambda s: [item(s) for item in items]
        if self.at("{"):
            self.pos += 1
            pairs: list[tuple[Expr, Expr]] = []
            while not self.at("}"):
                key = self.expression()
                self.take(":")
                pairs.append((key, self.expression()))
                if not self.at(","):
                    break
                self.pos += 1
            self.take("}")

            def build(scope: Scope) -> Any:
                try:
                    return {key(scope): val(scope) for key, val in pairs}
                except TypeError as exc:
                    raise TemplateError(f"invalid dict key: {exc}") from exc

            return build
        raise TemplateError(f"unexpected {value!r}")

    def postfix(self, node: Expr) -> Expr:
        while True:
            if self.at("."):
                self.pos += 1
                kind, value = self.peek()
                if kind == "value" and isinstance(value, int):  # value_json.list.0
                    self.pos += 1
                    node = _item_node(node, value)
                    continue
                if not (kind in ("name", "op") and isinstance(value, str) and value.isidentifier()):
                    raise TemplateError(f"expected a name after '.', found {value!r}")
                self.pos += 1
                node = _attribute_node(node, value)
            elif self.at("["):
                self.pos += 1
                node = self._subscript(node)
            elif self.at("("):
                node = self._call(node)
            else:
                return node

    def _subscript(self, node: Expr) -> Expr:
        parts: list[Expr | None] = [None]
        while not self.at("]"):
            if self.at(":"):
                self.pos += 1
                parts.append(None)
                if len(parts) > 3:
                    raise TemplateError("a slice has at most two ':'")
                continue
            parts[-1] = self.expression()
        self.take("]")
        if len(parts) == 1:
            key = parts[0]
            if key is None:
                raise TemplateError("empty subscript")
            return lambda s: _item(node(s), key(s))

        def run(scope: Scope) -> Any:
            bounds = [None if p is None else p(scope) for p in parts]
            for bound in bounds:
                if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                    raise TemplateError(f"slice bounds must be integers, got {_short(bound)}")
            return _item(node(scope), slice(*bounds))

        return run

    def _arguments(self) -> tuple[list[Expr], dict[str, Expr]]:
        self.take("(")
        args: list[Expr] = []
        kwargs: dict[str, Expr] = {}
        while not self.at(")"):
            kind, value = self.peek()
            if kind == "name" and self.peek(1) == ("op", "="):
                self.pos += 2
                kwargs[value] = self.expression()
            else:
                if kwargs:
                    raise TemplateError("positional argument after a keyword argument")
                args.append(self.expression())
            if not self.at(","):
                break
            self.pos += 1
        self.take(")")
        return args, kwargs

    def _call(self, node: Expr) -> Expr:
        args, kwargs = self._arguments()

        def run(scope: Scope) -> Any:
            target = node(scope)
            values = [arg(scope) for arg in args]
            named = {key: arg(scope) for key, arg in kwargs.items()}
            if isinstance(target, _Method):
                return _guard("method", target.function, [target.owner, *values], named)
            if callable(target) and target in _CALLABLE:
                return _guard("function", target, values, named)
            if target is UNDEFINED:
                raise TemplateError("call of an undefined function")
            raise TemplateError(f"{_short(target)} is not callable")

        return run

    def filters(self, node: Expr) -> Expr:
        while True:
            if self.at("|"):
                self.pos += 1
                kind, name = self.peek()
                if kind != "name" or name not in FILTERS:
                    raise TemplateError(f"unsupported filter {name!r}")
                self.pos += 1
                args: list[Expr] = []
                kwargs: dict[str, Expr] = {}
                if self.at("("):
                    args, kwargs = self._arguments()
                node = self._make_filter(node, name, args, kwargs)
            elif self.at("is"):
                self.pos += 1
                negate = False
                if self.at("not"):
                    self.pos += 1
                    negate = True
                kind, name = self.peek()
                if kind == "value" and name is None:
                    name = "none"
                elif kind == "value" and isinstance(name, bool):
                    name = "true" if name else "false"
                elif kind != "name":
                    raise TemplateError(f"expected a test name after 'is', found {name!r}")
                if name not in TESTS:
                    raise TemplateError(f"unsupported test {name!r}")
                self.pos += 1
                test = TESTS[name]
                node = _test_node(node, test, negate)
            else:
                return node

    @staticmethod
    def _make_filter(node: Expr, name: str, args: list[Expr], kwargs: dict[str, Expr]) -> Expr:
        function = FILTERS[name]

        def run(scope: Scope) -> Any:
            value = node(scope)
            values = [arg(scope) for arg in args]
            named = {key: arg(scope) for key, arg in kwargs.items()}
            return _guard(f"filter {name}", function, [value, *values], named)

        return run


_CALLABLE: Final = frozenset(FUNCTIONS.values())

# ----- statements --------------------------------------------------------------------------------

Node = Callable[[Scope, list[str]], None]


def _text_node(text: str) -> Node:
    def run(scope: Scope, out: list[str]) -> None:
        out.append(text)

    return run


def _output_node(expr: Expr) -> Node:
    def run(scope: Scope, out: list[str]) -> None:
        out.append(to_text(expr(scope)))

    return run


def _set_node(name: str, expr: Expr) -> Node:
    def run(scope: Scope, out: list[str]) -> None:
        scope[name] = expr(scope)

    return run


def _if_node(branches: list[tuple[Expr | None, list[Node]]]) -> Node:
    def run(scope: Scope, out: list[str]) -> None:
        for condition, body in branches:
            if condition is None or condition(scope):
                for node in body:
                    node(scope, out)
                return

    return run


_BLOCK_START = re.compile(r"\{[{%#]")
_SET = re.compile(r"set\s+([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", re.DOTALL)


def _scan_block(source: str, start: int, closer: str) -> int:
    """Return the index of ``closer`` ending the block that starts at ``start``, quote-aware."""
    quote: str | None = None
    i = start
    while i < len(source):
        char = source[i]
        if quote is not None:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = None
        elif char in "'\"" and closer != "#}":
            quote = char
        elif source.startswith(closer, i):
            return i
        i += 1
    raise TemplateError(f"unclosed block: missing {closer!r}")


def _lex_blocks(source: str) -> list[tuple[str, str]]:
    """Split a template into ("text", s), ("expr", s) and ("stmt", s), applying '-' trimming."""
    parts: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    while True:
        match = _BLOCK_START.search(source, pos)
        text = source[pos : match.start() if match else len(source)]
        if trim_next:
            text = text.lstrip()
        if match is None:
            if text:
                parts.append(("text", text))
            return parts
        opener = match.group()
        inner_start = match.end()
        if source.startswith("-", inner_start):
            text = text.rstrip()
            inner_start += 1
        if text:
            parts.append(("text", text))
        closer = {"{{": "}}", "{%": "%}", "{#": "#}"}[opener]
        end = _scan_block(source, inner_start, closer)
        inner = source[inner_start:end]
        trim_next = inner.endswith("-")
        if trim_next:
            inner = inner[:-1]
        if opener == "{{":
            parts.append(("expr", inner))
        elif opener == "{%":
            parts.append(("stmt", inner.strip()))
        pos = end + len(closer)


class Template:
    """A parsed template; :meth:`render` evaluates it against variables such as ``value``."""

    __slots__ = ("_expr", "_nodes", "source", "uses")

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise TemplateError(f"a template must be a string, got {_short(source)}")
        if len(source) > MAX_TEMPLATE_CHARS:
            raise TemplateError(f"template is longer than {MAX_TEMPLATE_CHARS} characters")
        self.source = source
        self.uses: set[str] = set()
        parts = _lex_blocks(source)
        # A template that is one expression yields that expression's native value (a number
        # stays a number), as Home Assistant's native rendering does; others yield text.
        meaningful = [p for p in parts if not (p[0] == "text" and not p[1].strip())]
        self._expr: Expr | None = None
        if len(meaningful) == 1 and meaningful[0][0] == "expr":
            self._expr = self._parse_expr(meaningful[0][1])
            self._nodes: list[Node] = []
        else:
            self._nodes = self._parse_nodes(parts)

    def _parse_expr(self, source: str) -> Expr:
        parser = _ExprParser(source)
        expr = parser.parse_all()
        self.uses |= parser.names
        return expr

    def _parse_nodes(self, parts: list[tuple[str, str]]) -> list[Node]:
        root: list[Node] = []
        # Each open "if" keeps its branches and the body being filled.
        stack: list[tuple[list[tuple[Expr | None, list[Node]]], list[Node]]] = []
        body = root
        for kind, text in parts:
            if kind == "text":
                body.append(_text_node(text))
            elif kind == "expr":
                body.append(_output_node(self._parse_expr(text)))
            else:
                word = text.split(None, 1)[0] if text else ""
                rest = text[len(word) :].strip()
                if word == "if":
                    branches: list[tuple[Expr | None, list[Node]]] = [(self._parse_expr(rest), [])]
                    stack.append((branches, body))
                    body = branches[-1][1]
                elif word in ("elif", "else"):
                    if not stack:
                        raise TemplateError(f"'{word}' outside an if block")
                    branches = stack[-1][0]
                    if branches[-1][0] is None:
                        raise TemplateError(f"'{word}' after 'else'")
                    condition = self._parse_expr(rest) if word == "elif" else None
                    if word == "else" and rest:
                        raise TemplateError("'else' takes no condition")
                    branches.append((condition, []))
                    body = branches[-1][1]
                elif word == "endif":
                    if not stack:
                        raise TemplateError("'endif' without 'if'")
                    branches, parent = stack.pop()
                    parent.append(_if_node(branches))
                    body = parent
                elif word == "set":
                    match = _SET.fullmatch(text)
                    if match is None:
                        raise TemplateError(f"invalid set statement {text[:40]!r}")
                    body.append(_set_node(match.group(1), self._parse_expr(match.group(2))))
                else:
                    raise TemplateError(f"unsupported statement {word!r}")
        if stack:
            raise TemplateError("missing 'endif'")
        return root

    def render(self, variables: Mapping[str, Any]) -> Any:
        """Evaluate: the native value for a one-expression template, else the stripped text.

        Raises TemplateError when the template fails (``float`` of a word with no default, an
        operator on an undefined value ...). A missing key evaluates to UNDEFINED.
        """
        scope: Scope = dict(variables)
        try:
            if self._expr is not None:
                result = self._expr(scope)
                if isinstance(result, _Method) or callable(result):
                    raise TemplateError("a template must not output a function")
                return result
            out: list[str] = []
            for node in self._nodes:
                node(scope, out)
            text = "".join(out)
        except RecursionError as exc:  # pragma: no cover - MAX_DEPTH prevents it
            raise TemplateError("template is nested too deeply") from exc
        if len(text) > MAX_OUTPUT_CHARS:
            raise TemplateError("template output is too long")
        return text.strip()

    def __repr__(self) -> str:
        return f"Template({self.source!r})"
