"""JSON paths of the profile language.

A path is dotted keys (``ENERGY.Power``, ``params.switch:{channel}.output``):

- a plain segment is an object key; digits index a list (``tp.1``);
- a segment with placeholders matches every object key it fits and binds the variables
  (``POWER{n}`` matches ``POWER`` and ``POWER2``; ``switch:{channel}`` binds ``channel``);
- ``*`` is every item of a list (or value of an object) and binds ``index`` (0-based);
- the empty path is the whole payload.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from adapters.firmware.templates import Slot, Template

Bindings = dict[str, Any]
T = TypeVar("T")


class PathError(ValueError):
    """A path is not well formed."""


@dataclass(frozen=True, slots=True)
class _Key:
    key: str
    index: int | None  # the key read as a list index, when it is digits


# Keys a pattern segment remembers: the same few keys arrive in every message of a device,
# but a payload's keys are the sender's, so the memory is bounded.
_MEMO_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class KeyPattern:
    """A path segment with placeholders: the object keys it fits, and what they bind."""

    regex: re.Pattern[str]
    ints: frozenset[str]  # variables converted to int when bound
    # key -> the variables it binds (typed), or None when it does not fit
    memo: dict[str, dict[str, Any] | None] = field(default_factory=dict, compare=False)

    def bind(self, key: str) -> dict[str, Any] | None:
        """The variables ``key`` binds, or None when it does not fit (remembered)."""
        try:
            return self.memo[key]
        except KeyError:
            pass
        match = self.regex.fullmatch(key)
        found: dict[str, Any] | None = None
        if match is not None:
            found = {
                name: int(value) if name in self.ints else value
                for name, value in match.groupdict().items()
            }
        if len(self.memo) >= _MEMO_LIMIT:
            self.memo.clear()
        self.memo[key] = found
        return found


@dataclass(frozen=True, slots=True)
class _Star:
    pass


Segment = _Key | KeyPattern | _Star


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled path."""

    source: str
    segments: tuple[Segment, ...]
    #: True when the path has no patterns or stars (one value at most).
    literal: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "literal", all(isinstance(s, _Key) for s in self.segments))

    def __add__(self, other: JsonPath) -> JsonPath:
        source = ".".join(s for s in (self.source, other.source) if s)
        return JsonPath(source, self.segments + other.segments)

    def get(self, data: Any) -> Any:
        """The value at a literal path, or :data:`MISSING`."""
        node = data
        for segment in self.segments:
            assert isinstance(segment, _Key)  # callers check .literal
            # Objects first, inline: the hot path of every decoded message.
            node = node.get(segment.key, MISSING) if type(node) is dict else _step(node, segment)
            if node is MISSING:
                return MISSING
        return node

    def object_keys(self) -> tuple[str, ...] | None:
        """The path as plain object keys (no list indices, patterns or stars), or None."""
        keys: list[str] = []
        for segment in self.segments:
            if not isinstance(segment, _Key) or segment.index is not None:
                return None
            keys.append(segment.key)
        return tuple(keys)

    def pattern_then_keys(self) -> tuple[KeyPattern, tuple[str, ...]] | None:
        """One pattern segment then plain object keys (``{sensor}.Temperature``): the pattern
        and the keys; else None."""
        if len(self.segments) < 2 or not isinstance(self.segments[0], KeyPattern):
            return None
        keys: list[str] = []
        for segment in self.segments[1:]:
            if not isinstance(segment, _Key) or segment.index is not None:
                return None
            keys.append(segment.key)
        return self.segments[0], tuple(keys)

    def split_pattern(self) -> tuple[JsonPath, KeyPattern] | None:
        """Literal keys then one pattern segment: (the literal part, the pattern); else None."""
        if not self.segments or not isinstance(self.segments[-1], KeyPattern):
            return None
        head = self.segments[:-1]
        if not all(isinstance(s, _Key) for s in head):
            return None
        source = ".".join(s.key for s in head if isinstance(s, _Key))
        return JsonPath(source, head), self.segments[-1]

    def find(self, data: Any, bindings: Bindings) -> list[tuple[Any, Bindings]]:
        """Every value the path reaches, with the variables it bound.

        ``bindings`` is passed on as is where nothing is bound (the hot path: most paths are
        literal); callers never change the dicts they are given.
        """
        if self.literal:
            value = self.get(data)
            return [] if value is MISSING else [(value, bindings)]
        frontier: list[tuple[Any, Bindings]] = [(data, bindings)]
        segments = self.segments
        for position, segment in enumerate(segments):
            reached: list[tuple[Any, Bindings]] = []
            for node, bound in frontier:
                if isinstance(segment, _Key):
                    child = _step(node, segment)
                    if child is not MISSING:
                        reached.append((child, bound))
                elif isinstance(segment, _Star):
                    items = node if isinstance(node, list) else []
                    if isinstance(node, dict):
                        items = list(node.values())
                    reached.extend(
                        (child, {**bound, "index": index}) for index, child in enumerate(items)
                    )
                elif isinstance(node, dict):
                    after = segments[position + 1] if position + 1 < len(segments) else None
                    follow = after if isinstance(after, _Key) else None
                    reached.extend(_matching_keys(node, segment, bound, follow))
            if not reached:
                return []
            frontier = reached
        return frontier


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _step(node: Any, segment: _Key) -> Any:
    if isinstance(node, dict):
        return node.get(segment.key, MISSING)
    if isinstance(node, list) and segment.index is not None and segment.index < len(node):
        return node[segment.index]
    return MISSING


def _matching_keys(
    node: dict[str, Any], segment: KeyPattern, bindings: Bindings, follow: _Key | None = None
) -> list[tuple[Any, Bindings]]:
    found: list[tuple[Any, Bindings]] = []
    bind = segment.bind
    for key, child in node.items():
        if follow is not None and _step(child, follow) is MISSING:
            # The path cannot go on from here ("{sensor}.Temperature" at "Time"): skip it
            # before binding anything.
            continue
        variables = bind(key)  # JSON object keys are always text
        if variables is None:
            continue
        bound = dict(bindings)
        for name, typed in variables.items():
            if bound.setdefault(name, typed) != typed:
                break  # e.g. switch:{channel} under a topic that named another channel
        else:
            found.append((child, bound))
    return found


class PathFan(Generic[T]):
    """Paths that share their literal keys and each end in one pattern (Shelly's
    ``params.switch:{channel}``, ``params.input:{channel}``...), matched in one pass.

    Each key of the object the literal keys reach is looked up once (remembered, bounded)
    for the paths it fits, instead of every path trying every key.
    """

    def __init__(self, prefix: JsonPath) -> None:
        self.prefix = prefix
        self._members: list[tuple[T, KeyPattern]] = []
        self._memo: dict[str, tuple[tuple[T, dict[str, Any]], ...]] = {}

    def add(self, tag: T, pattern: KeyPattern) -> None:
        """Match ``pattern`` too, reporting its finds with ``tag``."""
        self._members.append((tag, pattern))
        self._memo.clear()

    def find(self, data: Any, bindings: Bindings, out: list[tuple[T, Any, Bindings]]) -> None:
        """Append ``(tag, value, bindings)`` for every key that fits a member, in key order."""
        node = self.prefix.get(data)
        if type(node) is not dict:
            return
        memo = self._memo
        for key, child in node.items():
            fits = memo.get(key)
            if fits is None:
                fits = self._fits(key)
            last: dict[str, Any] | None = None
            bound: Bindings | None = None
            for tag, variables in fits:
                if variables != last:
                    # Members that bind the same from this key share one dict (never changed).
                    last, bound = variables, dict(bindings)
                    for name, typed in variables.items():
                        if bound.setdefault(name, typed) != typed:
                            bound = None  # the topic named another channel, say
                            break
                if bound is not None:
                    out.append((tag, child, bound))

    def _fits(self, key: str) -> tuple[tuple[T, dict[str, Any]], ...]:
        found = []
        for tag, pattern in self._members:
            variables = pattern.bind(key)
            if variables is not None:
                found.append((tag, variables))
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        fits = self._memo[key] = tuple(found)
        return fits


def parse_path(text: str, patterns: Mapping[str, str], ints: frozenset[str]) -> JsonPath:
    """Compile ``text``; ``patterns`` gives each variable's regex. Raise PathError."""
    if not isinstance(text, str):
        raise PathError(f"a path is text, got {type(text).__name__}")
    text = text.strip()
    if text in ("", "."):
        return JsonPath("", ())
    segments: list[Segment] = []
    for raw in text.split("."):
        if raw == "":
            raise PathError(f"empty segment in path {text!r}")
        if raw == "*":
            segments.append(_Star())
            continue
        try:
            template = Template.parse(raw)
        except ValueError as exc:
            raise PathError(str(exc)) from None
        if template.constant:
            key = template.text()
            segments.append(_Key(key, int(key) if key.isdigit() else None))
            continue
        pieces: list[str] = []
        seen: list[str] = []
        for part in template.parts:
            if isinstance(part, str):
                pieces.append(re.escape(part))
            elif part.name in seen:
                pieces.append(f"(?P={part.name})")
            else:
                assert isinstance(part, Slot)  # parts are str or Slot
                if part.name not in patterns:
                    raise PathError(f"{{{part.name}}} has no pattern (declare it in vars)")
                seen.append(part.name)
                pieces.append(f"(?P<{part.name}>{patterns[part.name]})")
        segments.append(KeyPattern(re.compile("".join(pieces)), ints & frozenset(seen)))
    return JsonPath(text, tuple(segments))
