"""Durations written by people: ``5``, ``500ms``, ``1h30m``, ``01:30:00``, all in seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS: dict[str, float] = {
    "ms": 0.001,
    "msec": 0.001,
    "millisecond": 0.001,
    "milliseconds": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}
_NUMBER = r"\d+(?:\.\d+)?|\.\d+"
_PART = re.compile(rf"\s*({_NUMBER})\s*([a-z]+)\s*")
_PLAIN = re.compile(rf"(?:{_NUMBER})")
_CLOCK = re.compile(r"(\d+):([0-5]\d)(?::([0-5]\d(?:\.\d+)?))?")


def _expected(value: object) -> ValueError:
    return ValueError(f"expected a number of seconds or a duration like '5s', got {value!r}")


def _parse_units(text: str, original: str) -> float:
    total = 0.0
    seen: set[float] = set()
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None or match.end() == pos:
            raise _expected(original)
        unit = _UNITS.get(match.group(2))
        if unit is None:
            raise ValueError(
                f"unknown duration unit {match.group(2)!r} in {original!r}: use ms, s, m, h, d or w"
            )
        if unit in seen:
            raise ValueError(f"duration {original!r} gives the same unit twice")
        seen.add(unit)
        total += float(match.group(1)) * unit
        pos = match.end()
    return total


def parse_duration(value: int | float | str) -> float:
    """Return ``value`` in seconds; raise ValueError saying why if it is not a duration."""
    if isinstance(value, bool):
        # True is an int; a duration of "yes" is a mistake, not one second.
        raise _expected(value)
    if isinstance(value, int | float):
        seconds = float(value)
        original: object = value
    elif isinstance(value, str):
        text = value.strip().lower()
        original = value
        if text.startswith("-"):
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        if not text:
            raise _expected(value)
        if _PLAIN.fullmatch(text):
            seconds = float(text)
        elif clock := _CLOCK.fullmatch(text):
            hours, minutes, secs = clock.groups()
            seconds = int(hours) * 3600 + int(minutes) * 60 + float(secs or 0)
        else:
            seconds = _parse_units(text, value)
    else:
        raise _expected(value)
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite, got {original!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {original!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: seconds as a float, accepting everything :func:`parse_duration` does."""
