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
from typing import Any

from adapters.firmware.templates import Slot, Template

Bindings = dict[str, Any]


class PathError(ValueError):
    """A path is not well formed."""


@dataclass(frozen=True, slots=True)
class _Key:
    key: str
    index: int | None  # the key read as a list index, when it is digits


@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    ints: frozenset[str]  # variables converted to int when bound


@dataclass(frozen=True, slots=True)
class _Star:
    pass


Segment = _Key | _Pattern | _Star


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
            node = _step(node, segment)
            if node is MISSING:
                return MISSING
        return node

    def find(self, data: Any, bindings: Bindings) -> list[tuple[Any, Bindings]]:
        """Every value the path reaches, with the variables it bound.

        ``bindings`` is passed on as is where nothing is bound (the hot path: most paths are
        literal); callers never change the dicts they are given.
        """
        if self.literal:
            value = self.get(data)
            return [] if value is MISSING else [(value, bindings)]
        frontier: list[tuple[Any, Bindings]] = [(data, bindings)]
        for segment in self.segments:
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
                    reached.extend(_matching_keys(node, segment, bound))
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
    node: dict[str, Any], segment: _Pattern, bindings: Bindings
) -> list[tuple[Any, Bindings]]:
    found: list[tuple[Any, Bindings]] = []
    for key, child in node.items():
        match = segment.regex.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            continue
        bound = dict(bindings)
        for name, value in match.groupdict().items():
            typed: Any = int(value) if name in segment.ints else value
            if bound.setdefault(name, typed) != typed:
                break  # e.g. switch:{channel} under a topic that named another channel
        else:
            found.append((child, bound))
    return found


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
        segments.append(_Pattern(re.compile("".join(pieces)), ints & frozenset(seen)))
    return JsonPath(text, tuple(segments))
