"""What MySensors children and values become in the hub's model, and back (no I/O).

A presented child gets its entities at once: an actuator (``S_BINARY`` → switch, ``S_DIMMER``
→ light, ``S_COVER`` → cover, ``S_LOCK`` → lock), a security sensor (``S_DOOR``, ``S_MOTION``
... → binary_sensor from ``V_TRIPPED``) or the usual values of a sensor (``S_TEMP`` →
``V_TEMP``, ``S_POWER`` → ``V_WATT`` and ``V_KWH``). Any other value a child sends becomes an
entity of its own the first time it arrives, from the ``V_`` table below. Entity keys are
``<name>_<child>`` (``switch_1``, ``temperature_2``); each entity's options record the
child and value type it stands for, so the mapping is rebuilt from storage after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.mysensors.protocol import ProtocolError, Sensor, Value, format_number
from hub.api import CommandError, EntityKind, InvalidValue


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """A ``V_`` value as an entity of its own: key name, kind, unit, class, numeric or text."""

    name: str
    kind: EntityKind
    unit: str | None = None
    device_class: str | None = None
    number: bool = True


_S = EntityKind.SENSOR


def _text(name: str) -> ValueSpec:
    return ValueSpec(name, EntityKind.SENSOR, number=False)


#: Values as entities of their own (what a child's value becomes when it is not the state of
#: the child's actuator or security sensor).
VALUES: dict[Value, ValueSpec] = {
    Value.V_TEMP: ValueSpec("temperature", _S, "°C", "temperature"),
    Value.V_HUM: ValueSpec("humidity", _S, "%", "humidity"),
    Value.V_STATUS: ValueSpec("switch", EntityKind.SWITCH, number=False),
    Value.V_PERCENTAGE: ValueSpec("level", _S, "%"),
    Value.V_PRESSURE: ValueSpec("pressure", _S, "hPa", "pressure"),
    Value.V_FORECAST: _text("forecast"),
    Value.V_RAIN: ValueSpec("rain", _S, "mm", "precipitation"),
    Value.V_RAINRATE: ValueSpec("rain_rate", _S, "mm/h", "precipitation_intensity"),
    Value.V_WIND: ValueSpec("wind_speed", _S, "m/s", "wind_speed"),
    Value.V_GUST: ValueSpec("wind_gust", _S, "m/s", "wind_speed"),
    Value.V_DIRECTION: ValueSpec("wind_direction", _S, "°"),
    Value.V_UV: ValueSpec("uv_index", _S, "UV index"),
    Value.V_WEIGHT: ValueSpec("weight", _S, "kg", "weight"),
    Value.V_DISTANCE: ValueSpec("distance", _S, "cm", "distance"),
    Value.V_IMPEDANCE: ValueSpec("impedance", _S, "Ω"),
    Value.V_ARMED: ValueSpec("armed", EntityKind.BINARY_SENSOR, number=False),
    Value.V_TRIPPED: ValueSpec("tripped", EntityKind.BINARY_SENSOR, number=False),
    Value.V_WATT: ValueSpec("power", _S, "W", "power"),
    Value.V_KWH: ValueSpec("energy", EntityKind.ENERGY_METER, "kWh", "energy"),
    Value.V_SCENE_ON: ValueSpec("scene", EntityKind.BUTTON, number=False),
    Value.V_SCENE_OFF: ValueSpec("scene", EntityKind.BUTTON, number=False),
    Value.V_HVAC_FLOW_STATE: _text("hvac_state"),
    Value.V_HVAC_SPEED: _text("hvac_speed"),
    Value.V_LIGHT_LEVEL: ValueSpec("light_level", _S, "%"),
    Value.V_VAR1: _text("var1"),
    Value.V_VAR2: _text("var2"),
    Value.V_VAR3: _text("var3"),
    Value.V_VAR4: _text("var4"),
    Value.V_VAR5: _text("var5"),
    Value.V_IR_SEND: _text("ir_send"),
    Value.V_IR_RECEIVE: _text("ir_received"),
    Value.V_FLOW: ValueSpec("flow", _S, "m"),
    Value.V_VOLUME: ValueSpec("volume", _S, "m³", "volume"),
    Value.V_LOCK_STATUS: ValueSpec("lock", EntityKind.LOCK, number=False),
    Value.V_LEVEL: ValueSpec("level", _S),
    Value.V_VOLTAGE: ValueSpec("voltage", _S, "V", "voltage"),
    Value.V_CURRENT: ValueSpec("current", _S, "A", "current"),
    Value.V_RGB: _text("rgb"),
    Value.V_RGBW: _text("rgbw"),
    Value.V_ID: _text("hardware_id"),
    Value.V_UNIT_PREFIX: _text("unit_prefix"),
    Value.V_HVAC_SETPOINT_COOL: ValueSpec("setpoint_cool", _S, "°C", "temperature"),
    Value.V_HVAC_SETPOINT_HEAT: ValueSpec("setpoint_heat", _S, "°C", "temperature"),
    Value.V_HVAC_FLOW_MODE: _text("hvac_mode"),
    Value.V_TEXT: _text("text"),
    Value.V_CUSTOM: _text("custom"),
    Value.V_POSITION: _text("position"),
    Value.V_IR_RECORD: _text("ir_record"),
    Value.V_PH: ValueSpec("ph", _S, "pH"),
    Value.V_ORP: ValueSpec("orp", _S, "mV"),
    Value.V_EC: ValueSpec("conductivity", _S, "µS/cm"),
    Value.V_VAR: ValueSpec("reactive_power", _S, "var", "reactive_power"),
    Value.V_VA: ValueSpec("apparent_power", _S, "VA", "apparent_power"),
    Value.V_POWER_FACTOR: ValueSpec("power_factor", _S, None, "power_factor"),
}
# V_UP, V_DOWN and V_STOP are absent: they are a cover's commands, not readings of their own.

#: V_LEVEL's unit depends on what the child is.
LEVEL_UNITS: dict[Sensor, str] = {
    Sensor.S_SOUND: "dB",
    Sensor.S_VIBRATION: "Hz",
    Sensor.S_LIGHT_LEVEL: "lx",
    Sensor.S_MOISTURE: "%",
    Sensor.S_DUST: "µg/m³",
    Sensor.S_AIR_QUALITY: "ppm",
}


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """The main entity of a presented child, and the values that drive it."""

    name: str
    kind: EntityKind
    values: frozenset[Value]
    device_class: str | None = None


_ACTUATORS: dict[Sensor, ChildSpec] = {
    Sensor.S_BINARY: ChildSpec("switch", EntityKind.SWITCH, frozenset({Value.V_STATUS})),
    Sensor.S_SPRINKLER: ChildSpec("switch", EntityKind.SWITCH, frozenset({Value.V_STATUS})),
    Sensor.S_DIMMER: ChildSpec(
        "light", EntityKind.LIGHT, frozenset({Value.V_STATUS, Value.V_PERCENTAGE})
    ),
    Sensor.S_COVER: ChildSpec(
        "cover",
        EntityKind.COVER,
        frozenset({Value.V_UP, Value.V_DOWN, Value.V_STOP, Value.V_PERCENTAGE}),
    ),
    Sensor.S_LOCK: ChildSpec("lock", EntityKind.LOCK, frozenset({Value.V_LOCK_STATUS})),
}
_SECURITY: dict[Sensor, str] = {
    Sensor.S_DOOR: "door",
    Sensor.S_MOTION: "motion",
    Sensor.S_SMOKE: "smoke",
    Sensor.S_WATER_LEAK: "moisture",
    Sensor.S_SOUND: "sound",
    Sensor.S_VIBRATION: "vibration",
    Sensor.S_MOISTURE: "moisture",
}
CHILDREN: dict[Sensor, ChildSpec] = {
    **_ACTUATORS,
    **{
        s: ChildSpec(name, EntityKind.BINARY_SENSOR, frozenset({Value.V_TRIPPED}), name)
        for s, name in _SECURITY.items()
    },
}

#: The values a presented sensor child is expected to send: their entities exist at once.
PRESENTED_VALUES: dict[Sensor, tuple[Value, ...]] = {
    Sensor.S_TEMP: (Value.V_TEMP,),
    Sensor.S_HUM: (Value.V_HUM,),
    Sensor.S_BARO: (Value.V_PRESSURE,),
    Sensor.S_WIND: (Value.V_WIND,),
    Sensor.S_RAIN: (Value.V_RAIN,),
    Sensor.S_UV: (Value.V_UV,),
    Sensor.S_WEIGHT: (Value.V_WEIGHT,),
    Sensor.S_POWER: (Value.V_WATT, Value.V_KWH),
    Sensor.S_HEATER: (Value.V_TEMP,),
    Sensor.S_DISTANCE: (Value.V_DISTANCE,),
    Sensor.S_LIGHT_LEVEL: (Value.V_LIGHT_LEVEL,),
    Sensor.S_WATER: (Value.V_VOLUME,),
    Sensor.S_AIR_QUALITY: (Value.V_LEVEL,),
    Sensor.S_DUST: (Value.V_LEVEL,),
    Sensor.S_MULTIMETER: (Value.V_VOLTAGE,),
    Sensor.S_INFO: (Value.V_TEXT,),
    Sensor.S_GAS: (Value.V_VOLUME,),
    Sensor.S_GPS: (Value.V_POSITION,),
    Sensor.S_WATER_QUALITY: (Value.V_PH,),
    Sensor.S_HVAC: (Value.V_TEMP,),
}


@dataclass(frozen=True, slots=True)
class EntityPlan:
    """One entity of a node: its key, what it is, and the child and values behind it."""

    key: str
    child: int
    kind: EntityKind
    values: frozenset[Value]
    unit: str | None = None
    device_class: str | None = None
    number: bool = True
    name: str | None = None

    def options(self) -> dict[str, Any]:
        """What the entity's options record (read back by :func:`plan_from_options`)."""
        return {
            "child": self.child,
            "values": sorted(int(v) for v in self.values),
            "number": self.number,
        }


def plan_from_options(
    key: str,
    kind: EntityKind,
    unit: str | None,
    device_class: str | None,
    options: Mapping[str, Any],
) -> EntityPlan | None:
    """The plan of a stored entity (None if its options are not ours or are damaged)."""
    child = options.get("child")
    values = options.get("values")
    if isinstance(child, bool) or not isinstance(child, int) or not 0 <= child <= 255:
        return None
    if not isinstance(values, list):
        return None
    try:
        parsed = frozenset(Value(v) for v in values)
    except (ValueError, TypeError):
        return None
    return EntityPlan(
        key, child, kind, parsed, unit, device_class, bool(options.get("number", True))
    )


def child_plans(child: int, sensor: Sensor, description: str, *, metric: bool) -> list[EntityPlan]:
    """The entities a presented child gets at once."""
    label = description or None
    spec = CHILDREN.get(sensor)
    if spec is not None:
        return [
            EntityPlan(
                f"{spec.name}_{child}",
                child,
                spec.kind,
                spec.values,
                device_class=spec.device_class,
                number=False,
                name=label,
            )
        ]
    return [
        value_plan(child, value, sensor, metric=metric, name=label)
        for value in PRESENTED_VALUES.get(sensor, ())
    ]


def value_plan(
    child: int, value: Value, sensor: Sensor | None, *, metric: bool, name: str | None = None
) -> EntityPlan:
    """The entity a value of a child becomes on its own (raise ProtocolError if none)."""
    spec = VALUES.get(value)
    if spec is None:
        raise ProtocolError(f"{value.name} is a cover command, but child {child} is no cover")
    unit = spec.unit
    if value is Value.V_LEVEL and sensor is not None:
        unit = LEVEL_UNITS.get(sensor, unit)
    if unit == "°C" and not metric:
        unit = "°F"
    return EntityPlan(
        f"{spec.name}_{child}",
        child,
        spec.kind,
        frozenset({value}),
        unit,
        spec.device_class,
        spec.number,
        name,
    )


# ----- values in ------------------------------------------------------------------------------


def _flag(payload: str, what: str) -> bool:
    if payload == "1":
        return True
    if payload == "0":
        return False
    raise InvalidValue(f"{what} must be 1 or 0, got {payload!r}")


def parse_number(payload: str, what: str) -> int | float:
    """A payload as a number (ints stay ints); raise InvalidValue if it is not one."""
    text = payload.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise InvalidValue(f"{what} must be a number, got {payload!r}") from None
    if not math.isfinite(number):
        raise InvalidValue(f"{what} must be a finite number, got {payload!r}")
    return number


def _percent(payload: str, what: str) -> int | float:
    number = parse_number(payload, what)
    if not 0 <= number <= 100:
        raise InvalidValue(f"{what} must be 0-100, got {payload!r}")
    return number


def read_value(plan: EntityPlan, value: Value, payload: str) -> tuple[Any, dict[str, Any]]:
    """A value of a child as ``(state, attributes)`` of its entity; None state: keep it."""
    what = value.name
    kind = plan.kind
    if kind in (EntityKind.SWITCH, EntityKind.LIGHT) and value is Value.V_STATUS:
        return ("on" if _flag(payload, what) else "off"), {}
    if kind is EntityKind.LIGHT and value is Value.V_PERCENTAGE:
        percent = _percent(payload, what)
        return ("on" if percent > 0 else "off"), {"brightness": round(percent * 255 / 100)}
    if kind is EntityKind.COVER:
        if value is Value.V_PERCENTAGE:
            position = _percent(payload, what)
            return ("closed" if position == 0 else "open"), {"position": position}
        moving = {Value.V_UP: "opening", Value.V_DOWN: "closing", Value.V_STOP: "stopped"}
        return moving[value], {}
    if kind is EntityKind.LOCK:
        return ("locked" if _flag(payload, what) else "unlocked"), {}
    if kind is EntityKind.BINARY_SENSOR:
        return ("on" if _flag(payload, what) else "off"), {}
    if kind is EntityKind.BUTTON:
        word = "on" if value is Value.V_SCENE_ON else "off"
        return f"scene_{payload.strip()[:20]}_{word}", {}
    if plan.number:
        if plan.unit == "%":
            return _percent(payload, what), {}
        return parse_number(payload, what), {}
    return payload, {}


# ----- commands out ---------------------------------------------------------------------------


def command_values(
    plan: EntityPlan, action: str, params: Mapping[str, Any], current: Any
) -> list[tuple[Value, str]]:
    """The set messages (value type, payload) a hub command becomes for this entity."""
    kind = plan.kind
    if action == "toggle":
        action = "turn_off" if current == "on" else "turn_on"
    if kind in (EntityKind.SWITCH, EntityKind.LIGHT) and action in ("turn_on", "turn_off"):
        out = [(Value.V_STATUS, "1" if action == "turn_on" else "0")]
        if kind is EntityKind.LIGHT and action == "turn_on" and "brightness" in params:
            percent = round(float(params["brightness"]) * 100 / 255)
            out.append((Value.V_PERCENTAGE, str(percent)))
        return out
    if kind is EntityKind.COVER:
        simple = {"open": Value.V_UP, "close": Value.V_DOWN, "stop": Value.V_STOP}
        if action in simple:
            return [(simple[action], "1")]
        if action == "set_position":
            return [(Value.V_PERCENTAGE, format_number(round(float(params["position"]))))]
    if kind is EntityKind.LOCK and action in ("lock", "unlock"):
        return [(Value.V_LOCK_STATUS, "1" if action == "lock" else "0")]
    raise CommandError(f"a MySensors {kind.value} cannot {action}")


def answer_value(plan: EntityPlan, value: Value, state: Any, attributes: Mapping[str, Any]) -> str:
    """The payload that answers a node's req for ``value`` from the entity's current state."""
    if value in (Value.V_STATUS, Value.V_TRIPPED, Value.V_ARMED):
        return "1" if state == "on" else "0"
    if value is Value.V_LOCK_STATUS:
        return "1" if state == "locked" else "0"
    if value is Value.V_PERCENTAGE and plan.kind is EntityKind.LIGHT:
        brightness = attributes.get("brightness")
        if not isinstance(brightness, int | float) or state != "on":
            return "0"
        return str(round(brightness * 100 / 255))
    if value is Value.V_PERCENTAGE and plan.kind is EntityKind.COVER:
        position = attributes.get("position")
        return format_number(position) if isinstance(position, int | float) else "0"
    if isinstance(state, bool):
        return "1" if state else "0"
    if isinstance(state, int | float):
        return format_number(state)
    return str(state)
