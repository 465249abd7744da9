"""The Home Assistant MQTT discovery adapter: configs in, devices, states and commands out.

Listens on ``<prefix>/<component>/[<node_id>/]<object_id>/config`` (one component) and
``<prefix>/device/[<node_id>/]<object_id>/config`` (a device and its ``components``), turns
each config into hub devices and entities, subscribes to the topics the configs name, and
turns the firmware's messages into states and availability and the hub's commands into the
firmware's messages. Publishes ``<prefix>/status`` = ``online`` (Home Assistant's birth
message) on start and after every reconnect, so that devices announce themselves again.

One hub device per discovery ``device.identifiers[0]`` (else its first connection, else the
component's ``unique_id``, else the discovery topic's ids), sanitised to ``[a-z0-9_-]``; its
entities are keyed by the sanitised object id (the component id in device discovery), with
the component's name in front when two components of a device share an object id.

A config that describes a device another adapter already keeps (Zigbee2MQTT's configs when
the zigbee2mqtt adapter runs too; see ``owners.py`` for the rule) is skipped, logged once and
counted (``duplicates_skipped``); when the other adapter claims a device after discovery
registered it, the discovery copy is removed. ``skip_duplicates: false`` keeps both.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters.ha_discovery.abbreviations import expand
from adapters.ha_discovery.components import (
    KNOWN_UNSUPPORTED,
    SUPPORTED,
    Availability,
    Binding,
    Component,
    ConfigError,
    DeviceInfo,
    StateError,
    Update,
    build_command,
    build_component,
    interpret,
    parse_device,
    publish_topics,
    sanitize_id,
)
from adapters.ha_discovery.owners import KeyIndex, discovery_keys, identity_keys
from adapters.ha_discovery.template import UNDEFINED, TemplateError, to_text
from hub.api import (
    CommandError,
    Device,
    DeviceRegistered,
    DeviceRemoved,
    Entity,
    InvalidValue,
    Plugin,
    PluginContext,
)

OWNER: Final = "ha_discovery"
_DISCOVERY_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# Options shared by the components of a device discovery payload (the rest stay per component).
_SHARED: Final = frozenset(
    {
        "availability",
        "availability_topic",
        "availability_template",
        "availability_mode",
        "payload_available",
        "payload_not_available",
        "state_topic",
        "command_topic",
        "qos",
        "encoding",
        "origin",
    }
)
_AVAILABILITY_KEYS: Final = frozenset(
    {"availability", "availability_topic", "availability_template", "availability_mode"}
)
# Entity options worth showing on the hub's mirror (topics and payloads stay internal).
_ENTITY_OPTIONS: Final = frozenset(
    {
        "platform",
        "unique_id",
        "state_class",
        "entity_category",
        "icon",
        "source_unit",
        "min",
        "max",
        "step",
        "options",
        "settable",
        "modes",
        "min_temp",
        "max_temp",
        "temp_step",
        "temperature_unit",
        "brightness",
        "color_temp",
        "supported_color_modes",
        "min_mireds",
        "max_mireds",
        "position",
        "schema",
    }
)
_VALUE_ROLES: Final = frozenset({"state", "json_state", "mode", "position"})
# Attributes an optimistic report may set when no state topic reports them.
_OPTIMISTIC_ATTRIBUTES: Final = {
    "brightness": frozenset({"brightness", "json_state"}),
    "color_temp": frozenset({"color_temp", "json_state"}),
    "target_temperature": frozenset({"target_temperature"}),
}
_JSON_ERROR: Final = object()


class Settings(BaseModel):
    """Settings of ``adapters: {ha_discovery: {...}}`` in ``hub.yaml``."""

    model_config = ConfigDict(extra="forbid")

    #: The discovery prefix devices publish their configs under.
    prefix: str = "homeassistant"
    #: Where the birth message goes (default ``<prefix>/status``).
    birth_topic: str | None = None
    birth_payload: str = "online"
    birth_retain: bool = False
    #: Larger configs and states are rejected (a real one is a few hundred bytes).
    max_payload: int = Field(default=65536, ge=1024, le=1_048_576)
    #: At most this many components in all; further configs are rejected.
    max_components: int = Field(default=20000, ge=1, le=1_000_000)
    #: Skip configs of a device another adapter keeps (same identifier or connection as one
    #: of its identities, e.g. Zigbee2MQTT's configs next to the zigbee2mqtt adapter).
    skip_duplicates: bool = True

    @field_validator("prefix", "birth_topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if (
            not value
            or "+" in value
            or "#" in value
            or "\x00" in value
            or value.startswith("/")
            or value.endswith("/")
        ):
            raise ValueError("must be a topic without wildcards or a leading/trailing '/'")
        return value


@dataclass(slots=True)
class _ConfigRecord:
    payload: bytes
    ids: tuple[str, ...]


@dataclass(slots=True)
class _Held:
    """A config skipped because another adapter keeps its device (``claimant``)."""

    payload: bytes
    device_id: str  # the device the config would make
    claimant: str


@dataclass(slots=True)
class _TopicWatch:
    """Everything listening on one topic: per component, its bindings and availability."""

    undo: Any
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    availability: dict[str, list[tuple[int, Availability]]] = field(default_factory=dict)
    last: bytes | None = None  # replayed to components that start listening later

    def empty(self) -> bool:
        return not self.bindings and not self.availability


class HaDiscovery(Plugin):
    """Speaks Home Assistant MQTT discovery (Tasmota, ESPHome, Zigbee2MQTT, OpenMQTTGateway)."""

    settings_model = Settings
    settings: Settings

    def __init__(self, context: PluginContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self._configs: dict[str, _ConfigRecord] = {}  # config topic -> what it created
        self._components: dict[str, Component] = {}  # discovery id -> component
        self._devices: dict[str, set[str]] = {}  # device id -> discovery ids
        self._entity_ids: dict[str, str] = {}  # discovery id -> entity id
        self._by_entity: dict[str, Component] = {}  # entity id -> component
        self._topics: dict[str, _TopicWatch] = {}
        # A state topic's payload again, byte for byte: the same repeats, without templates.
        self._repeats = context.repeat_memo()
        self._watched: dict[str, set[str]] = {}  # discovery id -> topics it listens on
        self._availability: dict[str, list[bool | None]] = {}  # discovery id -> per entry
        self._latest: dict[str, bool | None] = {}  # discovery id -> last availability seen
        self._pending: dict[str, dict[str, Any]] = {}  # entity id -> attributes before a value
        self._timers: dict[str, asyncio.TimerHandle] = {}  # entity id -> off_delay timer
        self._prefix_levels = 0
        # Devices other adapters keep, and ours, by address; configs skipped for the former.
        self._claims = KeyIndex()
        self._ours = KeyIndex()
        self._held: dict[str, _Held] = {}  # config topic -> skipped config
        self._told: set[str] = set()  # device ids whose skipping was logged

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the discovery topics, take the commands, say hello to the devices."""
        prefix = self.settings.prefix
        self._prefix_levels = prefix.count("/") + 1
        self.context.register_dialect(OWNER, self)
        if self.settings.skip_duplicates:
            self._watch_owners()
        self.context.subscribe_mqtt(f"{prefix}/+/+/config", self._on_config, qos=1)
        self.context.subscribe_mqtt(f"{prefix}/+/+/+/config", self._on_config, qos=1)
        self.context.on_mqtt_connect(self._birth)
        self._birth()

    async def stop(self) -> None:
        """Forget every discovered component (the subscriptions go with the context)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for device_id in list(self._devices):
            device = self.context.devices.get(device_id)
            if device is not None and device.owner == OWNER:
                self.context.set_available(device_id, False)
        self._configs.clear()
        self._components.clear()
        self._devices.clear()
        self._entity_ids.clear()
        self._by_entity.clear()
        self._topics.clear()
        self._repeats.clear()
        self._watched.clear()
        self._availability.clear()
        self._latest.clear()
        self._pending.clear()
        self._claims = KeyIndex()
        self._ours = KeyIndex()
        self._held.clear()
        self._told.clear()

    def _birth(self) -> None:
        # Home Assistant's birth message: firmwares that publish discovery subscribe to it and
        # send their configs (and often their states) again, e.g. after a broker restart.
        settings = self.settings
        topic = settings.birth_topic or f"{settings.prefix}/status"
        self.context.publish_mqtt(
            topic, settings.birth_payload, qos=1, retain=settings.birth_retain
        )

    # ----- discovery configs -----------------------------------------------------------------

    def _on_config(self, topic: str, payload: bytes, received: float) -> None:
        levels = topic.split("/")[self._prefix_levels :]
        if len(levels) not in (3, 4) or not all(_DISCOVERY_ID.match(x) for x in levels[:-1]):
            self.context.reject(
                topic,
                "discovery topic must be <prefix>/<component>/[<node_id>/]<object_id>/config "
                "with ids of letters, digits, '_' and '-'",
                kind="bad_topic",
            )
            return
        if not payload:
            # An empty (retained) config removes what that topic discovered.
            self._held.pop(topic, None)
            self._remove_config(topic)
            return
        if len(payload) > self.settings.max_payload:
            self.context.reject(
                topic,
                f"config of {len(payload)} bytes is over {self.settings.max_payload}",
                kind="too_large",
            )
            return
        record = self._configs.get(topic)
        if record is not None and record.payload == payload:
            return  # a device announcing itself again with the same config
        held = self._held.get(topic)
        if held is not None and held.payload == payload:
            return  # still another adapter's device
        try:
            raw = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            self.context.reject(topic, f"config is not JSON: {exc}", kind="not_json")
            return
        if not isinstance(raw, dict):
            self.context.reject(topic, "config must be a JSON object", kind="bad_config")
            return
        try:
            components, skipped = self._parse(levels, raw)
            for component in components:
                self._check_publish_topics(component)
        except ConfigError as exc:
            if exc.kind == "unsupported_component":
                # A valid config of a platform this adapter does not map (Zigbee2MQTT's
                # device_automation, update ...): not an error, so not a rejection.
                self.context.logger.info("ignoring %s: %s", topic, exc)
            else:
                self.context.reject(topic, str(exc), kind=exc.kind)
            return
        if self.settings.skip_duplicates and self._skip(topic, payload, components):
            return
        for reason in skipped:
            self.context.logger.info("ignoring part of %s: %s", topic, reason)
        new_ids = {c.discovery_id for c in components}
        added = sum(1 for i in new_ids if i not in self._components)
        removed = sum(1 for i in (record.ids if record else ()) if i not in new_ids)
        if len(self._components) + added - removed > self.settings.max_components:
            self.context.reject(
                topic,
                f"more than {self.settings.max_components} components discovered",
                kind="too_many",
            )
            return
        self._apply(topic, payload, components)

    def _check_publish_topics(self, component: Component) -> None:
        # A config must not turn a hub command into a message on the hub's own topics (a
        # "switch" whose payload is a hub command to unlock the door) nor overwrite other
        # devices' discovery configs or the birth topic.
        base = self.context.base_topic
        prefix = self.settings.prefix
        birth = self.settings.birth_topic or f"{prefix}/status"
        for topic in publish_topics(component):
            if (
                topic in (base, birth)
                or topic.startswith(f"{base}/")
                or (topic.startswith(f"{prefix}/") and topic.endswith("/config"))
            ):
                raise ConfigError(
                    f"{component.platform}: may not send commands to {topic[:80]!r}",
                    kind="bad_topic",
                )

    def _parse(self, levels: list[str], raw: dict[str, Any]) -> tuple[list[Component], list[str]]:
        """Return the components a config describes, and why any of them were skipped."""
        platform, object_id = levels[0], levels[-2]
        base_id = "/".join(levels[:-1])
        fallback = "_".join(levels[1:-1])
        try:
            data = expand(raw)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if platform != "device":
            if platform not in SUPPORTED:
                kind = (
                    "unsupported_component"
                    if platform in KNOWN_UNSUPPORTED
                    else "unknown_component"
                )
                raise ConfigError(f"component {platform!r} is not supported", kind=kind)
            device = parse_device(data.get("device"))
            device_id = _device_id(device, data.get("unique_id"), fallback)
            component = build_component(
                platform,
                data,
                discovery_id=base_id,
                object_id=object_id,
                device_id=device_id,
                device=device or DeviceInfo(),
            )
            return [component], []
        device = parse_device(data.get("device"))
        if device is None:
            raise ConfigError("device discovery needs a 'device' mapping")
        device_id = _device_id(device, None, fallback)
        raw_components = data.get("components")
        if not isinstance(raw_components, dict) or not raw_components:
            raise ConfigError("device discovery needs a non-empty 'components' mapping")
        if len(raw_components) > 256:
            raise ConfigError("device discovery: more than 256 components")
        shared = {k: v for k, v in data.items() if k in _SHARED}
        components: list[Component] = []
        skipped: list[str] = []
        for cid, config in raw_components.items():
            if not isinstance(config, dict) or not _DISCOVERY_ID.match(str(cid)):
                raise ConfigError(f"component {str(cid)[:40]!r} must be a mapping with a valid id")
            cplatform = config.get("platform")
            if not isinstance(cplatform, str):
                raise ConfigError(f"component {cid!r} has no 'platform'")
            if set(config) <= {"platform"}:
                continue  # only the platform left: Home Assistant's way to remove a component
            if cplatform not in SUPPORTED:
                skipped.append(f"component {cid!r}: platform {cplatform!r} is not supported")
                continue
            merged = dict(shared)
            if _AVAILABILITY_KEYS & set(config):
                for key in _AVAILABILITY_KEYS:
                    merged.pop(key, None)
            merged.update(config)
            try:
                components.append(
                    build_component(
                        cplatform,
                        merged,
                        discovery_id=f"{base_id}#{cid}",
                        object_id=str(cid),
                        device_id=device_id,
                        device=device,
                    )
                )
            except ConfigError as exc:
                raise ConfigError(f"component {cid!r}: {exc}", kind=exc.kind) from exc
        if not components and not skipped:
            raise ConfigError("device discovery: no component left to set up")
        return components, skipped

    def _apply(self, topic: str, payload: bytes, components: list[Component]) -> None:
        self._repeats.clear()  # how a state topic reads may change with any config
        old = self._configs.get(topic)
        new_ids = {c.discovery_id for c in components}
        affected: set[str] = set()
        for did in old.ids if old else ():
            if did not in new_ids:
                affected |= self._drop(did)
        for component in components:
            previous = self._components.get(component.discovery_id)
            if previous is not None and previous.device_id != component.device_id:
                affected |= self._drop(component.discovery_id)
            self._components[component.discovery_id] = component
            self._devices.setdefault(component.device_id, set()).add(component.discovery_id)
            affected.add(component.device_id)
        self._configs[topic] = _ConfigRecord(payload, tuple(sorted(new_ids)))
        for device_id in sorted(affected):
            self._sync_device(device_id)
        for component in components:
            self._watch(component)
        for component in components:
            self._replay(component)
        for device_id in sorted(affected):
            self._update_availability(device_id)

    def _remove_config(self, topic: str) -> None:
        record = self._configs.pop(topic, None)
        if record is None:
            return
        self._repeats.clear()
        affected: set[str] = set()
        for did in record.ids:
            affected |= self._drop(did)
        for device_id in sorted(affected):
            self._sync_device(device_id)
            self._update_availability(device_id)

    def _drop(self, discovery_id: str) -> set[str]:
        """Forget one component and stop listening for it; return the device it belonged to."""
        component = self._components.pop(discovery_id, None)
        if component is None:
            return set()
        self._unwatch(discovery_id)
        self._availability.pop(discovery_id, None)
        self._latest.pop(discovery_id, None)
        members = self._devices.get(component.device_id)
        if members is not None:
            members.discard(discovery_id)
            if not members:
                del self._devices[component.device_id]
        entity_id = self._entity_ids.pop(discovery_id, None)
        if entity_id is not None:
            self._forget_entity(entity_id)
        return {component.device_id}

    def _forget_entity(self, entity_id: str) -> None:
        self._by_entity.pop(entity_id, None)
        self._pending.pop(entity_id, None)
        timer = self._timers.pop(entity_id, None)
        if timer is not None:
            timer.cancel()

    # ----- hub devices -----------------------------------------------------------------------

    def _sync_device(self, device_id: str) -> None:
        """Register (or remove) the hub device made of the components that name it."""
        dids = sorted(self._devices.get(device_id, ()))
        existing = self.context.devices.get(device_id)
        if not dids:
            self._ours.set(device_id, frozenset())
            if existing is not None and existing.owner == OWNER:
                self.context.remove_device(device_id)
            return
        components = [self._components[d] for d in dids]
        info = _merge_info(c.device for c in components)
        device_name = info.name or next((c.name for c in components if c.name), None) or device_id
        keys = _entity_keys(components)
        entities: list[Entity] = []
        previous = {self._entity_ids.get(c.discovery_id) for c in components}
        for component in components:
            key = keys[component.discovery_id]
            entity_id = f"{device_id}.{key}"
            self._entity_ids[component.discovery_id] = entity_id
            self._by_entity[entity_id] = component
            entities.append(
                Entity(
                    id=entity_id,
                    device_id=device_id,
                    key=key,
                    kind=component.kind,
                    name=_entity_name(device_name, component.name),
                    unit=component.unit,
                    device_class=component.device_class,
                    options={k: v for k, v in component.options.items() if k in _ENTITY_OPTIONS},
                )
            )
        identities: dict[str, str] = {}
        if info.identifiers:
            identities["identifier"] = info.identifiers[0]
        for kind, value in info.connections:
            name = sanitize_id(kind, "connection").replace("-", "_")
            identities.setdefault(name, value.lower() if name == "mac" else value)
        if info.serial_number:
            identities["serial_number"] = info.serial_number
        device = Device(
            id=device_id,
            name=device_name,
            owner=OWNER,
            manufacturer=info.manufacturer,
            model=info.model,
            firmware=info.sw_version,
            via=self._via(info.via_device),
            identities=identities,
            native={"prefix": self.settings.prefix, "discovery_ids": dids},
        )
        # The firmware's suggested area places the device unless hub.yaml does (the user's
        # choice wins); without one, the device stays where it is.
        device.area = self.context.suggested_area(device_id, info.suggested_area)
        if device.area is None and existing is not None:
            device.area = existing.area
        self._ours.set(device_id, discovery_keys(info))
        # Keys renamed by a new collision: the old entity ids are gone with their states.
        for old_id in previous - {e.id for e in entities}:
            if old_id is not None:
                self._forget_entity(old_id)
        self.context.register_device(device, entities)

    # ----- devices another adapter keeps --------------------------------------------------------

    def _watch_owners(self) -> None:
        """Index every device in the registry, then follow registrations and removals."""
        devices = list(self.context.devices.values())
        for device in devices:
            if device.owner == OWNER:
                # Stored by an earlier run: its identities are all we know until rediscovered.
                self._ours.set(device.id, identity_keys(device.identities, split=True))
        for device in devices:
            if device.owner != OWNER:
                self._on_registered(DeviceRegistered(device.id))  # removes our stored copies
        self.context.subscribe_event(DeviceRegistered, self._on_registered)
        self.context.subscribe_event(DeviceRemoved, self._on_removed)

    def _on_registered(self, event: DeviceRegistered) -> None:
        device = self.context.devices.get(event.device_id)
        if device is None or device.owner == OWNER:
            return  # ours are indexed when we register them
        active = self.context.owner_active(device.owner)
        keys = identity_keys(device.identities) if active else frozenset()
        gained, lost = self._claims.set(device.id, keys)
        if lost:
            self._release(device.id)
        if gained:
            for ours in self._ours.holders(gained):
                self._yield(ours, device.id)

    def _on_removed(self, event: DeviceRemoved) -> None:
        if self._claims.keys_of(event.device_id):
            self._claims.set(event.device_id, frozenset())
            self._release(event.device_id)
        self._ours.set(event.device_id, frozenset())

    def _claimant(self, keys: frozenset[str]) -> str | None:
        holders = self._claims.holders(keys)
        return holders[0] if holders else None

    def _skip(self, topic: str, payload: bytes, components: list[Component]) -> bool:
        """Hold a config back when another adapter keeps its device; True if it was held."""
        # The components of one config share one device (and its device block).
        info = _merge_info(c.device for c in components)
        claimant = self._claimant(discovery_keys(info))
        if claimant is None:
            self._held.pop(topic, None)
            return False
        device_id = components[0].device_id
        if self._held.get(topic) is None:
            self.context.count("duplicates_skipped")
        self._held[topic] = _Held(payload, device_id, claimant)
        if topic in self._configs:
            self._remove_config(topic)  # it described another device before
        self._drop_stored(device_id)
        self._tell(device_id, info.name, claimant)
        return True

    def _yield(self, device_id: str, claimant: str) -> None:
        """Another adapter now keeps one of our devices: hold its configs, remove our copy."""
        prefix = self.settings.prefix
        for did in sorted(self._devices.get(device_id, ())):
            # A discovery id is its config topic's ids (plus "#<component>" in device discovery).
            topic = f"{prefix}/{did.partition('#')[0]}/config"
            record = self._configs.get(topic)
            if record is None:
                continue
            if topic not in self._held:
                self.context.count("duplicates_skipped")
            self._held[topic] = _Held(record.payload, device_id, claimant)
            self._remove_config(topic)
        self._drop_stored(device_id)
        device = self.context.devices.get(claimant)
        self._tell(device_id, device.name if device else None, claimant)

    def _drop_stored(self, device_id: str) -> None:
        # A copy an earlier run stored (or one left without components) goes too.
        if device_id in self._devices:
            return  # components of other configs still make it
        device = self.context.devices.get(device_id)
        if device is not None and device.owner == OWNER:
            self.context.remove_device(device_id)
        self._ours.set(device_id, frozenset())

    def _tell(self, device_id: str, name: str | None, claimant: str) -> None:
        if device_id in self._told:
            return
        self._told.add(device_id)
        owner = self.context.devices.get(claimant)
        self.context.logger.info(
            "skipping the discovery configs of %s%s: the same device is %s of the %s adapter "
            "(skip_duplicates: false keeps both)",
            device_id,
            f" ({name})" if name else "",
            claimant,
            owner.owner if owner else "another",
        )

    def _release(self, claimant: str) -> None:
        """The other adapter no longer keeps a device: its held configs apply again."""
        topics = [t for t, held in self._held.items() if held.claimant == claimant]
        for topic in topics:
            held = self._held.pop(topic)
            self._told.discard(held.device_id)
            self._on_config(topic, held.payload, 0.0)

    def _via(self, via_device: str | None) -> str | None:
        if not via_device:
            return None
        # A bridge another adapter keeps (Zigbee2MQTT's) is the via of what it bridges.
        claimant = self._claimant(discovery_keys(DeviceInfo(identifiers=(via_device,))))
        if claimant is not None:
            return claimant
        return sanitize_id(via_device)

    # ----- topics ----------------------------------------------------------------------------

    def _watch(self, component: Component) -> None:
        did = component.discovery_id
        topics = {b.topic for b in component.bindings} | {a.topic for a in component.availability}
        # Topics the new config keeps stay subscribed: no UNSUBSCRIBE/SUBSCRIBE churn.
        self._unwatch(did, keep=topics)
        self._watched[did] = topics
        # Attributes first, so that what a role sets (a scaled brightness) wins over them.
        ordered = sorted(component.bindings, key=lambda b: b.role != "attributes")
        for binding in ordered:
            self._topic(binding.topic).bindings.setdefault(did, []).append(binding)
        if component.availability:
            self._availability[did] = [None] * len(component.availability)
            self._latest[did] = None
            for index, entry in enumerate(component.availability):
                self._topic(entry.topic).availability.setdefault(did, []).append((index, entry))

    def _topic(self, topic: str) -> _TopicWatch:
        watch = self._topics.get(topic)
        if watch is None:
            handler = self._on_message
            undo = self.context.subscribe_mqtt(topic, handler, qos=1)
            watch = _TopicWatch(undo)
            self._topics[topic] = watch
        return watch

    def _unwatch(self, discovery_id: str, keep: set[str] | None = None) -> None:
        for topic in self._watched.pop(discovery_id, ()):
            watch = self._topics.get(topic)
            if watch is None:
                continue
            watch.bindings.pop(discovery_id, None)
            watch.availability.pop(discovery_id, None)
            if watch.empty() and (keep is None or topic not in keep):
                del self._topics[topic]
                watch.undo()

    def _replay(self, component: Component) -> None:
        # The broker sends a retained message only to a new subscription; a component that
        # joins a topic someone already listens on gets that topic's last message from here.
        topics = {b.topic for b in component.bindings} | {a.topic for a in component.availability}
        for topic in sorted(topics):
            watch = self._topics.get(topic)
            if watch is not None and watch.last is not None:
                self._handle(topic, watch.last, only=component.discovery_id)

    # ----- states and availability -----------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, received: float) -> None:
        self._handle(topic, payload, only=None)

    def _handle(self, topic: str, payload: bytes, *, only: str | None) -> None:
        watch = self._topics.get(topic)
        if watch is None:
            return
        repeats = self._repeats
        if only is None and repeats.replay(topic, payload):
            return
        mark = repeats.mark()
        if len(payload) > self.settings.max_payload:
            self.context.reject(
                topic,
                f"payload of {len(payload)} bytes is over {self.settings.max_payload}",
                kind="too_large",
            )
            return
        # The template variables by encoding: decoded and parsed once per message, shared by
        # every template that reads it (templates do not change them).
        by_encoding: dict[str, dict[str, Any]] = {}
        parsed: list[Any] = []

        def variables(component: Component) -> dict[str, Any]:
            found = by_encoding.get(component.encoding)
            if found is not None:
                return found
            text = payload.decode(component.encoding)
            if not parsed:
                try:
                    parsed.append(orjson.loads(payload))
                except orjson.JSONDecodeError:
                    parsed.append(_JSON_ERROR)
            found = by_encoding[component.encoding] = {"value": text, "value_json": parsed[0]}
            return found

        updates: dict[str, tuple[Component, Update]] = {}
        seen: list[tuple[str, int, bool]] = []
        try:
            for did, bindings in watch.bindings.items():
                if only is not None and did != only:
                    continue
                component = self._components[did]
                entity_id = self._entity_ids.get(did)
                if entity_id is None:
                    continue
                for binding in bindings:
                    rendered = _render(binding.template, variables(component))
                    update = interpret(component, binding.role, rendered)
                    if update is not None:
                        _merge(updates, entity_id, component, update)
            for did, entries in watch.availability.items():
                if only is not None and did != only:
                    continue
                component = self._components[did]
                for index, entry in entries:
                    rendered = _text(_render(entry.template, variables(component)))
                    if rendered == entry.payload_available:
                        seen.append((did, index, True))
                    elif rendered == entry.payload_not_available:
                        seen.append((did, index, False))
                    else:
                        raise StateError(
                            f"availability {rendered[:40]!r} is neither "
                            f"{entry.payload_available!r} nor {entry.payload_not_available!r}"
                        )
        except UnicodeDecodeError as exc:
            self.context.reject(topic, f"payload is not text: {exc}", kind="not_text")
            return
        except _NotJson as exc:
            self.context.reject(topic, str(exc), kind="not_json")
            return
        except (TemplateError, StateError) as exc:
            self.context.reject(topic, str(exc), kind="bad_state")
            return
        plain = self._report(topic, updates)
        if plain is None:
            return
        if only is None:
            watch.last = payload
            if plain and not watch.availability:
                repeats.remember(topic, payload, updates, mark)
            else:
                repeats.forget(topic)
        devices: set[str] = set()
        for did, index, available in seen:
            states = self._availability.get(did)
            if states is not None:
                states[index] = available
                self._latest[did] = available
                devices.add(self._components[did].device_id)
        for device_id in sorted(devices):
            self._update_availability(device_id)

    def _report(self, topic: str, updates: dict[str, tuple[Component, Update]]) -> bool | None:
        """Apply one message's updates, all or none; None when they were rejected, else
        whether reporting was all they did (no attributes held back or taken up, no timer)."""
        plain = True
        reports: list[tuple[str, Any, dict[str, Any] | None]] = []
        stash: dict[str, dict[str, Any]] = {}
        for entity_id, (component, update) in updates.items():
            value, attributes = update.value, update.attributes
            if value is None and self.context.state(entity_id) is None:
                value = component.initial_value()
                if value is None:
                    # No value yet (a brightness before the first on/off): keep the attributes
                    # for the first report that carries one.
                    stash[entity_id] = {**self._pending.get(entity_id, {}), **attributes}
                    plain = False
                    continue
            pending = self._pending.get(entity_id)
            if pending:
                attributes = {**pending, **attributes}
                plain = False
            reports.append((entity_id, value, attributes or None))
        try:
            self.context.report_states(reports)
        except (InvalidValue, KeyError) as exc:
            self.context.reject(topic, str(exc), kind="wrong_type")
            return None
        for entity_id, _value, _attrs in reports:
            self._pending.pop(entity_id, None)
        self._pending.update(stash)
        for entity_id, value, _attrs in reports:
            owner = self._by_entity.get(entity_id)
            if owner is not None and owner.off_delay and value == "on":
                self._arm_off_delay(entity_id, owner.off_delay)
                plain = False
        return plain

    def _arm_off_delay(self, entity_id: str, delay: float) -> None:
        timer = self._timers.pop(entity_id, None)
        if timer is not None:
            timer.cancel()

        def turn_off() -> None:
            self._timers.pop(entity_id, None)
            if entity_id in self._by_entity:
                self._report_quietly(entity_id, "off", None)

        self._timers[entity_id] = asyncio.get_running_loop().call_later(delay, turn_off)

    def _report_quietly(
        self, entity_id: str, value: Any, attributes: dict[str, Any] | None
    ) -> None:
        try:
            self.context.report_states([(entity_id, value, attributes)])
        except (InvalidValue, KeyError) as exc:
            self.context.logger.debug("optimistic report of %s skipped: %s", entity_id, exc)

    def _component_available(self, did: str) -> bool:
        component = self._components[did]
        if not component.availability:
            return True
        if component.availability_mode == "all":
            return all(v is True for v in self._availability.get(did, ()))
        if component.availability_mode == "any":
            return any(v is True for v in self._availability.get(did, ()))
        return self._latest.get(did) is True

    def _update_availability(self, device_id: str) -> None:
        dids = self._devices.get(device_id)
        device = self.context.devices.get(device_id)
        if not dids or device is None or device.owner != OWNER:
            return
        # A device is online while any of its components is: they normally share one
        # availability topic, and one odd component must not hide the others.
        self.context.set_available(device_id, any(self._component_available(d) for d in dids))

    # ----- commands ---------------------------------------------------------------------------

    def send_command(
        self,
        device: Device,
        entity: Entity,
        action: str,
        params: Mapping[str, Any],
        command_id: str,
    ) -> None:
        """Publish the firmware's own message(s) for a hub command."""
        component = self._by_entity.get(entity.id)
        if component is None:
            raise CommandError(f"{entity.id} has not been discovered since the hub started")
        current = self.context.state(entity.id)
        messages, optimistic = build_command(
            component,
            action,
            params,
            current.value if current else None,
            current.attributes if current else None,
        )
        for message in messages:
            try:
                self.context.publish_mqtt(
                    message.topic,
                    message.payload.encode(component.encoding),
                    qos=max(1, component.qos),
                    retain=component.retain,
                )
            except (ValueError, RuntimeError) as exc:
                raise CommandError(f"cannot publish to {message.topic!r}: {exc}") from exc
        part = _optimistic_part(component, optimistic)
        if part is not None:
            # After send_command returns the hub starts waiting for the confirming state, so
            # an optimistic device's own report must come after that.
            asyncio.get_running_loop().call_soon(
                self._report_optimistic, entity.id, component, part
            )

    def _report_optimistic(self, entity_id: str, component: Component, update: Update) -> None:
        if self._by_entity.get(entity_id) is not component:
            return  # rediscovered or removed meanwhile
        value = update.value
        if value is None and self.context.state(entity_id) is None:
            value = component.initial_value()
            if value is None:
                return
        self._report_quietly(entity_id, value, update.attributes or None)


class _NotJson(ValueError):
    """A template reads value_json from a payload that is not JSON."""


def _render(template: Any, variables: dict[str, Any]) -> Any:
    if template is None:
        return variables["value"]
    if variables["value_json"] is _JSON_ERROR:
        if "value_json" in template.uses:
            raise _NotJson(
                f"payload is not JSON, and the template {template.source[:60]!r} reads it"
            )
        variables = {**variables, "value_json": UNDEFINED}
    return template.render(variables)


def _text(rendered: Any) -> str:
    return to_text(rendered).strip()


def _merge(
    updates: dict[str, tuple[Component, Update]],
    entity_id: str,
    component: Component,
    update: Update,
) -> None:
    previous = updates.get(entity_id)
    if previous is None:
        updates[entity_id] = (component, Update(update.value, dict(update.attributes)))
        return
    merged = previous[1]
    if update.value is not None:
        merged.value = update.value
    merged.attributes.update(update.attributes)


def _optimistic_part(component: Component, update: Update | None) -> Update | None:
    """What of a command's expected state the adapter reports itself (no state topic for it)."""
    if update is None:
        return None
    roles = {b.role for b in component.bindings}
    if component.optimistic:
        return update
    value = update.value if not roles & _VALUE_ROLES else None
    attributes = {
        key: val
        for key, val in update.attributes.items()
        if key in _OPTIMISTIC_ATTRIBUTES and not roles & _OPTIMISTIC_ATTRIBUTES[key]
    }
    if value is None and not attributes:
        return None
    return Update(value, attributes)


def _device_id(device: DeviceInfo | None, unique_id: Any, fallback: str) -> str:
    if device is not None and device.identifiers:
        return sanitize_id(device.identifiers[0])
    if device is not None and device.connections:
        return sanitize_id(device.connections[0][1])
    if isinstance(unique_id, str | int) and str(unique_id):
        return sanitize_id(str(unique_id))
    return sanitize_id(fallback)


def _merge_info(infos: Iterable[DeviceInfo]) -> DeviceInfo:
    merged: dict[str, Any] = {}
    for info in infos:
        for name in info.__slots__:
            value = getattr(info, name)
            if value:
                merged[name] = value
    return DeviceInfo(**merged)


def _entity_keys(components: list[Component]) -> dict[str, str]:
    """Entity keys for a device's components: the object id, made unique deterministically."""
    bases = {c.discovery_id: sanitize_id(c.object_id, c.platform) for c in components}
    counts: dict[str, int] = {}
    for base in bases.values():
        counts[base] = counts.get(base, 0) + 1
    keys: dict[str, str] = {}
    used: set[str] = set()
    for component in components:  # sorted by discovery id by the caller
        base = bases[component.discovery_id]
        key = base if counts[base] == 1 else sanitize_id(f"{component.platform}_{base}")
        candidate, n = key, 2
        while candidate in used:
            suffix = f"_{n}"
            candidate = key[: 64 - len(suffix)] + suffix
            n += 1
        used.add(candidate)
        keys[component.discovery_id] = candidate
    return keys


def _entity_name(device_name: str, name: str | None) -> str:
    # Home Assistant names an entity "<device> <entity>", or after the device when null.
    if not name:
        return device_name
    if name.lower().startswith(device_name.lower()):
        return name
    return f"{device_name} {name}"[:255]
