"""The generic adapter: reads firmware profiles and speaks each one's MQTT.

One adapter serves every loaded profile. Devices it creates are owned by the adapter (its
plug-in name); ``device.native`` records the profile, the device's key on the wire and its
variables, so identities survive restarts. Entities appear as the device first reports them.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapters.firmware.checks import check_settings, dotted, install_problems
from adapters.firmware.checks import hostile as _hostile
from adapters.firmware.decode import MapPlan, bind_conditions
from adapters.firmware.paths import MISSING, Bindings
from adapters.firmware.profile import (
    Availability,
    CommandSet,
    Condition,
    FieldMap,
    Outgoing,
    Profile,
    ProfileError,
    Rule,
    load_profile,
    profile_name,
    resolve_ref,
)
from adapters.firmware.settings import DeviceEntry, FirmwareSettings, ProfileSettings, device_vars
from adapters.firmware.shapes import Shape, build_shape
from adapters.firmware.templates import (
    Expander,
    Template,
    TemplateError,
    TopicPattern,
    check_publish_topic,
    compile_topic,
    filter_covers,
    text_of,
)
from adapters.firmware.transforms import SKIP, TransformError, apply_all
from hub.api import (
    CheckContext,
    CommandError,
    ConfigIssue,
    Device,
    Entity,
    InvalidValue,
    Plugin,
    PluginContext,
    State,
)

_ID_CHARS = re.compile(r"[^a-z0-9_\-]+")
_CORRELATION_WINDOW = 1024  # outstanding request ids remembered for responses
_SUB_QOS_1 = 1
# Topics remembered per subscription with the rules they match (topics come from devices).
_MATCH_MEMO_LIMIT = 4096
# Shapes a lane keeps per topic (a Shelly plug's status with and without its relay, ...), and
# topics per lane (a Tasmota's POWER1, POWER2...; past it the lane starts afresh).
_SHAPES_PER_TOPIC = 4
_SHAPE_TOPICS_LIMIT = 64
# Shapes tried per topic of a lane, at most: past it the decode plan reads what no shape fits.
_SHAPE_BUILDS_LIMIT = 16


class FirmwareConfigError(Exception):
    """Settings that do not fit the loaded profiles."""


class Reject(Exception):
    """A message is ignored as a whole: counted and logged with this reason."""

    def __init__(self, reason: str, kind: str = "malformed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@functools.lru_cache(maxsize=4096)
def sanitise_id(text: str) -> str:
    """Turn a firmware name into a hub id: lower case, [a-z0-9_-], at most 64 characters."""
    cleaned = _ID_CHARS.sub("_", text.lower()).strip("_-")
    return cleaned[:64].rstrip("_-")


# ----- runtime records ---------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Install:
    """A profile as this installation uses it: options, listed devices, discovery switch."""

    profile: Profile
    settings: ProfileSettings
    expander: Expander
    discover: bool
    entries: dict[str, DeviceEntry]
    literals: dict[str, Any]
    topic_names: set[str] = field(default_factory=set)  # variables that shape its topics


@dataclass(eq=False, slots=True)
class Known:
    """A device the adapter speaks to."""

    install: Install
    key: str
    device_id: str
    vars: dict[str, Any]
    entry: DeviceEntry | None
    routes: list[Route] = field(default_factory=list)
    # Its entities by key as last read from the registry, and the Device they were read from.
    registered: Device | None = None
    by_key: dict[str, Entity] = field(default_factory=dict)
    # rule index -> how its last message on that rule was read (see _Lane)
    lanes: dict[int, _Lane] = field(default_factory=dict)


@dataclass(frozen=True, eq=False, slots=True)
class Route:
    """A rule subscribed under a filter, for every device (``known`` None) or one device."""

    install: Install
    rule: Rule
    pattern: TopicPattern
    known: Known | None


@dataclass(eq=False, slots=True)
class _LaneEntry:
    """One reading of a lane: its mapping, the message variables its entity key was made from,
    the raw value last read, and the entity's State that reading left."""

    plan: MapPlan
    key_values: tuple[Any, ...]
    raw: Any
    entity_id: str
    state: State | None = None


@dataclass(eq=False, slots=True)
class _Lane:
    """How a device's last message on one rule was read, once it was plain: values only (no
    attributes, lists or availability), every entity already registered, the device online.

    Periodic telemetry repeats that shape: the next message whose readings come from the same
    mappings for the same entities is reported straight from them, and a reading whose raw
    value and entity state are as the lane left them is a repeat without transforms. Anything
    else (another shape, a failed transform, a refused value) goes the full way, which also
    gives the exact rejection.
    """

    device: Device  # the registry's Device the lane was built against
    # (mapping, key variables) -> its entry: a message may carry any subset of them (Shelly
    # and Zigbee devices send only what changed)
    entries: dict[tuple[MapPlan, tuple[Any, ...]], _LaneEntry]
    entity_ids: set[str]
    # topic -> the shapes its messages came in, newest first (see shapes.py): a message of
    # one of them is read from its places without the decode plan
    shapes: dict[str, list[Shape[_LaneEntry]]] = field(default_factory=dict)
    # topic -> shapes tried to build: telemetry that keeps changing shape (or a plan that has
    # none) stops paying for the attempts
    shape_builds: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    """What one message says about one entity (value and/or attributes), before checking."""

    fmap: FieldMap
    bindings: Bindings
    value: Any = MISSING
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _DeviceBatch:
    """Everything one message does to one device."""

    known: Known
    new: bool = False
    rekey: str | None = None  # the device's new name on the wire (renamed, same hardware)
    var_updates: dict[str, Any] = field(default_factory=dict)
    available: bool | None = None
    entities: dict[str, _Pending] = field(default_factory=dict)
    binds: dict[str, Any] = field(default_factory=dict)
    rule: Rule | None = None  # the one rule that read it, for a lane (None: several)
    # (mapping, key variables, raw value, entity key) per reading, while a lane can be built
    trace: list[tuple[MapPlan, tuple[Any, ...], Any, str]] | None = field(default_factory=list)


# ----- the plug-in -------------------------------------------------------------------------------


class FirmwareProfiles(Plugin):
    """Speaks every firmware described by a profile in ``firmware-bridges/`` (or elsewhere)."""

    settings_model = FirmwareSettings

    @classmethod
    def check(cls, settings: FirmwareSettings, where: CheckContext) -> list[ConfigIssue]:
        """For ``hub check``: every profile it would load, and its settings, as at start."""
        return check_settings(settings, where)

    def __init__(self, context: PluginContext, settings: FirmwareSettings) -> None:
        super().__init__(context, settings)
        self.settings: FirmwareSettings = settings
        self.installs: dict[str, Install] = {}
        self._known: dict[tuple[str, str], Known] = {}
        self._by_id: dict[str, Known] = {}
        self._routes: dict[str, list[Route]] = {}
        self._shared: dict[tuple[str, int], Route] = {}
        # topic filter -> topic -> the routes it matches with their topic variables
        self._matched: dict[str, dict[str, tuple[tuple[Route, dict[str, Any]], ...]]] = {}
        self._subscriptions: dict[str, Callable[[], None]] = {}
        self._seq = itertools.count(1)
        self._requests: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._owner = context.name
        # A topic's payload again, byte for byte, after its lane read it as repeats only.
        self._repeats = context.repeat_memo()

    # ----- start / stop --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load and check every profile, restore known devices, subscribe."""
        self.installs = self._load_installs()
        self.context.register_dialect(self._owner, self)
        self._restore_devices()
        for install in self.installs.values():
            for key, entry in install.entries.items():
                self._ensure_listed(install, key, entry)
        for install in self.installs.values():
            self._subscribe_install(install)
        self.context.logger.info(
            "firmware profiles %s: %d device(s) known",
            ", ".join(self.installs),
            len(self._by_id),
        )

    async def stop(self) -> None:
        """Forget routes (the context undoes the subscriptions themselves)."""
        self._routes.clear()
        self._matched.clear()
        self._repeats.clear()
        self._shared.clear()
        self._subscriptions.clear()

    def _load_installs(self) -> dict[str, Install]:
        issues = []
        profiles: list[Profile] = []
        for ref in self.settings.profiles:
            path = resolve_ref(ref, self.context.config_dir)
            try:
                profiles.append(load_profile(path, profile_name(ref)))
            except ProfileError as exc:
                issues.extend(exc.issues)
        if issues:
            raise ProfileError(issues)
        problems: list[str] = []
        installs: dict[str, Install] = {}
        base_literals = {"base_topic": self.context.base_topic}
        for profile in profiles:
            settings = self.settings.for_profile(profile.name)
            # The same checks as `hub check` (FirmwareProfiles.check).
            entries, found = install_problems(profile, settings, base_literals)
            problems.extend(f"{dotted(path)}: {message}" for path, message in found)
            if found:
                continue
            installs[profile.name] = Install(
                profile=profile,
                settings=settings,
                expander=profile.expander(settings.options),
                discover=profile.device.discover
                if settings.discover is None
                else settings.discover,
                entries=entries,
                literals=dict(base_literals),
            )
        if problems:
            raise FirmwareConfigError("; ".join(problems))
        return installs

    def _restore_devices(self) -> None:
        # Devices stored by an earlier run keep their ids: the registry was loaded from the
        # database before plug-ins start, with the profile and key we recorded in native.
        for device in list(self.context.devices.values()):
            if device.owner != self._owner:
                continue
            native = device.native
            install = self.installs.get(str(native.get("profile")))
            key = native.get("key")
            if install is None or not isinstance(key, str):
                continue
            raw_vars = native.get("vars")
            known = Known(
                install,
                key,
                device.id,
                dict(raw_vars) if isinstance(raw_vars, dict) else {install.profile.device.key: key},
                install.entries.get(key),
            )
            self._remember(known)

    def _ensure_listed(self, install: Install, key: str, entry: DeviceEntry) -> None:
        known = self._known.get((install.profile.name, key))
        if known is None:
            variables: dict[str, Any] = device_vars(entry, install.profile.device.key)
            known = Known(install, key, "", variables, entry)
            known.device_id = self._allocate_id(install, known.vars, entry)
            self._remember(known)
        else:
            known.entry = entry
            known.vars.update(device_vars(entry, install.profile.device.key))
        self._register(known, self._entities_of(known))

    # ----- subscriptions -------------------------------------------------------------------------

    def _subscribe_install(self, install: Install) -> None:
        key = install.profile.device.key
        for rule in install.profile.rules:
            try:
                expanded = install.expander.expand(
                    rule.topic, rule_vars=rule.vars, literals=install.literals
                )
                pattern = compile_topic(expanded, install.profile.var_patterns)
                install.topic_names |= expanded.names | set(install.profile.options)
            except TemplateError as exc:
                raise FirmwareConfigError(
                    f"{install.profile.name}: {rule.name}: cannot build the topic: {exc}"
                ) from None
            if key not in expanded.names or install.discover:
                route = Route(install, rule, pattern, None)
                self._shared[(install.profile.name, rule.index)] = route
                self._add_route(route)
        for known in list(self._by_id.values()):
            if known.install is install:
                self._subscribe_device(known)

    def _subscribe_device(self, known: Known) -> None:
        """Per-device routes, where the shared ones do not already deliver its messages."""
        for route in known.routes:
            self._remove_route(route)
        known.routes.clear()
        install = known.install
        for rule in install.profile.rules:
            try:
                expanded = install.expander.expand(
                    rule.topic, rule_vars=rule.vars, literals=install.literals, device=known.vars
                )
                pattern = compile_topic(expanded, install.profile.var_patterns)
            except TemplateError as exc:
                self.context.logger.warning(
                    "%s: cannot subscribe %s for %s: %s",
                    install.profile.name,
                    rule.name,
                    known.device_id,
                    exc,
                )
                continue
            shared = self._shared.get((install.profile.name, rule.index))
            if shared is not None and filter_covers(shared.pattern.filter, pattern.filter):
                continue
            route = Route(install, rule, pattern, known)
            known.routes.append(route)
            self._add_route(route)

    def _add_route(self, route: Route) -> None:
        topic_filter = route.pattern.filter
        self._matched.pop(topic_filter, None)
        self._repeats.clear()  # a topic may now be read by other rules
        routes = self._routes.get(topic_filter)
        if routes is None:
            routes = self._routes[topic_filter] = []
            qos = _SUB_QOS_1 if (route.rule.announce or route.rule.availability) else 0

            def handler(topic: str, payload: bytes, received: float) -> None:
                self._on_message(topic_filter, topic, payload)

            self._subscriptions[topic_filter] = self.context.subscribe_mqtt(
                topic_filter, handler, qos=qos
            )
        if route.known is None:
            routes.append(route)
        else:
            routes.insert(0, route)  # a device's own route wins over the shared one

    def _remove_route(self, route: Route) -> None:
        topic_filter = route.pattern.filter
        self._matched.pop(topic_filter, None)
        self._repeats.clear()
        routes = self._routes.get(topic_filter)
        if routes is None or route not in routes:
            return
        routes.remove(route)
        if not routes:
            del self._routes[topic_filter]
            undo = self._subscriptions.pop(topic_filter, None)
            if undo is not None:
                undo()

    # ----- inbound -------------------------------------------------------------------------------

    def _on_message(self, topic_filter: str, topic: str, payload: bytes) -> None:
        memo = self._matched.get(topic_filter)
        if memo is None:
            memo = self._matched[topic_filter] = {}
        matches = memo.get(topic)
        try:
            if matches is None:
                matches = self._match(topic_filter, topic)
                if len(memo) >= _MATCH_MEMO_LIMIT:
                    memo.clear()
                memo[topic] = matches
            if not matches:
                return  # another firmware's message under a shared filter
            self._handle(topic, payload, matches)
        except Reject as reject:
            self.context.reject(topic, reject.reason, kind=reject.kind)

    def _match(self, topic_filter: str, topic: str) -> tuple[tuple[Route, dict[str, Any]], ...]:
        """The rules ``topic`` is for, each with the variables its topic gives (checked)."""
        matches: list[tuple[Route, dict[str, Any]]] = []
        seen: set[tuple[str, int]] = set()
        for route in self._routes.get(topic_filter, ()):
            captures = route.pattern.match(topic)
            if captures is None:
                continue
            ident = (route.install.profile.name, route.rule.index)
            if ident in seen:
                continue
            seen.add(ident)
            profile = route.install.profile
            variables: dict[str, Any] = {}
            for name, raw in captures.items():
                if _hostile(raw):
                    raise Reject(f"{name} {raw[:60]!r} in the topic is not acceptable", "bad_topic")
                variables[name] = int(raw) if name in profile.int_vars else raw
            matches.append((route, variables))
        return tuple(matches)

    def _handle(
        self, topic: str, payload: bytes, matches: tuple[tuple[Route, dict[str, Any]], ...]
    ) -> None:
        if len(payload) > self.settings.max_payload:
            raise Reject(
                f"payload of {len(payload)} bytes is over {self.settings.max_payload}", "too_large"
            )
        repeats = self._repeats
        if payload and repeats.replay(topic, payload):
            return
        parsed: list[Any] = []  # the JSON payload, decoded once for every rule that needs it
        if payload:
            mark = repeats.mark()
            reported: list[str] = []
            if self._via_lane(topic, payload, matches, parsed, reported):
                # A lane only reads plain telemetry: if that was all repeats, so is this again.
                repeats.remember(topic, payload, reported, mark)
                return
        repeats.forget(topic)
        batches: dict[tuple[str, str], _DeviceBatch] = {}
        removals: list[Known] = []
        for route, from_topic in matches:
            # Each rule gets its own copy: it adds what the payload says.
            variables = dict(from_topic)
            if route.known is not None:
                variables.setdefault(route.install.profile.device.key, route.known.key)
            self._apply_rule(route, variables, topic, payload, parsed, batches, removals)
        if batches:
            self._commit(topic, batches)
            if len(batches) == 1 and not removals:
                for batch in batches.values():
                    self._keep_lane(batch)
            if removals or any(
                b.new or b.rekey is not None or b.var_updates for b in batches.values()
            ):
                repeats.clear()  # variables moved: other topics may read differently now
        for known in removals:
            self._forget(known)

    def _via_lane(
        self,
        topic: str,
        payload: bytes,
        matches: tuple[tuple[Route, dict[str, Any]], ...],
        parsed: list[Any],
        reported: list[str],
    ) -> bool:
        """Report the message through its device's lane (adding the entities it reported to
        ``reported``); False (nothing changed) when it cannot, and the full way must read it."""
        chosen: tuple[Route, dict[str, Any]] | None = None
        data: Any = None
        for route, from_topic in matches:
            rule = route.rule
            if not rule.readings_only:
                return False
            if data is None:
                try:
                    data = self._decode_json(payload, parsed)
                except Reject:
                    return False
                if type(data) is not dict:
                    return False
            variables = from_topic
            if rule.when:
                # Constant conditions (Shelly's method) bind nothing: no copy of the variables.
                found = bind_conditions(rule.when, data, variables)
                if found is None:
                    continue
                if found is not variables and route.known is not None:
                    # A pattern bound a variable: bind again knowing the device's key.
                    device_key = route.install.profile.device.key
                    found = bind_conditions(
                        rule.when, data, {**variables, device_key: route.known.key}
                    )
                    if found is None:
                        continue
                variables = found
            if chosen is not None:
                return False  # several rules read it: the full way merges them
            chosen = (route, variables)
        if chosen is None:
            return False
        route, variables = chosen
        rule, profile = route.rule, route.install.profile
        known = route.known
        if known is None:
            key = variables.get(profile.device.key)
            if key is None:
                return False
            known = self._known.get((profile.name, text_of(key)))
            if known is None:
                return False
        lane = known.lanes.get(rule.index)
        if lane is None:
            return False
        context = self.context
        device = context.devices.get(known.device_id)
        if device is not lane.device or not device.available:
            return False  # registered anew (the full way renews the lane), or offline
        read: list[tuple[Any, _LaneEntry]] | None = None
        shapes = lane.shapes.get(topic)
        if shapes is not None:
            for shape in shapes:
                read = shape.read(data)
                if read is not None:
                    break
        if read is None:
            read = self._lane_readings(topic, lane, known, rule, variables, data)
            if not read:
                return False
        states = context.states
        reports: list[tuple[str, Any, Any]] = []
        repeats: list[State] = []
        changed: list[tuple[_LaneEntry, Any]] = []
        for raw, entry in read:
            entity_id = entry.entity_id
            state = states.get(entity_id)
            if state is None:
                return False
            reported.append(entity_id)
            if state is entry.state and type(raw) is type(entry.raw) and raw == entry.raw:
                repeats.append(state)
                continue
            value = raw
            fmap = entry.plan.fmap
            if fmap.transforms:
                try:
                    value = apply_all(fmap.transforms, value)
                except TransformError:
                    return False
            if value is SKIP or value is None or isinstance(value, dict | list):
                return False
            reports.append((entity_id, value, None))
            changed.append((entry, raw))
        try:
            context.report_states(reports, repeats)
        except (InvalidValue, KeyError):
            return False  # nothing was applied: the full way rejects it, saying why
        # A repeat's State only had its last_reported moved. (One a command awaited was
        # reported in full and replaced: its next reading is then a change, and reported so.)
        for entry, raw in changed:
            entry.raw = raw
            entry.state = states.get(entry.entity_id)
        return True

    def _lane_readings(
        self,
        topic: str,
        lane: _Lane,
        known: Known,
        rule: Rule,
        variables: dict[str, Any],
        data: dict[str, Any],
    ) -> list[tuple[Any, _LaneEntry]] | None:
        """The message's readings by the rule's decode plan, each with the lane entry it goes
        to; None when one has none (the full way reads it). Keeps the message's shape for
        the next messages on ``topic`` when it can be read by shape."""
        bindings = dict(variables)  # the message's own: bound values are added to it
        bindings.setdefault(known.install.profile.device.key, known.key)
        for name, path in rule.bind:
            value = path.get(data) if path.literal else MISSING
            if value is not MISSING and not isinstance(value, dict | list):
                bindings[name] = value
        readings = rule.plan.readings(data, bindings)
        if not readings:
            return None
        entries = lane.entries
        read: list[tuple[Any, _LaneEntry]] = []
        for plan, raw, bound in readings:
            names = plan.entity_names
            if not names:
                slot: tuple[Any, ...] = ()
            elif len(names) == 1:
                slot = (bound.get(names[0], MISSING),)
            else:
                slot = _key_values(plan, bound)
            entry = entries.get((plan, slot))
            if entry is None:
                return None
            read.append((raw, entry))
        # A shape reads values from their places only: a variable bound from a value must
        # not name the entity.
        builds = lane.shape_builds.get(topic, 0)
        if builds >= _SHAPE_BUILDS_LIMIT or any(
            name in plan.entity_names for name, _ in rule.bind for plan, _, _ in readings
        ):
            return read
        if len(lane.shape_builds) >= _SHAPE_TOPICS_LIMIT and topic not in lane.shape_builds:
            lane.shapes.clear()
            lane.shape_builds.clear()
        lane.shape_builds[topic] = builds + 1
        shape = build_shape(rule.plan, data, bindings, readings, [e for _, e in read])
        if shape is not None:
            shapes = lane.shapes.setdefault(topic, [])
            shapes.insert(0, shape)
            del shapes[_SHAPES_PER_TOPIC:]
        return read

    def _keep_lane(self, batch: _DeviceBatch) -> None:
        """After the full way: remember how a plain message was read, adding to what the
        device's lane knows (see _Lane)."""
        known, rule, trace = batch.known, batch.rule, batch.trace
        if batch.new or batch.rekey is not None or batch.var_updates:
            # Its variables changed: entity keys made from them may change too.
            known.lanes.clear()
            return
        if (
            rule is None
            or not trace
            or not rule.readings_only
            or batch.available is not None
            or len(trace) != len(batch.entities)
        ):
            return  # not plain; what the lane knows is still right (states are checked)
        device = self.context.devices.get(known.device_id)
        if device is None or not device.available:
            return
        lane = known.lanes.get(rule.index)
        if lane is None:
            lane = known.lanes[rule.index] = _Lane(device, {}, set())
        lane.device = device  # the device may have been registered anew (a new entity)
        by_key = self._entity_map(known)
        for plan, key_values, raw, key in trace:
            pending = batch.entities.get(key)
            entity = by_key.get(key)
            state = self.context.state(entity.id) if entity is not None else None
            if pending is None or pending.attributes or state is None:
                known.lanes.pop(rule.index, None)
                return
            slot = (plan, key_values)
            entry = lane.entries.get(slot)
            if entry is None:
                if state.entity_id in lane.entity_ids:
                    known.lanes.pop(rule.index, None)  # two mappings for one entity
                    return
                lane.entries[slot] = _LaneEntry(plan, key_values, raw, state.entity_id, state)
                lane.entity_ids.add(state.entity_id)
            elif entry.entity_id != state.entity_id:
                known.lanes.pop(rule.index, None)
                return
            else:
                entry.raw, entry.state = raw, state

    def _decode_json(self, payload: bytes, parsed: list[Any]) -> Any:
        if not parsed:
            try:
                parsed.append(orjson.loads(payload))
            except orjson.JSONDecodeError as exc:
                raise Reject(f"not JSON: {exc}", "not_json") from None
        return parsed[0]

    def _apply_rule(
        self,
        route: Route,
        variables: dict[str, Any],
        topic: str,
        payload: bytes,
        parsed: list[Any],
        batches: dict[tuple[str, str], _DeviceBatch],
        removals: list[Known],
    ) -> None:
        install, rule = route.install, route.rule
        profile = install.profile

        if not payload:
            # An empty retained message clears a topic; only a discovery topic means "removed".
            if rule.remove_on_empty:
                known = route.known or self._find(install, variables)
                if known is not None and known.key not in install.entries:
                    removals.append(known)
            return

        data: Any
        if rule.format == "text":
            try:
                data = payload.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise Reject("payload is not UTF-8 text", "wrong_type") from None
        else:
            data = self._decode_json(payload, parsed)
            if not isinstance(data, dict):
                raise Reject(f"expected a JSON object, got {type(data).__name__}", "wrong_type")
            if rule.when and not _conditions_hold(rule.when, data, variables):
                return
            if rule.error is not None:
                error = rule.error.get(data) if rule.error.literal else MISSING
                if error is not MISSING:
                    self.context.logger.warning(
                        "%s says on %s: %s", profile.name, topic, str(error)[:200]
                    )
                    return
            for name, path in rule.device_vars:
                value = path.get(data)
                if value is MISSING or value is None:
                    continue
                if isinstance(value, dict | list) or (isinstance(value, str) and _hostile(value)):
                    raise Reject(f"device field {path.source!r} is not acceptable", "bad_config")
                if name in profile.int_vars and not isinstance(value, int):
                    raise Reject(f"device field {path.source!r} must be a number", "bad_config")
                if name in variables and variables[name] != value:
                    raise Reject(
                        f"{path.source} {value!r} in the payload differs from {variables[name]!r} "
                        "in the topic",
                        "bad_config",
                    )
                if name in profile.options and isinstance(value, str):
                    # It overrides an option (a device's own FullTopic): it must be a template
                    # that uses only what the option itself may use.
                    problem = profile.check_overrides({name: value})
                    if problem:
                        raise Reject(f"device field {path.source!r}: {problem[0]}", "bad_config")
                variables[name] = value
            if rule.device_vars:
                key_path = dict(rule.device_vars).get(profile.device.key)
                if key_path is not None and profile.device.key not in variables:
                    raise Reject(f"the payload has no {key_path.source!r}", "bad_config")

        known = route.known
        rekey = None
        if known is None:
            known = self._identify(route, variables, data, batches)
            if known is None:
                return
            key = variables.get(profile.device.key)
            if key is not None and known.key != key and known.device_id:
                rekey = text_of(key)
        ident = (profile.name, rekey or known.key)
        batch = batches.get(ident)
        if batch is None:
            batch = batches[ident] = _DeviceBatch(known, new=known.device_id == "")
            batch.rekey = rekey
            batch.rule = rule
        else:
            batch.rule = batch.trace = None  # read by several rules: no lane
        # Variables the device told us about (its name, MAC, FullTopic...), applied only if
        # the whole message is accepted.
        for name, value in variables.items():
            if name in profile.device_vars and known.vars.get(name) != value:
                batch.var_updates[name] = value

        if rule.availability is not None:
            batch.available = self._availability(rule.availability, known, data)
        if rule.format == "json":
            for name, path in rule.bind:
                value = path.get(data) if path.literal else MISSING
                if value is not MISSING and not isinstance(value, dict | list):
                    batch.binds[name] = value
        if not rule.decode:
            return
        bindings = {**variables, **batch.binds}
        for plan, value, map_bindings in rule.plan.readings(data, bindings):
            self._collect(batch, plan, value, map_bindings)

    def _identify(
        self,
        route: Route,
        variables: dict[str, Any],
        data: Any,
        batches: Mapping[tuple[str, str], _DeviceBatch],
    ) -> Known | None:
        install, rule = route.install, route.rule
        profile = install.profile
        key_name = profile.device.key
        key = variables.get(key_name)
        if key is None and rule.correlate is not None and isinstance(data, dict):
            request = rule.correlate.get(data) if rule.correlate.literal else MISSING
            if isinstance(request, int) and not isinstance(request, bool):
                sent = self._requests.get(request)
                if sent is not None and sent[0] == profile.name:
                    key = sent[1]
                    variables[key_name] = key
        if key is None:
            found = self._find(install, variables)
            if found is None:
                return None  # e.g. a response to a request we no longer remember
            return found
        key = text_of(key)
        known = self._known.get((profile.name, key))
        if known is not None:
            # The hot path: a device we speak to (its key was checked when it became known).
            variables[key_name] = key
            return known
        pattern = profile.var_patterns.get(key_name)
        if _hostile(key) or (pattern is not None and not re.fullmatch(pattern, key)):
            raise Reject(f"{key_name} {key[:60]!r} is not acceptable", "bad_topic")
        variables[key_name] = key  # a key is text, whatever the payload said
        known = self._known.get((profile.name, key))
        if known is not None:
            return known
        in_flight = batches.get((profile.name, key))
        if in_flight is not None:
            return in_flight.known  # announced by another rule of this same message
        renamed = self._find(install, variables)
        if renamed is not None:
            return renamed  # the same hardware under a new name on the wire (renamed topic)
        if not rule.announce or not (install.discover or key in install.entries):
            if install.discover:
                raise Reject(
                    f"message from unknown {profile.name} device {key!r} (not announced yet)",
                    "unknown_device",
                )
            return None  # not listed and discovery is off: not ours to speak for
        known = Known(install, key, "", dict(variables), install.entries.get(key))
        known.vars[key_name] = key
        return known

    def _find(self, install: Install, variables: Mapping[str, Any]) -> Known | None:
        """A known device whose identity (e.g. MAC) the variables name."""
        profile = install.profile
        for identity in profile.device.match_by:
            template = profile.device.identities[identity]
            wanted = _render_or_none(template, variables)
            if wanted is None:
                continue
            for known in self._by_id.values():
                if (
                    known.install is install
                    and (_render_or_none(template, known.vars) or "").lower() == wanted.lower()
                ):
                    return known
        return None

    def _availability(self, rule: Availability, known: Known, data: Any) -> bool:
        value = data if not rule.path.segments else rule.path.get(data)
        if value is MISSING:
            raise Reject(f"no availability value at {rule.path.source!r}", "wrong_type")
        words: list[Any] = []
        for expected, meaning in ((rule.online, True), (rule.offline, False)):
            if isinstance(expected, bool):
                if value is expected or text_of(value).lower() == text_of(expected):
                    return meaning
                words.append(text_of(expected))
                continue
            try:
                word = self._render(known, expected, {})
            except TemplateError as exc:
                raise Reject(f"cannot tell availability: {exc}", "wrong_type") from None
            words.append(word)
            if isinstance(value, str) and value.strip().casefold() == word.casefold():
                return meaning
        raise Reject(
            f"availability must be {words[0]!r} or {words[1]!r}, got {text_of(value)[:40]!r}",
            "wrong_type",
        )

    def _collect(self, batch: _DeviceBatch, plan: MapPlan, value: Any, bindings: Bindings) -> None:
        fmap = plan.fmap
        if fmap.each is not None and isinstance(value, list):
            batch.trace = None  # one reading, several entities: no lane
            for index, item in enumerate(value):
                self._collect_one(
                    batch, plan, fmap.each, item, {**bindings, "item": index + 1, "index": index}
                )
        else:
            self._collect_one(batch, plan, fmap.entity, value, bindings)

    def _collect_one(
        self,
        batch: _DeviceBatch,
        plan: MapPlan,
        key_template: Template,
        value: Any,
        bindings: Bindings,
    ) -> None:
        fmap = plan.fmap
        raw = value
        if fmap.transforms:
            try:
                value = apply_all(fmap.transforms, value)
            except TransformError as exc:
                raise Reject(f"{fmap.path.source or 'payload'}: {exc}", "wrong_type") from None
            if value is SKIP:
                batch.trace = None
                return
        if value is None:
            batch.trace = None
            return
        if isinstance(value, dict | list):
            raise Reject(
                f"{fmap.path.source or 'payload'}: expected a value, got "
                f"{'an object' if isinstance(value, dict) else 'a list'}",
                "wrong_type",
            )
        known = batch.known

        def render(template: Template, bound: Bindings) -> str:
            try:
                # The hot path: keys are made of the message's own variables.
                text = template.render(bound.__getitem__)
            except TemplateError:
                text = self._render(known, template, bound)
            return sanitise_id(text)

        try:
            key = plan.entity_key(key_template, bindings, render)
        except TemplateError as exc:
            raise Reject(f"{fmap.where}: {exc}", "wrong_type") from None
        if not key:
            raise Reject(f"{fmap.where}: empty entity key", "wrong_type")
        pending = batch.entities.get(key)
        trace = batch.trace
        if pending is None:
            pending = batch.entities[key] = _Pending(fmap, bindings)
            if trace is not None:
                if fmap.attribute is None and key_template is fmap.entity:
                    trace.append((plan, _key_values(plan, bindings), raw, key))
                else:
                    batch.trace = None
        else:
            batch.trace = None  # two readings for one entity: no lane
            if pending.fmap.kind in fmap.upgrades:
                pending.fmap, pending.bindings = fmap, {**pending.bindings, **bindings}
        if fmap.attribute is None:
            pending.value = value
        else:
            pending.attributes[fmap.attribute] = value

    # ----- applying ------------------------------------------------------------------------------

    def _commit(self, topic: str, batches: dict[tuple[str, str], _DeviceBatch]) -> None:
        context = self.context
        plans: list[tuple[_DeviceBatch, list[Entity] | None, list[tuple[str, Any, Any]]]] = []
        # Reports for entities registered as they are: report_states checks them (all or
        # nothing) unless something is registered first, when they are checked here too.
        deferred: list[tuple[Known, str, Entity, Any, Any]] = []
        registering = False
        # 1. Check everything the message says before changing anything.
        for batch in batches.values():
            known = batch.known
            if batch.new:
                known.vars.update(batch.var_updates)
                known.device_id = self._allocate_id(known.install, known.vars, known.entry)
            # The remembered map, copied (own) before an entity is added to it.
            by_key: Mapping[str, Entity] = self._entity_map(known)
            own: dict[str, Entity] | None = None
            changed = batch.new or bool(batch.var_updates)
            reports: list[tuple[str, Any, Any]] = []
            for key, pending in batch.entities.items():
                entity = by_key.get(key)
                fmap = pending.fmap
                fresh = None
                if entity is None or (
                    entity.kind is not fmap.kind and entity.kind in fmap.upgrades
                ):
                    if pending.value is MISSING and entity is None:
                        continue  # attributes alone cannot create an entity (no state yet)
                    fresh = self._make_entity(known, key, fmap, pending.bindings)
                    if entity is not None:
                        # An upgrade (a Tasmota relay turns out to be a dimmer) keeps what
                        # people see and the variables its commands need.
                        fresh.name = entity.name
                        old_vars = entity.options.get("vars")
                        if isinstance(old_vars, dict):
                            fresh.options["vars"] = {**old_vars, **fresh.options["vars"]}
                    entity = fresh
                    if own is None:
                        own = dict(by_key)
                        by_key = own
                    own[key] = entity
                    changed = True
                value = None if pending.value is MISSING else pending.value
                attributes = pending.attributes or None
                if value is None and context.state(entity.id) is None:
                    continue
                if fresh is None:
                    deferred.append((known, key, entity, value, attributes))
                else:
                    self._check(f"{known.device_id}.{key}", entity, value, attributes)
                reports.append((entity.id, value, attributes))
            registering = registering or changed
            plans.append((batch, list(by_key.values()) if changed else None, reports))
        if registering:
            for known, key, entity, value, attributes in deferred:
                self._check(f"{known.device_id}.{key}", entity, value, attributes)
        # 2. Apply: devices and entities first, then states, then availability.
        all_reports: list[tuple[str, Any, Any]] = []
        for batch, entities, reports in plans:
            known = batch.known
            if batch.rekey is not None:
                self._rekey(known, batch.rekey)
            known.vars.update(batch.var_updates)
            if batch.new:
                self._remember(known)
            if entities is not None:
                self._register(known, entities)
                if batch.new:
                    self._subscribe_device(known)
                elif batch.var_updates:
                    self._resubscribe_if_needed(known, batch.var_updates)
            all_reports.extend(reports)
        if all_reports:
            try:
                context.report_states(all_reports)
            except InvalidValue as exc:  # says which entity: "<device>.<key>: why"
                raise Reject(str(exc), "wrong_type") from None
            except KeyError as exc:  # pragma: no cover - the entities were just registered
                raise Reject(str(exc), "wrong_type") from None
        for batch, _entities, _reports in plans:
            known = batch.known
            device = context.devices.get(known.device_id)
            was_available = bool(device and device.available)
            available = batch.available
            if available is not None:
                # Every explicit "online" counts, not only a change: a device that says it
                # again has reconnected, and the hub re-sends what it may have missed.
                context.set_available(known.device_id, available)
            elif known.install.profile.device.available_on_message and not was_available:
                available = True
                context.set_available(known.device_id, True)
            if available and not was_available:
                self._on_online(known)

    def _on_online(self, known: Known) -> None:
        try:
            self._send_all(known, known.install.profile.on_online, {}, None)
        except CommandError as exc:
            self.context.logger.warning("%s: on_online messages not sent: %s", known.device_id, exc)

    def _make_entity(self, known: Known, key: str, fmap: FieldMap, bindings: Bindings) -> Entity:
        override = known.entry.entities.get(key) if known.entry is not None else None
        device_name = self._device_name(known)
        name = _first(fmap.name, lambda t: self._render(known, t, bindings))
        unit = _first(fmap.unit, lambda t: self._render(known, t, bindings))
        saved_vars = {
            k: v
            for k, v in bindings.items()
            if k != known.install.profile.device.key
            and k not in known.install.profile.device_vars
            and isinstance(v, str | int)
        }
        options: dict[str, Any] = {"vars": saved_vars}
        if fmap.commands is not None:
            options["commands"] = fmap.commands
        return Entity(
            id=f"{known.device_id}.{key}",
            device_id=known.device_id,
            key=key,
            kind=fmap.kind,
            name=(override.name if override and override.name else None)
            or (f"{device_name} {name}" if name else f"{device_name} {key.replace('_', ' ')}"),
            unit=(override.unit if override and override.unit else None) or unit,
            device_class=(override.device_class if override and override.device_class else None)
            or fmap.device_class,
            options=options,
        )

    def _check(self, where: str, entity: Entity, value: Any, attributes: Any) -> None:
        try:
            self.context.validate_state(entity, value, attributes)
        except InvalidValue as exc:
            raise Reject(f"{where}: {exc}", "wrong_type") from None

    def _entity_map(self, known: Known) -> Mapping[str, Entity]:
        """The device's registered entities by key, remembered until the device is registered
        again (the registry then holds a new Device)."""
        device = self.context.devices.get(known.device_id)
        if device is None:
            return {}
        if known.registered is not device:
            entities = self.context.entities
            known.by_key = {
                entity.key: entity
                for entity in (entities[e] for e in device.entity_ids if e in entities)
            }
            known.registered = device
        return known.by_key

    def _entities_of(self, known: Known) -> list[Entity]:
        device = self.context.devices.get(known.device_id)
        if device is None:
            return []
        entities = self.context.entities
        return [entities[e] for e in device.entity_ids if e in entities]

    def _register(self, known: Known, entities: list[Entity]) -> None:
        install = known.install
        profile = install.profile
        spec = profile.device
        entry = known.entry

        def render(templates: tuple[Template, ...]) -> str | None:
            return _first(templates, lambda t: self._render(known, t, {}))

        identities: dict[str, str] = {}
        for name, template in spec.identities.items():
            value = _render_or_none(template, known.vars)
            if value:
                identities[name] = value
        device = Device(
            id=known.device_id,
            name=self._device_name(known),
            owner=self._owner,
            area=entry.area if entry else None,
            manufacturer=render(spec.manufacturer) or profile.manufacturer,
            model=render(spec.model),
            firmware=render(spec.firmware),
            identities=identities,
            native={"profile": profile.name, "key": known.key, "vars": dict(known.vars)},
        )
        self.context.register_device(device, entities)

    def _device_name(self, known: Known) -> str:
        entry = known.entry
        if entry is not None and entry.name:
            return entry.name
        found = _first(known.install.profile.device.name, lambda t: self._render(known, t, {}))
        return found or known.key

    def _remember(self, known: Known) -> None:
        self._known[(known.install.profile.name, known.key)] = known
        self._by_id[known.device_id] = known

    def _rekey(self, known: Known, key: str) -> None:
        self._known.pop((known.install.profile.name, known.key), None)
        known.key = key
        known.vars[known.install.profile.device.key] = key
        known.entry = known.install.entries.get(key, known.entry)
        self._known[(known.install.profile.name, key)] = known

    def _forget(self, known: Known) -> None:
        for route in known.routes:
            self._remove_route(route)
        known.routes.clear()
        self._known.pop((known.install.profile.name, known.key), None)
        self._by_id.pop(known.device_id, None)
        self.context.remove_device(known.device_id)

    def _resubscribe_if_needed(self, known: Known, updates: Mapping[str, Any]) -> None:
        # Variables that shape topics (its name, a device's own FullTopic) may have changed.
        if any(name in known.install.topic_names for name in updates):
            self._subscribe_device(known)

    def _allocate_id(
        self, install: Install, variables: Mapping[str, Any], entry: DeviceEntry | None
    ) -> str:
        candidate = ""
        if entry is not None and entry.id:
            candidate = sanitise_id(entry.id)
        if not candidate:
            for template in install.profile.device.id:
                rendered = _render_or_none(template, variables)
                if rendered:
                    candidate = sanitise_id(rendered)
                    if candidate:
                        break
        if not candidate:
            candidate = sanitise_id(f"{install.profile.name}-{variables.get('key', 'device')}")
        # Another adapter (or profile) may already use the name: keep both, deterministically.
        chosen, number = candidate, 1
        while chosen in self._by_id or (
            chosen in self.context.devices and self.context.devices[chosen].owner != self._owner
        ):
            number += 1
            chosen = f"{candidate[:60]}-{number}"
        return chosen

    # ----- outbound ------------------------------------------------------------------------------

    def send_command(
        self,
        device: Device,
        entity: Entity,
        action: str,
        params: Mapping[str, Any],
        command_id: str,
    ) -> None:
        """Publish the native message(s) the profile gives for ``action``."""
        known = self._by_id.get(device.id)
        if known is None:
            raise CommandError(f"{device.id} is not a device of a loaded firmware profile")
        profile = known.install.profile
        set_name = entity.options.get("commands")
        command_set: CommandSet | None = profile.commands.get(set_name) if set_name else None
        if command_set is None:
            raise CommandError(f"the {profile.name} profile gives {entity.id} no commands")
        outs = command_set.actions.get(action)
        if outs is None:
            offer = ", ".join(command_set.actions) or "nothing"
            raise CommandError(
                f"the {profile.name} profile cannot {action} {entity.id} (it can: {offer})"
            )
        values: dict[str, Any] = dict(params)
        for name, let in command_set.lets.items():
            if let.source in params:
                try:
                    values[name] = apply_all(let.transforms, params[let.source])
                except TransformError as exc:
                    raise CommandError(f"parameter {let.source!r}: {exc}") from None
        entity_vars = entity.options.get("vars")
        extra = {**(entity_vars if isinstance(entity_vars, dict) else {}), **values}
        self._send_all(known, outs, extra, command_id)

    def _send_all(
        self,
        known: Known,
        outs: tuple[Outgoing, ...],
        values: Mapping[str, Any],
        command_id: str | None,
    ) -> None:
        if not outs:
            return
        # Build every message before sending any: a command goes out whole or not at all.
        messages: list[tuple[str, bytes, int, bool]] = []
        sequence: list[int] = []
        for out in outs:
            if out.when is not None and out.when not in values:
                continue
            if out.unless is not None and out.unless in values:
                continue
            seq = next(self._seq)  # each request its own id, for responses to name it
            sequence.append(seq)
            literals = {**values, "seq": seq}
            if command_id is not None:
                literals["command_id"] = command_id
            try:
                topic = check_publish_topic(self._render(known, out.topic, literals, out.vars))
                if out.has_json:
                    body = orjson.dumps(self._render_json(known, out.json, literals, out.vars))
                else:
                    assert out.payload is not None  # checked at load
                    body = self._render(known, out.payload, literals, out.vars).encode()
            except TemplateError as exc:
                raise CommandError(
                    f"cannot build the {known.install.profile.name} message: {exc}"
                ) from None
            messages.append((topic, body, out.qos, out.retain))
        for seq in sequence:
            self._requests[seq] = (known.install.profile.name, known.key)
        while len(self._requests) > _CORRELATION_WINDOW:
            self._requests.popitem(last=False)
        for topic, body, qos, retain in messages:
            try:
                self.context.publish_mqtt(topic, body, qos=qos, retain=retain)
            except RuntimeError as exc:
                raise CommandError(str(exc)) from exc

    # ----- rendering -----------------------------------------------------------------------------

    def _lookup(
        self,
        known: Known,
        values: Mapping[str, Any],
        rule_vars: Mapping[str, Template] | None = None,
    ) -> Callable[[str], Any]:
        install = known.install

        def lookup(name: str) -> Any:
            if rule_vars and name in rule_vars:
                return self._render(known, rule_vars[name], values)
            if name in values:
                return values[name]
            if name in known.vars:
                value = known.vars[name]
                if name in install.profile.options and isinstance(value, str):
                    return self._render(known, install.expander.option_template(value), values)
                return value
            if name in install.expander.options:
                return self._render(known, install.expander.options[name], values)
            if name in install.literals:
                return install.literals[name]
            raise KeyError(name)

        return lookup

    def _render(
        self,
        known: Known,
        template: Template,
        values: Mapping[str, Any],
        rule_vars: Mapping[str, Template] | None = None,
    ) -> str:
        install = known.install
        expanded = install.expander.expand(
            template,
            rule_vars=rule_vars,
            values=values,
            device=known.vars,
            literals=install.literals,
        )
        return expanded.render(self._lookup(known, values))

    def _render_json(
        self,
        known: Known,
        value: Any,
        values: Mapping[str, Any],
        rule_vars: Mapping[str, Template],
    ) -> Any:
        if isinstance(value, Template):
            slot = value.single()
            if slot is not None and slot.name not in rule_vars:
                try:
                    found = self._lookup(known, values)(slot.name)
                except KeyError:
                    if slot.optional:
                        return _DROP
                    raise TemplateError(f"no value for {{{slot.name}}}") from None
                return found
            return self._render(known, value, values, rule_vars)
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                rendered = self._render_json(known, item, values, rule_vars)
                if rendered is not _DROP:
                    out[key] = rendered
            return out
        if isinstance(value, list):
            items = (self._render_json(known, item, values, rule_vars) for item in value)
            return [item for item in items if item is not _DROP]
        return value


class _Drop:
    pass


_DROP: Any = _Drop()


def _first(templates: tuple[Template, ...], render: Callable[[Template], str]) -> str | None:
    for template in templates:
        try:
            text = render(template)
        except TemplateError:
            continue
        if text:
            return text
    return None


def _render_or_none(template: Template, variables: Mapping[str, Any]) -> str | None:
    try:
        return template.render(variables.__getitem__)
    except TemplateError:
        return None


def _key_values(plan: MapPlan, bindings: Mapping[str, Any]) -> tuple[Any, ...]:
    """The message variables a mapping's entity key is made from: with the mapping, what tells
    a lane's readings apart."""
    names = plan.entity_names
    return tuple(bindings.get(name, MISSING) for name in names) if names else ()


def _conditions_hold(conditions: tuple[Condition, ...], data: Any, bindings: Bindings) -> bool:
    found = bind_conditions(conditions, data, bindings)
    if found is None:
        return False
    if found is not bindings:
        bindings.update(found)
    return True
