"""Zigbee2MQTT ``exposes`` turned into hub entities.

Each entity gets an :class:`EntityMap` that knows which properties of the device's state
message it reads (``read``) and which ``/set`` payload carries a hub command (``command``).
The property names always come from the exposes themselves (``state_l1``, ``fan_state``,
``occupied_heating_setpoint``), never from assumptions about a model.

Mapping (https://www.zigbee2mqtt.io/guide/usage/exposes.html):

- ``light`` / ``switch`` / ``fan`` / ``cover`` / ``lock`` / ``climate`` → one entity of that
  kind (a fan is a switch), keyed by its type and endpoint (``light``, ``switch_l2``);
- read-only ``binary`` → binary_sensor, ``on`` being the expose's ``value_on`` (for
  ``contact`` that is ``false``: open, as the hub's door sensors say); a settable one → switch;
- read-only ``numeric`` → sensor with its unit; ``kWh``/``Wh`` → energy_meter in kWh;
- ``enum`` named ``action`` → button (the last press); other read-only enum/text → sensor;
- a ``numeric`` that is settable and published in the state (``access`` has both the SET and
  the STATE bit: a thermostat's ``occupied_heating_setpoint_scheduled``) → ``number`` with
  ``value_min``/``value_max``/``value_step`` as its ``min``/``max``/``step`` and its unit; a
  settable ``enum`` in the state (a bulb's ``power_on_behavior``) → ``select`` of its
  ``values``. ``set_value`` sends ``{"<property>": value}`` to ``/set`` and is confirmed when
  the device reports the property. Write-only ones (``effect``, ``identify``) could never be
  confirmed and stay out, as do settable texts, composites and lists (device configuration).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hub.api import CommandError, Entity, EntityKind, InvalidValue

IEEE_PATTERN = re.compile(r"^0x[0-9a-f]{16}$")
_KEY_CHARS = re.compile(r"[^a-z0-9_\-]+")
MAX_EXPOSES = 512
MAX_ENTITIES = 256
_ACCESS_STATE = 0b001
_ACCESS_SET = 0b010
_CLIMATE_MODES = ("off", "heat", "cool", "auto", "dry", "fan_only")

# Zigbee2MQTT names that carry a well-known meaning, for the hub's device_class.
_BINARY_CLASSES = {
    "occupancy": "motion",
    "presence": "presence",
    "contact": "door",
    "water_leak": "moisture",
    "smoke": "smoke",
    "gas": "gas",
    "carbon_monoxide": "carbon_monoxide",
    "tamper": "tamper",
    "battery_low": "battery",
    "vibration": "vibration",
}
_SENSOR_CLASSES = {
    "temperature": "temperature",
    "device_temperature": "temperature",
    "local_temperature": "temperature",
    "humidity": "humidity",
    "pressure": "pressure",
    "illuminance": "illuminance",
    "illuminance_lux": "illuminance",
    "power": "power",
    "current": "current",
    "voltage": "voltage",
    "energy": "energy",
    "battery": "battery",
    "linkquality": "signal_strength",
    "co2": "carbon_dioxide",
    "pm25": "pm25",
    "voc": "volatile_organic_compounds",
}
_COVER_WORDS = {
    "open": "open",
    "close": "closed",
    "closed": "closed",
    "stop": "stopped",
    "stopped": "stopped",
    "opening": "opening",
    "closing": "closing",
}
_LOCK_WORDS = {"locked": "locked", "unlocked": "unlocked", "not_fully_locked": "jammed"}


# ----- small validators -------------------------------------------------------------------------


def _number(value: Any, prop: str) -> int | float:
    # bool is an int subclass; a sensor that says true is broken, not 1
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{prop}: expected a number, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidValue(f"{prop}: expected a finite number, got {value!r}")
    return value


def _text(value: Any, prop: str, limit: int = 255) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidValue(
            f"{prop}: expected text of at most {limit} characters, got {_show(value)}"
        )
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(value: Any, expected: Any) -> bool:
    """Compare a reported value with an expose's value_on/value_off, type-strictly."""
    if isinstance(expected, str):
        return isinstance(value, str) and value.upper() == expected.upper()
    # True == 1 in Python: a binary that says 1 where the expose promises true is malformed.
    return type(value) is type(expected) and value == expected


def sanitize_key(text: str) -> str:
    """Return ``text`` as an entity key: lowercase letters, digits, ``_`` and ``-``."""
    key = _KEY_CHARS.sub("_", text.lower()).strip("_-")[:64]
    return key or "value"


@dataclass(frozen=True, slots=True)
class _Binary:
    """A binary feature: where it lives and which values mean on and off."""

    prop: str
    on: Any
    off: Any
    toggle: Any = None

    def read(self, value: Any) -> bool:
        if _same(value, self.on):
            return True
        if _same(value, self.off):
            return False
        raise InvalidValue(
            f"{self.prop}: expected {_show(self.on)} or {_show(self.off)}, got {_show(value)}"
        )


@dataclass(frozen=True, slots=True)
class _Numeric:
    """A numeric feature with its optional range."""

    prop: str
    low: float | None = None
    high: float | None = None

    def check(self, value: float, what: str) -> None:
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise CommandError(
                f"{what} {value:g} is outside the device's range "
                f"{self.low if self.low is not None else '-inf'}..{self.high}"
            )


# ----- entity maps ------------------------------------------------------------------------------


@dataclass(slots=True)
class EntityMap:
    """How one hub entity is read from the device's state and commanded through ``/set``."""

    kind: ClassVar[EntityKind]
    key: str
    name: str
    unit: str | None = None
    device_class: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    group_member: bool = False  # a light, switch, fan, cover or lock a Zigbee group may hold

    def entity(self, device_id: str) -> Entity:
        """The hub entity this map stands for."""
        return Entity(
            id=f"{device_id}.{self.key}",
            device_id=device_id,
            key=self.key,
            kind=self.kind,
            name=self.name,
            unit=self.unit,
            device_class=self.device_class,
            options=dict(self.options),
        )

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Return ``(value, attributes)`` this message reports, or None if it says nothing.

        ``value`` None keeps the current value (allowed only when ``has_state``). Raises
        InvalidValue naming the property when a value is not what the exposes promise.
        """
        raise NotImplementedError

    def command(self, action: str, params: Mapping[str, Any], current: Any) -> dict[str, Any]:
        """Return the ``/set`` payload for a hub command; raise CommandError if unsupported."""
        raise CommandError(f"{self.name} accepts no commands")

    @property
    def plain_properties(self) -> bool:
        """True when its commands use unprefixed properties (so a Zigbee group takes them too)."""
        return False


@dataclass(slots=True)
class OnOffMap(EntityMap):
    """A switch (or fan): one binary ``state`` feature."""

    kind: ClassVar[EntityKind] = EntityKind.SWITCH
    state: _Binary = field(default_factory=lambda: _Binary("state", "ON", "OFF"))

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Read the on/off state."""
        raw = message.get(self.state.prop)
        if raw is None:
            return None
        return ("on" if self.state.read(raw) else "off"), {}

    def _switch_body(self, action: str, current: Any) -> tuple[dict[str, Any], bool]:
        if action == "turn_on":
            on = True
        elif action == "turn_off":
            on = False
        elif action == "toggle":
            # An explicit state, not TOGGLE: the hub confirms against the state it expects,
            # and a resend must not undo the first send.
            on = current != "on"
        else:
            raise CommandError(f"{self.name} cannot {action}")
        return {self.state.prop: self.state.on if on else self.state.off}, on

    def command(self, action: str, params: Mapping[str, Any], current: Any) -> dict[str, Any]:
        """Turn on, off or toggle."""
        if params:
            raise CommandError(f"{self.name} takes no parameters ({', '.join(sorted(params))})")
        return self._switch_body(action, current)[0]

    @property
    def plain_properties(self) -> bool:
        """True for the usual ``state`` property."""
        return self.state.prop == "state"


@dataclass(slots=True)
class LightMap(OnOffMap):
    """A light: state, and when the exposes say so brightness, colour temperature, colour."""

    kind: ClassVar[EntityKind] = EntityKind.LIGHT
    brightness: _Numeric | None = None
    color_temp: _Numeric | None = None
    color: str | None = None  # the property of color_xy / color_hs

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Read state, brightness, colour temperature and colour."""
        raw = message.get(self.state.prop)
        value = None if raw is None else ("on" if self.state.read(raw) else "off")
        attrs: dict[str, Any] = {}
        for name, feature in (("brightness", self.brightness), ("color_temp", self.color_temp)):
            if feature is not None and message.get(feature.prop) is not None:
                attrs[name] = _number(message[feature.prop], feature.prop)
        if self.color is not None and message.get(self.color) is not None:
            color = message[self.color]
            if not isinstance(color, dict):
                raise InvalidValue(f"{self.color}: expected an object, got {_show(color)}")
            # Keep the coordinates (x/y, hue/saturation); anything else is not a colour.
            attrs["color"] = {
                k: v
                for k, v in color.items()
                if isinstance(k, str) and not isinstance(v, bool) and isinstance(v, int | float)
            }
        if isinstance(message.get("color_mode"), str):
            attrs["color_mode"] = _text(message["color_mode"], "color_mode", 32)
        if value is None and (not attrs or not has_state):
            return None
        return value, attrs

    def command(self, action: str, params: Mapping[str, Any], current: Any) -> dict[str, Any]:
        """Turn on (with brightness, colour temperature, colour, transition), off or toggle."""
        body, on = self._switch_body(action, current)
        if on:
            if "brightness" in params:
                if self.brightness is None:
                    raise CommandError(f"{self.name} has no brightness control")
                # The hub counts 0-255, Zigbee 0-254: the top of the hub's range is full.
                high = self.brightness.high if self.brightness.high is not None else 254
                body[self.brightness.prop] = min(round(params["brightness"]), int(high))
            if "color_temp" in params:
                if self.color_temp is None:
                    raise CommandError(f"{self.name} has no colour temperature control")
                mireds = round(params["color_temp"])
                self.color_temp.check(mireds, "colour temperature")
                body[self.color_temp.prop] = mireds
            if "color" in params:
                if self.color is None:
                    raise CommandError(f"{self.name} has no colour control")
                body[self.color] = _color_param(params["color"])
        elif set(params) - {"transition"}:
            raise CommandError(f"turning {self.name} off takes only a transition")
        if "transition" in params:
            body["transition"] = params["transition"]
        return body

    @property
    def plain_properties(self) -> bool:
        """True when state and the dimming features use unprefixed names."""
        props = [self.state.prop]
        props += [f.prop for f in (self.brightness, self.color_temp) if f is not None]
        return all(p in ("state", "brightness", "color_temp") for p in props)


def _color_param(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return {"hex": value}
    if (
        isinstance(value, dict)
        and value
        and all(
            k in ("x", "y", "hue", "saturation", "h", "s", "r", "g", "b")
            and not isinstance(v, bool)
            and isinstance(v, int | float)
            for k, v in value.items()
        )
    ):
        return dict(value)
    raise CommandError(
        "parameter 'color' must be '#rrggbb' or an object of x/y, hue/saturation or r/g/b"
    )


@dataclass(slots=True)
class CoverMap(EntityMap):
    """A cover: OPEN/CLOSE/STOP and, when exposed, a position 0-100."""

    kind: ClassVar[EntityKind] = EntityKind.COVER
    state: _Binary | None = None
    position: _Numeric | None = None
    tilt: str | None = None

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Read the cover's state and position."""
        value: str | None = None
        attrs: dict[str, Any] = {}
        if self.state is not None and message.get(self.state.prop) is not None:
            raw = message[self.state.prop]
            if _same(raw, self.state.on):
                value = "open"
            elif _same(raw, self.state.off):
                value = "closed"
            elif isinstance(raw, str) and raw.lower() in _COVER_WORDS:
                value = _COVER_WORDS[raw.lower()]
            else:
                raise InvalidValue(
                    f"{self.state.prop}: expected OPEN, CLOSE or STOP, got {_show(raw)}"
                )
        if self.position is not None and message.get(self.position.prop) is not None:
            position = _number(message[self.position.prop], self.position.prop)
            attrs["position"] = position
            if value is None:
                value = "open" if position > 0 else "closed"
        if self.tilt is not None and message.get(self.tilt) is not None:
            attrs["tilt"] = _number(message[self.tilt], self.tilt)
        if value is None and (not attrs or not has_state):
            return None
        return value, attrs

    def command(self, action: str, params: Mapping[str, Any], current: Any) -> dict[str, Any]:
        """Open, close, stop or move to a position."""
        if action == "set_position":
            if self.position is None:
                raise CommandError(f"{self.name} has no position control")
            return {self.position.prop: round(params["position"])}
        if self.state is None:
            raise CommandError(f"{self.name} cannot {action}")
        if action == "open":
            return {self.state.prop: self.state.on}
        if action == "close":
            return {self.state.prop: self.state.off}
        if action == "stop":
            return {self.state.prop: "STOP"}
        raise CommandError(f"{self.name} cannot {action}")

    @property
    def plain_properties(self) -> bool:
        """True for the usual ``state``/``position`` properties."""
        return (self.state is None or self.state.prop == "state") and (
            self.position is None or self.position.prop == "position"
        )


@dataclass(slots=True)
class LockMap(EntityMap):
    """A lock: LOCK/UNLOCK, and the lock's own report (``lock_state``) when exposed."""

    kind: ClassVar[EntityKind] = EntityKind.LOCK
    state: _Binary = field(default_factory=lambda: _Binary("state", "LOCK", "UNLOCK"))
    lock_state: str | None = None

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Read the lock's state."""
        value: str | None = None
        attrs: dict[str, Any] = {}
        raw = message.get(self.state.prop)
        if raw is not None:
            value = "locked" if self.state.read(raw) else "unlocked"
        if self.lock_state is not None and message.get(self.lock_state) is not None:
            detail = _text(message[self.lock_state], self.lock_state, 64)
            attrs["lock_state"] = detail
            # A bolt that did not go home is a jam, whatever the last command said.
            if value is None or detail == "not_fully_locked":
                value = _LOCK_WORDS.get(detail, value)
        if value is None and (not attrs or not has_state):
            return None
        return value, attrs

    def command(self, action: str, params: Mapping[str, Any], current: Any) -> dict[str, Any]:
        """Lock or unlock."""
        if action == "lock":
            return {self.state.prop: self.state.on}
        if action == "unlock":
            return {self.state.prop: self.state.off}
        raise CommandError(f"{self.name} cannot {action}")


@dataclass(slots=True)
class ClimateMap(EntityMap):
    """A thermostat: system mode, setpoint, local temperature, running state."""

    kind: ClassVar[EntityKind] = EntityKind.CLIMATE
    setpoint: _Numeric | None = None
    local_temperature: str | None = None
    mode: str | None = None
    modes: tuple[str, ...] = ()
    running_state: str | None = None
    preset: str | None = None

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Read mode, setpoint and temperatures."""
        value: str | None = None
        attrs: dict[str, Any] = {}
        if self.mode is not None and message.get(self.mode) is not None:
            raw = _text(message[self.mode], self.mode, 64)
            attrs["system_mode"] = raw
            # Modes the hub does not model (emergency_heating, sleep) keep the last mode.
            value = raw if raw in _CLIMATE_MODES else None
        if self.setpoint is not None and message.get(self.setpoint.prop) is not None:
            attrs["target_temperature"] = _number(message[self.setpoint.prop], self.setpoint.prop)
        if self.local_temperature is not None and message.get(self.local_temperature) is not None:
            attrs["current_temperature"] = _number(
                message[self.local_temperature], self.local_temperature
            )
        for name, prop in (("running_state", self.running_state), ("preset", self.preset)):
            if prop is not None and message.get(prop) is not None:
                attrs[name] = _text(message[prop], prop, 64)
        if value is None and attrs and not has_state:
            # A thermostat without a reported mode still has to start somewhere.
            value = "heat" if self.mode is None and self.setpoint is not None else None
            if value is None:
                return None
        if value is None and not attrs:
            return None
        return value, attrs

    def command(self, action: str, params: Mapping[str, Any], current: Any) -> dict[str, Any]:
        """Set the setpoint or the mode; turn on (heat or auto) or off."""
        if action == "set_temperature":
            if self.setpoint is None:
                raise CommandError(f"{self.name} has no setpoint")
            target = params["temperature"]
            self.setpoint.check(float(target), "temperature")
            return {self.setpoint.prop: target}
        if self.mode is None:
            raise CommandError(f"{self.name} has no system mode to {action}")
        if action == "set_mode":
            mode = params["mode"]
        elif action == "turn_off":
            mode = "off"
        elif action == "turn_on":
            mode = next((m for m in ("heat", "auto", "cool") if m in self.modes), "")
        else:
            raise CommandError(f"{self.name} cannot {action}")
        if mode not in self.modes:
            raise CommandError(
                f"{self.name} has no mode {mode!r}; it offers {', '.join(self.modes) or 'none'}"
            )
        return {self.mode: mode}


@dataclass(slots=True)
class BinarySensorMap(EntityMap):
    """A read-only binary (occupancy, contact, water_leak, ...)."""

    kind: ClassVar[EntityKind] = EntityKind.BINARY_SENSOR
    state: _Binary = field(default_factory=lambda: _Binary("value", True, False))

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Read on/off."""
        raw = message.get(self.state.prop)
        if raw is None:
            return None
        return ("on" if self.state.read(raw) else "off"), {}


@dataclass(slots=True)
class SensorMap(EntityMap):
    """A read-only numeric (with unit) or text/enum value; energy in kWh for energy meters."""

    kind: ClassVar[EntityKind] = EntityKind.SENSOR
    prop: str = "value"
    numeric: bool = True
    scale: float = 1.0

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Read the value."""
        raw = message.get(self.prop)
        if raw is None:
            return None
        if not self.numeric:
            return _text(raw, self.prop), {}
        value = _number(raw, self.prop)
        return (value * self.scale if self.scale != 1.0 else value), {}


@dataclass(slots=True)
class EnergyMap(SensorMap):
    """An energy counter (kWh)."""

    kind: ClassVar[EntityKind] = EntityKind.ENERGY_METER


@dataclass(slots=True)
class ActionMap(EntityMap):
    """A remote's ``action`` enum: the last press."""

    kind: ClassVar[EntityKind] = EntityKind.BUTTON
    prop: str = "action"

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Read the press; the empty action Zigbee2MQTT sends to reset it is not a press."""
        raw = message.get(self.prop)
        if raw is None or raw == "":
            return None
        return _text(raw, self.prop, 64), {}

    def command(self, action: str, params: Mapping[str, Any], current: Any) -> dict[str, Any]:
        """A remote's button cannot be pressed from the hub."""
        raise CommandError(f"{self.name} reports a remote's presses; it cannot be pressed")


@dataclass(slots=True)
class NumberMap(EntityMap):
    """A settable numeric feature: read from the state, ``set_value`` within its range."""

    kind: ClassVar[EntityKind] = EntityKind.NUMBER
    feature: _Numeric = field(default_factory=lambda: _Numeric("value"))

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Read the number."""
        raw = message.get(self.feature.prop)
        if raw is None:
            return None
        return _number(raw, self.feature.prop), {}

    def command(self, action: str, params: Mapping[str, Any], current: Any) -> dict[str, Any]:
        """``set_value``: ``{"<property>": value}`` (whole numbers sent as such)."""
        if action != "set_value":
            raise CommandError(f"{self.name} cannot {action}")
        value = params.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandError(f"parameter 'value' must be a number, got {_show(value)}")
        if not math.isfinite(value):
            raise CommandError(f"parameter 'value' must be a finite number, got {value!r}")
        self.feature.check(float(value), "value")
        # 21.0 and 21 are the same setpoint; Zigbee2MQTT's docs write whole numbers bare.
        return {self.feature.prop: int(value) if float(value).is_integer() else value}


@dataclass(slots=True)
class SelectMap(EntityMap):
    """A settable enum feature: read from the state, ``set_value`` to one of its values."""

    kind: ClassVar[EntityKind] = EntityKind.SELECT
    prop: str = "value"
    values: tuple[str, ...] = ()

    def read(
        self, message: Mapping[str, Any], has_state: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Read the choice; one the exposes do not list is malformed."""
        raw = message.get(self.prop)
        if raw is None:
            return None
        if raw not in self.values:
            raise InvalidValue(
                f"{self.prop}: expected one of {', '.join(self.values)}, got {_show(raw)}"
            )
        return raw, {}

    def command(self, action: str, params: Mapping[str, Any], current: Any) -> dict[str, Any]:
        """``set_value``: ``{"<property>": "<one of the values>"}``."""
        if action != "set_value":
            raise CommandError(f"{self.name} cannot {action}")
        value = params.get("value")
        if not isinstance(value, str) or value not in self.values:
            raise CommandError(
                f"{self.name} has no option {_show(value)}; its options are "
                f"{', '.join(self.values)}"
            )
        return {self.prop: value}


# ----- exposes → maps -----------------------------------------------------------------------------


class _Exposes:
    """Walks a device's exposes list; raises ValueError on a structurally broken one."""

    def __init__(self, device_name: str) -> None:
        self.device_name = device_name
        self.maps: dict[str, EntityMap] = {}

    def add(self, entity_map: EntityMap) -> None:
        key, n = entity_map.key, 2
        while key in self.maps:
            key = f"{entity_map.key[:60]}_{n}"
            n += 1
        entity_map.key = key
        if len(self.maps) >= MAX_ENTITIES:
            raise ValueError(f"more than {MAX_ENTITIES} entities")
        self.maps[key] = entity_map

    def label(self, expose: Mapping[str, Any], fallback: str) -> str:
        label = expose.get("label")
        text = label if isinstance(label, str) and label else fallback.replace("_", " ")
        return f"{self.device_name} {text[:64]}"


def _expose_str(expose: Mapping[str, Any], name: str) -> str:
    value = expose.get(name)
    if not isinstance(value, str) or not value or len(value) > 128:
        raise ValueError(f"expose {name!r} must be a non-empty string, got {_show(value)}")
    return value


def _access(expose: Mapping[str, Any]) -> int:
    access = expose.get("access", 1)
    if isinstance(access, bool) or not isinstance(access, int):
        raise ValueError(f"expose 'access' must be an integer, got {_show(access)}")
    return access


def _bound(expose: Mapping[str, Any], name: str) -> float | None:
    value = expose.get(name)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _features(expose: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A specific expose's features by name (the first of each name wins)."""
    features = expose.get("features")
    if not isinstance(features, list):
        raise ValueError(f"a {expose.get('type')} expose must have a 'features' list")
    out: dict[str, Mapping[str, Any]] = {}
    for feature in features:
        if not isinstance(feature, dict):
            raise ValueError("an expose feature must be an object")
        name = feature.get("name")
        if isinstance(name, str):
            out.setdefault(name, feature)
    return out


def _binary_feature(feature: Mapping[str, Any] | None, on: Any, off: Any) -> _Binary | None:
    if feature is None:
        return None
    prop = _expose_str(feature, "property")
    return _Binary(
        prop,
        feature.get("value_on", on),
        feature.get("value_off", off),
        feature.get("value_toggle"),
    )


def _numeric_feature(feature: Mapping[str, Any] | None) -> _Numeric | None:
    if feature is None:
        return None
    prop = _expose_str(feature, "property")
    return _Numeric(prop, _bound(feature, "value_min"), _bound(feature, "value_max"))


def _prop(feature: Mapping[str, Any] | None) -> str | None:
    return None if feature is None else _expose_str(feature, "property")


def _specific_key(kind: str, expose: Mapping[str, Any]) -> str:
    endpoint = expose.get("endpoint")
    if isinstance(endpoint, str | int) and not isinstance(endpoint, bool) and str(endpoint):
        return sanitize_key(f"{kind}_{endpoint}")
    return kind


def _options(expose: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    options = {k: v for k, v in extra.items() if v is not None}
    endpoint = expose.get("endpoint")
    if isinstance(endpoint, str | int) and not isinstance(endpoint, bool):
        options["endpoint"] = endpoint
    category = expose.get("category")
    if isinstance(category, str):
        options["category"] = category[:32]
    return options


def entity_maps(exposes: Any, device_name: str) -> dict[str, EntityMap]:
    """Return the entity maps for a device's exposes; raise ValueError saying what is broken."""
    if exposes is None:
        return {}
    if not isinstance(exposes, list):
        raise ValueError("definition.exposes must be a list")
    if len(exposes) > MAX_EXPOSES:
        raise ValueError(f"more than {MAX_EXPOSES} exposes")
    walker = _Exposes(device_name)
    for index, expose in enumerate(exposes):
        if not isinstance(expose, dict):
            raise ValueError(f"expose #{index} must be an object")
        kind = expose.get("type")
        if not isinstance(kind, str):
            raise ValueError(f"expose #{index} has no 'type'")
        try:
            _add_expose(walker, kind, expose)
        except ValueError as exc:
            raise ValueError(f"expose #{index} ({kind}): {exc}") from None
    return walker.maps


def _add_expose(walker: _Exposes, kind: str, expose: Mapping[str, Any]) -> None:
    if kind in ("light", "switch", "fan", "cover", "lock", "climate"):
        _add_specific(walker, kind, expose)
        return
    if kind not in ("binary", "numeric", "enum", "text"):
        return  # composite, list and future types are configuration for the hub
    prop = _expose_str(expose, "property")
    name = _expose_str(expose, "name") if expose.get("name") is not None else prop
    settable = bool(_access(expose) & _ACCESS_SET)
    key = sanitize_key(prop)
    label = walker.label(expose, name)
    if kind == "binary":
        state = _Binary(prop, expose.get("value_on", True), expose.get("value_off", False))
        if settable:
            walker.add(OnOffMap(key, label, options=_options(expose), state=state))
        else:
            walker.add(
                BinarySensorMap(
                    key,
                    label,
                    device_class=_BINARY_CLASSES.get(name),
                    options=_options(expose),
                    state=state,
                )
            )
        return
    if settable:
        # Only what the device also reports can be confirmed; write-only features
        # (``effect``, ``identify``, a plug's ``countdown``) and texts stay out.
        if _access(expose) & _ACCESS_STATE:
            _add_settable(walker, kind, expose, key, label)
        return
    if kind == "enum" and name == "action":
        walker.add(
            ActionMap(key, label, options=_options(expose, values=_enum_values(expose)), prop=prop)
        )
        return
    if kind == "numeric":
        unit = expose.get("unit") if isinstance(expose.get("unit"), str) else None
        if unit in ("kWh", "Wh"):
            walker.add(
                EnergyMap(
                    key,
                    label,
                    unit="kWh",
                    device_class="energy",
                    options=_options(expose),
                    prop=prop,
                    scale=0.001 if unit == "Wh" else 1.0,
                )
            )
            return
        walker.add(
            SensorMap(
                key,
                label,
                unit=unit,
                device_class=_SENSOR_CLASSES.get(name),
                options=_options(expose),
                prop=prop,
            )
        )
        return
    walker.add(
        SensorMap(
            key,
            label,
            options=_options(expose, values=_enum_values(expose)),
            prop=prop,
            numeric=False,
        )
    )


def _add_settable(
    walker: _Exposes, kind: str, expose: Mapping[str, Any], key: str, label: str
) -> None:
    """A settable numeric → number, a settable enum → select (texts are not entities)."""
    prop = _expose_str(expose, "property")
    if kind == "numeric":
        low, high = _bound(expose, "value_min"), _bound(expose, "value_max")
        if low is not None and high is not None and low > high:
            raise ValueError(f"value_min {low:g} is above value_max {high:g}")
        step = _bound(expose, "value_step")
        if step is not None and not (step > 0 and math.isfinite(step)):
            raise ValueError(f"value_step must be above 0, got {step:g}")
        unit = expose.get("unit") if isinstance(expose.get("unit"), str) else None
        walker.add(
            NumberMap(
                key,
                label,
                unit=unit,
                options=_options(expose, min=low, max=high, step=step),
                feature=_Numeric(prop, low, high),
            )
        )
    elif kind == "enum":
        values = _enum_values(expose)
        if not values:
            raise ValueError("a settable enum must list its string 'values'")
        walker.add(
            SelectMap(
                key,
                label,
                options=_options(expose, options=values),
                prop=prop,
                values=tuple(values),
            )
        )


def _enum_values(expose: Mapping[str, Any]) -> list[str] | None:
    values = expose.get("values")
    if isinstance(values, list):
        return [v for v in values if isinstance(v, str)][:64]
    return None


def _add_specific(walker: _Exposes, kind: str, expose: Mapping[str, Any]) -> None:
    features = _features(expose)
    key = _specific_key(kind, expose)
    label = walker.label(expose, key)
    if kind in ("light", "switch", "fan"):
        state = _binary_feature(features.get("state"), "ON", "OFF")
        if state is None:
            raise ValueError(f"a {kind} must have a 'state' feature")
        if kind != "light":
            walker.add(
                OnOffMap(key, label, options=_options(expose), group_member=True, state=state)
            )
            return
        brightness = _numeric_feature(features.get("brightness"))
        color_temp = _numeric_feature(features.get("color_temp"))
        color = _prop(features.get("color_xy") or features.get("color_hs"))
        supported: list[str] = [n for n in ("brightness", "color_temp") if n in features]
        supported += ["color"] if color else []
        options = _options(
            expose,
            features=supported,
            color_temp_range=[color_temp.low, color_temp.high]
            if color_temp and color_temp.low is not None
            else None,
        )
        walker.add(
            LightMap(
                key,
                label,
                options=options,
                group_member=True,
                state=state,
                brightness=brightness,
                color_temp=color_temp,
                color=color,
            )
        )
        return
    if kind == "cover":
        walker.add(
            CoverMap(
                key,
                label,
                options=_options(expose),
                group_member=True,
                state=_binary_feature(features.get("state"), "OPEN", "CLOSE"),
                position=_numeric_feature(features.get("position")),
                tilt=_prop(features.get("tilt")),
            )
        )
        return
    if kind == "lock":
        state = _binary_feature(features.get("state"), "LOCK", "UNLOCK")
        if state is None:
            raise ValueError("a lock must have a 'state' feature")
        walker.add(
            LockMap(
                key,
                label,
                options=_options(expose),
                group_member=True,
                state=state,
                lock_state=_prop(features.get("lock_state")),
            )
        )
        return
    setpoint = next(
        (
            features[name]
            for name in (
                "occupied_heating_setpoint",
                "current_heating_setpoint",
                "occupied_cooling_setpoint",
            )
            if name in features
        ),
        None,
    )
    mode_feature = features.get("system_mode")
    modes = tuple(_enum_values(mode_feature) or ()) if mode_feature else ()
    numeric = _numeric_feature(setpoint)
    walker.add(
        ClimateMap(
            key,
            label,
            options=_options(
                expose,
                modes=list(modes) or None,
                temperature_range=[numeric.low, numeric.high]
                if numeric and numeric.low is not None
                else None,
            ),
            setpoint=numeric,
            local_temperature=_prop(features.get("local_temperature")),
            mode=_prop(mode_feature),
            modes=modes,
            running_state=_prop(features.get("running_state")),
            preset=_prop(features.get("preset")),
        )
    )


def read_message(
    maps: Iterable[tuple[str, EntityMap]],
    message: Mapping[str, Any],
    has_state: Mapping[str, bool],
) -> list[tuple[str, Any, dict[str, Any]]]:
    """Validate a whole state message: ``(entity key, value, attributes)`` for each entity.

    Raises InvalidValue on the first property that is wrong, so that nothing is applied.
    """
    reports: list[tuple[str, Any, dict[str, Any]]] = []
    for key, entity_map in maps:
        result = entity_map.read(message, has_state.get(key, False))
        if result is not None:
            reports.append((key, result[0], result[1]))
    return reports
