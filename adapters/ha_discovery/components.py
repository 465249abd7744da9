"""Discovery configs of each supported component: validation, state interpretation, commands.

One discovery config (already expanded by :mod:`.abbreviations`) becomes one
:class:`Component`: the hub entity it maps to, the topics it listens on with the template and
role of each, its availability rules, and how each hub action becomes the firmware's own
message. Everything is checked when the config arrives, so that a config this module accepts
can always be served; a bad config raises :class:`ConfigError` saying why.

Mapping to the hub's entity kinds (Home Assistant defaults apply to every missing option):

======================  ===================================================================
``sensor``              ``sensor`` (``energy_meter`` in kWh for Wh/kWh/MWh; kW becomes W)
``binary_sensor``       ``binary_sensor`` (``payload_on``/``payload_off``, ``off_delay``)
``switch``              ``switch`` (``payload_on/off``, ``state_on/off``)
``light``               ``light``, default schema (separate brightness and colour-temperature
                        topics, ``on_command_type``) and JSON schema
``cover``               ``cover`` (state and/or position topics, ``set_position_topic``)
``climate``             ``climate`` (mode, target and current temperature, power topics)
``lock``                ``lock``
``button``              ``button`` (``press``)
``number``              ``number`` (``min``/``max``/``step`` in the entity's options;
                        ``set_value`` renders ``command_template`` to ``command_topic``)
``select``              ``select`` (``options`` in the entity's options; ``set_value`` too)
======================  ===================================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from adapters.ha_discovery.template import UNDEFINED, Template, TemplateError, to_text
from hub.api import NUMERIC_ATTRIBUTES, CommandError, EntityKind

SUPPORTED: Final = frozenset(
    {
        "sensor",
        "binary_sensor",
        "switch",
        "light",
        "cover",
        "climate",
        "lock",
        "button",
        "number",
        "select",
    }
)
# Platforms Home Assistant knows and this adapter does not map: counted apart from typos.
KNOWN_UNSUPPORTED: Final = frozenset(
    {
        "alarm_control_panel",
        "camera",
        "date",
        "datetime",
        "device_automation",
        "device_tracker",
        "event",
        "fan",
        "humidifier",
        "image",
        "lawn_mower",
        "notify",
        "scene",
        "siren",
        "tag",
        "text",
        "time",
        "update",
        "vacuum",
        "valve",
        "water_heater",
    }
)

MAX_TOPIC_CHARS: Final = 1024
MAX_AVAILABILITY: Final = 16
MAX_ATTRIBUTES: Final = 64
HA_CLIMATE_MODES: Final = ("auto", "off", "cool", "heat", "dry", "fan_only")
# Energy and power units and the factor to the hub's kWh and W.
ENERGY_UNITS: Final = {"Wh": 0.001, "kWh": 1.0, "MWh": 1000.0}
POWER_UNITS: Final = {"W": 1.0, "kW": 1000.0}
_ID_CHARS = re.compile(r"[^a-z0-9_-]+")


class ConfigError(ValueError):
    """A discovery config cannot be used; ``kind`` is the rejection counter it goes to."""

    def __init__(self, reason: str, kind: str = "bad_config") -> None:
        super().__init__(reason)
        self.kind = kind


class StateError(ValueError):
    """A state message does not fit the component it is meant for."""


def sanitize_id(raw: str, fallback: str = "device") -> str:
    """Turn a firmware id (MAC, IEEE address, unique_id) into a hub id: [a-z0-9_-], 1-64."""
    text = _ID_CHARS.sub("_", raw.strip().lower()).strip("_-")[:64].strip("_-")
    return text or fallback


@dataclass(frozen=True, slots=True)
class Binding:
    """A topic a component listens on, what the message means (``role``) and its template."""

    topic: str
    role: str
    template: Template | None


@dataclass(frozen=True, slots=True)
class Availability:
    """One availability topic with the payloads that mean online and offline."""

    topic: str
    template: Template | None
    payload_available: str
    payload_not_available: str


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """The ``device`` block of a discovery config."""

    identifiers: tuple[str, ...] = ()
    connections: tuple[tuple[str, str], ...] = ()
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    hw_version: str | None = None
    serial_number: str | None = None
    via_device: str | None = None
    suggested_area: str | None = None


@dataclass(slots=True)
class Update:
    """What one message says about one entity: a new value (None: unchanged) and attributes."""

    value: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Publish:
    """One message a command sends to the firmware."""

    topic: str
    payload: str


@dataclass(slots=True)
class Component:
    """One discovered component, validated and ready to interpret states and send commands."""

    discovery_id: str  # "<component>/[<node_id>/]<object_id>" or "device/.../<object_id>#<id>"
    platform: str
    object_id: str  # what the entity key is made from
    device_id: str
    device: DeviceInfo
    kind: EntityKind
    name: str | None
    unique_id: str | None
    unit: str | None
    device_class: str | None
    options: dict[str, Any]
    bindings: tuple[Binding, ...]
    availability: tuple[Availability, ...]
    availability_mode: str
    qos: int
    retain: bool
    encoding: str
    optimistic: bool
    config: dict[str, Any]  # the expanded config, for the per-platform settings below
    templates: dict[str, Template]  # command templates by option name
    scale: float = 1.0  # unit conversion factor for energy and power sensors
    numeric: bool = False  # the state must be a number
    off_delay: float | None = None  # binary_sensor: turn off after this many seconds

    @property
    def has_state_topic(self) -> bool:
        """True when some topic reports the component's main value."""
        return any(b.role in _VALUE_ROLES[self.platform] for b in self.bindings)

    def initial_value(self) -> Any:
        """The value an attributes-only update gets when no state exists yet (None: wait)."""
        if self.platform == "climate" and not self.has_state_topic:
            return "off"  # Home Assistant's optimistic climate starts in "off" too
        return None


_VALUE_ROLES: Final[Mapping[str, frozenset[str]]] = {
    "sensor": frozenset({"state"}),
    "binary_sensor": frozenset({"state"}),
    "switch": frozenset({"state"}),
    "light": frozenset({"state", "json_state"}),
    "cover": frozenset({"state", "position"}),
    "climate": frozenset({"mode"}),
    "lock": frozenset({"state"}),
    "button": frozenset(),
    "number": frozenset({"state"}),
    "select": frozenset({"state"}),
}

# ----- reading options --------------------------------------------------------------------------


class _Options:
    """Typed access to one expanded config, with errors that name the option."""

    def __init__(self, platform: str, data: Mapping[str, Any]) -> None:
        self.platform = platform
        self.data = data

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.platform}: {message}")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(f"{key!r} must be a string, got {_short(value)}")
        if len(value) > 255:
            raise self.error(f"{key!r} is longer than 255 characters")
        return value

    def payload(self, key: str, default: str | None) -> str | None:
        # Payloads may be numbers or booleans (Zigbee2MQTT sends "payload_on": true); Home
        # Assistant compares and publishes their string form, so do we.
        if key not in self.data:
            return default
        value = self.data[key]
        if value is None:
            return None
        if isinstance(value, str | int | float | bool):
            text = to_text(value)
            if len(text) > 1024:
                raise self.error(f"{key!r} is longer than 1024 characters")
            return text
        raise self.error(f"{key!r} must be a string, number or boolean, got {_short(value)}")

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, str):  # Zigbee2MQTT sends min_temp as "5"
            try:
                value = float(value)
            except ValueError:
                raise self.error(f"{key!r} must be a number, got {_short(value)}") from None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(f"{key!r} must be a number, got {_short(value)}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(f"{key!r} must be true or false, got {_short(value)}")
        return value

    def topic(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise ConfigError(f"{self.platform}: missing {key!r}", kind="missing_topic")
            return None
        return check_topic(value, f"{self.platform}: {key!r}")

    def template(self, key: str) -> Template | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        try:
            return Template(value)
        except TemplateError as exc:
            raise self.error(f"{key!r}: {exc}") from exc

    def strings(self, key: str) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or len(value) > 256
            or not all(isinstance(item, str) and len(item) <= 255 for item in value)
        ):
            raise self.error(f"{key!r} must be a list of strings")
        return list(value)


#: Options naming topics the adapter publishes commands to.
PUBLISH_TOPICS: Final = (
    "command_topic",
    "brightness_command_topic",
    "color_temp_command_topic",
    "set_position_topic",
    "mode_command_topic",
    "temperature_command_topic",
    "power_command_topic",
)


def publish_topics(component: Component) -> list[str]:
    """The topics a component's commands are published to."""
    topics = (component.options.get(key) for key in PUBLISH_TOPICS)
    return [topic for topic in topics if isinstance(topic, str)]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_topic(value: Any, what: str) -> str:
    """Return ``value`` if it is a topic a device may name; raise ConfigError saying why not."""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {_short(value)}", kind="bad_topic")
    if not value or len(value) > MAX_TOPIC_CHARS:
        raise ConfigError(f"{what} must have 1 to {MAX_TOPIC_CHARS} characters", kind="bad_topic")
    if "+" in value or "#" in value or "\x00" in value:
        raise ConfigError(f"{what} {value[:80]!r} contains a wildcard or NUL", kind="bad_topic")
    if ".." in value.split("/"):
        raise ConfigError(f"{what} {value[:80]!r} contains a '..' level", kind="bad_topic")
    return value


# ----- device block and availability -------------------------------------------------------------


def parse_device(data: Any) -> DeviceInfo | None:
    """Read the (expanded) ``device`` mapping; None when the config has none."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError("'device' must be a mapping")
    identifiers = data.get("identifiers")
    if isinstance(identifiers, str):
        identifiers = [identifiers]  # ESPHome and Zigbee2MQTT 1.x send a single string
    if identifiers is None:
        identifiers = []
    if not isinstance(identifiers, list) or not all(
        isinstance(i, str | int) and not isinstance(i, bool) and str(i) for i in identifiers
    ):
        raise ConfigError("device 'identifiers' must be a string or a list of strings")
    connections: list[tuple[str, str]] = []
    for item in data.get("connections") or []:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not all(isinstance(part, str) for part in item)
        ):
            raise ConfigError("device 'connections' must be a list of [type, value] pairs")
        connections.append((item[0].lower()[:32], item[1][:128]))
    fields: dict[str, str | None] = {}
    for key in (
        "name",
        "manufacturer",
        "model",
        "sw_version",
        "hw_version",
        "serial_number",
        "via_device",
        "suggested_area",
    ):
        value = data.get(key)
        if value is not None and not isinstance(value, str | int | float):
            raise ConfigError(f"device {key!r} must be a string")
        fields[key] = None if value is None or value == "" else str(value)[:255]
    return DeviceInfo(
        identifiers=tuple(str(i)[:255] for i in identifiers),
        connections=tuple(connections),
        **fields,
    )


def parse_availability(data: Mapping[str, Any]) -> tuple[tuple[Availability, ...], str]:
    """Read ``availability`` (a list) or ``availability_topic``; return the entries and mode."""
    options = _Options("availability", data)
    mode = options.text("availability_mode", "latest")
    if mode not in ("all", "any", "latest"):
        raise ConfigError(f"availability_mode must be all, any or latest, got {mode!r}")
    entries: list[Availability] = []
    listed = data.get("availability")
    single = data.get("availability_topic")
    if listed is not None and single is not None:
        raise ConfigError("use either 'availability' or 'availability_topic', not both")
    if single is not None:
        entries.append(
            Availability(
                topic=check_topic(single, "'availability_topic'"),
                template=options.template("availability_template"),
                payload_available=options.payload("payload_available", "online") or "online",
                payload_not_available=options.payload("payload_not_available", "offline")
                or "offline",
            )
        )
    elif listed is not None:
        if not isinstance(listed, list) or len(listed) > MAX_AVAILABILITY:
            raise ConfigError(f"'availability' must be a list of at most {MAX_AVAILABILITY}")
        for entry in listed:
            if not isinstance(entry, dict):
                raise ConfigError("each 'availability' entry must be a mapping with a 'topic'")
            item = _Options("availability", entry)
            if entry.get("topic") is None:
                raise ConfigError("an 'availability' entry has no 'topic'", kind="missing_topic")
            entries.append(
                Availability(
                    topic=check_topic(entry["topic"], "availability 'topic'"),
                    template=item.template("value_template"),
                    payload_available=item.payload("payload_available", "online") or "online",
                    payload_not_available=item.payload("payload_not_available", "offline")
                    or "offline",
                )
            )
    return tuple(entries), mode


# ----- building a component ---------------------------------------------------------------------


def build_component(
    platform: str,
    data: dict[str, Any],
    *,
    discovery_id: str,
    object_id: str,
    device_id: str,
    device: DeviceInfo,
) -> Component:
    """Validate one expanded config of ``platform`` and return its component."""
    if platform not in SUPPORTED:
        kind = "unsupported_component" if platform in KNOWN_UNSUPPORTED else "unknown_component"
        raise ConfigError(f"component {platform!r} is not supported", kind=kind)
    options = _Options(platform, data)
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise options.error(f"'name' must be a string or null, got {_short(name)}")
    qos = data.get("qos", 0)
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        raise options.error(f"'qos' must be 0, 1 or 2, got {_short(qos)}")
    encoding = options.text("encoding", "utf-8") or "utf-8"
    try:
        # A text encoding both ways (codecs.lookup alone also accepts "rot13" and "zlib").
        b"".decode(encoding)
        "".encode(encoding)
    except LookupError:
        raise options.error(f"unknown text encoding {encoding!r}") from None
    availability, mode = parse_availability(data)
    unique_id = data.get("unique_id")
    if unique_id is not None and not isinstance(unique_id, str | int):
        raise options.error("'unique_id' must be a string")
    component = Component(
        discovery_id=discovery_id,
        platform=platform,
        object_id=object_id,
        device_id=device_id,
        device=device,
        kind=EntityKind.SENSOR,
        name=name[:255] if isinstance(name, str) else None,
        unique_id=None if unique_id is None else str(unique_id)[:255],
        unit=None,
        device_class=options.text("device_class"),
        options={"platform": platform},
        bindings=(),
        availability=availability,
        availability_mode=mode,
        qos=int(qos),
        retain=options.flag("retain", False),
        encoding=encoding,
        optimistic=False,
        config=data,
        templates={},
    )
    for key in ("state_class", "entity_category", "icon"):
        value = options.text(key)
        if value is not None:
            component.options[key] = value
    if component.unique_id is not None:
        component.options["unique_id"] = component.unique_id
    bindings: list[Binding] = []
    _BUILDERS[platform](component, options, bindings)
    attributes_topic = options.topic("json_attributes_topic")
    if attributes_topic is not None:
        bindings.append(
            Binding(attributes_topic, "attributes", options.template("json_attributes_template"))
        )
    component.bindings = tuple(bindings)
    return component


def _command_templates(component: Component, options: _Options, *keys: str) -> None:
    for key in keys:
        template = options.template(key)
        if template is not None:
            component.templates[key] = template


def _build_sensor(component: Component, options: _Options, bindings: list[Binding]) -> None:
    state_topic = options.topic("state_topic", required=True)
    assert state_topic is not None
    bindings.append(Binding(state_topic, "state", options.template("value_template")))
    unit = options.text("unit_of_measurement")
    if unit is not None and unit.strip() in ENERGY_UNITS:
        component.kind = EntityKind.ENERGY_METER
        component.scale = ENERGY_UNITS[unit.strip()]
        component.options["source_unit"] = unit
        if component.device_class in (None, "power"):
            # Tasmota's legacy discovery calls its kWh counters "power".
            component.device_class = "energy"
        unit = "kWh"
    elif unit is not None and unit.strip() in POWER_UNITS:
        component.scale = POWER_UNITS[unit.strip()]
        if component.scale != 1.0:
            component.options["source_unit"] = unit
        unit = "W"
    elif unit is not None and not unit.strip():
        unit = None  # Tasmota's status sensor sends " "
    component.unit = unit
    component.numeric = unit is not None or "state_class" in component.options


def _build_binary_sensor(component: Component, options: _Options, bindings: list[Binding]) -> None:
    state_topic = options.topic("state_topic", required=True)
    assert state_topic is not None
    bindings.append(Binding(state_topic, "state", options.template("value_template")))
    component.kind = EntityKind.BINARY_SENSOR
    component.options["payload_on"] = options.payload("payload_on", "ON")
    component.options["payload_off"] = options.payload("payload_off", "OFF")
    delay = options.data.get("off_delay")
    if delay is not None:
        seconds = options.number("off_delay", 0)
        if not 0 < seconds <= 86400:
            raise options.error("'off_delay' must be between 0 and 86400 seconds")
        component.off_delay = seconds


def _on_off_payloads(component: Component, options: _Options) -> None:
    payload_on = options.payload("payload_on", "ON")
    payload_off = options.payload("payload_off", "OFF")
    component.options["payload_on"] = payload_on
    component.options["payload_off"] = payload_off
    component.options["state_on"] = options.payload("state_on", payload_on)
    component.options["state_off"] = options.payload("state_off", payload_off)


def _build_switch(component: Component, options: _Options, bindings: list[Binding]) -> None:
    component.kind = EntityKind.SWITCH
    component.options["command_topic"] = options.topic("command_topic", required=True)
    _on_off_payloads(component, options)
    _command_templates(component, options, "command_template")
    state_topic = options.topic("state_topic")
    if state_topic is not None:
        bindings.append(Binding(state_topic, "state", options.template("value_template")))
    component.optimistic = options.flag("optimistic", state_topic is None)


def _build_light(component: Component, options: _Options, bindings: list[Binding]) -> None:
    component.kind = EntityKind.LIGHT
    schema = options.text("schema", "basic")
    scale = options.number("brightness_scale", 255)
    if not 1 <= scale <= 1_000_000:
        raise options.error("'brightness_scale' must be between 1 and 1000000")
    component.options["brightness_scale"] = scale
    component.options["command_topic"] = options.topic("command_topic", required=True)
    state_topic = options.topic("state_topic")
    if schema == "json":
        component.options["schema"] = "json"
        modes = options.strings("supported_color_modes") or []
        brightness = options.flag("brightness", False) or any(m != "onoff" for m in modes)
        color_temp = options.flag("color_temp", False) or "color_temp" in modes
        component.options["brightness"] = brightness
        component.options["color_temp"] = color_temp
        component.options["color_temp_kelvin"] = options.flag("color_temp_kelvin", False)
        component.options["transition"] = True
        if modes:
            component.options["supported_color_modes"] = modes
        if state_topic is not None:
            bindings.append(Binding(state_topic, "json_state", None))
    elif schema in ("basic", "default"):
        component.options["schema"] = "basic"
        _on_off_payloads(component, options)
        on_command_type = options.text("on_command_type", "last")
        if on_command_type not in ("last", "first", "brightness"):
            raise options.error("'on_command_type' must be last, first or brightness")
        component.options["on_command_type"] = on_command_type
        for name in ("brightness", "color_temp"):
            command_topic = options.topic(f"{name}_command_topic")
            component.options[f"{name}_command_topic"] = command_topic
            component.options[name] = command_topic is not None
            state = options.topic(f"{name}_state_topic")
            if state is not None:
                bindings.append(Binding(state, name, options.template(f"{name}_value_template")))
        if state_topic is not None:
            template = options.template("state_value_template") or options.template(
                "value_template"
            )
            bindings.append(Binding(state_topic, "state", template))
        _command_templates(
            component, options, "brightness_command_template", "color_temp_command_template"
        )
        component.options["transition"] = False
    else:
        raise ConfigError(
            f"light: schema {schema!r} is not supported", kind="unsupported_component"
        )
    for key in ("min_mireds", "max_mireds"):
        if options.data.get(key) is not None:
            component.options[key] = options.number(key, 0)
    component.optimistic = options.flag("optimistic", state_topic is None)


def _build_cover(component: Component, options: _Options, bindings: list[Binding]) -> None:
    component.kind = EntityKind.COVER
    command_topic = options.topic("command_topic")
    state_topic = options.topic("state_topic")
    position_topic = options.topic("position_topic")
    set_position_topic = options.topic("set_position_topic")
    if not (command_topic or state_topic or position_topic or set_position_topic):
        raise ConfigError(
            "cover: needs a command_topic, state_topic or position_topic", kind="missing_topic"
        )
    component.options["command_topic"] = command_topic
    component.options["set_position_topic"] = set_position_topic
    for key, default in (
        ("payload_open", "OPEN"),
        ("payload_close", "CLOSE"),
        ("payload_stop", "STOP"),
    ):
        component.options[key] = options.payload(key, default)
    for key, default in (
        ("state_open", "open"),
        ("state_opening", "opening"),
        ("state_closed", "closed"),
        ("state_closing", "closing"),
        ("state_stopped", "stopped"),
    ):
        component.options[key] = options.payload(key, default)
    position_open = options.number("position_open", 100)
    position_closed = options.number("position_closed", 0)
    if position_open == position_closed:
        raise options.error("'position_open' and 'position_closed' must differ")
    component.options["position_open"] = position_open
    component.options["position_closed"] = position_closed
    component.options["position"] = set_position_topic is not None
    _command_templates(component, options, "set_position_template")
    if state_topic is not None:
        bindings.append(Binding(state_topic, "state", options.template("value_template")))
    if position_topic is not None:
        bindings.append(Binding(position_topic, "position", options.template("position_template")))
    component.optimistic = options.flag(
        "optimistic", state_topic is None and position_topic is None
    )


def _build_climate(component: Component, options: _Options, bindings: list[Binding]) -> None:
    component.kind = EntityKind.CLIMATE
    modes = options.strings("modes")
    component.options["modes"] = list(HA_CLIMATE_MODES) if modes is None else modes
    for key in (
        "mode_command_topic",
        "temperature_command_topic",
        "power_command_topic",
    ):
        component.options[key] = options.topic(key)
    component.options["payload_on"] = options.payload("payload_on", "ON")
    component.options["payload_off"] = options.payload("payload_off", "OFF")
    for key, default in (("min_temp", 7.0), ("max_temp", 35.0), ("temp_step", 1.0)):
        component.options[key] = options.number(key, default)
    unit = options.text("temperature_unit")
    if unit is not None:
        component.options["temperature_unit"] = unit
    _command_templates(
        component,
        options,
        "mode_command_template",
        "temperature_command_template",
        "power_command_template",
    )
    for topic_key, template_key, role in (
        ("mode_state_topic", "mode_state_template", "mode"),
        ("temperature_state_topic", "temperature_state_template", "target_temperature"),
        ("current_temperature_topic", "current_temperature_template", "current_temperature"),
        ("action_topic", "action_template", "action"),
    ):
        topic = options.topic(topic_key)
        if topic is not None:
            bindings.append(Binding(topic, role, options.template(template_key)))
    if (
        not any(
            component.options[k]
            for k in ("mode_command_topic", "temperature_command_topic", "power_command_topic")
        )
        and not bindings
    ):
        raise ConfigError("climate: has no command or state topic", kind="missing_topic")
    component.optimistic = options.flag("optimistic", False)


def _build_lock(component: Component, options: _Options, bindings: list[Binding]) -> None:
    component.kind = EntityKind.LOCK
    component.options["command_topic"] = options.topic("command_topic", required=True)
    for key, default in (("payload_lock", "LOCK"), ("payload_unlock", "UNLOCK")):
        component.options[key] = options.payload(key, default)
    for key, default in (
        ("state_locked", "LOCKED"),
        ("state_unlocked", "UNLOCKED"),
        ("state_locking", "LOCKING"),
        ("state_unlocking", "UNLOCKING"),
        ("state_jammed", "JAMMED"),
    ):
        component.options[key] = options.payload(key, default)
    _command_templates(component, options, "command_template")
    state_topic = options.topic("state_topic")
    if state_topic is not None:
        bindings.append(Binding(state_topic, "state", options.template("value_template")))
    component.optimistic = options.flag("optimistic", state_topic is None)


def _build_button(component: Component, options: _Options, bindings: list[Binding]) -> None:
    component.kind = EntityKind.BUTTON
    component.options["command_topic"] = options.topic("command_topic", required=True)
    component.options["payload_press"] = options.payload("payload_press", "PRESS")
    _command_templates(component, options, "command_template")


def _build_number(component: Component, options: _Options, bindings: list[Binding]) -> None:
    component.kind = EntityKind.NUMBER
    component.options["command_topic"] = options.topic("command_topic", required=True)
    low, high = options.number("min", 1), options.number("max", 100)
    if low > high:
        raise options.error("'min' must not be above 'max'")
    step = options.number("step", 1)
    if step <= 0:
        raise options.error("'step' must be above 0")
    component.options.update({"min": low, "max": high, "step": step})
    component.unit = options.text("unit_of_measurement") or None
    component.numeric = True
    _command_templates(component, options, "command_template")
    state_topic = options.topic("state_topic")
    if state_topic is not None:
        bindings.append(Binding(state_topic, "state", options.template("value_template")))
    component.optimistic = options.flag("optimistic", state_topic is None)


def _build_select(component: Component, options: _Options, bindings: list[Binding]) -> None:
    component.kind = EntityKind.SELECT
    component.options["command_topic"] = options.topic("command_topic", required=True)
    choices = options.strings("options")
    if not choices:
        raise options.error("'options' must be a non-empty list of strings")
    component.options["options"] = choices
    _command_templates(component, options, "command_template")
    state_topic = options.topic("state_topic")
    if state_topic is not None:
        bindings.append(Binding(state_topic, "state", options.template("value_template")))
    component.optimistic = options.flag("optimistic", state_topic is None)


_BUILDERS: Final = {
    "sensor": _build_sensor,
    "binary_sensor": _build_binary_sensor,
    "switch": _build_switch,
    "light": _build_light,
    "cover": _build_cover,
    "climate": _build_climate,
    "lock": _build_lock,
    "button": _build_button,
    "number": _build_number,
    "select": _build_select,
}

# ----- interpreting a state message ------------------------------------------------------------


def _text(rendered: Any) -> str:
    return to_text(rendered).strip()


def _as_number(rendered: Any, what: str) -> int | float:
    if isinstance(rendered, bool):
        raise StateError(f"{what}: expected a number, got {rendered!r}")
    if isinstance(rendered, int | float):
        number: int | float = rendered
    else:
        text = _text(rendered)
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise StateError(f"{what}: expected a number, got {text[:40]!r}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise StateError(f"{what}: expected a finite number, got {number!r}")
    return number


def _match(text: str, table: Mapping[str, str | None], what: str) -> str:
    for hub_value, payload in table.items():
        if payload is not None and text == payload:
            return hub_value
    expected = ", ".join(repr(p) for p in table.values() if p is not None)
    raise StateError(f"{what}: {text[:40]!r} is none of {expected}")


def _scaled(number: float, scale: float) -> int | float:
    if scale == 1.0:
        return number
    value = round(number * scale, 6)
    return int(value) if value.is_integer() and isinstance(number, int) else value


def _percent(component: Component, raw: int | float) -> int | float:
    opened = component.options["position_open"]
    closed = component.options["position_closed"]
    percent = (raw - closed) * 100 / (opened - closed)
    percent = min(100.0, max(0.0, percent))
    return int(percent) if float(percent).is_integer() else round(percent, 2)


def _brightness_in(component: Component, raw: int | float) -> int:
    scale: float = component.options["brightness_scale"]
    return max(0, min(255, round(raw * 255 / scale)))


def _brightness_out(component: Component, brightness: float) -> int:
    scale: float = component.options["brightness_scale"]
    return max(0, min(int(scale), round(brightness * scale / 255)))


def interpret(component: Component, role: str, rendered: Any) -> Update | None:
    """Turn one rendered message into an update of ``component``'s entity.

    Returns None when the message says nothing about it (an undefined template result or an
    empty string, as for a key another entity on the same topic reads); raises StateError when
    it does not fit.
    """
    if (
        rendered is UNDEFINED
        or rendered is None
        or (isinstance(rendered, str) and not rendered.strip())
    ):
        return None
    if role == "attributes":
        return Update(attributes=_attributes(rendered))
    platform = component.platform
    opts = component.options
    what = f"{component.platform} {component.object_id}"
    if platform in ("sensor", "number"):
        if component.numeric:
            number = _as_number(rendered, what)
            if platform == "number" and not opts["min"] <= number <= opts["max"]:
                raise StateError(f"{what}: {number} is outside {opts['min']:g}..{opts['max']:g}")
            return Update(_scaled(number, component.scale))
        if isinstance(rendered, int | float) and not isinstance(rendered, bool):
            return Update(rendered)
        if isinstance(rendered, dict | list):
            raise StateError(
                f"{what}: expected text or a number, got a JSON {type(rendered).__name__}"
            )
        return Update(_text(rendered))
    if platform == "select":
        text = _text(rendered)
        if text not in opts["options"]:
            raise StateError(f"{what}: {text[:40]!r} is not one of its options")
        return Update(text)
    if platform == "binary_sensor":
        return Update(
            _match(_text(rendered), {"on": opts["payload_on"], "off": opts["payload_off"]}, what)
        )
    if platform in ("switch", "light") and role == "state":
        return Update(
            _match(_text(rendered), {"on": opts["state_on"], "off": opts["state_off"]}, what)
        )
    if platform == "light":
        if role == "brightness":
            return Update(
                attributes={"brightness": _brightness_in(component, _as_number(rendered, what))}
            )
        if role == "color_temp":
            return Update(attributes={"color_temp": round(_as_number(rendered, what))})
        return _json_light_state(component, rendered, what)
    if platform == "lock":
        table = {
            "locked": opts["state_locked"],
            "unlocked": opts["state_unlocked"],
            "locking": opts["state_locking"],
            "unlocking": opts["state_unlocking"],
            "jammed": opts["state_jammed"],
        }
        return Update(_match(_text(rendered), table, what))
    if platform == "cover":
        if role == "position":
            percent = _percent(component, _as_number(rendered, what))
            has_state = any(b.role == "state" for b in component.bindings)
            value = None if has_state else ("closed" if percent == 0 else "open")
            return Update(value, {"position": percent})
        table = {
            "open": opts["state_open"],
            "opening": opts["state_opening"],
            "closed": opts["state_closed"],
            "closing": opts["state_closing"],
            "stopped": opts["state_stopped"],
        }
        return Update(_match(_text(rendered), table, what))
    if platform == "climate":
        if role == "mode":
            text = _text(rendered)
            if text not in opts["modes"]:
                raise StateError(f"{what}: mode {text[:40]!r} is not one of its modes")
            return Update(text)
        if role == "action":
            return Update(attributes={"hvac_action": _text(rendered)})
        return Update(attributes={role: _as_number(rendered, what)})
    raise StateError(f"{what}: no state is expected")  # pragma: no cover - bindings prevent it


def _json_object(rendered: Any, what: str) -> dict[str, Any]:
    if isinstance(rendered, dict):
        return rendered
    try:
        data = orjson.loads(_text(rendered))
    except orjson.JSONDecodeError as exc:
        raise StateError(f"{what}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StateError(f"{what}: expected a JSON object")
    return data


def _json_light_state(component: Component, rendered: Any, what: str) -> Update:
    data = _json_object(rendered, what)
    update = Update()
    state = data.get("state")
    if state is not None:
        update.value = _match(_text(state), {"on": "ON", "off": "OFF"}, what)
    brightness = data.get("brightness")
    if brightness is not None:
        update.attributes["brightness"] = _brightness_in(component, _as_number(brightness, what))
    color_temp = data.get("color_temp")
    if color_temp is not None:
        number = _as_number(color_temp, what)
        if component.options.get("color_temp_kelvin"):
            number = 1_000_000 / number if number else 0
        update.attributes["color_temp"] = round(number)
    for key in ("color_mode", "effect"):
        if isinstance(data.get(key), str):
            update.attributes[key] = data[key][:64]
    if isinstance(data.get("color"), dict):
        update.attributes["color"] = data["color"]
    return update


def _attributes(rendered: Any) -> dict[str, Any]:
    data = _json_object(rendered, "json attributes")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if len(out) >= MAX_ATTRIBUTES:
            break
        if not isinstance(key, str) or not key or len(key) > 64 or value is None:
            continue
        if key in NUMERIC_ATTRIBUTES and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            continue  # e.g. a "battery": "low": the hub keeps these numeric
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[key] = value
    return out


# ----- commands --------------------------------------------------------------------------------


def _render_command(component: Component, key: str, value: Any, **variables: Any) -> str:
    template = component.templates.get(key)
    if template is None:
        return to_text(value)
    try:
        result = template.render({"value": value, **variables})
    except TemplateError as exc:
        raise CommandError(f"{component.platform} {component.object_id}: {key}: {exc}") from exc
    return to_text(result)


def _need(component: Component, key: str, action: str) -> str:
    topic = component.options.get(key) or component.config.get(key)
    if not isinstance(topic, str) or not topic:
        raise CommandError(
            f"{component.platform} {component.object_id} has no {key}, so it cannot {action}"
        )
    return topic


def _format_number(value: float) -> int | float:
    return int(value) if isinstance(value, int) or float(value).is_integer() else value


def build_command(
    component: Component,
    action: str,
    params: Mapping[str, Any],
    current: Any,
    current_attributes: Mapping[str, Any] | None = None,
) -> tuple[list[Publish], Update | None]:
    """Return the messages that carry out ``action``, and the state an optimistic device takes.

    ``current`` is the entity's current value (for toggle) and ``current_attributes`` its
    attributes (a light turned on by its brightness keeps it). Raises CommandError for what
    the component cannot do.
    """
    platform = component.platform
    opts = component.options
    if action == "toggle":
        action = "turn_off" if current == "on" else "turn_on"
    if platform == "switch" and action in ("turn_on", "turn_off"):
        payload = opts["payload_on"] if action == "turn_on" else opts["payload_off"]
        topic = _need(component, "command_topic", action)
        message = Publish(topic, _render_command(component, "command_template", payload))
        return [message], Update("on" if action == "turn_on" else "off")
    if platform == "light" and action in ("turn_on", "turn_off"):
        if opts["schema"] == "json":
            return _json_light_command(component, action, params)
        return _basic_light_command(component, action, params, current_attributes or {})
    if platform == "lock" and action in ("lock", "unlock"):
        payload = opts["payload_lock"] if action == "lock" else opts["payload_unlock"]
        if payload is None:
            raise CommandError(f"lock {component.object_id} has no payload to {action}")
        topic = _need(component, "command_topic", action)
        message = Publish(topic, _render_command(component, "command_template", payload))
        return [message], Update("locked" if action == "lock" else "unlocked")
    if platform == "button" and action == "press":
        topic = _need(component, "command_topic", action)
        payload = _render_command(component, "command_template", opts["payload_press"])
        return [Publish(topic, payload)], None
    if platform in ("number", "select") and action == "set_value":
        return _set_value_command(component, params.get("value"))
    if platform == "cover":
        return _cover_command(component, action, params)
    if platform == "climate":
        return _climate_command(component, action, params)
    raise CommandError(f"{platform} {component.object_id} cannot {action}")


def _set_value_command(component: Component, value: Any) -> tuple[list[Publish], Update | None]:
    """A number's or select's new value, through ``command_template`` as Home Assistant does
    (a whole number is sent without a decimal point: ``21``, not ``21.0``)."""
    opts = component.options
    topic = _need(component, "command_topic", "set a value")
    if component.platform == "select":
        if value not in opts["options"]:
            raise CommandError(f"select {component.object_id} has no option {value!r}")
        return [Publish(topic, _render_command(component, "command_template", value))], Update(
            value
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CommandError(f"number {component.object_id}: {value!r} is not a number")
    if not opts["min"] <= value <= opts["max"]:
        raise CommandError(
            f"number {component.object_id} accepts {opts['min']:g} to {opts['max']:g}, "
            f"not {value:g}"
        )
    number = _format_number(value)
    payload = _render_command(component, "command_template", number)
    return [Publish(topic, payload)], Update(number)


def _basic_light_command(
    component: Component, action: str, params: Mapping[str, Any], current: Mapping[str, Any]
) -> tuple[list[Publish], Update | None]:
    opts = component.options
    topic = _need(component, "command_topic", action)
    if action == "turn_off":
        return [Publish(topic, opts["payload_off"])], Update("off")
    _check_light_params(component, params)
    on_type = opts["on_command_type"]
    messages: list[Publish] = []
    attributes: dict[str, Any] = {}
    if on_type == "first":
        messages.append(Publish(topic, opts["payload_on"]))
    brightness = params.get("brightness")
    if brightness is None and on_type == "brightness":
        # This type turns the light on by sending a brightness: the last one, else full.
        last = current.get("brightness")
        brightness = last if isinstance(last, int | float) and last > 0 else 255
    if brightness is not None:
        raw = _brightness_out(component, float(brightness))
        bri_topic = _need(component, "brightness_command_topic", "set a brightness")
        messages.append(
            Publish(bri_topic, _render_command(component, "brightness_command_template", raw))
        )
        attributes["brightness"] = round(float(brightness))
    if params.get("color_temp") is not None:
        mireds = round(float(params["color_temp"]))
        ct_topic = _need(component, "color_temp_command_topic", "set a colour temperature")
        messages.append(
            Publish(ct_topic, _render_command(component, "color_temp_command_template", mireds))
        )
        attributes["color_temp"] = mireds
    if on_type == "last":
        messages.append(Publish(topic, opts["payload_on"]))
    return messages, Update("on", attributes)


def _check_light_params(component: Component, params: Mapping[str, Any]) -> None:
    opts = component.options
    for name in ("brightness", "color_temp"):
        if params.get(name) is not None and not opts.get(name):
            raise CommandError(f"light {component.object_id} does not support {name}")
    if params.get("color") is not None:
        raise CommandError(f"light {component.object_id}: colour commands are not supported")


def _json_light_command(
    component: Component, action: str, params: Mapping[str, Any]
) -> tuple[list[Publish], Update | None]:
    opts = component.options
    topic = _need(component, "command_topic", action)
    body: dict[str, Any] = {"state": "ON" if action == "turn_on" else "OFF"}
    attributes: dict[str, Any] = {}
    if action == "turn_on":
        _check_light_params(component, params)
        if params.get("brightness") is not None:
            body["brightness"] = _brightness_out(component, float(params["brightness"]))
            attributes["brightness"] = round(float(params["brightness"]))
        if params.get("color_temp") is not None:
            mireds = round(float(params["color_temp"]))
            body["color_temp"] = round(1_000_000 / mireds) if opts["color_temp_kelvin"] else mireds
            attributes["color_temp"] = mireds
    if params.get("transition") is not None:
        body["transition"] = _format_number(float(params["transition"]))
    update = Update("on" if action == "turn_on" else "off", attributes)
    return [Publish(topic, orjson.dumps(body).decode())], update


def _cover_command(
    component: Component, action: str, params: Mapping[str, Any]
) -> tuple[list[Publish], Update | None]:
    opts = component.options
    if action in ("open", "close", "stop"):
        key = {"open": "payload_open", "close": "payload_close", "stop": "payload_stop"}[action]
        payload = opts[key]
        if payload is None:
            raise CommandError(f"cover {component.object_id} cannot {action} (no {key})")
        topic = _need(component, "command_topic", action)
        state = {"open": "open", "close": "closed", "stop": None}[action]
        position = {"open": 100, "close": 0}.get(action)
        attributes = {} if position is None else {"position": position}
        return [Publish(topic, payload)], None if state is None else Update(state, attributes)
    if action == "set_position":
        topic = _need(component, "set_position_topic", "set a position")
        percent = float(params["position"])
        opened, closed = opts["position_open"], opts["position_closed"]
        raw = _format_number(round(closed + (opened - closed) * percent / 100))
        payload = _render_command(
            component,
            "set_position_template",
            raw,
            position=raw,
            position_open=_format_number(opened),
            position_closed=_format_number(closed),
        )
        state = "closed" if percent == 0 else "open"
        return [Publish(topic, payload)], Update(state, {"position": _format_number(percent)})
    raise CommandError(f"cover {component.object_id} cannot {action}")


def _climate_command(
    component: Component, action: str, params: Mapping[str, Any]
) -> tuple[list[Publish], Update | None]:
    opts = component.options
    if action == "set_temperature":
        topic = _need(component, "temperature_command_topic", "set a temperature")
        temperature = float(params["temperature"])
        if not opts["min_temp"] <= temperature <= opts["max_temp"]:
            raise CommandError(
                f"climate {component.object_id} accepts {opts['min_temp']:g} to "
                f"{opts['max_temp']:g} degrees, not {temperature:g}"
            )
        value = _format_number(params["temperature"])
        payload = _render_command(component, "temperature_command_template", value)
        return [Publish(topic, payload)], Update(None, {"target_temperature": value})
    if action == "set_mode":
        return _climate_mode(component, str(params["mode"]))
    if action in ("turn_on", "turn_off"):
        if opts.get("power_command_topic"):
            payload = opts["payload_on"] if action == "turn_on" else opts["payload_off"]
            payload = _render_command(component, "power_command_template", payload)
            return [Publish(opts["power_command_topic"], payload)], None
        if action == "turn_off":
            return _climate_mode(component, "off")
        modes = [m for m in opts["modes"] if m != "off"]
        if not modes:
            raise CommandError(f"climate {component.object_id} has no mode to turn on to")
        return _climate_mode(component, "heat" if "heat" in modes else modes[0])
    raise CommandError(f"climate {component.object_id} cannot {action}")


def _climate_mode(component: Component, mode: str) -> tuple[list[Publish], Update | None]:
    if mode not in component.options["modes"]:
        raise CommandError(
            f"climate {component.object_id} has no mode {mode!r}; its modes are "
            f"{', '.join(component.options['modes'])}"
        )
    topic = _need(component, "mode_command_topic", "set a mode")
    payload = _render_command(component, "mode_command_template", mode)
    return [Publish(topic, payload)], Update(mode)
