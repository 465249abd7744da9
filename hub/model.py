"""The device model: contexts, states, entities, devices, areas, groups and the registry."""

from __future__ import annotations

import itertools
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
ENTITY_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}\.[a-z0-9][a-z0-9_\-]{0,63}$")


class InvalidValue(ValueError):
    """A reported value does not fit the entity it is reported for."""


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a valid object id, else raise ValueError saying why."""
    # fullmatch: ``$`` alone would let a trailing newline through ("hall\n").
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValueError(
            f"invalid {what} {value!r}: use 1-64 lowercase letters, digits, '_' or '-'"
        )
    return value


# Context ids only need to be unique within one hub's history; a process prefix and a
# counter are several times cheaper than uuid4 on the ingest hot path.
_CONTEXT_PREFIX = f"{int(time.time()):x}{os.getpid() & 0xFFFF:04x}"
_context_counter = itertools.count(1)


def new_context_id() -> str:
    """Return a new context id, unique within this hub."""
    return f"{_CONTEXT_PREFIX}-{next(_context_counter):x}"


class Origin(StrEnum):
    """Who or what a context stands for."""

    DEVICE = "device"
    PERSON = "person"
    RULE = "rule"
    SCENE = "scene"
    HUB = "hub"
    PLUGIN = "plugin"
    CLI = "cli"
    MQTT = "mqtt"


@dataclass(frozen=True, slots=True)
class Context:
    """Who or what caused a change, chained to the context that caused that."""

    origin: Origin
    source: str
    via: str | None = None
    parent: Context | None = None
    id: str = field(default_factory=new_context_id)
    created: float = field(default_factory=time.time)

    def child(self, origin: Origin, source: str, via: str | None = None) -> Context:
        """Return a new context caused by this one."""
        return Context(origin=origin, source=source, via=via, parent=self)

    def chain(self) -> list[Context]:
        """Return this context followed by its ancestors, nearest first."""
        out: list[Context] = []
        node: Context | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        return out

    def describe(self) -> str:
        """Return a one-line human description, e.g. ``person alice via discord``."""
        text = f"{self.origin.value} {self.source}"
        return f"{text} via {self.via}" if self.via else text

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form, parents nested."""
        return {
            "id": self.id,
            "origin": self.origin.value,
            "source": self.source,
            "via": self.via,
            "created": self.created,
            "parent": self.parent.to_dict() if self.parent else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Context:
        """Rebuild a context from :meth:`to_dict` output."""
        parent = data.get("parent")
        return cls(
            origin=Origin(data["origin"]),
            source=str(data["source"]),
            via=data.get("via"),
            parent=cls.from_dict(parent) if parent else None,
            id=str(data["id"]),
            created=float(data.get("created", 0.0)),
        )


class EntityKind(StrEnum):
    """The capabilities an entity can have."""

    SWITCH = "switch"
    LIGHT = "light"
    SENSOR = "sensor"
    BINARY_SENSOR = "binary_sensor"
    COVER = "cover"
    CLIMATE = "climate"
    LOCK = "lock"
    ENERGY_METER = "energy_meter"
    BUTTON = "button"
    NUMBER = "number"  # a settable number: options min, max, step
    SELECT = "select"  # a settable choice: options["options"] lists the choices


ON_OFF = frozenset({"on", "off"})
COVER_STATES = frozenset({"open", "closed", "opening", "closing", "stopped"})
LOCK_STATES = frozenset({"locked", "unlocked", "locking", "unlocking", "jammed"})
CLIMATE_MODES = frozenset({"off", "heat", "cool", "auto", "dry", "fan_only"})
_TRUE_WORDS = frozenset({"on", "true", "1", "yes", "open", "detected", "wet"})
_FALSE_WORDS = frozenset({"off", "false", "0", "no", "closed", "clear", "dry"})

# Attributes whose values must be numbers when present; anything else is rejected so that a
# malformed payload can never turn a brightness into a string.
NUMERIC_ATTRIBUTES = frozenset(
    {
        "brightness",
        "color_temp",
        "position",
        "current_temperature",
        "target_temperature",
        "humidity",
        "power",
        "voltage",
        "current",
        "linkquality",
        "battery",
    }
)


def _on_off(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        word = value.lower()
        if word in _TRUE_WORDS:
            return "on"
        if word in _FALSE_WORDS:
            return "off"
    raise InvalidValue(f"expected 'on' or 'off', got {value!r}")


def _number(value: Any) -> int | float:
    # bool is an int subclass; a sensor that says True is broken, not 1.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return value  # a brightness of 10 stays 10, not 10.0, in messages and on MQTT
    if not math.isfinite(value):
        raise InvalidValue(f"expected a finite number, got {value!r}")
    return value


def _one_of(value: Any, allowed: frozenset[str]) -> str:
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    raise InvalidValue(f"expected one of {', '.join(sorted(allowed))}, got {value!r}")


_NUMERIC_KINDS = frozenset((EntityKind.SENSOR, EntityKind.ENERGY_METER, EntityKind.NUMBER))


def coerce_value(kind: EntityKind, value: Any, *, numeric: bool = False) -> Any:
    """Return ``value`` normalised for an entity of ``kind``; raise InvalidValue if it cannot be.

    ``numeric`` marks a sensor that measures something (it has a unit): text is refused.
    """
    value_type = type(value)
    # The commonest report, a measured number, without the general checks below.
    if (value_type is int or (value_type is float and math.isfinite(value))) and (
        kind in _NUMERIC_KINDS
    ):
        return value
    if kind in (EntityKind.SWITCH, EntityKind.LIGHT, EntityKind.BINARY_SENSOR):
        return _on_off(value)
    if kind in (EntityKind.SENSOR, EntityKind.ENERGY_METER):
        if (
            kind is EntityKind.SENSOR
            and not numeric
            and isinstance(value, str)
            and len(value) <= 255
        ):
            return value  # enum-like sensors ("idle", "charging") are legitimate
        return _number(value)
    if kind is EntityKind.COVER:
        return _one_of(value, COVER_STATES)
    if kind is EntityKind.LOCK:
        return _one_of(value, LOCK_STATES)
    if kind is EntityKind.CLIMATE:
        return _one_of(value, CLIMATE_MODES)
    if kind is EntityKind.NUMBER:
        return _number(value)
    if kind is EntityKind.SELECT:
        if isinstance(value, str) and len(value) <= 255:
            return value
        raise InvalidValue(f"expected one of the options as text, got {value!r}")
    if kind is EntityKind.BUTTON:
        if isinstance(value, str) and len(value) <= 64:
            return value  # the last press event, e.g. "single" or "double"
        raise InvalidValue(f"expected a press event name, got {value!r}")
    raise InvalidValue(f"unknown entity kind {kind!r}")  # pragma: no cover


def coerce_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Return attributes with numeric ones checked; raise InvalidValue on a bad one."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or len(key) > 64:
            raise InvalidValue(f"invalid attribute name {key!r}")
        if key in NUMERIC_ATTRIBUTES:
            try:
                out[key] = _number(value)
            except InvalidValue as exc:
                raise InvalidValue(f"attribute {key!r}: {exc}") from None
        elif value is None or isinstance(value, str | int | float | bool | list | dict):
            out[key] = value
        else:
            raise InvalidValue(f"attribute {key!r}: unsupported value {value!r}")
    return out


@dataclass(frozen=True, slots=True)
class State:
    """An entity's state: value, attributes, when it changed and who caused it.

    ``last_changed``: the value changed; ``last_updated``: the value or an attribute changed;
    ``last_reported``: the device last reported it, changed or not (0: not since start-up).
    A report that repeats the current state only moves ``last_reported``, in place (see
    :data:`touch_reported`): it is not a state change, so it is neither announced on the bus
    nor recorded.
    """

    entity_id: str
    value: Any
    attributes: Mapping[str, Any]
    last_changed: float
    last_updated: float
    context: Context
    last_reported: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        return {
            "entity_id": self.entity_id,
            "state": self.value,
            "attributes": dict(self.attributes),
            "last_changed": self.last_changed,
            "last_updated": self.last_updated,
            "last_reported": max(self.last_reported, self.last_updated),
            "context": self.context.to_dict(),
        }


_new_object = object.__new__
_CONTEXT_SETTERS = tuple(
    Context.__dict__[name].__set__
    for name in ("origin", "source", "via", "parent", "id", "created")
)


def make_context(origin: Origin, source: str, parent: Context | None, now: float) -> Context:
    """Return ``Context(origin, source, parent=parent)`` created at ``now``, built through its
    slots (the ingest hot path makes one per device message that changes something)."""
    context: Context = _new_object(Context)
    set_origin, set_source, set_via, set_parent, set_id, set_created = _CONTEXT_SETTERS
    set_origin(context, origin)
    set_source(context, source)
    set_via(context, None)
    set_parent(context, parent)
    set_id(context, f"{_CONTEXT_PREFIX}-{next(_context_counter):x}")
    set_created(context, now)
    return context


_STATE_SETTERS = tuple(
    State.__dict__[name].__set__
    for name in (
        "entity_id",
        "value",
        "attributes",
        "last_changed",
        "last_updated",
        "context",
        "last_reported",
    )
)


def make_state(
    entity_id: str,
    value: Any,
    attributes: Mapping[str, Any],
    last_changed: float,
    last_updated: float,
    context: Context,
    last_reported: float | None = None,
) -> State:
    """Return ``State(...)`` built through its slots, without the frozen dataclass __init__'s
    ``object.__setattr__`` per field: the ingest hot path builds one per reading.

    ``last_reported`` defaults to ``last_updated``."""
    state: State = _new_object(State)
    (
        set_id,
        set_value,
        set_attributes,
        set_changed,
        set_updated,
        set_context,
        set_reported,
    ) = _STATE_SETTERS
    set_id(state, entity_id)
    set_value(state, value)
    set_attributes(state, attributes)
    set_changed(state, last_changed)
    set_updated(state, last_updated)
    set_context(state, context)
    set_reported(state, last_updated if last_reported is None else last_reported)
    return state


touch_reported = _STATE_SETTERS[6]
"""``touch_reported(state, now)``: a repeated report moves the current State's
``last_reported`` in place, the one field that does (as in Home Assistant): a repeat is
not a new state, and most periodic telemetry is repeats."""


@dataclass(slots=True)
class Entity:
    """One capability of a device."""

    id: str
    device_id: str
    key: str
    kind: EntityKind
    name: str
    unit: str | None = None
    device_class: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Labels from hub.yaml's ``devices:`` section, for ``tag:<name>`` group members.
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        return {
            "id": self.id,
            "device_id": self.device_id,
            "key": self.key,
            "kind": self.kind.value,
            "name": self.name,
            "unit": self.unit,
            "device_class": self.device_class,
            "options": dict(self.options),
            "tags": list(self.tags),
        }


@dataclass(slots=True)
class Device:
    """A physical or logical device, owned by the adapter (dialect) that speaks to it."""

    id: str
    name: str
    owner: str
    area: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    via: str | None = None
    identities: dict[str, str] = field(default_factory=dict)
    entity_ids: list[str] = field(default_factory=list)
    available: bool = False
    # Where the owning adapter keeps whatever it needs to reach the device (topics, addresses).
    native: dict[str, Any] = field(default_factory=dict)
    # Labels from hub.yaml's ``devices:`` section; every entity of the device carries them too.
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "area": self.area,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "firmware": self.firmware,
            "via": self.via,
            "identities": dict(self.identities),
            "entities": list(self.entity_ids),
            "available": self.available,
            "native": dict(self.native),
            "tags": list(self.tags),
        }


@dataclass(frozen=True, slots=True)
class EntityCustomization:
    """hub.yaml's overrides for one entity: its name and tags."""

    name: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceCustomization:
    """hub.yaml's overrides for one device (``devices: {<id>: ...}``), applied when it registers."""

    name: str | None = None
    area: str | None = None
    tags: tuple[str, ...] = ()
    entities: Mapping[str, EntityCustomization] = field(default_factory=dict)

    def apply(self, device: Device, entities: Sequence[Entity]) -> tuple[Device, list[Entity]]:
        """Return customised copies of ``device`` and its ``entities`` (the adapter's own
        objects are left alone, so an adapter comparing what it built sees no change)."""
        device = replace(
            device,
            name=self.name or device.name,
            area=self.area or device.area,
            tags=_merge_tags(device.tags, self.tags),
        )
        out: list[Entity] = []
        for entity in entities:
            custom = self.entities.get(entity.key)
            if custom is None:
                out.append(entity)
                continue
            out.append(
                replace(
                    entity,
                    name=custom.name or entity.name,
                    tags=_merge_tags(entity.tags, custom.tags),
                )
            )
        return device, out


def _merge_tags(own: tuple[str, ...], extra: tuple[str, ...]) -> tuple[str, ...]:
    return own + tuple(tag for tag in extra if tag not in own)


@dataclass(slots=True)
class Area:
    """A room or zone."""

    id: str
    name: str


class Aggregate(StrEnum):
    """How a group's state is computed from its members."""

    ANY = "any"
    ALL = "all"
    AVERAGE = "average"
    SUM = "sum"
    MIN = "min"
    MAX = "max"


MEMBER_KINDS = ("entity", "device", "group", "area", "tag")


@dataclass(slots=True)
class Group:
    """A named set of entities that commands fan out to and whose states aggregate.

    Members are entity, device, group or area ids (optionally prefixed ``entity:``,
    ``device:``, ``group:``, ``area:``) and ``tag:<name>``; they are resolved each time, so a
    device that appears later with the area or tag is a member. ``kind`` keeps only the
    entities of that kind ("all lights in the kitchen").
    """

    id: str
    name: str
    members: list[str] = field(default_factory=list)
    aggregate: Aggregate = Aggregate.ANY
    kind: EntityKind | None = None

    def aggregate_value(self, values: Iterable[Any]) -> Any:
        """Return the group's value from its members' values (unknown members skipped)."""
        present = [v for v in values if v is not None]
        if self.aggregate in (Aggregate.ANY, Aggregate.ALL):
            flags = [v == "on" for v in present]
            if not flags:
                return None
            hit = any(flags) if self.aggregate is Aggregate.ANY else all(flags)
            return "on" if hit else "off"
        numbers = [float(v) for v in present if isinstance(v, int | float)]
        if not numbers:
            return None
        if self.aggregate is Aggregate.AVERAGE:
            return sum(numbers) / len(numbers)
        if self.aggregate is Aggregate.SUM:
            return sum(numbers)
        return min(numbers) if self.aggregate is Aggregate.MIN else max(numbers)


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """A group's aggregated state and how many of its members are on and known."""

    state: Any
    members: int
    on: int
    known: int


class UnknownTarget(LookupError):
    """A command or query named something the registry does not have."""


class Registry:
    """The in-memory registry of areas, devices, entities, groups and current states.

    Only the event-loop thread touches it, so it needs no locks.
    """

    def __init__(self) -> None:
        self.areas: dict[str, Area] = {}
        self.devices: dict[str, Device] = {}
        self.entities: dict[str, Entity] = {}
        self.groups: dict[str, Group] = {}
        self.states: dict[str, State] = {}
        # entity id -> ids of its groups; None until asked for after a change.
        self._membership: dict[str, tuple[str, ...]] | None = None
        # Told when memberships may have changed (the mirror republishes group states).
        self.on_membership_change: Callable[[], None] | None = None

    def entities_of(self, device_id: str) -> Iterator[Entity]:
        """Yield the entities of a device."""
        device = self.devices.get(device_id)
        if device is None:
            return
        for entity_id in device.entity_ids:
            entity = self.entities.get(entity_id)
            if entity is not None:
                yield entity

    def resolve(self, target: str) -> list[Entity]:
        """Return the entities a target names: an entity, device, group, area or tag.

        A target may be prefixed (``entity:``, ``device:``, ``group:``, ``area:``, ``tag:``)
        to say which; unprefixed, the first kind that has the id wins in that order (a tag is
        only ever named with its prefix).
        """
        kind, _, name = target.partition(":") if ":" in target else ("", "", target)
        if kind in ("", "entity") and name in self.entities:
            return [self.entities[name]]
        if kind in ("", "device") and name in self.devices:
            return list(self.entities_of(name))
        if kind in ("", "group") and name in self.groups:
            return self._group_entities(name, set())
        if kind in ("", "area") and name in self.areas:
            return self._area_entities(name)
        if kind == "tag":
            found = self._tag_entities(name)
            if found:
                return found
            raise UnknownTarget(f"nothing is tagged {name!r}")
        if kind and kind not in MEMBER_KINDS:
            raise UnknownTarget(
                f"unknown target kind {kind!r} in {target!r}: "
                "use entity:, device:, group:, area: or tag:"
            )
        raise UnknownTarget(f"no entity, device, group or area is called {name!r}")

    def _area_entities(self, area: str) -> list[Entity]:
        return [
            entity
            for device in self.devices.values()
            if device.area == area
            for entity in self.entities_of(device.id)
        ]

    def _tag_entities(self, tag: str) -> list[Entity]:
        # A device's tag reaches all its entities; an entity's tag only that entity.
        out: list[Entity] = []
        for device in self.devices.values():
            tagged = tag in device.tags
            out.extend(e for e in self.entities_of(device.id) if tagged or tag in e.tags)
        return out

    def _group_entities(self, group_id: str, seen: set[str]) -> list[Entity]:
        group = self.groups[group_id]
        seen.add(group_id)  # a group reached again through its members is skipped: no cycles
        found: dict[str, Entity] = {}
        for member in group.members:
            for entity in self._member_entities(member, seen):
                found.setdefault(entity.id, entity)
        if group.kind is not None:
            return [e for e in found.values() if e.kind is group.kind]
        return list(found.values())

    def _member_entities(self, member: str, seen: set[str]) -> list[Entity]:
        """A group member's entities now: one that names nothing (yet) has none."""
        kind, _, name = member.partition(":") if ":" in member else ("", "", member)
        if kind in ("", "entity") and name in self.entities:
            return [self.entities[name]]
        if kind in ("", "device") and name in self.devices:
            return list(self.entities_of(name))
        if kind in ("", "group") and name in self.groups:
            return [] if name in seen else self._group_entities(name, seen)
        if kind == "area" or (not kind and name in self.areas):
            return self._area_entities(name)
        if kind == "tag":
            return self._tag_entities(name)
        return []

    def group_entities(self, group_id: str) -> list[Entity]:
        """The entities a group has now (an empty list for a group with none yet)."""
        return self._group_entities(group_id, set()) if group_id in self.groups else []

    def groups_of(self, entity_id: str) -> tuple[str, ...]:
        """The ids of the groups an entity is a member of (indexed; see invalidate_groups)."""
        index = self._membership
        if index is None:
            index = {}
            for group_id in self.groups:
                for entity in self._group_entities(group_id, set()):
                    index[entity.id] = (*index.get(entity.id, ()), group_id)
            self._membership = index
        return index.get(entity_id, ())

    def invalidate_groups(self) -> None:
        """Say that devices, entities or groups changed: memberships are worked out again."""
        self._membership = None
        if self.on_membership_change is not None:
            self.on_membership_change()

    def group_state(self, group_id: str) -> Any:
        """Return a group's aggregated value."""
        return self.group_summary(group_id).state

    def group_summary(self, group_id: str) -> GroupSummary:
        """Return a group's aggregated value with its member counts."""
        group = self.groups[group_id]
        values = []
        for entity in self._group_entities(group_id, set()):
            state = self.states.get(entity.id)
            values.append(state.value if state else None)
        return GroupSummary(
            state=group.aggregate_value(values),
            members=len(values),
            on=sum(1 for v in values if v == "on"),
            known=sum(1 for v in values if v is not None),
        )
