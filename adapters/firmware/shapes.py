"""Shapes: how a rule's decode plan read one plain JSON message, compiled for the next ones.

A device's periodic telemetry keeps its shape: the same objects with the same keys, in the
same order; only the values move (a Shelly's ``apower``, a Tasmota's ``ENERGY.Power``). The
decode plan still works out, for every message, which groups match which keys, what they
bind and which mappings find values: most of what reading such a message costs.

A :class:`Shape` records, from one message the plan read, every object the plan looked into
(its keys, in order), the members it needed to stay plain values, and where each reading's
value sat. For a message whose objects at those places have the same keys in the same order,
the plan makes the same choices at every step, so it would give the same readings from the
same places: the shape reads the values straight from there.

That holds only for plans whose choices depend on keys alone. :func:`build_shape` gives None
(read the plan's way) for anything else: a group with conditions (they look at values), a
place or path with list indices or stars, a mapping path other than object keys (after at
most one pattern), or a place that is not an object. It also checks its own reading of the
message against the plan's, value for value, before a shape is kept. Variables the rule binds
from values are the caller's to rule out (see ``adapter``): the shape does not look at them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from adapters.firmware.decode import DecodePlan, MapPlan, Reading

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Shape(Generic[T]):
    """Where a plain message's readings sit, and what its objects must look like."""

    # The message's own keys, then every other object looked into: (index of the object it
    # sits in, its key there, its own keys in order). Object n is the n-th of these.
    root_keys: tuple[str, ...]
    objects: tuple[tuple[int, str, tuple[str, ...]], ...]
    scalars: tuple[tuple[int, str], ...]  # members that must not be objects
    reads: tuple[tuple[int, str, T], ...]  # (object, key) of each reading's value, its tag

    def read(self, data: Any) -> list[tuple[Any, T]] | None:
        """Each reading's value with its tag, in the plan's order; None when ``data`` is not
        of this shape."""
        if type(data) is not dict or tuple(data) != self.root_keys:
            return None
        nodes = [data]
        for parent, key, keys in self.objects:
            # Present: the keys of the object it sits in were checked.
            node = nodes[parent][key]
            if type(node) is not dict or tuple(node) != keys:
                return None
            nodes.append(node)
        for parent, key in self.scalars:
            if type(nodes[parent][key]) is dict:
                return None
        return [(nodes[parent][key], tag) for parent, key, tag in self.reads]


class _NotPlain(Exception):
    """The plan's reading of this message depends on more than keys."""


class _Recorder:
    """The objects of one message the plan looks into, numbered as a shape numbers them."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.nodes: list[dict[str, Any]] = [data]
        self.objects: list[tuple[int, str, tuple[str, ...]]] = []
        self.scalars: dict[tuple[int, str], None] = {}  # ordered, without repeats
        self._numbers: dict[int, int] = {id(data): 0}

    def child(self, parent: int, key: str) -> int:
        """The object at ``key`` of object ``parent`` (present), recorded."""
        node = self.nodes[parent][key]
        if type(node) is not dict:
            raise _NotPlain
        number = self._numbers.get(id(node))
        if number is None:
            number = self._numbers[id(node)] = len(self.nodes)
            self.nodes.append(node)
            self.objects.append((parent, key, tuple(node)))
        return number

    def place(self, keys: Sequence[str], start: int = 0) -> int | None:
        """The object at ``keys`` from object ``start``, recording each on the way; None when
        a key is missing (the keys of the object it would sit in are recorded)."""
        number = start
        for key in keys:
            if key not in self.nodes[number]:
                return None
            number = self.child(number, key)
        return number

    def value(self, keys: Sequence[str], start: int) -> tuple[int, str] | None:
        """Where the value at ``keys`` from object ``start`` sits, or None when missing."""
        holder = self.place(keys[:-1], start)
        if holder is None or keys[-1] not in self.nodes[holder]:
            return None
        return holder, keys[-1]


def build_shape(
    plan: DecodePlan,
    data: Any,
    bindings: dict[str, Any],
    readings: Sequence[Reading],
    tags: Sequence[T],
) -> Shape[T] | None:
    """The shape of ``data`` as ``plan`` read it (``readings``, from ``plan.readings(data,
    bindings)``), each reading tagged with ``tags[i]``; None when it cannot be read by shape."""
    if type(data) is not dict or len(tags) != len(readings):
        return None
    recorder = _Recorder(data)
    try:
        places = _places(plan, data, bindings, recorder)
    except _NotPlain:
        return None
    # Its own reading must be the plan's, mapping for mapping and value for value.
    if len(places) != len(readings):
        return None
    for (map_plan, number, key), (expected, raw, _bound) in zip(places, readings, strict=True):
        if map_plan is not expected or recorder.nodes[number][key] is not raw:
            return None
    return Shape(
        tuple(data),
        tuple(recorder.objects),
        tuple(recorder.scalars),
        tuple((number, key, tag) for (_, number, key), tag in zip(places, tags, strict=True)),
    )


def _places(
    plan: DecodePlan, data: dict[str, Any], bindings: dict[str, Any], recorder: _Recorder
) -> list[tuple[MapPlan, int, str]]:
    """Walk ``data`` as ``plan.readings`` does, recording what it looks at; each reading's
    mapping and place."""
    hits: list[tuple[int, tuple[MapPlan, ...], int, dict[str, Any]]] = []
    for fan in plan.fans:
        keys = fan.prefix.object_keys()
        if keys is None:
            raise _NotPlain
        found: list[tuple[Any, Any, dict[str, Any]]] = []
        fan.find(data, bindings, found)
        number = recorder.place(keys)
        if number is None:
            continue
        node = recorder.nodes[number]
        key_of = {id(child): key for key, child in node.items()}
        for (index, group, maps), child, bound in found:
            if group.when:
                raise _NotPlain
            key = key_of.get(id(child))
            if key is None or type(child) is not dict:
                raise _NotPlain  # found under a key only an object identifies
            hits.append((index, maps, recorder.child(number, key), bound))
    for index, group, maps in plan.generic:
        keys = group.at.object_keys()
        if group.when or keys is None:
            raise _NotPlain
        number = recorder.place(keys)
        if number is not None:
            hits.append((index, maps, number, bindings))
    hits.sort(key=lambda hit: hit[0])  # stable, as the plan orders them
    places: list[tuple[MapPlan, int, str]] = []
    for _, maps, number, bound in hits:
        for map_plan in maps:
            if map_plan.keys is not None:
                place = recorder.value(map_plan.keys, number)
                if place is not None:
                    places.append((map_plan, *place))
                continue
            if map_plan.pattern_keys is None:
                raise _NotPlain
            pattern, keys = map_plan.pattern_keys
            # Members that are objects can be read; the others must stay plain values.
            for key, child in recorder.nodes[number].items():
                if type(child) is not dict:
                    recorder.scalars[(number, key)] = None
                    continue
                place = recorder.value(keys, recorder.child(number, key))
                variables = pattern.bind(key)
                if place is None or variables is None:
                    continue
                if all(bound.get(name, typed) == typed for name, typed in variables.items()):
                    places.append((map_plan, *place))
    return places
