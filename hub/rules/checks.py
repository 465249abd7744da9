"""Static checks of a rule set, for ``hub check``: what the loader cannot see in one rule.

* unknown references: entities, devices, groups, areas and scenes that do not exist (entities
  and groups named inside expressions and templates too), with a "did you mean";
* conflicts: two rules (or two branches of one ``parallel``) that can run on the same event
  and set the same entity to different values, directly or through a group, area or device;
* loops: rules whose commands or events trigger each other in a cycle, through entities and
  through groups (a command to a group reaches its members; a change of a member may change
  the group's aggregated value and fire a trigger on the group);
* smaller mistakes: an empty time window, ``for: 0``, a wait without a timeout in a rule of
  mode ``single``, a numeric range with no number in it.

Everything is a warning, except a numeric range with no number in it. A group that neither
``hub.yaml`` nor the stored registry has is a warning too: a plug-in may register it while the
hub runs (Zigbee2MQTT's groups). The checks are conservative where it matters: a conflict is
reported unless the conditions obviously keep the two runs apart, and a loop is reported
whenever a command's effect matches a trigger. Group memberships are worked out from
``hub.yaml`` and the stored registry; where only the running hub can tell (a device's area
before the first run, a group only a plug-in knows), the message says so ("possible loop",
"may set") instead of guessing, for a rule that may feed itself and for conflicts, not for
chains of rules. Issues point at the part of the rule file they are about
(``file:line:col: path``), in the loader's path convention when the file can be read back,
else ``rules[<id>].actions[2]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hub.commands import ACTIONS
from hub.config import HubConfig
from hub.model import Aggregate, Area, Group, Registry
from hub.rules.model import (
    GROUP_PREFIX,
    Action,
    AndCondition,
    CalendarTrigger,
    ChooseAction,
    CommandAction,
    CommandTrigger,
    Condition,
    CronTrigger,
    DelayAction,
    DeviceTrigger,
    EventTrigger,
    ExpressionCondition,
    FireEventAction,
    HubStartTrigger,
    IntervalTrigger,
    Mode,
    MqttTrigger,
    NotCondition,
    NotifyAction,
    NumericCondition,
    NumericTrigger,
    OrCondition,
    ParallelAction,
    Pos,
    RepeatAction,
    RepeatKind,
    Rule,
    RuleSet,
    SceneAction,
    StateCondition,
    StateTrigger,
    StopAction,
    SunTrigger,
    TimeCondition,
    TimeTrigger,
    Trigger,
    TriggerCondition,
    VariablesAction,
    WaitAction,
    WebhookCallAction,
    WebhookTrigger,
    group_of,
)
from hub.yamlsource import ConfigIssue, PathKey, SourceDoc, SourceError, format_path, suggest

__all__ = ["Known", "check_ruleset", "known_from", "known_from_registry"]

# Cycles are enumerated one by one; a dense graph of rules could have very many.
MAX_LOOPS = 50
_SEARCH_BUDGET = 100_000

# Which actions each entity kind accepts: the command router's own table, by kind name.
_KIND_ACTIONS: dict[str, frozenset[str]] = {
    kind.value: frozenset(actions) for kind, actions in ACTIONS.items()
}


# ----- what exists --------------------------------------------------------------------------


@dataclass(frozen=True)
class Known:
    """What the checker knows exists. ``None``: not known (no stored registry, no scene
    support), so references of that kind are not checked.

    The mappings let loops and conflicts follow commands to devices, groups, areas and tags
    down to their entities, and group triggers back up from them; they are optional. What
    they leave out is known only when the hub runs: a device missing from ``device_areas``
    may be in any area, a group missing from ``group_members`` may hold anything (the checks
    say so rather than guess), an entity missing from ``entity_kinds`` accepts any action.
    Tags come from hub.yaml alone, so ``device_tags`` and ``entity_tags`` are complete.
    """

    entities: frozenset[str] | None
    devices: frozenset[str] | None
    groups: frozenset[str] = frozenset()
    areas: frozenset[str] = frozenset()
    scenes: frozenset[str] | None = None
    group_members: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    device_entities: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    area_devices: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    entity_kinds: Mapping[str, str] = field(default_factory=dict, hash=False)
    # device id -> its area (None: none), for the devices whose area is known.
    device_areas: Mapping[str, str | None] = field(default_factory=dict, hash=False)
    device_tags: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    entity_tags: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    # group id -> its aggregate ("any" when missing) and the one entity kind it keeps.
    group_aggregates: Mapping[str, str] = field(default_factory=dict, hash=False)
    group_kinds: Mapping[str, str] = field(default_factory=dict, hash=False)


def known_from_registry(registry: Registry, *, devices_known: bool = True) -> Known:
    """What ``registry`` holds (``devices_known=False``: its devices and entities are not the
    full list, so only its groups and areas count)."""
    area_devices: dict[str, set[str]] = {}
    for device in registry.devices.values():
        if device.area:
            area_devices.setdefault(device.area, set()).add(device.id)
    groups = registry.groups
    return Known(
        entities=frozenset(registry.entities) if devices_known else None,
        devices=frozenset(registry.devices) if devices_known else None,
        groups=frozenset(groups),
        areas=frozenset(registry.areas),
        scenes=None,
        group_members={gid: tuple(g.members) for gid, g in groups.items()},
        device_entities={
            did: frozenset(d.entity_ids) for did, d in registry.devices.items() if devices_known
        },
        area_devices={area: frozenset(ids) for area, ids in area_devices.items()},
        entity_kinds={eid: e.kind.value for eid, e in registry.entities.items()},
        device_areas={did: d.area for did, d in registry.devices.items() if devices_known},
        device_tags={did: frozenset(d.tags) for did, d in registry.devices.items() if d.tags},
        entity_tags={eid: frozenset(e.tags) for eid, e in registry.entities.items() if e.tags},
        group_aggregates={gid: Aggregate(g.aggregate).value for gid, g in groups.items()},
        group_kinds={gid: g.kind.value for gid, g in groups.items() if g.kind is not None},
    )


async def known_from(config: HubConfig, storage_url: str | None) -> Known:
    """What exists: hub.yaml's areas, groups and device overrides, plus the stored registry
    when the database exists (its devices and entities count when it holds devices; groups
    stored by an earlier run count always). Never creates a database; on any storage error,
    entities and devices are unknown (None)."""
    stored = await _stored_registry(storage_url)
    registry = stored if stored is not None else Registry()
    devices_known = bool(registry.devices)
    # hub.yaml's areas and groups are what the hub will have after its next start.
    for area in config.areas:
        registry.areas[area.id] = Area(id=area.id, name=area.name)
    for group in config.groups:
        registry.groups[group.id] = Group(
            id=group.id,
            name=group.name,
            members=list(group.members),
            aggregate=group.aggregate,
            kind=group.kind,
        )
    # Stored devices get hub.yaml's overrides (area, tags) as the hub gives them at start.
    for device_id, custom in config.devices.items():
        device = registry.devices.get(device_id)
        if device is not None:
            customized, entities = custom.customization().apply(
                device, list(registry.entities_of(device_id))
            )
            registry.devices[device_id] = customized
            registry.entities.update((entity.id, entity) for entity in entities)
    known = known_from_registry(registry, devices_known=devices_known)
    # Devices hub.yaml customises that are not stored (yet): their overrides are known now.
    areas = dict(known.device_areas)
    device_tags = dict(known.device_tags)
    entity_tags = dict(known.entity_tags)
    for device_id, custom in config.devices.items():
        if custom.area is not None:
            areas[device_id] = custom.area
        if custom.tags:
            device_tags[device_id] = device_tags.get(device_id, frozenset()) | set(custom.tags)
        for key, entity in custom.entities.items():
            if entity.tags:
                entity_id = f"{device_id}.{key}"
                entity_tags[entity_id] = entity_tags.get(entity_id, frozenset()) | set(entity.tags)
    return replace(known, device_areas=areas, device_tags=device_tags, entity_tags=entity_tags)


async def _stored_registry(url: str | None) -> Registry | None:
    """The stored registry, or None when there is none (or it cannot be read)."""
    if url is None:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from hub.storage import Storage, StorageError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() == "sqlite":
        # Starting the storage would create a missing file; a check must not.
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return None
        if not await asyncio.to_thread(Path(database).is_file):
            return None
    registry = Registry()
    try:
        storage = Storage(url)
    except StorageError:
        return None
    try:
        await storage.start()
        await storage.load_into(registry)
    except (StorageError, OSError):
        return None
    finally:
        with contextlib.suppress(StorageError, OSError):
            await storage.close()
    return registry


# ----- values -------------------------------------------------------------------------------


class _Marker:
    """A value that stands for something unknown (``ANY``) or never equal (``TOGGLE``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_ANY = _Marker("ANY")  # some value, not known before the rule runs
_TOGGLE = _Marker("TOGGLE")  # the opposite of whatever it was


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "}}" in value)


def _norm(value: Any) -> Any:
    """A value as the engine compares it: numbers by value, everything else as text."""
    if _is_template(value):
        return _ANY
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return str(value)


def _values(values: Sequence[Any] | None) -> frozenset[Any] | None:
    """Normalised values; None for "any" (no values, or a template among them)."""
    if values is None:
        return None
    found = frozenset(_norm(value) for value in values)
    return None if _ANY in found else found


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _quoted(value: Any) -> str:
    return repr(value) if isinstance(value, str) else _show(value)


def _duration(seconds: float) -> str:
    """Seconds written as a duration: ``90`` -> ``1m30s``."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    out = ""
    rest = seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count = int(rest // size)
        if count:
            out += f"{count}{unit}"
            rest -= count * size
    if rest or not out:
        out += f"{rest:g}s"
    return out


def _time_of_day(text: str) -> int | None:
    """Seconds since midnight of "HH:MM[:SS]"; None when it is not one."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not all(part.isdigit() for part in parts):
        return None
    hour, minute, second = (int(part) for part in (*parts, "0")[:3])
    if hour > 23 or minute > 59 or second > 59:
        return None
    return hour * 3600 + minute * 60 + second


def _topics_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both MQTT topic filters."""
    left, right = a.split("/"), b.split("/")
    for index in range(max(len(left), len(right))):
        x = left[index] if index < len(left) else None
        y = right[index] if index < len(right) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != y and "+" not in (x, y):
            return False
    return True


# ----- time windows -------------------------------------------------------------------------

_DAY = 86400
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_Intervals = tuple[tuple[int, int], ...]
# Per weekday (Monday first), the seconds of the day [start, end) in the window.
_Window = tuple[_Intervals, ...]


def _merge(spans: Iterable[tuple[int, int]]) -> _Intervals:
    out: list[tuple[int, int]] = []
    for start, end in sorted(span for span in spans if span[0] < span[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def _cut(a: _Intervals, b: _Intervals) -> _Intervals:
    return _merge((max(s1, s2), min(e1, e2)) for (s1, e1), (s2, e2) in itertools.product(a, b))


def _invert(spans: _Intervals) -> _Intervals:
    out, at = [], 0
    for start, end in spans:
        out.append((at, start))
        at = end
    out.append((at, _DAY))
    return _merge(out)


def _window(days: Iterable[str] | None, spans: _Intervals) -> _Window:
    wanted = set(_WEEKDAYS if days is None else days)
    return tuple(spans if day in wanted else () for day in _WEEKDAYS)


def _time_window(condition: TimeCondition) -> _Window | None:
    """When a time condition holds (as hub.rules.schedule.in_time_window); None: unknown."""
    start = None if condition.after is None else _time_of_day(condition.after)
    end = None if condition.before is None else _time_of_day(condition.before)
    if (condition.after is not None and start is None) or (
        condition.before is not None and end is None
    ):
        return None
    spans: _Intervals
    if start is None:
        spans = ((0, _DAY if end is None else end),)
    elif end is None:
        spans = ((start, _DAY),)
    elif start <= end:
        spans = ((start, end),)
    else:
        spans = ((start, _DAY), (0, end))
    return _window(condition.weekdays, _merge(spans))


# ----- what conditions say ------------------------------------------------------------------

_Key = tuple[str, str | None]  # (entity id or "group:<id>", attribute)


def _subject(name: str) -> str:
    """A state/numeric subject as one key: an entity id, or ``group:<id>`` for a group
    (written either way)."""
    group = group_of(name)
    return name if group is None else f"{GROUP_PREFIX}{group}"


@dataclass(frozen=True, eq=False)
class _Facts:
    """What is known to hold when a step runs: a time window, states and numbers, and which
    trigger ids can have started the run. The empty _Facts knows nothing (always possible)."""

    window: _Window | None = None
    allowed: Mapping[_Key, frozenset[Any]] = field(default_factory=dict)
    excluded: Mapping[_Key, frozenset[Any]] = field(default_factory=dict)
    ranges: Mapping[_Key, tuple[float, float]] = field(default_factory=dict)
    ids: frozenset[str] | None = None
    not_ids: frozenset[str] = frozenset()

    def both(self, other: _Facts) -> _Facts:
        """Both hold."""
        allowed = dict(self.allowed)
        for key, values in other.allowed.items():
            allowed[key] = allowed[key] & values if key in allowed else values
        excluded = dict(self.excluded)
        for key, values in other.excluded.items():
            excluded[key] = excluded.get(key, frozenset()) | values
        ranges = dict(self.ranges)
        for key, (low, high) in other.ranges.items():
            if key in ranges:
                ranges[key] = (max(ranges[key][0], low), min(ranges[key][1], high))
            else:
                ranges[key] = (low, high)
        window = self.window
        if other.window is not None:
            window = other.window if window is None else _both_windows(window, other.window)
        ids = self.ids
        if other.ids is not None:
            ids = other.ids if ids is None else ids & other.ids
        return _Facts(window, allowed, excluded, ranges, ids, self.not_ids | other.not_ids)

    def either(self, other: _Facts) -> _Facts:
        """At least one holds: only what both say survives (widened)."""
        if self.impossible():
            return other
        if other.impossible():
            return self
        window = None
        if self.window is not None and other.window is not None:
            window = tuple(_merge((*a, *b)) for a, b in zip(self.window, other.window, strict=True))
        allowed = {
            key: values | other.allowed[key]
            for key, values in self.allowed.items()
            if key in other.allowed
        }
        excluded = {
            key: values & other.excluded[key]
            for key, values in self.excluded.items()
            if key in other.excluded
        }
        ranges = {
            key: (min(low, other.ranges[key][0]), max(high, other.ranges[key][1]))
            for key, (low, high) in self.ranges.items()
            if key in other.ranges
        }
        ids = None if self.ids is None or other.ids is None else self.ids | other.ids
        return _Facts(window, allowed, excluded, ranges, ids, self.not_ids & other.not_ids)

    def impossible(self) -> bool:
        """Whether these facts contradict each other (trigger ids aside)."""
        if self.window is not None and not any(self.window):
            return True
        for key, values in self.allowed.items():
            if not values - self.excluded.get(key, frozenset()):
                return True
        return any(low >= high for low, high in self.ranges.values())

    def allows(self, trigger: Trigger) -> bool:
        """Whether a run started by ``trigger`` can get here."""
        if trigger.id is None:
            return self.ids is None
        return (self.ids is None or trigger.id in self.ids) and trigger.id not in self.not_ids


_NOTHING_KNOWN = _Facts()


def _both_windows(a: _Window, b: _Window) -> _Window:
    return tuple(_cut(x, y) for x, y in zip(a, b, strict=True))


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _range(above: float | str | None, below: float | str | None) -> tuple[float, float] | None:
    """The open interval (above, below); None when a threshold is an entity."""
    if isinstance(above, str) or isinstance(below, str):
        return None
    low = float("-inf") if above is None else float(above)
    high = float("inf") if below is None else float(below)
    return low, high


def _facts(conditions: Iterable[Condition]) -> _Facts:
    """What holds when all ``conditions`` hold."""
    out = _NOTHING_KNOWN
    for condition in conditions:
        out = out.both(_fact(condition))
    return out


def _fact(condition: Condition) -> _Facts:
    if isinstance(condition, StateCondition):
        values = _values(condition.state)
        if values is None:
            return _NOTHING_KNOWN
        return _Facts(
            allowed={(_subject(e), condition.attribute): values for e in condition.entity_ids}
        )
    if isinstance(condition, NumericCondition):
        span = _range(condition.above, condition.below)
        if span is None:
            return _NOTHING_KNOWN
        return _Facts(
            ranges={(_subject(e), condition.attribute): span for e in condition.entity_ids}
        )
    if isinstance(condition, TimeCondition):
        return _Facts(window=_time_window(condition))
    if isinstance(condition, TriggerCondition):
        return _Facts(ids=frozenset(condition.ids))
    if isinstance(condition, AndCondition):
        return _facts(condition.conditions)
    if isinstance(condition, OrCondition):
        return _any_of(_fact(inner) for inner in condition.conditions)
    if isinstance(condition, NotCondition):
        return _facts_not(condition.conditions)
    return _NOTHING_KNOWN  # expressions and the sun: anything is possible


def _any_of(facts: Iterable[_Facts]) -> _Facts:
    out: _Facts | None = None
    for fact in facts:
        out = fact if out is None else out.either(fact)
    return _NOTHING_KNOWN if out is None else out


def _facts_not(conditions: Iterable[Condition]) -> _Facts:
    """What holds when none of ``conditions`` holds."""
    out = _NOTHING_KNOWN
    for condition in conditions:
        out = out.both(_negated(condition))
    return out


def _negated(condition: Condition) -> _Facts:
    if isinstance(condition, StateCondition) and len(condition.entity_ids) == 1:
        values = _values(condition.state)
        if values is None:
            return _NOTHING_KNOWN
        return _Facts(excluded={(_subject(condition.entity_ids[0]), condition.attribute): values})
    if isinstance(condition, TimeCondition):
        window = _time_window(condition)
        return _Facts(window=None if window is None else tuple(_invert(day) for day in window))
    if isinstance(condition, TriggerCondition):
        return _Facts(not_ids=frozenset(condition.ids))
    if isinstance(condition, NotCondition):
        return _any_of(_fact(inner) for inner in condition.conditions)
    if isinstance(condition, OrCondition):
        return _facts_not(condition.conditions)
    if isinstance(condition, AndCondition):
        return _any_of(_negated(inner) for inner in condition.conditions)
    return _NOTHING_KNOWN


# ----- where issues go ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Find:
    """A path step: the index of ``value`` in a list (or the value itself when not a list)."""

    value: Any


_Step = str | int | _Find
_MISSING = object()


def _child(node: Any, key: _Step) -> tuple[Any, str | int | None]:
    """The node under ``key`` and the path key that leads there (None: stay here)."""
    if isinstance(key, _Find):
        if isinstance(node, list):
            for index, item in enumerate(node):
                if item == key.value:
                    return item, index
            return _MISSING, None
        return node, None
    if isinstance(node, dict) and isinstance(key, str) and key in node:
        return node[key], key
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key], key
    return _MISSING, None


class _Locator:
    """Turns a part's position back into its place in the file: the loader's path for it and
    the exact position of a value inside it. Each rule file is read again once."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[SourceDoc, dict[tuple[int, int], PathKey]] | None] = {}

    def _load(self, file: str) -> tuple[SourceDoc, dict[tuple[int, int], PathKey]] | None:
        if file in self._files:
            return self._files[file]
        from hub.yamlsource import load_yaml

        found: tuple[SourceDoc, dict[tuple[int, int], PathKey]] | None = None
        doc: SourceDoc | None
        try:
            doc = load_yaml(Path(file))
        except SourceError as exc:
            doc = exc.doc
        except OSError:
            doc = None
        if doc is not None:
            index: dict[tuple[int, int], PathKey] = {}
            _index_nodes(doc, doc.data, (), index)
            found = (doc, index)
        self._files[file] = found
        return found

    def issue(
        self,
        rule: Rule,
        pos: Pos,
        fallback: PathKey,
        keys: Sequence[_Step],
        message: str,
        severity: str = "warning",
    ) -> ConfigIssue:
        """An issue about the value at ``keys`` inside the part written at ``pos``."""
        loaded = self._load(pos.file)
        path = None if loaded is None else loaded[1].get((pos.line, pos.col))
        if loaded is not None and path is not None:
            doc = loaded[0]
            node = _node(doc.data, path)
            for key in keys:
                node, step = _child(node, key)
                if node is _MISSING:
                    break
                if step is not None:
                    path = (*path, step)
            line, col = doc.value_position(path)
            shown = format_path(("rules", *path) if isinstance(doc.data, list) else path)
            return ConfigIssue(pos.file, line, col, shown, message, severity)
        inner = tuple(key for key in (*fallback, *keys) if not isinstance(key, _Find))
        shown = f"rules[{rule.id}]" + (f".{format_path(inner)}" if inner else "")
        return ConfigIssue(pos.file, pos.line, pos.col, shown.replace(".[", "["), message, severity)


def _index_nodes(
    doc: SourceDoc, node: Any, path: PathKey, index: dict[tuple[int, int], PathKey]
) -> None:
    # Every mapping and list item, by where it starts; the outermost wins a tie.
    if isinstance(node, dict) or (path and isinstance(path[-1], int)):
        index.setdefault(doc.value_position(path), path)
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str):
                _index_nodes(doc, value, (*path, key), index)
    elif isinstance(node, list):
        for number, value in enumerate(node):
            _index_nodes(doc, value, (*path, number), index)


def _node(data: Any, path: PathKey) -> Any:
    for key in path:
        data = data[key]
    return data


# ----- commands: what they reach, what they change ------------------------------------------


@dataclass(frozen=True, slots=True)
class _Change:
    """What a command does to an entity's state: the values it can leave (None: any; empty:
    the state stays) and the attributes it sets (None: any attribute)."""

    values: frozenset[Any] | None
    attributes: Mapping[str, Any] | None


def _param(action: CommandAction, name: str) -> Any:
    return _norm(action.params[name]) if name in action.params else _ANY


def _change(action: CommandAction, kind: str | None) -> _Change:
    name = action.action
    light = {"brightness": _param(action, "brightness"), "color_temp": _param(action, "color_temp")}
    changes: dict[str, _Change] = {
        "turn_on": _Change(None if kind == "climate" else frozenset({"on"}), light),
        "turn_off": _Change(frozenset({"off"}), {}),
        "toggle": _Change(None, light),
        "open": _Change(frozenset({"open", "opening"}), {"position": _ANY}),
        "close": _Change(frozenset({"closed", "closing"}), {"position": _ANY}),
        "stop": _Change(None, {"position": _ANY}),
        "set_position": _Change(None, {"position": _param(action, "position")}),
        "set_temperature": _Change(
            frozenset(), {"target_temperature": _param(action, "temperature")}
        ),
        "lock": _Change(frozenset({"locked", "locking"}), {}),
        "unlock": _Change(frozenset({"unlocked", "unlocking"}), {}),
        "press": _Change(None, {}),
    }
    if name == "set_mode":
        mode = _param(action, "mode")
        return _Change(None if mode is _ANY else frozenset({mode}), {})
    return changes.get(name, _Change(None, None))


def _aggregated(change: _Change, aggregate: str) -> _Change:
    """What a change to members does to a group's aggregated value: ``any``/``all`` count a
    member "on" or not, so a member going on can only turn the group on (or leave it), one
    going anything else only off; a number aggregate may become any number."""
    if change.values is not None and not change.values:
        return _Change(frozenset(), {})  # the members stay as they are
    if aggregate not in (Aggregate.ANY.value, Aggregate.ALL.value):
        return _Change(None, {})
    if change.values is None:
        return _Change(frozenset({"on", "off"}), {})
    return _Change(frozenset("on" if value == "on" else "off" for value in change.values), {})


# Whether a command reaches an entity (or an entity is in a group): True, False, or the reason
# it is known only when the hub runs (a device's area, a group's members, an entity's kind).
_Verdict = bool | str


class _Open(str):
    """A reason that holds for any entity alike: the group's members are wholly unknown (a
    group a plug-in registers at run time). Only a rule's own loop is told from one."""

    __slots__ = ()


def _reworded(verdict: _Verdict, text: str) -> _Verdict:
    """``verdict``'s reason said as ``text`` (an open one stays open)."""
    if isinstance(verdict, bool):
        return verdict
    return _Open(text) if isinstance(verdict, _Open) else text


def _any_verdict(verdicts: Iterable[_Verdict]) -> _Verdict:
    """Any of them: True if one is, else the first "only at run time" (a particular reason
    before an open one), else False."""
    maybe: _Verdict = False
    for verdict in verdicts:
        if verdict is True:
            return True
        if verdict is not False and (
            maybe is False or (isinstance(maybe, _Open) and not isinstance(verdict, _Open))
        ):
            maybe = verdict
    return maybe


def _both_verdicts(one: _Verdict, other: _Verdict) -> _Verdict:
    """Both of them: False if either is not, else True if both are, else why not surely."""
    if one is False or other is False:
        return False
    if one is True:
        return other
    if other is True or one == other:
        return one
    both = f"{one}; {other}"
    return _Open(both) if isinstance(one, _Open) or isinstance(other, _Open) else both


def _why(verdict: _Verdict) -> str:
    return "" if verdict is True else f" ({verdict})"


def _entity_target(text: str) -> tuple[str, ...]:
    """The entity a target or group member names outright (``entity:`` or with a dot)."""
    kind, sep, name = text.partition(":")
    if not sep:
        kind, name = "", text
    if kind == "entity" or (not kind and "." in name):
        return () if _is_template(name) else (name,)
    return ()


def _through(action: CommandAction, key: str, side: str) -> str:
    """One side of a conflict, saying the target when it reaches ``key`` from afar."""
    return (
        side
        if _entity_target(action.target) == (key,) or action.target == key
        else (f"{side} through {action.target}")
    )


# What a command sets, for conflicts: the state (by action) and attributes (by parameter).
_STATE_BY_ACTION = {
    "turn_on": "on",
    "turn_off": "off",
    "open": "open",
    "close": "closed",
    "stop": "stopped",
    "lock": "locked",
    "unlock": "unlocked",
}
_SETTINGS = {
    "set_temperature": ("temperature",),
    "set_position": ("position",),
    "turn_on": ("brightness", "color_temp"),
    "toggle": ("brightness", "color_temp"),
}


def _settings(action: CommandAction) -> dict[str, Any]:
    """What the command sets: "state" and parameters, by name, to normalised values."""
    out: dict[str, Any] = {}
    name = action.action
    if name in _STATE_BY_ACTION:
        out["state"] = _STATE_BY_ACTION[name]
    elif name == "toggle":
        out["state"] = _TOGGLE
    elif name == "set_mode":
        out["state"] = _param(action, "mode")
    for param in _SETTINGS.get(name, ()):
        if param in action.params:
            out[param] = _norm(action.params[param])
    return out


def _setting_text(action: CommandAction, setting: str) -> str:
    """One side of a conflict: ``turn_on``, ``set_temperature 21``, ``turn_on brightness 100``."""
    if setting == "state":
        if action.action == "set_mode" and "mode" in action.params:
            return f"set_mode {_show(action.params['mode'])}"
        return action.action
    value = _show(action.params.get(setting))
    if _SETTINGS.get(action.action) == (setting,):
        return f"{action.action} {value}"
    return f"{action.action} {setting} {value}"


def _hop_text(step: _Effect) -> str:
    """What a step does, for a loop message."""
    action = step.action
    if isinstance(action, FireEventAction):
        return f"fires event {action.event_type!r}"
    target, name = action.target, action.action
    simple = {
        "turn_on": "sets {} on",
        "turn_off": "sets {} off",
        "toggle": "toggles {}",
        "open": "opens {}",
        "close": "closes {}",
        "stop": "stops {}",
        "lock": "locks {}",
        "unlock": "unlocks {}",
        "press": "presses {}",
    }
    if name in simple:
        return simple[name].format(target)
    param = {"set_temperature": "temperature", "set_mode": "mode", "set_position": "position"}
    if name in param:
        value = action.params.get(param[name])
        shown = "a computed value" if value is None or _is_template(value) else _show(value)
        return f"sets {target}'s {param[name]} to {shown}"
    return f"sends {name!r} to {target}"


# ----- the walk -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Effect:
    """A command or fired event a rule can carry out, with what holds when it does."""

    rule: Rule
    action: CommandAction | FireEventAction
    path: PathKey  # within the rule, for the fallback path
    facts: _Facts
    # For branches of `parallel` (they run together) and `choose` (never together):
    # (which parallel/choose step in the rule, which branch).
    parallel: tuple[tuple[int, int], ...] = ()
    exclusive: tuple[tuple[int, int], ...] = ()


class _Checker:
    """Runs every check over one rule set."""

    def __init__(self, ruleset: RuleSet, known: Known) -> None:
        self.known = known
        self.locator = _Locator()
        self.issues: list[ConfigIssue] = []
        self.rules = sorted(
            ruleset.rules.values(), key=lambda r: (r.pos.file, r.pos.line, r.pos.col, r.id)
        )
        self.effects: list[_Effect] = []
        self.base: dict[str, _Facts] = {}
        self._branch_ids = itertools.count()
        self._universe: frozenset[str] | None = None
        self._areas_in_use: frozenset[str | None] | None = None
        self._reach: dict[tuple[str, str], dict[str, _Verdict]] = {}
        self._group_changes: dict[tuple[str, str, str], tuple[_Verdict, _Change]] = {}

    def run(self) -> list[ConfigIssue]:
        """Every issue, once each, sorted by place."""
        for rule in self.rules:
            self._rule(rule)
        self._conflicts()
        self._loops()
        unique = {(i.file, i.line, i.col, i.path, i.message, i.severity): i for i in self.issues}
        return sorted(unique.values(), key=lambda i: (i.file, i.line, i.col, i.path, i.message))

    def warn(
        self,
        rule: Rule,
        pos: Pos,
        path: PathKey,
        keys: Sequence[_Step],
        message: str,
        severity: str = "warning",
    ) -> None:
        """Report ``message`` about the value at ``keys`` of the part at ``pos``."""
        self.issues.append(self.locator.issue(rule, pos, path, keys, message, severity))

    # --- references ---

    def entity(self, rule: Rule, pos: Pos, path: PathKey, keys: Sequence[_Step], name: str) -> None:
        """Report an entity id that the registry does not have."""
        known = self.known.entities
        if known is None or name in known:
            return
        self.warn(rule, pos, path, keys, f"unknown entity {name!r}{suggest(name, known)}")

    def subject(
        self, rule: Rule, pos: Pos, path: PathKey, keys: Sequence[_Step], name: str
    ) -> None:
        """Report what a state/numeric trigger or condition (or an expression's states() and
        friends) reads when it does not exist: an entity, or a group (``group:<id>`` or a
        bare id)."""
        group = group_of(name)
        if group is None:
            self.entity(rule, pos, path, keys, name)
            return
        if group in self.known.groups:
            return
        hint = suggest(group, self.known.groups)
        entities = self.known.entities or frozenset()
        if not hint and not name.startswith(GROUP_PREFIX):
            # A bare id is read as a group: maybe an entity's key was left out.
            near = sorted(e for e in entities if e.startswith(f"{name}."))
            if near:
                hint = f" (an entity id is <device>.<key>: did you mean {near[0]!r}?)"
        self.warn(rule, pos, path, keys, _unknown_group(group, hint))

    def device(self, rule: Rule, pos: Pos, path: PathKey, keys: Sequence[_Step], name: str) -> None:
        """Report a device id that the registry does not have."""
        known = self.known.devices
        if known is None or name in known:
            return
        self.warn(rule, pos, path, keys, f"unknown device {name!r}{suggest(name, known)}")

    def named(
        self, rule: Rule, pos: Pos, path: PathKey, keys: Sequence[_Step], kind: str, name: str
    ) -> None:
        """Report a group or area id that is not configured."""
        known = self.known.groups if kind == "group" else self.known.areas
        if name in known:
            return
        if kind == "group":
            self.warn(rule, pos, path, keys, _unknown_group(name, suggest(name, known)))
            return
        hint = suggest(name, known) or ("" if known else f" (no {kind}s are configured)")
        self.warn(rule, pos, path, keys, f"unknown {kind} {name!r}{hint}")

    def target(self, rule: Rule, action: CommandAction, path: PathKey) -> None:
        """Report a command target that names nothing (a bare id may be of any kind)."""
        text = action.target
        if not text or _is_template(text):
            return  # known only when the rule runs
        kind, sep, name = text.partition(":")
        keys = ("command",)
        if not sep:
            kind, name = "", text
        if kind == "entity" or (not kind and "." in name):
            self.entity(rule, action.pos, path, keys, name)
        elif kind == "device":
            self.device(rule, action.pos, path, keys, name)
        elif kind in ("group", "area"):
            self.named(rule, action.pos, path, keys, kind, name)
        elif not kind:
            known = self.known
            if name in known.groups or name in known.areas:
                return
            if known.devices is None:
                return  # it may be a device: cannot tell
            if name in known.devices:
                return
            hint = suggest(name, (*known.devices, *known.groups, *known.areas))
            self.warn(
                rule,
                action.pos,
                path,
                keys,
                f"unknown target {name!r}: no entity, device, group or area has that id{hint}",
            )

    def templates(
        self, rule: Rule, pos: Pos, path: PathKey, keys: tuple[_Step, ...], value: Any
    ) -> None:
        """Entities and groups named inside templates anywhere in ``value``."""
        if isinstance(value, str) and _is_template(value):
            from hub.rules.expr import ExpressionError, compile_template

            try:
                names = compile_template(value).entity_references()
            except ExpressionError:
                return  # the loader has said so
            for name in sorted(names):
                self.subject(rule, pos, path, keys, name)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self.templates(rule, pos, path, (*keys, str(key)), item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                self.templates(rule, pos, path, (*keys, index), item)

    def expression(
        self, rule: Rule, pos: Pos, path: PathKey, keys: tuple[_Step, ...], text: str
    ) -> None:
        """Entities and groups named in an expression."""
        from hub.rules.expr import ExpressionError, compile_expression

        try:
            names = compile_expression(text).entity_references()
        except ExpressionError:
            return
        for name in sorted(names):
            self.subject(rule, pos, path, keys, name)

    # --- rules, triggers, conditions ---

    def _rule(self, rule: Rule) -> None:
        for name, value in rule.variables.items():
            self.templates(rule, rule.pos, (), ("variables", name), value)
        for index, trigger in enumerate(rule.triggers):
            self._trigger(rule, trigger, ("triggers", index))
        for index, condition in enumerate(rule.conditions):
            self._condition(rule, condition, ("conditions", index))
        base = _facts(rule.conditions)
        self.base[rule.id] = base
        self._actions(rule, rule.actions, ("actions",), base, (), ())

    def _trigger(self, rule: Rule, trigger: Trigger, path: PathKey) -> None:
        pos = trigger.pos
        if isinstance(trigger, StateTrigger | NumericTrigger):
            key = "state" if isinstance(trigger, StateTrigger) else "numeric"
            for entity_id in trigger.entity_ids:
                self.subject(rule, pos, path, (key, _Find(entity_id)), entity_id)
            if trigger.for_ == 0:
                self.warn(rule, pos, path, ("for",), _FOR_ZERO)
        if isinstance(trigger, NumericTrigger):
            self._thresholds(rule, pos, path, trigger.above, trigger.below, "trigger never fires")
        elif isinstance(trigger, DeviceTrigger):
            for device_id in trigger.device_ids:
                self.device(rule, pos, path, ("device", _Find(device_id)), device_id)
            if trigger.for_ == 0:
                self.warn(rule, pos, path, ("for",), _FOR_ZERO)

    def _thresholds(
        self,
        rule: Rule,
        pos: Pos,
        path: PathKey,
        above: float | str | None,
        below: float | str | None,
        never: str,
    ) -> None:
        for key, threshold in (("above", above), ("below", below)):
            if isinstance(threshold, str):
                self.subject(rule, pos, path, (key,), threshold)
        low, high = _number(above), _number(below)
        if low is not None and high is not None and low >= high:
            self.warn(
                rule,
                pos,
                path,
                ("below",),
                f"'below' ({_show(high)}) must be more than 'above' ({_show(low)}): no number "
                f"is in between, so this {never}",
                "error",
            )

    def _condition(self, rule: Rule, condition: Condition, path: PathKey) -> None:
        pos = condition.pos
        if isinstance(condition, StateCondition | NumericCondition):
            key = "state" if isinstance(condition, StateCondition) else "numeric"
            for entity_id in condition.entity_ids:
                self.subject(rule, pos, path, (key, _Find(entity_id)), entity_id)
        if isinstance(condition, StateCondition) and condition.for_ == 0:
            self.warn(rule, pos, path, ("for",), _FOR_ZERO)
        elif isinstance(condition, NumericCondition):
            self._thresholds(
                rule, pos, path, condition.above, condition.below, "condition is never true"
            )
        elif isinstance(condition, TimeCondition):
            self._time_condition(rule, condition, path)
        elif isinstance(condition, AndCondition | OrCondition | NotCondition):
            key = {AndCondition: "and", OrCondition: "or", NotCondition: "not"}[type(condition)]
            for index, inner in enumerate(condition.conditions):
                self._condition(rule, inner, (*path, key, index))
        elif isinstance(condition, ExpressionCondition):
            self.expression(rule, pos, path, ("expr",), condition.expression)

    def _time_condition(self, rule: Rule, condition: TimeCondition, path: PathKey) -> None:
        if condition.after is None or condition.before is None:
            return
        start, end = _time_of_day(condition.after), _time_of_day(condition.before)
        if start is not None and start == end:
            self.warn(
                rule,
                condition.pos,
                path,
                ("time",),
                f"'after' and 'before' are the same time ({condition.before}): the window is "
                "empty, so this condition is never true",
            )

    # --- actions ---

    def _actions(
        self,
        rule: Rule,
        actions: Sequence[Action],
        path: PathKey,
        facts: _Facts,
        parallel: tuple[tuple[int, int], ...],
        exclusive: tuple[tuple[int, int], ...],
    ) -> None:
        for index, action in enumerate(actions):
            self._action(rule, action, (*path, index), facts, parallel, exclusive)

    def _action(
        self,
        rule: Rule,
        action: Action,
        path: PathKey,
        facts: _Facts,
        parallel: tuple[tuple[int, int], ...],
        exclusive: tuple[tuple[int, int], ...],
    ) -> None:
        pos = action.pos
        if isinstance(action, CommandAction | FireEventAction):
            if isinstance(action, CommandAction):
                self.target(rule, action, path)
                self.templates(rule, pos, path, ("command",), action.target)
                self.templates(rule, pos, path, ("params",), action.params)
            else:
                self.templates(rule, pos, path, ("data",), action.data)
            self.effects.append(_Effect(rule, action, path, facts, parallel, exclusive))
        elif isinstance(action, SceneAction):
            scenes = self.known.scenes
            if scenes is not None and not _is_template(action.scene) and action.scene not in scenes:
                hint = suggest(action.scene, scenes)
                self.warn(rule, pos, path, ("scene",), f"unknown scene {action.scene!r}{hint}")
            self.templates(rule, pos, path, ("scene",), action.scene)
        elif isinstance(action, NotifyAction):
            self.templates(rule, pos, path, ("notify",), action.message)
            self.templates(rule, pos, path, ("title",), action.title)
            self.templates(rule, pos, path, ("data",), action.data)
        elif isinstance(action, DelayAction):
            self.templates(rule, pos, path, ("delay",), action.duration)
        elif isinstance(action, WaitAction):
            self._wait(rule, action, path)
        elif isinstance(action, ChooseAction):
            self._choose(rule, action, path, facts, parallel, exclusive)
        elif isinstance(action, RepeatAction):
            where = (*path, "repeat")
            self.templates(rule, pos, path, ("repeat", "count"), action.count)
            self.templates(rule, pos, path, ("repeat", "for_each"), action.items)
            key = action.kind.value
            for index, condition in enumerate(action.conditions):
                self._condition(rule, condition, (*where, key, index))
            inside = (
                facts.both(_facts(action.conditions)) if action.kind is RepeatKind.WHILE else facts
            )
            self._actions(rule, action.actions, (*where, "actions"), inside, parallel, exclusive)
        elif isinstance(action, ParallelAction):
            mark = next(self._branch_ids)
            for number, branch in enumerate(action.branches):
                inner = (*parallel, (mark, number))
                where = (*path, "parallel", number)
                self._actions(rule, branch, where, facts, inner, exclusive)
        elif isinstance(action, VariablesAction):
            self.templates(rule, pos, path, ("variables",), action.variables)
        elif isinstance(action, StopAction):
            self.templates(rule, pos, path, ("stop",), action.reason)
        elif isinstance(action, WebhookCallAction):
            self.templates(rule, pos, path, ("webhook_call",), action.url)
            self.templates(rule, pos, path, ("json",), action.json)
            self.templates(rule, pos, path, ("headers",), action.headers)

    def _wait(self, rule: Rule, action: WaitAction, path: PathKey) -> None:
        for index, trigger in enumerate(action.triggers):
            self._trigger(rule, trigger, (*path, "wait", index))
        if action.expression is not None:
            self.expression(rule, action.pos, path, ("wait_expr",), action.expression)
        if action.timeout is None and rule.mode is Mode.SINGLE:
            self.warn(
                rule,
                action.pos,
                path,
                (),
                "this wait has no timeout and the rule's mode is single: while it waits, the "
                "rule ignores its triggers, possibly for ever; consider a 'timeout' (or mode "
                "restart)",
            )

    def _choose(
        self,
        rule: Rule,
        action: ChooseAction,
        path: PathKey,
        facts: _Facts,
        parallel: tuple[tuple[int, int], ...],
        exclusive: tuple[tuple[int, int], ...],
    ) -> None:
        mark = next(self._branch_ids)
        # `if:` is a one-choice choose written at the action's own place.
        single = len(action.choices) == 1 and action.choices[0].pos == action.pos
        for number, choice in enumerate(action.choices):
            if single:
                where, actions_at = (*path, "if"), (*path, "then")
            else:
                where = (*path, "choose", number, "conditions")
                actions_at = (*path, "choose", number, "actions")
            for index, condition in enumerate(choice.conditions):
                self._condition(rule, condition, (*where, index))
            inside = facts.both(_facts(choice.conditions))
            branch = (*exclusive, (mark, number))
            self._actions(rule, choice.actions, actions_at, inside, parallel, branch)
        otherwise = (*path, "else" if single else "default")
        branch = (*exclusive, (mark, len(action.choices)))
        self._actions(rule, action.default, otherwise, facts, parallel, branch)

    # --- what commands reach ---

    def universe(self) -> frozenset[str]:
        """The entities a command to a device, group, area or tag is tested against: the
        stored registry's, and every entity the rules and the groups name (without a stored
        registry, those are the ones whose loops and conflicts can be told)."""
        if self._universe is None:
            found = set(self.known.entities or ())
            for effect in self.effects:
                if isinstance(effect.action, CommandAction):
                    found.update(_entity_target(effect.action.target))
            for rule in self.rules:
                for trigger in rule.triggers:
                    if isinstance(trigger, StateTrigger | NumericTrigger):
                        found.update(e for e in trigger.entity_ids if group_of(e) is None)
            for members in self.known.group_members.values():
                for member in members:
                    found.update(_entity_target(member))
            self._universe = frozenset(found)
        return self._universe

    def reach(self, action: CommandAction) -> Mapping[str, _Verdict] | None:
        """The entities a command reaches, each certainly (True) or with the reason it is
        known only at run time; None for a templated target."""
        text = action.target
        if not text or _is_template(text):
            return None
        key = (text, action.action)
        found = self._reach.get(key)
        if found is None:
            direct = _entity_target(text)
            if direct:
                found = dict.fromkeys(direct, True)  # one entity: the action is not filtered
            else:
                found = {}
                for entity_id in sorted(self.universe()):
                    verdict = self._unless_unknown(
                        entity_id, self.reaches(text, entity_id, frozenset())
                    )
                    if verdict is not False and self._accepts(entity_id, action.action):
                        if isinstance(verdict, _Open) and entity_id not in self.known.entity_kinds:
                            # Any entity, of any kind: no more than a guess.
                            continue
                        if verdict is not True:
                            verdict = _reworded(
                                verdict, f"only if {text} reaches {entity_id}; {verdict}"
                            )
                        found[entity_id] = verdict
            self._reach[key] = found
        return found

    def reaches(self, text: str, entity_id: str, seen: frozenset[str]) -> _Verdict:
        """Whether a target or group member takes in ``entity_id``, resolved as the registry
        resolves it (entity, device, group, area; ``tag:`` only with its prefix)."""
        kind, sep, name = text.partition(":")
        if not sep:
            kind, name = "", text
        device = entity_id.partition(".")[0]
        if kind == "entity" or (not kind and "." in name):
            return name == entity_id
        if kind == "device":
            return name == device
        if kind == "group":
            return self.in_group(name, entity_id, seen)
        if kind == "area":
            return self._in_area(name, entity_id)
        if kind == "tag":
            return name in self.known.device_tags.get(
                device, ()
            ) or name in self.known.entity_tags.get(entity_id, ())
        if kind:
            return False
        known = self.known
        if name == device:
            return True  # the entity's own device, which comes first
        if known.devices is not None and name in known.devices:
            return False  # another device
        if name in known.groups or name in known.group_members:
            return self.in_group(name, entity_id, seen)
        if name in known.areas:
            return self._in_area(name, entity_id)
        return False

    def in_group(self, group_id: str, entity_id: str, seen: frozenset[str]) -> _Verdict:
        """Whether ``entity_id`` is a member of the group (through any of its members)."""
        if group_id in seen:
            return False  # reached again through its own members: no cycles, as in the hub
        known = self.known
        members = known.group_members.get(group_id)
        if members is None:
            # A group of a plug-in, or a typo (either is reported as unknown): it may hold
            # anything, which tells a rule's own loop only.
            return _Open(f"the members of group {group_id!r} are known only at run time")
        inner = seen | {group_id}
        verdict = _any_verdict(self.reaches(member, entity_id, inner) for member in members)
        kind = known.group_kinds.get(group_id)
        if kind is not None and verdict is not False:
            actual = known.entity_kinds.get(entity_id)
            if actual is None:
                why = f"the kind of {entity_id} is known only at run time"
                verdict = _both_verdicts(verdict, why)
            elif actual != kind:
                return False
        return verdict

    def _in_area(self, area: str, entity_id: str) -> _Verdict:
        device = entity_id.partition(".")[0]
        areas = self.known.device_areas
        if device in areas:
            return areas[device] == area
        if area not in self.known.areas and area not in self._device_areas():
            return False  # an area nobody knows: reported as unknown, not guessed at
        return f"the area of device {device!r} is known only at run time"

    def _device_areas(self) -> frozenset[str | None]:
        if self._areas_in_use is None:
            self._areas_in_use = frozenset(self.known.device_areas.values())
        return self._areas_in_use

    def _unless_unknown(self, entity_id: str, verdict: _Verdict) -> _Verdict:
        """No guessing about an entity the stored registry does not have (it is reported as
        unknown): only what is certain of it counts."""
        entities = self.known.entities
        if verdict is True or entities is None or entity_id in entities:
            return verdict
        return False

    def _accepts(self, entity_id: str, action: str) -> bool:
        # A command to a device, group or area reaches only the entities that accept it.
        kind = self.known.entity_kinds.get(entity_id)
        return kind is None or action in _KIND_ACTIONS.get(kind, frozenset())

    def group_target(self, text: str) -> str | None:
        """The group a command target names (``group:<id>``, or a bare id that is no device
        and is a group), else None."""
        kind, sep, name = text.partition(":")
        if not sep:
            kind, name = "", text
        if kind == "group":
            return name
        if kind or "." in name or _is_template(name):
            return None
        if self.known.devices is not None and name in self.known.devices:
            return None
        return name if name in self.known.groups or name in self.known.group_members else None

    def _holds_group(self, outer: str, group_id: str, seen: frozenset[str]) -> bool:
        """Whether a command to group ``outer`` goes to all of group ``group_id``: it is that
        group, or holds it as a member (at any depth)."""
        if outer == group_id:
            return True
        if outer in seen:
            return False
        for member in self.known.group_members.get(outer, ()):
            inner = self.group_target(member)
            if inner is not None and self._holds_group(inner, group_id, seen | {outer}):
                return True
        return False

    def group_change(self, action: CommandAction, group_id: str) -> tuple[_Verdict, _Change]:
        """Whether a command moves a group's aggregated value, and to what: commanding the
        group itself (or a group holding it) does, and so does commanding a member."""
        key = (action.target, action.action, group_id)
        found = self._group_changes.get(key)
        if found is not None:
            return found
        verdicts: list[_Verdict] = []
        changes: list[_Change] = []
        outer = self.group_target(action.target)
        if outer is not None and self._holds_group(outer, group_id, frozenset()):
            verdicts.append(True)
            changes.append(_change(action, None))
        for entity_id, reached in (self.reach(action) or {}).items():
            member = self._unless_unknown(
                entity_id, self.in_group(group_id, entity_id, frozenset())
            )
            if member is False:
                continue
            if member is not True:
                member = _reworded(
                    member, f"only if {entity_id} is in group {group_id!r}; {member}"
                )
            verdicts.append(_both_verdicts(reached, member))
            changes.append(_change(action, self.known.entity_kinds.get(entity_id)))
        verdict = _any_verdict(verdicts)
        values: frozenset[Any] | None = frozenset()
        for change in changes:
            values = None if values is None or change.values is None else values | change.values
        aggregate = self.known.group_aggregates.get(group_id, Aggregate.ANY.value)
        found = (verdict, _aggregated(_Change(values, {}), aggregate))
        self._group_changes[key] = found
        return found

    def keys(self, action: CommandAction) -> list[tuple[str, _Verdict]]:
        """What a command sets, for conflicts: the entities it reaches (certain ones first),
        then the target itself (a group as ``group:<id>``) for what cannot be told."""
        reached = self.reach(action)
        if reached is None:
            return []
        # A group that may hold anything would make every entity a possible conflict.
        found = [(e, verdict) for e, verdict in reached.items() if not isinstance(verdict, _Open)]
        out = sorted(found, key=lambda item: (item[1] is not True, item[0]))
        text = action.target
        if not _entity_target(text):
            group = self.group_target(text)
            out.append((text if group is None else f"{GROUP_PREFIX}{group}", True))
        return out

    def location(self, effect: _Effect) -> str:
        """``file:line:col`` of an effect's step, as issues show it."""
        issue = self.locator.issue(effect.rule, effect.action.pos, effect.path, (), "")
        return f"{issue.file}:{issue.line}:{issue.col}"

    # --- conflicts ---

    def _conflicts(self) -> None:
        by_key: dict[str, list[tuple[_Effect, dict[str, Any], _Verdict]]] = {}
        for effect in self.effects:
            action = effect.action
            if not isinstance(action, CommandAction) or not effect.rule.enabled:
                continue
            settings = _settings(action)
            if not settings or effect.facts.impossible():
                continue
            for key, verdict in self.keys(action):
                by_key.setdefault(key, []).append((effect, settings, verdict))
        # Each pair of steps once, on the key they share most surely (a certain one before one
        # known only at run time), in the order the keys were first met.
        pairs: dict[tuple[int, int], tuple[bool, int, str, _Verdict]] = {}
        order = {id(effect): index for index, effect in enumerate(self.effects)}
        for rank, (key, items) in enumerate(by_key.items()):
            for (first, _, one), (second, _, other) in itertools.combinations(items, 2):
                verdict = _both_verdicts(one, other)
                pair = (order[id(first)], order[id(second)])
                best = (verdict is not True, rank, key, verdict)
                if pair not in pairs or best[:2] < pairs[pair][:2]:
                    pairs[pair] = best
        reported: set[tuple[str, str]] = set()
        for (a, b), (_, _, key, verdict) in sorted(pairs.items(), key=lambda p: (p[1][:2], p[0])):
            first, second = self.effects[a], self.effects[b]
            assert isinstance(first.action, CommandAction)
            assert isinstance(second.action, CommandAction)
            rules = (first.rule.id, second.rule.id)
            if rules in reported:
                continue
            sides = _differ(first, _settings(first.action), second, _settings(second.action))
            if sides is None:
                continue
            sides = (_through(first.action, key, sides[0]), _through(second.action, key, sides[1]))
            if first.rule is second.rule:
                if self._same_run(first, second):
                    reported.add(rules)
                    self._report_parallel(key, first, second, sides, verdict)
                continue
            event = self._same_event(first, second)
            if event is not None:
                reported.add(rules)
                self._report_conflict(key, first, second, sides, event, verdict)

    def _same_run(self, first: _Effect, second: _Effect) -> bool:
        """Whether two steps of one rule run together: in different branches of a parallel."""
        branches = dict(first.parallel)
        apart = any(mark in branches and branches[mark] != b for mark, b in second.parallel)
        if not apart:
            return False
        choices = dict(first.exclusive)
        if any(mark in choices and choices[mark] != b for mark, b in second.exclusive):
            return False
        facts = first.facts.both(second.facts)
        return not facts.impossible() and any(facts.allows(t) for t in first.rule.triggers)

    def _same_event(self, first: _Effect, second: _Effect) -> str | None:
        """The event both rules run on (as words), when their conditions allow it."""
        for one in first.rule.triggers:
            if not first.facts.allows(one):
                continue
            for other in second.rule.triggers:
                if not second.facts.allows(other):
                    continue
                for words, facts in _overlaps(one, other):
                    if not first.facts.both(second.facts).both(facts).impossible():
                        return words
        return None

    def _report_conflict(
        self,
        key: str,
        first: _Effect,
        second: _Effect,
        sides: tuple[str, str],
        event: str,
        verdict: _Verdict,
    ) -> None:
        may = "set" if verdict is True else "may set"
        message = (
            f"rules {first.rule.id!r} ({self.location(first)}) and {second.rule.id!r} "
            f"({self.location(second)}) both react to {event} and {may} {key} to different "
            f"values ({sides[0]} vs {sides[1]})"
        )
        self.warn(second.rule, second.action.pos, second.path, (), message + _why(verdict))

    def _report_parallel(
        self, key: str, first: _Effect, second: _Effect, sides: tuple[str, str], verdict: _Verdict
    ) -> None:
        may = "sets" if verdict is True else "may set"
        message = (
            f"rule {first.rule.id!r} {may} {key} to different values at the same time in "
            f"parallel branches ({self.location(first)} and {self.location(second)}): "
            f"{sides[0]} vs {sides[1]}"
        )
        self.warn(second.rule, second.action.pos, second.path, (), message + _why(verdict))

    # --- loops ---

    def _loops(self) -> None:
        rules = [rule for rule in self.rules if rule.enabled]
        nodes = [(rule, index) for rule in rules for index in range(len(rule.triggers))]
        by_entity: dict[str, list[int]] = {}
        by_group: dict[str, list[int]] = {}
        by_event: dict[str, list[int]] = {}
        for n, (rule, index) in enumerate(nodes):
            trigger = rule.triggers[index]
            if isinstance(trigger, StateTrigger | NumericTrigger):
                for entity_id in trigger.entity_ids:
                    group = group_of(entity_id)
                    if group is None:
                        by_entity.setdefault(entity_id, []).append(n)
                    else:
                        by_group.setdefault(group, []).append(n)
            elif isinstance(trigger, EventTrigger):
                by_event.setdefault(trigger.event_type, []).append(n)
        effects_of: dict[str, list[_Effect]] = {}
        for effect in self.effects:
            effects_of.setdefault(effect.rule.id, []).append(effect)
        # node -> node it can fire -> the step that does, and why only maybe (None: surely)
        edges: list[dict[int, tuple[_Effect, str | None]]] = [{} for _ in nodes]
        for n, (rule, index) in enumerate(nodes):
            trigger = rule.triggers[index]
            for effect in effects_of.get(rule.id, ()):
                if effect.facts.impossible() or not effect.facts.allows(trigger):
                    continue
                fired = self._fired(n, effect, nodes, by_entity, by_group, by_event)
                for target, why in fired:
                    if target not in edges[n] or (why is None and edges[n][target][1] is not None):
                        edges[n][target] = (effect, why)
        seen: set[tuple[str, ...]] = set()
        for cycle in _cycles(edges):
            hops = [edges[a][b] for a, b in itertools.pairwise((*cycle, cycle[0]))]
            key = _cycle_key([hop for hop, _ in hops])
            if key in seen:
                continue
            if len(key) > 1 and any(why is not None for _, why in hops):
                # A rule whose command may reach what triggers it is worth a word even when
                # only the running hub knows; a chain of rules through such guesses is not
                # (before the first run, every area's devices are unknown).
                continue
            seen.add(key)
            self._report_loop(hops)
            if len(seen) >= MAX_LOOPS:
                return

    def _fired(
        self,
        source: int,
        effect: _Effect,
        nodes: Sequence[tuple[Rule, int]],
        by_entity: Mapping[str, list[int]],
        by_group: Mapping[str, list[int]],
        by_event: Mapping[str, list[int]],
    ) -> Iterator[tuple[int, str | None]]:
        """The (rule, trigger) nodes a step can fire, each with why it only may (or None)."""
        action = effect.action
        if isinstance(action, FireEventAction):
            for n in by_event.get(action.event_type, ()):
                trigger = nodes[n][0].triggers[nodes[n][1]]
                assert isinstance(trigger, EventTrigger)
                if _data_match(trigger.data, action.data):
                    yield n, None
            return
        reached = self.reach(action)
        if reached is None:
            return
        for entity_id, verdict in sorted(reached.items()):
            change = _change(action, self.known.entity_kinds.get(entity_id))
            for n in by_entity.get(entity_id, ()):
                if self._fires_node(n, source, nodes, entity_id, change):
                    yield n, None if verdict is True else str(verdict)
        for group_id, group_nodes in by_group.items():
            verdict, change = self.group_change(action, group_id)
            if verdict is False:
                continue
            for n in group_nodes:
                if self._fires_node(n, source, nodes, f"{GROUP_PREFIX}{group_id}", change):
                    yield n, None if verdict is True else str(verdict)

    def _fires_node(
        self,
        n: int,
        source: int,
        nodes: Sequence[tuple[Rule, int]],
        subject: str,
        change: _Change,
    ) -> bool:
        """Whether a change to ``subject`` (an entity or ``group:<id>``) fires node ``n``."""
        rule, index = nodes[n]
        trigger = rule.triggers[index]
        assert isinstance(trigger, StateTrigger | NumericTrigger)
        if n == source and _already(change, trigger):
            return False
        return _fires(change, trigger) and _admits(self.base[rule.id], subject, change)

    def _report_loop(self, hops: Sequence[tuple[_Effect, str | None]]) -> None:
        parts = [f"rule {hop.rule.id!r} ({self.location(hop)}) {_hop_text(hop)}" for hop, _ in hops]
        reasons = list(dict.fromkeys(why for _, why in hops if why is not None))
        words = "possible loop: " if reasons else "loop: "
        message = words + " -> ".join(parts) + f" -> rule {hops[0][0].rule.id!r}"
        if reasons:
            message += f" ({'; '.join(reasons)})"
        first = hops[0][0]
        self.warn(first.rule, first.action.pos, first.path, (), message)


_FOR_ZERO = "'for: 0' waits for no time at all: leave 'for' out, or give a duration"


def _unknown_group(group: str, hint: str) -> str:
    """A group neither hub.yaml nor an earlier run knows: a typo, or one a plug-in adds."""
    return (
        f"unknown group {group!r}{hint}: neither hub.yaml nor the stored registry has it; it "
        "may be a group a plug-in registers while the hub runs (such as a Zigbee2MQTT group)"
    )


def _differ(
    first: _Effect, one: Mapping[str, Any], second: _Effect, other: Mapping[str, Any]
) -> tuple[str, str] | None:
    """How two commands set something differently (as words for each), or None."""
    a, b = first.action, second.action
    assert isinstance(a, CommandAction)
    assert isinstance(b, CommandAction)
    for setting in ("state", "temperature", "position", "brightness", "color_temp"):
        if setting not in one or setting not in other:
            continue
        x, y = one[setting], other[setting]
        if x is _ANY or y is _ANY:
            continue  # computed when the rule runs: they may well agree
        if x is _TOGGLE or y is _TOGGLE or x != y:
            return _setting_text(a, setting), _setting_text(b, setting)
    return None


def _data_match(wanted: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    """Whether an event fired with ``given`` data can match a trigger asking for ``wanted``."""
    for key, value in wanted.items():
        if key not in given:
            return False
        got = _norm(given[key])
        if got is not _ANY and got != _norm(value):
            return False
    return True


def _fires(change: _Change, trigger: StateTrigger | NumericTrigger) -> bool:
    """Whether a command's change to an entity can fire a trigger on it."""
    if trigger.attribute is not None:
        if change.attributes is None:
            return True
        if trigger.attribute not in change.attributes:
            return False
        value = change.attributes[trigger.attribute]
        if value is _ANY:
            return True
        if isinstance(trigger, StateTrigger):
            wanted = _values(trigger.to)
            return wanted is None or value in wanted
        span = _range(trigger.above, trigger.below)
        return span is None or not isinstance(value, float) or span[0] < value < span[1]
    if change.values is not None and not change.values:
        return False  # the state stays as it is
    if isinstance(trigger, NumericTrigger):
        if change.values is None:
            return True
        span = _range(trigger.above, trigger.below)
        numbers = [v for v in change.values if isinstance(v, float)]
        return span is None or any(span[0] < v < span[1] for v in numbers)
    if change.values is None:
        return True
    to, from_ = _values(trigger.to), _values(trigger.from_)
    if to is not None and not to & change.values:
        return False
    # From a value the command leaves it in, there is no change, so no firing.
    return from_ is None or bool(from_ - change.values)


def _already(change: _Change, trigger: StateTrigger | NumericTrigger) -> bool:
    """Whether a rule's command leaves the entity in the state its own trigger just saw
    (turning on a light that just turned on): that changes nothing, so it is no loop."""
    if not isinstance(trigger, StateTrigger) or trigger.attribute is not None:
        return False
    to = _values(trigger.to)
    return (
        to is not None and change.values is not None and bool(change.values) and change.values <= to
    )


def _admits(base: _Facts, entity_id: str, change: _Change) -> bool:
    """Whether a rule's own conditions let a run through after this change to the entity."""
    if change.values is None:
        return True
    key = (entity_id, None)
    allowed = base.allowed.get(key)
    left = change.values if allowed is None else change.values & allowed
    return bool(left - base.excluded.get(key, frozenset()))


def _cycles(edges: Sequence[Mapping[int, Any]]) -> Iterator[tuple[int, ...]]:
    """Each elementary cycle once, starting at its lowest node (bounded work)."""
    budget = _SEARCH_BUDGET
    for start in range(len(edges)):
        stack: list[tuple[int, Iterator[int]]] = [(start, iter(sorted(edges[start])))]
        path = [start]
        on_path = {start}
        while stack:
            _, successors = stack[-1]
            step = next(successors, None)
            if step is None:
                stack.pop()
                on_path.discard(path.pop())
                continue
            budget -= 1
            if budget <= 0:
                return
            if step == start:
                yield tuple(path)
            elif step > start and step not in on_path:
                path.append(step)
                on_path.add(step)
                stack.append((step, iter(sorted(edges[step]))))


def _cycle_key(hops: Sequence[_Effect]) -> tuple[str, ...]:
    """The same cycle through the same rules once, wherever it starts."""
    ids = [hop.rule.id for hop in hops]
    # A rule's steps triggering its own other triggers in between is the same loop.
    collapsed = [rid for i, rid in enumerate(ids) if rid != ids[i - 1]] or ids[:1]
    rotations = [tuple(collapsed[i:] + collapsed[:i]) for i in range(len(collapsed))]
    return min(rotations)


# ----- overlapping triggers -----------------------------------------------------------------


def _overlaps(one: Trigger, other: Trigger) -> Iterator[tuple[str, _Facts]]:
    """The events on which both triggers fire: in words, with what holds then."""
    if isinstance(one, StateTrigger | NumericTrigger) and isinstance(
        other, StateTrigger | NumericTrigger
    ):
        yield from _entity_overlaps(one, other)
        return
    if type(one) is not type(other):
        return
    words = _keyed_overlap(one, other)
    if words is not None:
        yield words, _NOTHING_KNOWN
    elif isinstance(one, TimeTrigger) and isinstance(other, TimeTrigger):
        at = {_time_of_day(t): t for t in one.at} if one.at else {}
        for t in other.at:
            seconds = _time_of_day(t)
            if seconds is not None and seconds in at:
                window = _window(None, ((seconds, seconds + 1),))
                yield f"the time {at[seconds]}", _Facts(window=window)


def _keyed_overlap(one: Trigger, other: Trigger) -> str | None:
    """Words for the common event of two triggers of one kind (not state/numeric/time)."""
    if isinstance(one, MqttTrigger) and isinstance(other, MqttTrigger):
        if not _topics_overlap(one.topic, other.topic):
            return None
        if one.payload is not None and other.payload is not None and one.payload != other.payload:
            return None
        if (
            one.json_field is not None
            and one.json_field == other.json_field
            and one.json_value is not None
            and other.json_value is not None
            and _norm(one.json_value) != _norm(other.json_value)
        ):
            return None
        topics = (
            repr(one.topic) if one.topic == other.topic else f"{one.topic!r} and {other.topic!r}"
        )
        payload = one.payload if one.payload is not None else other.payload
        return f"MQTT messages on {topics}" + (
            "" if payload is None else f" with payload {payload!r}"
        )
    if isinstance(one, CronTrigger) and isinstance(other, CronTrigger):
        same = one.expression.split() == other.expression.split()
        return f"the schedule {one.expression!r}" if same else None
    if isinstance(one, IntervalTrigger) and isinstance(other, IntervalTrigger):
        return f"every {_duration(one.every)}" if one.every == other.every else None
    if isinstance(one, SunTrigger) and isinstance(other, SunTrigger):
        if (one.event, one.offset) != (other.event, other.offset):
            return None
        offset = (
            ""
            if not one.offset
            else f" {'-' if one.offset < 0 else '+'}{_duration(abs(one.offset))}"
        )
        return f"{one.event.value}{offset}"
    if isinstance(one, HubStartTrigger):
        return "the hub starting"
    if isinstance(one, DeviceTrigger) and isinstance(other, DeviceTrigger):
        shared = [d for d in one.device_ids if d in other.device_ids]
        if not shared or one.event != other.event or one.for_ != other.for_:
            return None
        held = "" if not one.for_ else f" for {_duration(one.for_)}"
        return f"device {shared[0]} going {one.event}{held}"
    if isinstance(one, CommandTrigger) and isinstance(other, CommandTrigger):
        return f"the command {one.name!r}" if one.name == other.name else None
    if isinstance(one, WebhookTrigger) and isinstance(other, WebhookTrigger):
        return f"the webhook {one.name!r}" if one.name == other.name else None
    if isinstance(one, CalendarTrigger) and isinstance(other, CalendarTrigger):
        same = (one.calendar, one.event, one.offset) == (other.calendar, other.event, other.offset)
        a, b = (one.match or "").lower(), (other.match or "").lower()
        if not same or (a not in b and b not in a):
            return None
        return f"the {one.event} of events in calendar {one.calendar!r}"
    if isinstance(one, EventTrigger) and isinstance(other, EventTrigger):
        if one.event_type != other.event_type:
            return None
        for key, value in one.data.items():
            if key in other.data and _norm(value) != _norm(other.data[key]):
                return None
        return f"the event {one.event_type!r}"
    return None


def _common(a: frozenset[Any] | None, b: frozenset[Any] | None) -> frozenset[Any] | None:
    """Values both accept (None: any); an empty set when they share none."""
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _entity_overlaps(
    one: StateTrigger | NumericTrigger, other: StateTrigger | NumericTrigger
) -> Iterator[tuple[str, _Facts]]:
    if one.attribute != other.attribute or one.for_ != other.for_:
        return  # different attributes change apart; different `for` fire at different times
    theirs = {_subject(e) for e in other.entity_ids}
    for entity_id in [e for e in one.entity_ids if _subject(e) in theirs]:
        key = (_subject(entity_id), one.attribute)
        name = entity_id if one.attribute is None else f"{entity_id}'s {one.attribute}"
        held = "" if not one.for_ else f" for {_duration(one.for_)}"
        if isinstance(one, StateTrigger) and isinstance(other, StateTrigger):
            to = _common(_values(one.to), _values(other.to))
            from_ = _common(_values(one.from_), _values(other.from_))
            if (to is not None and not to) or (from_ is not None and not from_):
                continue
            facts = _NOTHING_KNOWN if to is None else _Facts(allowed={key: to})
            yield _state_words(name, one, other, to, from_) + held, facts
            continue
        numeric = one if isinstance(one, NumericTrigger) else other
        assert isinstance(numeric, NumericTrigger)
        span = _range(numeric.above, numeric.below)
        if isinstance(one, NumericTrigger) and isinstance(other, NumericTrigger):
            second = _range(other.above, other.below)
            if span is not None and second is not None:
                span = (max(span[0], second[0]), min(span[1], second[1]))
                if span[0] >= span[1]:
                    continue
        else:
            # A state trigger fires on every change; with `to`, only on those values.
            state = other if numeric is one else one
            assert isinstance(state, StateTrigger)
            to = _values(state.to)
            if to is not None and span is not None:
                numbers = [v for v in to if isinstance(v, float)]
                if not any(span[0] < v < span[1] for v in numbers):
                    continue
        facts = _NOTHING_KNOWN if span is None else _Facts(ranges={key: span})
        yield _numeric_words(name, numeric, span) + held, facts


def _state_words(
    name: str,
    one: StateTrigger,
    other: StateTrigger,
    to: frozenset[Any] | None,
    from_: frozenset[Any] | None,
) -> str:
    # Show the values as written (the normalised ones are floats and text).
    written = {
        _norm(v): v
        for v in (*(one.to or ()), *(other.to or ()), *(one.from_ or ()), *(other.from_ or ()))
    }

    def listed(values: frozenset[Any]) -> str:
        return " or ".join(_quoted(written.get(v, v)) for v in sorted(values, key=str))

    if to is not None and len(to) == 1 and next(iter(to)) in ("on", "off") and from_ is None:
        return f"{name} turning {next(iter(to))}"
    words = f"{name} changing"
    if from_ is not None:
        words += f" from {listed(from_)}"
    if to is not None:
        words += f" to {listed(to)}"
    return words


def _numeric_words(name: str, trigger: NumericTrigger, span: tuple[float, float] | None) -> str:
    if span is None:
        low, high = trigger.above, trigger.below
    else:
        low = None if span[0] == float("-inf") else span[0]
        high = None if span[1] == float("inf") else span[1]
    if low is not None and high is not None:
        return f"{name} going between {_show(low)} and {_show(high)}"
    if low is not None:
        return f"{name} going above {_show(low)}"
    return f"{name} going below {_show(high)}"


# ----- the entry point ----------------------------------------------------------------------


def check_ruleset(ruleset: RuleSet, known: Known) -> list[ConfigIssue]:
    """Static checks of a loaded rule set: unknown references, conflicts, loops and smaller
    mistakes, as warnings (an impossible numeric range as an error), sorted by place."""
    return _Checker(ruleset, known).run()
