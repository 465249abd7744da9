"""The fixed set of value transforms a profile may apply to a reading or a command parameter.

Each transform takes a value and returns the new value, :data:`SKIP` (the reading carries
no value this time, e.g. ESPHome's ``nan``) or raises :class:`TransformError` saying why the
value does not fit (the whole message is then rejected).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from adapters.firmware.templates import text_of


class TransformError(ValueError):
    """A value does not fit a transform."""


class _Skip:
    def __repr__(self) -> str:
        return "SKIP"


SKIP: Final = _Skip()

Transform = Callable[[Any], Any]

# Words firmwares publish when a sensor has no reading; not an error, just nothing to report.
_NO_READING = frozenset({"", "nan", "-nan", "unknown", "unavailable", "none", "null"})

NAMES = ("number", "scale", "offset", "round", "wh_to_kwh", "on_off", "map", "lower")


def _numeric(value: Any, what: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TransformError(f"{what}: expected a number, got {value!r:.60}")
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise TransformError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else SKIP
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _NO_READING:
            return SKIP
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise TransformError(f"expected a number, got {value!r:.60}") from None
        return number if math.isfinite(number) else SKIP
    raise TransformError(f"expected a number, got {value!r:.60}")


def _scale(factor: float) -> Transform:
    def apply(value: Any) -> Any:
        return _numeric(value, "scale") * factor

    return apply


def _offset(amount: float) -> Transform:
    def apply(value: Any) -> Any:
        return _numeric(value, "offset") + amount

    return apply


def _round(digits: int) -> Transform:
    quantum = Decimal(1).scaleb(-digits)

    def apply(value: Any) -> Any:
        number = _numeric(value, "round")
        # Half away from zero, on the decimal the number stands for: Dimmer 50 x 2.55 is
        # 127.49999999999999 in binary but 127.5 to everyone, and rounds to 128.
        near = round(float(number), 9)
        if not math.isfinite(near):
            raise TransformError(f"round: expected a finite number, got {value!r:.60}")
        if near.is_integer():  # every float from 2**52 on too: nothing to round
            return int(near) if digits == 0 else near
        if round(near, digits) == near:
            # Already no more decimals than asked for (most readings): its shortest decimal
            # form has at most ``digits`` of them, so the decimal rounding keeps it as it is.
            return near
        exact = Decimal(repr(near)).quantize(quantum, ROUND_HALF_UP)
        return int(exact) if digits == 0 else float(exact)

    return apply


def _wh_to_kwh(value: Any) -> Any:
    return _numeric(value, "wh_to_kwh") / 1000


def _on_off(on_word: str, off_word: str) -> Transform:
    on, off = on_word.casefold(), off_word.casefold()

    def apply(value: Any) -> Any:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            word = value.strip().casefold()
            if word == on:
                return "on"
            if word == off:
                return "off"
        raise TransformError(f"expected {on_word!r} or {off_word!r}, got {value!r:.60}")

    return apply


def _map(table: dict[str, Any]) -> Transform:
    def apply(value: Any) -> Any:
        if isinstance(value, dict | list):
            raise TransformError(f"expected one of {', '.join(table)}, got {value!r:.60}")
        key = text_of(value)
        if key not in table:
            raise TransformError(f"expected one of {', '.join(table)}, got {value!r:.60}")
        return table[key]

    return apply


def _lower(value: Any) -> Any:
    if not isinstance(value, str):
        raise TransformError(f"expected text, got {value!r:.60}")
    return value.lower()


def compile_transform(item: Any) -> Transform:
    """Build one transform from its profile form; raise ValueError saying what is wrong."""
    if isinstance(item, str):
        simple = {"number": _number, "wh_to_kwh": _wh_to_kwh, "lower": _lower}
        if item in simple:
            return simple[item]
        if item in NAMES:
            raise ValueError(f"transform {item!r} needs an argument, e.g. {{{item}: ...}}")
        raise ValueError(f"unknown transform {item!r}; use one of {', '.join(NAMES)}")
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError("a transform is a name or a one-key mapping such as {scale: 2.55}")
    ((name, arg),) = item.items()
    if name in ("scale", "offset"):
        if isinstance(arg, bool) or not isinstance(arg, int | float) or not math.isfinite(arg):
            raise ValueError(f"{name} takes a number, got {arg!r}")
        return _scale(float(arg)) if name == "scale" else _offset(float(arg))
    if name == "round":
        if isinstance(arg, bool) or not isinstance(arg, int) or not 0 <= arg <= 9:
            raise ValueError(f"round takes a number of digits 0-9, got {arg!r}")
        return _round(arg)
    if name == "on_off":
        if (
            not isinstance(arg, list)
            or len(arg) != 2
            or not all(isinstance(w, str) and w for w in arg)
        ):
            raise ValueError("on_off takes two words: [ON-word, OFF-word]")
        return _on_off(arg[0], arg[1])
    if name == "map":
        if not isinstance(arg, dict) or not arg:
            raise ValueError("map takes a non-empty mapping of values to values")
        return _map({text_of(k): v for k, v in arg.items()})
    if name in ("number", "wh_to_kwh", "lower"):
        raise ValueError(f"transform {name!r} takes no argument; write it as a plain name")
    raise ValueError(f"unknown transform {name!r}; use one of {', '.join(NAMES)}")


def apply_all(transforms: Sequence[Transform], value: Any) -> Any:
    """Run ``value`` through ``transforms`` in order (stopping at SKIP)."""
    for transform in transforms:
        value = transform(value)
        if value is SKIP:
            return SKIP
    return value
