"""The Zigbee2MQTT adapter: devices, states, availability, commands, groups, network map.

Topics read (``<base>`` is the ``base_topic`` setting, Zigbee2MQTT's own base topic):

``<base>/bridge/state``            retained ``online``/``offline`` (or ``{"state": ...}``):
                                   the bridge's availability; offline makes every device
                                   reached through it unavailable too
``<base>/bridge/info``             retained: version and coordinator of the bridge; in its
                                   ``config``, the area each device's options suggest to
                                   Home Assistant (``homeassistant.device.suggested_area``)
``<base>/bridge/devices``          retained device list: devices and entities (``exposes``)
``<base>/bridge/groups``           retained group list: hub groups of the members' entities
``<base>/bridge/response/...``     answers to ``bridge/request/...`` (matched by transaction)
``<base>/<friendly_name>``         a device's state (JSON)
``<base>/<friendly_name>/availability``  ``{"state": "online"}`` or legacy ``online``

Topics written: ``<base>/<friendly_name>/set`` (commands, QoS 1), ``<base>/<group>/set`` (a
command that reaches every member of a Zigbee group), ``<base>/bridge/request/<x>``, and on
the hub's side ``<hub base>/topology/zigbee`` (retained network map) and
``<hub base>/zigbee2mqtt/networkmap/response``. Publishing anything to
``<hub base>/zigbee2mqtt/networkmap/request`` asks for a network map.

The adapter subscribes once to ``<base>/#`` and routes by topic; device messages that come
before the first device list are kept (bounded) and replayed when it arrives.

A device's id is its IEEE address (``0x00158d00018255df``), so a rename in Zigbee2MQTT changes
its name and topics but never its identity, history or rules. The bridge is a device of its
own (``<base>_bridge``), and every Zigbee device is ``via`` it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapters.zigbee2mqtt.exposes import (
    IEEE_PATTERN,
    EntityMap,
    read_message,
    sanitize_key,
)
from adapters.zigbee2mqtt.exposes import (
    entity_maps as build_entity_maps,
)
from adapters.zigbee2mqtt.networkmap import parse_raw
from adapters.zigbee2mqtt.requests import BridgeRequestError, BridgeRequests
from adapters.zigbee2mqtt.settings import Settings
from hub.api import (
    CommandError,
    Device,
    Entity,
    EntityKind,
    InvalidValue,
    Plugin,
    PluginContext,
)

OWNER = "zigbee2mqtt"
# A device's state is a few hundred bytes; the bridge's lists grow with the network (a few KB
# of exposes per device), so they get a larger, still bounded, allowance.
MAX_STATE = 64 * 1024
MAX_LIST = 16 * 1024 * 1024
MAX_AVAILABILITY = 1024
MAX_EARLY = 4096
MAX_EARLY_BYTES = 8 * 1024 * 1024
# Keys a Zigbee group's /set accepts the same way as each member's.
_GROUPABLE = frozenset({"state", "brightness", "color_temp", "color", "transition", "position"})
_GROUP_KINDS = frozenset({EntityKind.LIGHT, EntityKind.SWITCH, EntityKind.COVER})
# An on-demand network map asked for again this soon after the last one returns that one: each
# scan stalls the Zigbee network, and the trigger topic is open to any MQTT client.
NETWORKMAP_COOLDOWN = 60.0

_LOGGER = logging.getLogger(__name__)


def check_friendly_name(name: Any) -> str:
    """Return ``name`` if it can be a topic level path; raise ValueError saying why not."""
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ValueError("friendly_name must be a string of 1-200 characters")
    levels = name.split("/")
    if any(c in name for c in "+#\x00") or any(level in ("", ".", "..") for level in levels):
        raise ValueError(
            f"friendly_name {name[:80]!r} is not a usable topic: wildcards, empty levels, "
            "'.' or '..'"
        )
    if levels[0] == "bridge" or levels[-1] in ("set", "get", "availability"):
        raise ValueError(f"friendly_name {name[:80]!r} collides with Zigbee2MQTT's own topics")
    return name


def _optional_text(entry: Mapping[str, Any], name: str, limit: int = 128) -> str | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name!r} must be a string")
    return value[:limit] or None


def _area_option(options: Any) -> tuple[bool, str | None]:
    """Whether device options set ``homeassistant.device.suggested_area``, and to what."""
    ha = options.get("homeassistant") if isinstance(options, dict) else None
    device = ha.get("device") if isinstance(ha, dict) else None
    if not isinstance(device, dict) or "suggested_area" not in device:
        return False, None
    value = device["suggested_area"]
    return True, value[:128] if isinstance(value, str) and value.strip() else None


def _suggested_areas(config: Any) -> tuple[dict[str, str | None], str | None]:
    """The areas Zigbee2MQTT's config (bridge/info ``config``) suggests to Home Assistant.

    Zigbee2MQTT has no area of its own; its users place devices with the discovery override
    ``homeassistant: {device: {suggested_area: ...}}`` in a device's options (or in
    ``device_options`` for all), which it merges into every discovery payload's device block.
    Returns the per-device values by IEEE address and the default. Shapes that do not fit
    are no suggestion: the rest of bridge/info still counts.
    """
    if not isinstance(config, dict):
        return {}, None
    _, default = _area_option(config.get("device_options"))
    areas: dict[str, str | None] = {}
    devices = config.get("devices")
    if isinstance(devices, dict):
        for key, options in devices.items():
            given, value = _area_option(options)
            if given and isinstance(key, str) and IEEE_PATTERN.fullmatch(key.lower()):
                areas[key.lower()] = value
    return areas, default


def _online_word(payload: bytes) -> str | None:
    """``online``/``offline`` from a plain or a JSON availability payload, else None."""
    text = payload.strip()
    if text.startswith(b"{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        state = data.get("state") if isinstance(data, dict) else None
        return state if state in ("online", "offline") else None
    word = text.decode("utf-8", "replace")
    return word if word in ("online", "offline") else None


@dataclass(slots=True)
class _ZDevice:
    """What the adapter knows of one Zigbee device."""

    ieee: str
    friendly_name: str
    maps: dict[str, EntityMap]
    vendor: str | None = None
    model: str | None = None
    description: str | None = None
    firmware: str | None = None
    type: str | None = None
    power_source: str | None = None
    endpoint_names: dict[int, str] = field(default_factory=dict)
    own_available: bool | None = None  # the device's availability topic; None: never said
    reported: bool | None = None  # what the hub was last told
    links: list[dict[str, Any]] = field(default_factory=list)
    #: Hub entity id by entity key, built once per device description (it brings the maps).
    entity_ids: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.entity_ids = {key: f"{self.ieee}.{key}" for key in self.maps}

    def entities(self) -> list[Entity]:
        """The hub entities of this device."""
        return [m.entity(self.ieee) for m in self.maps.values()]


@dataclass(frozen=True, slots=True)
class _ZGroup:
    """A Zigbee2MQTT group and the hub entities its members map to."""

    group_id: int
    friendly_name: str
    hub_id: str
    entity_ids: frozenset[str]
    native: bool  # every member maps to one entity commanded with the group's own keys


@dataclass(slots=True)
class _Send:
    topic: str
    entity_id: str
    body: dict[str, Any]
    groupable: bool


class Zigbee2Mqtt(Plugin):
    """Speaks Zigbee2MQTT's MQTT API for the hub (see the module documentation)."""

    settings_model = Settings

    def __init__(self, context: PluginContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self.settings: Settings = settings
        self.base = settings.base_topic
        self.bridge_id = sanitize_key(f"{self.base}_bridge")
        self.requests = BridgeRequests(self.base, self._publish_request)
        self._devices: dict[str, _ZDevice] = {}
        self._by_state: dict[str, _ZDevice] = {}
        self._by_availability: dict[str, _ZDevice] = {}
        # A device's state message again, byte for byte: the same repeats (Zigbee2MQTT
        # publishes the whole state on every attribute report, so most messages are this).
        self._repeats = context.repeat_memo()
        # Device messages that came before the first device list (retained ones arrive in no
        # particular order), replayed once the list says whose they are.
        self._early: dict[str, bytes] = {}
        self._early_bytes = 0
        self._bridge_handlers = {
            f"{self.base}/bridge/state": self._on_bridge_state,
            f"{self.base}/bridge/info": self._on_bridge_info,
            f"{self.base}/bridge/devices": self._on_bridge_devices,
            f"{self.base}/bridge/groups": self._on_bridge_groups,
        }
        self._groups: dict[int, _ZGroup] = {}
        self._group_undo: dict[str, Any] = {}
        self._raw_groups: list[tuple[int, str, list[tuple[str, int | str]]]] = []
        self._native_groups: list[_ZGroup] = []
        self._bridge_online = False
        self._bridge_info: dict[str, Any] = {}
        # The Home Assistant area each device's options suggest (bridge/info), by IEEE address;
        # None: explicitly none. Devices not listed take the device_options default.
        self._areas: dict[str, str | None] = {}
        self._default_area: str | None = None
        self._bridge_links: list[dict[str, Any]] = []
        self._outbox: list[_Send] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._networkmap: asyncio.Task[dict[str, int]] | None = None
        self._last_networkmap: tuple[float, dict[str, int]] | None = None
        self.devices_seen = False  # the first device list has arrived
        self._response_prefix = f"{self.base}/bridge/response/"

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the dialect and the bridge device; subscribe to the base topic."""
        ctx = self.context
        ctx.register_dialect(OWNER, self)
        self._register_bridge()
        # One subscription for the whole tree: a device's messages are never missed between
        # the device list and a per-device SUBACK, and a rename needs no resubscription.
        ctx.subscribe_mqtt(f"{self.base}/#", self._on_message, qos=1)
        ctx.subscribe_mqtt(self.trigger_topic, self._on_networkmap_trigger, qos=1)

    async def run(self) -> None:
        """Wait; or, only when ``networkmap_interval`` is set, request a map on that schedule."""
        interval = self.settings.networkmap_interval
        if interval is None:
            await asyncio.Event().wait()
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await self.request_networkmap(force=True)
            except BridgeRequestError as exc:
                self.context.logger.warning("scheduled network map failed: %s", exc)

    async def stop(self) -> None:
        """Fail pending requests, stop background work, send queued commands, go unavailable."""
        self.requests.cancel_all("the Zigbee2MQTT adapter stopped")
        tasks = list(self._tasks)
        if self._networkmap is not None:
            tasks.append(self._networkmap)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._outbox:
            self._flush()
        # Nobody follows these devices until the adapter is back: their availability is unknown.
        for z in self._devices.values():
            self.context.set_available(z.ieee, False)
        self.context.set_available(self.bridge_id, False)

    @property
    def trigger_topic(self) -> str:
        """Where any MQTT client may ask for a network map."""
        return f"{self.context.base_topic}/{self.context.name}/networkmap/request"

    @property
    def topology_topic(self) -> str:
        """Where the last network map is published, retained."""
        return f"{self.context.base_topic}/topology/zigbee"

    # ----- the bridge ------------------------------------------------------------------------

    def _register_bridge(self) -> None:
        info = self._bridge_info
        coordinator = info.get("coordinator") or {}
        identities = {"ieee": coordinator["ieee"]} if coordinator.get("ieee") else {}
        device = Device(
            id=self.bridge_id,
            name=f"Zigbee2MQTT ({self.base})",
            owner=OWNER,
            manufacturer="Zigbee2MQTT",
            model=coordinator.get("type") or "Zigbee2MQTT bridge",
            firmware=info.get("version"),
            identities=identities,
            native={
                "base_topic": self.base,
                "topic": f"{self.base}/bridge",
                "zigbee_links": list(self._bridge_links),
            },
        )
        self.context.register_device(device, [])

    def _on_bridge_state(self, topic: str, payload: bytes) -> None:
        if not payload:
            return  # the retained state being cleared
        word = _online_word(payload) if len(payload) <= MAX_AVAILABILITY else None
        if word is None:
            self.context.reject(
                topic,
                f'bridge state must be online/offline or {{"state": ...}}, got {payload[:40]!r}',
                kind="wrong_type",
            )
            return
        self._bridge_online = word == "online"
        self.context.set_available(self.bridge_id, self._bridge_online)
        for z in self._devices.values():
            # "online" again means Zigbee2MQTT (re)started: tell the hub even if unchanged, so
            # it resends commands that may have been lost meanwhile.
            self._sync_availability(z, force=self._bridge_online)

    def _on_bridge_info(self, topic: str, payload: bytes) -> None:
        data = self._load(topic, payload, MAX_LIST)
        if data is None:
            return
        if not isinstance(data, dict):
            self.context.reject(topic, "bridge info must be a JSON object", kind="wrong_type")
            return
        version = data.get("version")
        coordinator = data.get("coordinator")
        info: dict[str, Any] = {"version": version[:64] if isinstance(version, str) else None}
        if isinstance(coordinator, dict):
            ieee = coordinator.get("ieee_address")
            kind = coordinator.get("type")
            info["coordinator"] = {
                "ieee": ieee.lower()
                if isinstance(ieee, str) and IEEE_PATTERN.match(ieee.lower())
                else None,
                "type": kind[:64] if isinstance(kind, str) else None,
            }
        if info != self._bridge_info:
            self._bridge_info = info
            self._register_bridge()
        self._set_suggested_areas(_suggested_areas(data.get("config")))

    def _set_suggested_areas(self, areas: tuple[dict[str, str | None], str | None]) -> None:
        """Take the areas bridge/info's config suggests; re-register the devices they move."""
        before = [(z, self._suggested_area(z.ieee)) for z in self._devices.values()]
        self._areas, self._default_area = areas
        for z, previous in before:
            if self._suggested_area(z.ieee) != previous:
                self.context.register_device(self._device(z), z.entities())

    def _suggested_area(self, ieee: str) -> str | None:
        return self._areas.get(ieee, self._default_area)  # a listed None stays None

    @property
    def coordinator_ieee(self) -> str | None:
        """The coordinator's IEEE address, once bridge/info or bridge/devices told it."""
        coordinator = self._bridge_info.get("coordinator") or {}
        ieee = coordinator.get("ieee")
        return ieee if isinstance(ieee, str) else None

    # ----- devices ---------------------------------------------------------------------------

    def _load(self, topic: str, payload: bytes, limit: int) -> Any:
        """Decode a JSON payload or reject it (returns None then, as for an empty one)."""
        if not payload:
            return None  # a retained message being cleared: nothing to do
        if len(payload) > limit:
            self.context.reject(
                topic, f"payload of {len(payload)} bytes is over {limit}", kind="too_large"
            )
            return None
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            self.context.reject(topic, f"not JSON: {exc}", kind="not_json")
            return None

    def _parse_device(self, entry: Any) -> _ZDevice | str | None:
        """A device of the list; the coordinator's IEEE address; None for a disabled device."""
        if not isinstance(entry, dict):
            raise ValueError("expected an object")
        ieee = entry.get("ieee_address")
        if not isinstance(ieee, str) or not IEEE_PATTERN.match(ieee.lower()):
            raise ValueError(f"invalid ieee_address {str(ieee)[:40]!r}")
        ieee = ieee.lower()
        if entry.get("type") == "Coordinator":
            return ieee
        name = check_friendly_name(entry.get("friendly_name"))
        if entry.get("disabled") is True:
            return None
        definition = entry.get("definition")
        if definition is not None and not isinstance(definition, dict):
            raise ValueError("'definition' must be an object or null")
        definition = definition or {}
        endpoint_names: dict[int, str] = {}
        endpoints = entry.get("endpoints")
        if isinstance(endpoints, dict):
            for number, body in endpoints.items():
                if isinstance(body, dict) and isinstance(body.get("name"), str):
                    with contextlib.suppress(ValueError):
                        endpoint_names[int(number)] = body["name"]
        return _ZDevice(
            ieee=ieee,
            friendly_name=name,
            maps=build_entity_maps(definition.get("exposes"), name),
            vendor=_optional_text(definition, "vendor"),
            model=_optional_text(definition, "model"),
            description=_optional_text(definition, "description", 256),
            firmware=_optional_text(entry, "software_build_id"),
            type=_optional_text(entry, "type", 32),
            power_source=_optional_text(entry, "power_source", 64),
            endpoint_names=endpoint_names,
        )

    def _on_bridge_devices(self, topic: str, payload: bytes) -> None:
        data = self._load(topic, payload, MAX_LIST)
        if data is None:
            return
        if not isinstance(data, list):
            self.context.reject(topic, "bridge/devices must be a JSON list", kind="wrong_type")
            return
        parsed: dict[str, _ZDevice] = {}
        names: set[str] = set()
        complete = True
        coordinator: str | None = None
        for index, entry in enumerate(data):
            try:
                result = self._parse_device(entry)
                if isinstance(result, _ZDevice):
                    if result.ieee in parsed or result.friendly_name in names:
                        raise ValueError(
                            f"{result.ieee} / {result.friendly_name!r} is listed twice"
                        )
                    parsed[result.ieee] = result
                    names.add(result.friendly_name)
                elif isinstance(result, str):
                    coordinator = result
            except ValueError as exc:
                # One broken entry must not hide the others; it is counted and skipped, and
                # nothing is removed this time since it may be one of the known devices.
                complete = False
                ieee = entry.get("ieee_address") if isinstance(entry, dict) else None
                self.context.reject(
                    topic, f"device #{index} ({str(ieee)[:40]}): {exc}", kind="bad_config"
                )
        if coordinator is not None and coordinator != self.coordinator_ieee:
            coordinator_info = dict(self._bridge_info.get("coordinator") or {})
            coordinator_info["ieee"] = coordinator
            self._bridge_info = {**self._bridge_info, "coordinator": coordinator_info}
            self._register_bridge()
        self._apply_devices(parsed, complete=complete)
        if not self.devices_seen:
            self.devices_seen = True
            self._replay_early()

    def _apply_devices(self, parsed: dict[str, _ZDevice], *, complete: bool) -> None:
        ctx = self.context
        for ieee, z in parsed.items():
            old = self._devices.get(ieee)
            if old is not None:
                z.own_available, z.reported, z.links = old.own_available, old.reported, old.links
        removed = [old for ieee, old in self._devices.items() if ieee not in parsed]
        if not complete:
            for old in removed:
                parsed.setdefault(old.ieee, old)
            removed = []
        self._devices = parsed
        self._update_topics()
        for z in removed:
            ctx.remove_device(z.ieee)
        if complete:
            # Devices of an earlier run (loaded from storage) that left the network meanwhile.
            for device in list(ctx.devices.values()):
                if (
                    device.owner == OWNER
                    and device.id != self.bridge_id
                    and device.id not in parsed
                    and device.native.get("base_topic") == self.base
                ):
                    ctx.remove_device(device.id)
        for z in parsed.values():
            ctx.register_device(self._device(z), z.entities())
            self._sync_availability(z)
        self._refresh_groups()

    def _device(self, z: _ZDevice) -> Device:
        return Device(
            id=z.ieee,
            name=z.friendly_name,
            owner=OWNER,
            manufacturer=z.vendor,
            model=z.model,
            firmware=z.firmware,
            via=self.bridge_id,
            area=self.context.suggested_area(z.ieee, self._suggested_area(z.ieee)),
            identities={"ieee": z.ieee},
            native={
                "base_topic": self.base,
                "topic": f"{self.base}/{z.friendly_name}",
                "friendly_name": z.friendly_name,
                "type": z.type,
                "power_source": z.power_source,
                "description": z.description,
                "zigbee_links": list(z.links),
            },
        )

    def _update_topics(self) -> None:
        self._repeats.clear()  # definitions (and so how a message reads) may have changed
        self._by_state = {f"{self.base}/{z.friendly_name}": z for z in self._devices.values()}
        self._by_availability = {
            f"{self.base}/{z.friendly_name}/availability": z for z in self._devices.values()
        }

    def _replay_early(self) -> None:
        early, self._early, self._early_bytes = self._early, {}, 0
        for topic, payload in early.items():
            self._on_device_message(topic, payload)

    def _sync_availability(self, z: _ZDevice, *, force: bool = False) -> None:
        available = self._bridge_online and z.own_available is not False
        if force or available != z.reported:
            z.reported = available
            self.context.set_available(z.ieee, available)

    def _on_message(self, topic: str, payload: bytes, received: float) -> None:
        """Everything under the base topic: the bridge's topics, then devices by name."""
        handler = self._bridge_handlers.get(topic)
        if handler is not None:
            handler(topic, payload)
        elif topic.startswith(self._response_prefix):
            self._on_response(topic, payload)
        elif not self._on_device_message(topic, payload) and not self.devices_seen:
            self._keep_early(topic, payload)
        # Anything else is not a device's: group states, /set and /get (ours too), logging.

    def _keep_early(self, topic: str, payload: bytes) -> None:
        if topic.startswith(f"{self.base}/bridge/") or topic.endswith(("/set", "/get")):
            return
        size = len(payload)
        if (
            size > MAX_STATE
            or len(self._early) >= MAX_EARLY
            or self._early_bytes + size > MAX_EARLY_BYTES
        ):
            return  # bounded: whatever does not fit comes again with the device's next report
        self._early_bytes += size - len(self._early.get(topic, b""))
        self._early[topic] = payload

    def _on_device_message(self, topic: str, payload: bytes) -> bool:
        z = self._by_state.get(topic)
        if z is not None:
            self._on_state(z, topic, payload)
            return True
        z = self._by_availability.get(topic)
        if z is not None:
            self._on_availability(z, topic, payload)
            return True
        return False

    def _on_availability(self, z: _ZDevice, topic: str, payload: bytes) -> None:
        if not payload:
            return  # the retained availability being cleared
        word = _online_word(payload) if len(payload) <= MAX_AVAILABILITY else None
        if word is None:
            self.context.reject(
                topic,
                f'availability must be {{"state": "online"|"offline"}} or '
                f"online/offline, got {payload[:40]!r}",
                kind="wrong_type",
            )
            return
        z.own_available = word == "online"
        self._sync_availability(z, force=z.own_available)

    def _on_state(self, z: _ZDevice, topic: str, payload: bytes) -> None:
        repeats = self._repeats
        if repeats.replay(topic, payload):
            return
        mark = repeats.mark()
        ctx = self.context
        data = self._load(topic, payload, MAX_STATE)
        if data is None:
            return
        if not isinstance(data, dict):
            ctx.reject(topic, "a device state must be a JSON object", kind="wrong_type")
            return
        entity_ids = z.entity_ids
        state = ctx.state
        has_state = {key: state(entity_id) is not None for key, entity_id in entity_ids.items()}
        try:
            # The whole message is validated before any of it is applied.
            reports = read_message(z.maps.items(), data, has_state)
        except InvalidValue as exc:
            ctx.reject(topic, f"{z.friendly_name}: {exc}", kind="wrong_type")
            return
        try:
            # One message, one timestamp and one cause for its readings.
            reported = [(entity_ids[key], value, attributes) for key, value, attributes in reports]
            ctx.report_states(reported)
        except (InvalidValue, KeyError) as exc:  # pragma: no cover - read() is stricter
            ctx.reject(topic, f"{z.friendly_name}: {exc}", kind="wrong_type")
            return
        repeats.remember(topic, payload, [entity_id for entity_id, _, _ in reported], mark)

    # ----- groups ------------------------------------------------------------------------------

    def _on_bridge_groups(self, topic: str, payload: bytes) -> None:
        data = self._load(topic, payload, MAX_LIST)
        if data is None:
            return
        if not isinstance(data, list):
            self.context.reject(topic, "bridge/groups must be a JSON list", kind="wrong_type")
            return
        groups: list[tuple[int, str, list[tuple[str, int | str]]]] = []
        seen: set[int] = set()
        for index, entry in enumerate(data):
            try:
                groups.append(self._parse_group(entry, seen))
            except ValueError as exc:
                self.context.reject(topic, f"group #{index}: {exc}", kind="bad_config")
        self._raw_groups = groups
        self._refresh_groups()

    @staticmethod
    def _parse_group(entry: Any, seen: set[int]) -> tuple[int, str, list[tuple[str, int | str]]]:
        if not isinstance(entry, dict):
            raise ValueError("expected an object")
        group_id = entry.get("id")
        if isinstance(group_id, bool) or not isinstance(group_id, int) or not 0 < group_id < 65536:
            raise ValueError(f"invalid group id {str(group_id)[:20]!r}")
        if group_id in seen:
            raise ValueError(f"group id {group_id} is listed twice")
        seen.add(group_id)
        name = check_friendly_name(entry.get("friendly_name"))
        members = entry.get("members")
        if not isinstance(members, list) or len(members) > 1024:
            raise ValueError("'members' must be a list")
        out: list[tuple[str, int | str]] = []
        for member in members:
            if not isinstance(member, dict):
                raise ValueError("a member must be an object")
            ieee = member.get("ieee_address")
            endpoint = member.get("endpoint", 1)
            if not isinstance(ieee, str) or not IEEE_PATTERN.match(ieee.lower()):
                raise ValueError(f"invalid member ieee_address {str(ieee)[:40]!r}")
            if isinstance(endpoint, bool) or not isinstance(endpoint, int | str):
                raise ValueError(f"invalid member endpoint {str(endpoint)[:20]!r}")
            out.append((ieee.lower(), endpoint))
        return group_id, name, out

    def _member_entity(self, ieee: str, endpoint: int | str) -> tuple[str | None, bool]:
        """The entity a group member (device endpoint) stands for, and whether it is native."""
        z = self._devices.get(ieee)
        if z is None:
            return None, False
        candidates = [m for m in z.maps.values() if m.kind in _GROUP_KINDS and m.group_member]
        if len(candidates) != 1:
            wanted = {str(endpoint)}
            if isinstance(endpoint, int) and endpoint in z.endpoint_names:
                wanted.add(z.endpoint_names[endpoint])
            candidates = [m for m in candidates if str(m.options.get("endpoint")) in wanted]
        if len(candidates) != 1:
            return None, False
        chosen = candidates[0]
        return f"{z.ieee}.{chosen.key}", chosen.plain_properties

    def _refresh_groups(self) -> None:
        ctx = self.context
        groups: dict[int, _ZGroup] = {}
        for group_id, name, members in self._raw_groups:
            entity_ids: list[str] = []
            native = True
            for ieee, endpoint in members:
                entity_id, plain = self._member_entity(ieee, endpoint)
                native = native and entity_id is not None and plain
                if entity_id is not None and entity_id not in entity_ids:
                    entity_ids.append(entity_id)
            hub_id = sanitize_key(f"{self.base}_group_{group_id}")
            group = _ZGroup(group_id, name, hub_id, frozenset(entity_ids), native)
            groups[group_id] = group
            previous = self._groups.get(group_id)
            if entity_ids and (previous is None or previous != group):
                try:
                    self._group_undo[hub_id] = ctx.register_group(hub_id, name, entity_ids)
                except ValueError as exc:
                    ctx.logger.warning("cannot register Zigbee group %s: %s", name, exc)
            elif not entity_ids and hub_id in self._group_undo:
                self._group_undo.pop(hub_id)()
        for group_id, group in self._groups.items():
            if group_id not in groups and group.hub_id in self._group_undo:
                self._group_undo.pop(group.hub_id)()
        self._groups = groups
        self._native_groups = sorted(
            (g for g in groups.values() if g.native and len(g.entity_ids) >= 2),
            key=lambda g: -len(g.entity_ids),
        )

    def hub_group_id(self, friendly_name: str) -> str | None:
        """The hub group id of a Zigbee2MQTT group, by its friendly name."""
        for group in self._groups.values():
            if group.friendly_name == friendly_name:
                return group.hub_id
        return None

    # ----- commands ----------------------------------------------------------------------------

    def send_command(
        self,
        device: Device,
        entity: Entity,
        action: str,
        params: Mapping[str, Any],
        command_id: str,
    ) -> None:
        """Queue the ``/set`` payload for this command (published at the end of this loop turn).

        Commands queued in the same loop turn with the same payload whose entities include
        every member of a Zigbee group go out as one message to the group's ``/set``: the
        same effect, one radio broadcast instead of one unicast per member.
        """
        z = self._devices.get(device.id)
        if z is None:
            raise CommandError(f"{device.id} is not in Zigbee2MQTT's device list (yet)")
        entity_map = z.maps.get(entity.key)
        if entity_map is None:
            raise CommandError(f"{device.id} no longer exposes {entity.key}")
        current = self.context.state(entity.id)
        body = entity_map.command(action, params, current.value if current else None)
        self._outbox.append(
            _Send(
                f"{self.base}/{z.friendly_name}/set",
                entity.id,
                body,
                entity_map.plain_properties and set(body) <= _GROUPABLE,
            )
        )
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        queued, self._outbox = self._outbox, []
        # The last command to an entity wins; an earlier one in the same turn is superseded.
        latest = {send.entity_id: send for send in queued}
        buckets: dict[bytes, dict[str, _Send]] = {}
        sends: list[tuple[str, bytes]] = []
        for send in latest.values():
            body = orjson.dumps(send.body)
            if send.groupable and self._native_groups:
                key = orjson.dumps(send.body, option=orjson.OPT_SORT_KEYS)
                buckets.setdefault(key, {})[send.entity_id] = send
            else:
                sends.append((send.topic, body))
        for members in buckets.values():
            for group in self._native_groups:
                if len(members) >= 2 and group.entity_ids <= members.keys():
                    body = orjson.dumps(members[next(iter(group.entity_ids))].body)
                    sends.append((f"{self.base}/{group.friendly_name}/set", body))
                    for entity_id in group.entity_ids:
                        del members[entity_id]
            sends.extend((s.topic, orjson.dumps(s.body)) for s in members.values())
        for topic, body in sends:
            try:
                self.context.publish_mqtt(topic, body, qos=1)
            except Exception:
                self.context.logger.exception("publishing %s failed", topic)

    # ----- bridge requests --------------------------------------------------------------------

    def _publish_request(self, topic: str, payload: bytes) -> None:
        self.context.publish_mqtt(topic, payload, qos=1)

    async def request(
        self, name: str, payload: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Send ``bridge/request/<name>`` with a transaction id; return the response's data.

        Raises BridgeRequestError if Zigbee2MQTT refuses, does not answer within
        ``request_timeout`` (or ``timeout``), or the adapter stops meanwhile.
        """
        wait = self.settings.request_timeout if timeout is None else timeout
        return await self.requests.request(name, payload, timeout=wait)

    def _on_response(self, topic: str, payload: bytes) -> None:
        name = topic[len(self._response_prefix) :]
        data = self._load(topic, payload, MAX_LIST)
        if data is None:
            return
        if not isinstance(data, dict):
            self.context.reject(topic, "a bridge response must be a JSON object", kind="wrong_type")
            return
        if self.requests.on_response(name, data):
            return
        # Someone else's scan (the Zigbee2MQTT frontend's) is as good as ours, and free.
        value = data.get("data")
        if (
            name == "networkmap"
            and data.get("status") == "ok"
            and isinstance(value, dict)
            and value.get("type") == "raw"
        ):
            try:
                self._apply_networkmap(value.get("value"))
            except ValueError as exc:
                self.context.reject(topic, f"network map: {exc}", kind="bad_networkmap")

    # ----- network map ------------------------------------------------------------------------

    async def request_networkmap(self, *, force: bool = False) -> dict[str, int]:
        """Ask Zigbee2MQTT for a raw network map; apply and publish it; return its size.

        Only ever on demand or on the configured schedule: a scan stalls the Zigbee network
        for 10 s to 2 min. A request while one runs joins it; one within a minute of the last
        returns that one (unless ``force``).
        """
        if self._networkmap is None or self._networkmap.done():
            last = self._last_networkmap
            if not force and last is not None and time.monotonic() - last[0] < NETWORKMAP_COOLDOWN:
                return last[1]
            self._networkmap = asyncio.get_running_loop().create_task(self._scan())
            # Retrieved here so a scan nobody awaits any more never logs "never retrieved".
            self._networkmap.add_done_callback(lambda task: task.cancelled() or task.exception())
        return await asyncio.shield(self._networkmap)

    async def _scan(self) -> dict[str, int]:
        data = await self.request(
            "networkmap",
            {"type": "raw", "routes": False},
            timeout=self.settings.networkmap_timeout,
        )
        if not isinstance(data, dict) or data.get("type") != "raw":
            raise BridgeRequestError("the network map response is not a raw map")
        try:
            summary = self._apply_networkmap(data.get("value"))
        except ValueError as exc:
            topic = f"{self.base}/bridge/response/networkmap"
            self.context.reject(topic, f"network map: {exc}", kind="bad_networkmap")
            raise BridgeRequestError(f"the network map is malformed: {exc}") from None
        self._last_networkmap = (time.monotonic(), summary)
        return summary

    def _apply_networkmap(self, value: Any) -> dict[str, int]:
        """Store each device's links (``native["zigbee_links"]``) and publish the map."""
        network = parse_raw(value)
        coordinator = next(
            (n.ieee for n in network.nodes if n.type == "Coordinator"), self.coordinator_ieee
        )

        def node_id(ieee: str) -> str:
            return self.bridge_id if ieee == coordinator else ieee

        known = {self.bridge_id, *self._devices}
        per_device: dict[str, dict[str, int]] = {}
        for link in network.links:
            source, target = node_id(link.source), node_id(link.target)
            if source == target or target not in known:
                continue
            to = per_device.setdefault(source, {})
            to[target] = max(to.get(target, 0), link.lqi)

        def links_of(device_id: str) -> list[dict[str, Any]]:
            return [
                {"to": to, "lqi": lqi} for to, lqi in sorted(per_device.get(device_id, {}).items())
            ]

        for z in self._devices.values():
            links = links_of(z.ieee)
            if links != z.links:
                z.links = links
                self.context.register_device(self._device(z), z.entities())
        bridge_links = links_of(self.bridge_id)
        if bridge_links != self._bridge_links:
            self._bridge_links = bridge_links
            self._register_bridge()
        document = {
            "bridge": self.bridge_id,
            "base_topic": self.base,
            "updated": time.time(),
            "nodes": [
                {
                    "id": node_id(n.ieee),
                    "ieee": n.ieee,
                    "name": n.name,
                    "type": n.type,
                    "known": node_id(n.ieee) in known,
                }
                for n in network.nodes
            ],
            "links": [
                {
                    "from": node_id(link.source),
                    "to": node_id(link.target),
                    "lqi": link.lqi,
                    "depth": link.depth,
                    "relationship": link.relationship,
                }
                for link in network.links
            ],
        }
        self.context.publish_mqtt(self.topology_topic, orjson.dumps(document), qos=1, retain=True)
        return {"nodes": len(network.nodes), "links": len(network.links)}

    def _on_networkmap_trigger(self, topic: str, payload: bytes, received: float) -> None:
        task = asyncio.get_running_loop().create_task(self._answer_trigger())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_trigger(self) -> None:
        response = f"{self.context.base_topic}/{self.context.name}/networkmap/response"
        try:
            summary = await self.request_networkmap()
            body: dict[str, Any] = {"status": "ok", **summary, "topic": self.topology_topic}
        except BridgeRequestError as exc:
            body = {"status": "error", "error": str(exc)}
        except Exception as exc:  # a background task: log it here or nobody will
            self.context.logger.exception("network map request failed")
            body = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        self.context.publish_mqtt(response, orjson.dumps(body), qos=1)
