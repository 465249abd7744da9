"""Homie 5 datatypes: property descriptions, strict payload parsing and ``/set`` formatting.

Everything here follows the "Payloads" and "Formats" sections of the Homie 5 convention
(https://homieiot.github.io/specification/): integers and floats as plain literals within the
format's ``[min]:[max][:step]``, booleans exactly ``true``/``false``, enums exactly one of the
format's values, colours as ``rgb,r,g,b`` / ``hsv,h,s,v`` / ``xyz,x,y``, ISO 8601 date-times
and ``PTxHxMxS`` durations, JSON arrays or objects, and the single byte 0x00 for "".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

DATATYPES = frozenset(
    {"integer", "float", "boolean", "string", "enum", "color", "datetime", "duration", "json"}
)
COLOR_FORMATS = ("rgb", "hsv", "xyz")
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(r"^-?[0-9]+$")
# Only digits, one '.', '-', and an exponent: no '+', spaces, 'NaN' or 'Infinity'.
_FLOAT = re.compile(r"^-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE]-?[0-9]+)?$")
_DURATION = re.compile(
    r"^PT(?:([0-9]+(?:\.[0-9]+)?)H)?(?:([0-9]+(?:\.[0-9]+)?)M)?(?:([0-9]+(?:\.[0-9]+)?)S)?$"
)
_COLOR_RANGES = {
    "rgb": ((0.0, 255.0), (0.0, 255.0), (0.0, 255.0)),
    "hsv": ((0.0, 360.0), (0.0, 100.0), (0.0, 100.0)),
    "xyz": ((0.0, 1.0), (0.0, 1.0)),
}
EMPTY_STRING = b"\x00"  # Homie's encoding of "" (an empty MQTT payload deletes the topic)


class PayloadError(ValueError):
    """A payload or format that does not follow the convention; the message says why."""


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One property of a ``$description``, with its format already parsed."""

    node: str
    id: str
    name: str
    datatype: str
    format: str | None = None
    settable: bool = False
    retained: bool = True
    unit: str | None = None
    minimum: float | None = None  # integer/float ranges
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()  # enum values; colour formats; boolean labels
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """``<node>/<property>``, the topic levels below the device."""
        return f"{self.node}/{self.id}"


def _float_literal(text: str, what: str) -> float:
    if not _FLOAT.match(text):
        raise PayloadError(f"{what} {text[:40]!r} is not a Homie float literal")
    value = float(text)
    if not math.isfinite(value):
        raise PayloadError(f"{what} {text[:40]!r} is out of the float range")
    return value


def _integer_literal(text: str, what: str) -> int:
    if not _INTEGER.match(text) or len(text) > 21:
        raise PayloadError(f"{what} {text[:40]!r} is not a Homie integer literal")
    value = int(text)
    if not _INT64[0] <= value <= _INT64[1]:
        raise PayloadError(f"{what} {text[:40]!r} is out of the 64-bit integer range")
    return value


def parse_format(datatype: str, fmt: str | None) -> dict[str, Any]:
    """Return the parsed ``format`` of a property (keys of :class:`PropertySpec`).

    Raises PayloadError for a format the convention does not allow for ``datatype``.
    """
    if datatype in ("integer", "float"):
        if fmt is None or fmt == "":
            return {}
        parts = fmt.split(":")
        if len(parts) not in (2, 3):
            raise PayloadError(f"format {fmt[:60]!r} must be [min]:[max][:step]")
        literal = _integer_literal if datatype == "integer" else _float_literal
        low = literal(parts[0], "minimum") if parts[0] else None
        high = literal(parts[1], "maximum") if parts[1] else None
        step = literal(parts[2], "step") if len(parts) == 3 and parts[2] else None
        if step is not None and step <= 0:
            raise PayloadError(f"format {fmt[:60]!r}: the step must be greater than 0")
        if low is not None and high is not None and low > high:
            raise PayloadError(f"format {fmt[:60]!r}: the minimum is above the maximum")
        return {"minimum": low, "maximum": high, "step": step}
    if datatype == "enum":
        if not fmt:
            raise PayloadError("an enum needs a format listing its values")
        values = tuple(fmt.split(","))
        if any(v == "" for v in values):
            raise PayloadError(f"enum format {fmt[:60]!r} has an empty value")
        return {"choices": values}
    if datatype == "color":
        if not fmt:
            raise PayloadError("a color needs a format: rgb, hsv and/or xyz")
        formats = tuple(fmt.split(","))
        unknown = [f for f in formats if f not in COLOR_FORMATS]
        if unknown:
            raise PayloadError(f"unknown color format {unknown[0][:20]!r} (use rgb, hsv or xyz)")
        return {"choices": formats}
    if datatype == "boolean":
        if fmt is None:
            return {}
        labels = tuple(fmt.split(","))
        if len(labels) != 2 or "" in labels:
            raise PayloadError(f"boolean format {fmt[:60]!r} must name false and true: 'off,on'")
        return {"choices": labels}
    return {}  # string, datetime, duration: no format; json: a schema we do not enforce


def _decode(payload: bytes) -> str:
    if payload.startswith(b"\xef\xbb\xbf"):
        raise PayloadError("payload starts with a UTF-8 byte order mark")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _round_to_step(spec: PropertySpec, value: float) -> float:
    # The convention: round to the nearest step from min (else max), then check the range.
    if spec.step is None:
        return value
    base = spec.minimum if spec.minimum is not None else spec.maximum
    base = 0.0 if base is None else base
    return base + round((value - base) / spec.step) * spec.step


def _check_range(spec: PropertySpec, value: float) -> None:
    if spec.minimum is not None and value < spec.minimum:
        raise PayloadError(f"{value:g} is below the minimum {spec.minimum:g}")
    if spec.maximum is not None and value > spec.maximum:
        raise PayloadError(f"{value:g} is above the maximum {spec.maximum:g}")


def parse_color(text: str, allowed: tuple[str, ...]) -> tuple[str, tuple[float, ...]]:
    """``rgb,100,100,100`` → (``rgb``, (100.0, 100.0, 100.0)); PayloadError if it is not one."""
    kind, _, rest = text.partition(",")
    if kind not in _COLOR_RANGES:
        raise PayloadError(f"color {text[:40]!r} must start with rgb, hsv or xyz")
    if allowed and kind not in allowed:
        raise PayloadError(f"color format {kind!r} is not one of {','.join(allowed)}")
    ranges = _COLOR_RANGES[kind]
    parts = rest.split(",") if rest else []
    if len(parts) != len(ranges):
        raise PayloadError(f"{kind} color {text[:40]!r} needs {len(ranges)} numbers")
    numbers: list[float] = []
    for part, (low, high) in zip(parts, ranges, strict=True):
        number = _float_literal(part, f"{kind} component")
        if not low <= number <= high:
            raise PayloadError(f"{kind} component {part!r} is outside {low:g}..{high:g}")
        numbers.append(number)
    return kind, tuple(numbers)


def parse_duration(text: str) -> float:
    """``PT12H5M46S`` → seconds; PayloadError if it is not an ISO 8601 time duration."""
    match = _DURATION.match(text)
    if not match or text == "PT":
        raise PayloadError(f"duration {text[:40]!r} is not PTxHxMxS")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def parse_value(spec: PropertySpec, payload: bytes) -> Any:
    """Return a property's payload as a Python value, strictly by its datatype and format.

    integer → int, float → float, boolean → bool, enum/string/datetime → str, color →
    (kind, numbers), duration → seconds, json → list or dict. Raises PayloadError saying why.
    """
    if payload == EMPTY_STRING:
        if spec.datatype == "string":
            return ""
        raise PayloadError(f"an empty value is not a valid {spec.datatype}")
    text = _decode(payload)
    datatype = spec.datatype
    if datatype == "integer":
        value = _integer_literal(text, "integer")
        rounded = int(_round_to_step(spec, value))
        _check_range(spec, rounded)
        return rounded
    if datatype == "float":
        number = _round_to_step(spec, _float_literal(text, "float"))
        _check_range(spec, number)
        return number
    if datatype == "boolean":
        if text == "true":
            return True
        if text == "false":
            return False
        raise PayloadError(f"boolean must be exactly 'true' or 'false', got {text[:40]!r}")
    if datatype == "enum":
        if text not in spec.choices:
            raise PayloadError(f"{text[:40]!r} is not one of {','.join(spec.choices)[:200]}")
        return text
    if datatype == "string":
        return text
    if datatype == "color":
        return parse_color(text, spec.choices)
    if datatype == "datetime":
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise PayloadError(f"datetime {text[:40]!r} is not ISO 8601") from None
        return text
    if datatype == "duration":
        return parse_duration(text)
    if datatype == "json":
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"not JSON: {exc}") from None
        if not isinstance(data, dict | list):
            raise PayloadError("a json property must hold a JSON array or object")
        return data
    raise PayloadError(f"unknown datatype {datatype!r}")  # pragma: no cover - checked earlier


def _float_text(value: float) -> str:
    # repr() is the shortest exact literal, but writes '1e+16'; Homie floats allow no '+'.
    return repr(value).replace("e+", "e")


def format_value(spec: PropertySpec, value: Any) -> bytes:
    """Return the ``/set`` payload for ``value`` in the property's datatype.

    Numbers are rounded to the step and must fit the range; raises PayloadError otherwise.
    """
    datatype = spec.datatype
    if datatype in ("integer", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PayloadError(f"{spec.path} takes a number, got {value!r}")
        if not math.isfinite(value):
            raise PayloadError(f"{spec.path} takes a finite number, got {value!r}")
        number = _round_to_step(spec, float(value))
        if datatype == "integer":
            number = float(round(number))
        _check_range(spec, number)
        text = str(int(number)) if datatype == "integer" else _float_text(number)
        return text.encode()
    if datatype == "boolean":
        if not isinstance(value, bool):
            raise PayloadError(f"{spec.path} takes true or false, got {value!r}")
        return b"true" if value else b"false"
    if datatype == "enum":
        if value not in spec.choices:
            raise PayloadError(f"{value!r} is not one of {','.join(spec.choices)[:200]}")
        return str(value).encode()
    if datatype == "string":
        if not isinstance(value, str):
            raise PayloadError(f"{spec.path} takes text, got {value!r}")
        return value.encode() if value else EMPTY_STRING
    raise PayloadError(f"the hub cannot set a {datatype} property")
