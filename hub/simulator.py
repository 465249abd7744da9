"""A simulated household speaking the hub's own MQTT device convention (``hub simulate``).

The device classes are pure: they keep state, describe themselves, produce realistic
reports for a given time and apply commands, without touching MQTT or the clock unless
told to. :class:`Simulator` puts a list of them on a broker with one paho client, paces
their reports at an exact average rate and answers commands on ``<prefix>/<id>/set``.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import random
import re
import secrets
import signal
import socket
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hub.model import check_id
from hub.mqtt import BrokerAddress
from hub.simfirmware import HaDiscovery, Msg, make_dialects

_LOGGER = logging.getLogger(__name__)

AREAS: tuple[str, ...] = (
    "kitchen",
    "living_room",
    "bedroom",
    "bathroom",
    "hallway",
    "office",
    "garage",
    "garden",
)
MANUFACTURER = "Hub Sim"
PRESSES: tuple[str, ...] = ("single", "double", "long")
CLIMATE_SIM_MODES: tuple[str, ...] = ("heat", "off", "auto", "cool")


class SimulatorError(RuntimeError):
    """The simulator could not reach or talk to its MQTT broker."""


class _CommandError(Exception):
    """A command a device cannot apply; the message says why."""


def _hour_of_day(now: float) -> float:
    """Return the local hour of day (0 to 24, fractional) at wall-clock time ``now``."""
    local = time.localtime(now)
    return local.tm_hour + local.tm_min / 60 + local.tm_sec / 3600


def _day_curve(now: float) -> float:
    """Return -1 (around 03:00) to 1 (around 15:00): the shape of a day's warmth."""
    return math.sin(2 * math.pi * (_hour_of_day(now) - 9) / 24)


def _random_mac(rng: random.Random) -> str:
    # 0x02: a locally administered unicast address, never a real vendor's.
    return "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))


def _random_ieee(rng: random.Random) -> str:
    return f"0x00124b00{rng.getrandbits(32):08x}"


def _param_number(params: Mapping[str, Any], name: str, low: float, high: float) -> float:
    """Return ``params[name]`` as a float in [low, high], or reject the command saying why."""
    if name not in params:
        raise _CommandError(f"missing parameter {name!r}")
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _CommandError(f"parameter {name!r} must be a number, got {value!r}")
    if not low <= value <= high:
        raise _CommandError(
            f"parameter {name!r} must be between {low:g} and {high:g}, got {value!r}"
        )
    return float(value)


def _allow_params(params: Mapping[str, Any], allowed: frozenset[str] = frozenset()) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise _CommandError(f"unexpected parameter(s) {', '.join(map(repr, unknown))}")


def _no_such_action(entity: str, action: str, actions: tuple[str, ...]) -> _CommandError:
    return _CommandError(f"entity {entity!r} has no action {action!r} (use {', '.join(actions)})")


class SimDevice(ABC):
    """A simulated device: its description, its state, its reports and its answers to commands.

    ``initial_state`` returns the full current state (before any report or command, that is
    the initial state); ``next_report`` a partial update for a moment in time. Time is always
    passed in, in seconds since the epoch, so that the classes stay deterministic under test.
    """

    slug: ClassVar[str] = "device"
    model: ClassVar[str] = "Generic"
    firmware: ClassVar[str] = "1.0.0"
    # "wifi" devices are known by MAC and IP, "zigbee" ones by their IEEE address.
    radio: ClassVar[str] = "wifi"

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        self.id = check_id(device_id, "device id")
        self.area = check_id(area, "area")
        self.name = name or device_id.replace("_", " ").capitalize()
        self.via: str | None = None
        # The device's own random source, for what happens outside next_report (commands).
        seed_rng = rng if rng is not None else random.Random(device_id)
        self._rng = random.Random(seed_rng.getrandbits(64))
        if identities is None:
            if self.radio == "zigbee":
                identities = {"ieee": _random_ieee(seed_rng)}
            else:
                ip = f"192.0.2.{seed_rng.randrange(2, 255)}"
                identities = {"mac": _random_mac(seed_rng), "ip": ip}
        self.identities = dict(identities)
        # The MQTT dialect the device speaks (see hub.simfirmware): "native" is the hub's own.
        self.dialect = "native"
        self._last_time: float | None = None

    @abstractmethod
    def entities(self) -> dict[str, dict[str, Any]]:
        """Return the entity descriptions of the config payload, by entity key."""

    def config_payload(self) -> dict[str, Any]:
        """Return the retained ``<prefix>/<id>/config`` document."""
        return {
            "name": self.name,
            "area": self.area,
            "manufacturer": MANUFACTURER,
            "model": self.model,
            "firmware": self.firmware,
            "via": self.via,
            "identities": dict(self.identities),
            "entities": self.entities(),
        }

    @abstractmethod
    def initial_state(self) -> dict[str, Any]:
        """Return the full current state (the initial one until reports or commands change it)."""

    @abstractmethod
    def next_report(self, now: float, rng: random.Random) -> dict[str, Any]:
        """Advance the simulation to ``now`` and return one realistic (partial) state report."""

    def next_wakeup(self) -> float | None:
        """Return when the device has something to report on its own (a cover arriving)."""
        return None

    def apply_command(
        self, command: Mapping[str, Any], *, now: float | None = None
    ) -> dict[str, Any] | None:
        """Apply a ``set`` command; return the new partial state, or None (logged) if invalid."""
        when = time.time() if now is None else now
        try:
            if not isinstance(command, Mapping):
                raise _CommandError("a command must be a JSON object")
            entity = command.get("entity")
            entities = self.entities()
            if not isinstance(entity, str) or entity not in entities:
                raise _CommandError(f"unknown entity {entity!r} (has {', '.join(entities)})")
            action = command.get("action")
            if not isinstance(action, str):
                raise _CommandError(f"'action' must be a string, got {action!r}")
            params = command.get("params", {})
            if params is None:
                params = {}
            if not isinstance(params, Mapping):
                raise _CommandError(f"'params' must be an object, got {params!r}")
            return self._command(entity, action, params, when)
        except _CommandError as exc:
            text = repr(command)
            _LOGGER.warning(
                "%s: ignored command %s: %s",
                self.id,
                text if len(text) <= 200 else text[:200] + "...",
                exc,
            )
            return None

    def _command(
        self, entity: str, action: str, params: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        raise _CommandError(f"entity {entity!r} takes no commands")

    def _elapsed(self, now: float) -> float:
        """Return the seconds since the last call (0 the first time or if time went back)."""
        last = self._last_time
        if last is None or now > last:
            self._last_time = now
        return 0.0 if last is None or now <= last else now - last

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, area={self.area!r})"


@dataclass(frozen=True, slots=True)
class Appliance:
    """How the appliance behind a plug draws power while the plug is on."""

    name: str
    watts: float
    spread: float = 0.05
    # A thermostat-like cycle: seconds per cycle and the share of it spent drawing `watts`.
    cycle: float = 0.0
    duty: float = 1.0
    idle: float = 1.0
    # A program that starts when the plug is switched on: (seconds, watts) phases, then `idle`.
    program: tuple[tuple[float, float], ...] = ()

    def power(self, now: float, on_since: float, phase: float, rng: random.Random) -> float:
        """Return the draw in watts at ``now`` for a plug switched on at ``on_since``."""
        watts = self.watts
        if self.program:
            elapsed = now - on_since
            watts = self.idle
            for seconds, phase_watts in self.program:
                if elapsed < seconds:
                    watts = phase_watts
                    break
                elapsed -= seconds
        elif self.cycle > 0 and ((now + phase) % self.cycle) / self.cycle >= self.duty:
            watts = self.idle
        return max(0.0, watts * (1 + rng.uniform(-self.spread, self.spread)))


APPLIANCES: dict[str, Appliance] = {
    a.name: a
    for a in (
        Appliance("kettle", 2000, program=((150, 2000),), idle=0.8),
        Appliance("fridge", 110, 0.1, cycle=2400, duty=0.4, idle=2.0),
        Appliance("tv", 95, 0.15),
        Appliance("computer", 140, 0.3),
        Appliance("router", 8, 0.05),
        Appliance("towel_rail", 300, 0.03, cycle=900, duty=0.6, idle=0.5),
        Appliance("charger", 200, 0.08, program=((3 * 3600, 200),), idle=4.0),
        Appliance("washer", 2000, 0.1, program=((600, 2000), (2400, 220), (600, 450)), idle=1.5),
        Appliance("dishwasher", 1900, 0.1, program=((1200, 1900), (1800, 90), (900, 1700))),
        Appliance("pump", 520, 0.05),
        Appliance("lamp", 9, 0.05),
    )
}
# Appliances that are normally left on.
_ALWAYS_ON = frozenset({"fridge", "router"})
STANDBY_WATTS = 0.3


class Plug(SimDevice):
    """A smart plug with a switch, a power sensor and an energy meter that integrates power."""

    slug = "plug"
    model = "Plug S1"
    firmware = "1.4.2"
    ACTIONS: ClassVar[tuple[str, ...]] = ("turn_on", "turn_off", "toggle")

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        appliance: str = "lamp",
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(device_id, area=area, name=name, rng=rng, identities=identities)
        if appliance not in APPLIANCES:
            raise ValueError(
                f"{device_id}: unknown appliance {appliance!r} (use {', '.join(APPLIANCES)})"
            )
        self.appliance = APPLIANCES[appliance]
        self.on = appliance in _ALWAYS_ON or (
            self.appliance.program == () and self._rng.random() < 0.3
        )
        self.energy_kwh = round(self._rng.uniform(5, 400), 3)
        self._phase = self._rng.uniform(0, 10_000)  # desynchronises fridge cycles
        self._on_since: float | None = None
        self.power_w = round(self.appliance.watts if self.on else STANDBY_WATTS, 1)

    def entities(self) -> dict[str, dict[str, Any]]:
        return {
            "switch": {"kind": "switch", "name": "Switch"},
            "power": {"kind": "sensor", "unit": "W", "device_class": "power", "name": "Power"},
            "energy": {
                "kind": "energy_meter",
                "unit": "kWh",
                "device_class": "energy",
                "name": "Energy",
            },
        }

    def initial_state(self) -> dict[str, Any]:
        return {
            "switch": "on" if self.on else "off",
            "power": self.power_w,
            "energy": round(self.energy_kwh, 4),
        }

    def _integrate(self, now: float) -> None:
        # The meter integrates the draw it last measured over the time since then.
        self.energy_kwh += self.power_w * self._elapsed(now) / 3_600_000

    def _measure(self, now: float, rng: random.Random) -> None:
        if not self.on:
            watts = STANDBY_WATTS + rng.uniform(-0.05, 0.05)
        else:
            if self._on_since is None:
                self._on_since = now
            watts = self.appliance.power(now, self._on_since, self._phase, rng)
        self.power_w = round(watts, 1)

    def next_report(self, now: float, rng: random.Random) -> dict[str, Any]:
        self._integrate(now)
        self._measure(now, rng)
        report: dict[str, Any] = {"power": self.power_w, "energy": round(self.energy_kwh, 4)}
        if rng.random() < 0.2:  # the periodic telemetry also repeats the relay state
            report["switch"] = "on" if self.on else "off"
        return report

    def _command(
        self, entity: str, action: str, params: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        if entity != "switch":
            raise _CommandError(f"entity {entity!r} is a sensor and takes no commands")
        if action not in self.ACTIONS:
            raise _no_such_action(entity, action, self.ACTIONS)
        _allow_params(params)
        self._integrate(now)
        on = not self.on if action == "toggle" else action == "turn_on"
        if on and not self.on:
            self._on_since = now
        self.on = on
        self._measure(now, self._rng)
        return {
            "switch": "on" if on else "off",
            "power": self.power_w,
            "energy": round(self.energy_kwh, 4),
        }


class Light(SimDevice):
    """A dimmable bulb with colour temperature."""

    slug = "light"
    model = "Bulb W2"
    firmware = "2.1.0"
    ACTIONS: ClassVar[tuple[str, ...]] = ("turn_on", "turn_off", "toggle")
    MIN_MIREDS: ClassVar[int] = 153
    MAX_MIREDS: ClassVar[int] = 500

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(device_id, area=area, name=name, rng=rng, identities=identities)
        self.on = self._rng.random() < 0.3
        self.brightness = self._rng.choice((77, 128, 180, 255))
        self.color_temp = self._rng.choice((250, 320, 370, 454))

    def entities(self) -> dict[str, dict[str, Any]]:
        return {"light": {"kind": "light", "name": "Light"}}

    def _state(self) -> dict[str, Any]:
        return {
            "light": {
                "state": "on" if self.on else "off",
                "brightness": self.brightness,
                "color_temp": self.color_temp,
            }
        }

    def initial_state(self) -> dict[str, Any]:
        return self._state()

    def next_report(self, now: float, rng: random.Random) -> dict[str, Any]:
        return self._state()  # a bulb only changes when told to; this is its heartbeat

    def _command(
        self, entity: str, action: str, params: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        if action not in self.ACTIONS:
            raise _no_such_action(entity, action, self.ACTIONS)
        if action == "turn_off":
            _allow_params(params, frozenset({"transition"}))
            on = False
        else:
            _allow_params(params, frozenset({"brightness", "color_temp", "transition"}))
            on = action == "turn_on" or not self.on
        if "transition" in params:
            _param_number(params, "transition", 0, 3600)  # accepted, applied at once
        brightness = self.brightness
        color_temp = self.color_temp
        if on:
            if "brightness" in params:
                brightness = round(_param_number(params, "brightness", 0, 255))
            if "color_temp" in params:
                low, high = self.MIN_MIREDS, self.MAX_MIREDS
                color_temp = round(_param_number(params, "color_temp", low, high))
        if brightness == 0:  # dimmed to nothing is off; keep the last visible level
            on, brightness = False, self.brightness
        self.on, self.brightness, self.color_temp = on, brightness, color_temp
        return self._state()


class _BatterySensor(SimDevice):
    """A battery-powered Zigbee sensor whose battery drains slowly."""

    radio = "zigbee"

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(device_id, area=area, name=name, rng=rng, identities=identities)
        self.battery = self._rng.uniform(55, 100)

    def _drain(self) -> int:
        self.battery = max(1.0, self.battery - 0.0005)
        return round(self.battery)


class MotionSensor(_BatterySensor):
    """A PIR motion sensor: bursts of motion, more by day than by night."""

    slug = "motion"
    model = "Motion M1"
    firmware = "1.0.8"

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(device_id, area=area, name=name, rng=rng, identities=identities)
        self.motion = False
        self._until = 0.0

    def entities(self) -> dict[str, dict[str, Any]]:
        return {"motion": {"kind": "binary_sensor", "device_class": "motion", "name": "Motion"}}

    def _state(self) -> dict[str, Any]:
        return {"motion": {"state": "on" if self.motion else "off", "battery": round(self.battery)}}

    def initial_state(self) -> dict[str, Any]:
        return self._state()

    def next_report(self, now: float, rng: random.Random) -> dict[str, Any]:
        if self.motion and now < self._until:
            if rng.random() < 0.3:  # someone is still moving about
                self._until = max(self._until, now + rng.uniform(10, 60))
        elif self.motion:
            self.motion = False
        else:
            hour = _hour_of_day(now)
            chance = 0.25 if 7 <= hour < 23 else 0.03
            if rng.random() < chance:
                self.motion = True
                self._until = now + rng.uniform(15, 90)
        self._drain()
        return self._state()

    def next_wakeup(self) -> float | None:
        return self._until if self.motion else None


class DoorSensor(_BatterySensor):
    """A contact sensor on a door or window: ``on`` means open."""

    slug = "door"
    model = "Contact C1"
    firmware = "1.0.8"

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        device_class: str = "door",
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(device_id, area=area, name=name, rng=rng, identities=identities)
        if device_class not in ("door", "window", "garage_door"):
            raise ValueError(f"{device_id}: device_class must be door, window or garage_door")
        self.device_class = device_class
        self.open = False
        self._until = 0.0

    def entities(self) -> dict[str, dict[str, Any]]:
        return {
            "contact": {
                "kind": "binary_sensor",
                "device_class": self.device_class,
                "name": self.device_class.replace("_", " ").capitalize(),
            }
        }

    def _state(self) -> dict[str, Any]:
        return {"contact": {"state": "on" if self.open else "off", "battery": round(self.battery)}}

    def initial_state(self) -> dict[str, Any]:
        return self._state()

    def next_report(self, now: float, rng: random.Random) -> dict[str, Any]:
        if self.open and now >= self._until:
            self.open = False
        elif not self.open and rng.random() < 0.05:
            self.open = True
            # Windows stay open for a while; doors are walked through.
            longest = 1800.0 if self.device_class == "window" else 60.0
            self._until = now + rng.uniform(5, longest)
        self._drain()
        return self._state()

    def next_wakeup(self) -> float | None:
        return self._until if self.open else None


# Area climate: (base °C, day swing °C, base humidity %).
_AREA_CLIMATE: dict[str, tuple[float, float, float]] = {
    "kitchen": (21.0, 1.2, 50.0),
    "living_room": (21.5, 1.0, 45.0),
    "bedroom": (19.0, 0.8, 48.0),
    "bathroom": (22.5, 1.0, 65.0),
    "hallway": (19.5, 0.8, 45.0),
    "office": (21.0, 1.5, 42.0),
    "garage": (13.0, 3.0, 60.0),
    "garden": (10.0, 6.0, 75.0),
}


class ClimateSensor(_BatterySensor):
    """A temperature and humidity sensor following the day with a slow random drift."""

    slug = "sensor"
    model = "Climate T1"
    firmware = "1.2.0"

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(device_id, area=area, name=name, rng=rng, identities=identities)
        self._base, self._swing, self._humidity_base = _AREA_CLIMATE.get(area, (20.0, 1.0, 45.0))
        self._drift = self._rng.uniform(-0.5, 0.5)
        self._humidity_drift = self._rng.uniform(-3, 3)
        self.temperature = round(self._base + self._drift, 1)
        self.humidity = round(self._humidity_base + self._humidity_drift, 1)

    def entities(self) -> dict[str, dict[str, Any]]:
        return {
            "temperature": {
                "kind": "sensor",
                "unit": "°C",
                "device_class": "temperature",
                "name": "Temperature",
            },
            "humidity": {
                "kind": "sensor",
                "unit": "%",
                "device_class": "humidity",
                "name": "Humidity",
            },
        }

    def initial_state(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "humidity": self.humidity}

    def next_report(self, now: float, rng: random.Random) -> dict[str, Any]:
        curve = _day_curve(now)
        self._drift = min(1.5, max(-1.5, self._drift + rng.gauss(0, 0.05)))
        self._humidity_drift = min(8.0, max(-8.0, self._humidity_drift + rng.gauss(0, 0.3)))
        self.temperature = round(self._base + self._swing * curve + self._drift, 1)
        humidity = self._humidity_base - 1.5 * self._swing * curve + self._humidity_drift
        self.humidity = round(min(100.0, max(5.0, humidity)), 1)
        self._drain()
        pick = rng.random()
        if pick < 0.4:
            return {"temperature": self.temperature}
        if pick < 0.7:
            return {"humidity": self.humidity}
        return {"temperature": self.temperature, "humidity": self.humidity}


class Thermostat(SimDevice):
    """A radiator thermostat: the room warms toward the target while it heats."""

    slug = "thermostat"
    model = "Thermostat H3"
    firmware = "3.0.1"
    ACTIONS: ClassVar[tuple[str, ...]] = ("set_temperature", "set_mode", "turn_on", "turn_off")
    HEAT_RATE: ClassVar[float] = 0.6 / 600  # °C per second while heating (or cooling)
    HYSTERESIS: ClassVar[float] = 0.3

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(device_id, area=area, name=name, rng=rng, identities=identities)
        self.mode = "heat"
        self.target = self._rng.choice((20.0, 20.5, 21.0, 21.5))
        self.current = round(self.target + self._rng.uniform(-1.5, 0.3), 1)
        self._temperature = self.current  # unrounded
        self._last_mode = "heat"
        self.action = "idle"

    def entities(self) -> dict[str, dict[str, Any]]:
        return {"thermostat": {"kind": "climate", "unit": "°C", "name": "Thermostat"}}

    def _state(self) -> dict[str, Any]:
        return {
            "thermostat": {
                "state": self.mode,
                "current_temperature": self.current,
                "target_temperature": self.target,
                "hvac_action": self.action,
            }
        }

    def initial_state(self) -> dict[str, Any]:
        return self._state()

    def _advance(self, now: float) -> None:
        # Cap the step so a long silence does not count as hours of heating at once.
        dt = min(self._elapsed(now), 3600.0)
        ambient = 16.0 + 1.5 * _day_curve(now)
        temp = self._temperature
        heat = self.mode in ("heat", "auto")
        cool = self.mode in ("cool", "auto")
        # Hysteresis: start below target - h, stop once the target is reached.
        if heat and (temp < self.target - self.HYSTERESIS or self.action == "heating"):
            self.action = "heating" if temp < self.target else "idle"
        elif cool and (temp > self.target + self.HYSTERESIS or self.action == "cooling"):
            self.action = "cooling" if temp > self.target else "idle"
        else:
            self.action = "idle"
        if self.action == "heating":
            temp = min(self.target + 0.1, temp + self.HEAT_RATE * dt)
        elif self.action == "cooling":
            temp = max(self.target - 0.1, temp - self.HEAT_RATE * dt)
        else:  # the room loses (or gains) heat toward the ambient temperature
            temp += (ambient - temp) * (1 - math.exp(-dt / 7200))
        self._temperature = temp
        self.current = round(temp, 1)

    def next_report(self, now: float, rng: random.Random) -> dict[str, Any]:
        self._advance(now)
        return self._state()

    def _command(
        self, entity: str, action: str, params: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        if action not in self.ACTIONS:
            raise _no_such_action(entity, action, self.ACTIONS)
        self._advance(now)
        if action == "set_temperature":
            _allow_params(params, frozenset({"temperature"}))
            self.target = round(_param_number(params, "temperature", 5, 30) * 2) / 2
        elif action == "set_mode":
            _allow_params(params, frozenset({"mode"}))
            mode = params.get("mode")
            if mode not in CLIMATE_SIM_MODES:
                raise _CommandError(
                    f"parameter 'mode' must be one of {', '.join(CLIMATE_SIM_MODES)}, got {mode!r}"
                )
            self.mode = str(mode)
        else:
            _allow_params(params)
            self.mode = self._last_mode if action == "turn_on" else "off"
        if self.mode != "off":
            self._last_mode = self.mode
        self.action = "idle"
        self._advance(now)  # re-decide heating for the new setting (zero time passes)
        return self._state()


class Cover(SimDevice):
    """A motorised blind that travels at a fixed speed and reports when it arrives."""

    slug = "blinds"
    model = "Blind Motor B1"
    firmware = "1.1.5"
    ACTIONS: ClassVar[tuple[str, ...]] = ("open", "close", "stop", "set_position")
    TRAVEL_SECONDS: ClassVar[float] = 15.0  # fully closed to fully open

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(device_id, area=area, name=name, rng=rng, identities=identities)
        self.position = float(self._rng.choice((0, 100, 100, 60)))
        self.status = "closed" if self.position == 0 else "open"
        self._target: float | None = None
        self._moved_at = 0.0

    def entities(self) -> dict[str, dict[str, Any]]:
        return {"cover": {"kind": "cover", "device_class": "blind", "name": "Blinds"}}

    def _state(self) -> dict[str, Any]:
        return {"cover": {"state": self.status, "position": round(self.position)}}

    def initial_state(self) -> dict[str, Any]:
        return self._state()

    def _advance(self, now: float) -> None:
        if self._target is None:
            return
        step = max(0.0, now - self._moved_at) * 100 / self.TRAVEL_SECONDS
        self._moved_at = max(self._moved_at, now)
        if self.position < self._target:
            self.position = min(self._target, self.position + step)
        else:
            self.position = max(self._target, self.position - step)
        if abs(self.position - self._target) < 1e-6:  # floating point must not delay arrival
            self.position = self._target
            self._target = None
            self.status = "closed" if self.position == 0 else "open"

    def next_report(self, now: float, rng: random.Random) -> dict[str, Any]:
        self._advance(now)
        return self._state()

    def next_wakeup(self) -> float | None:
        if self._target is None:
            return None
        return self._moved_at + abs(self._target - self.position) * self.TRAVEL_SECONDS / 100

    def _command(
        self, entity: str, action: str, params: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        if action not in self.ACTIONS:
            raise _no_such_action(entity, action, self.ACTIONS)
        self._advance(now)
        if action == "stop":
            _allow_params(params)
            if self._target is not None:
                self._target = None
                self.status = "stopped"
            return self._state()
        if action == "set_position":
            _allow_params(params, frozenset({"position"}))
            target = float(round(_param_number(params, "position", 0, 100)))
        else:
            _allow_params(params)
            target = 100.0 if action == "open" else 0.0
        if target == self.position:
            self._target = None
            self.status = "closed" if target == 0 else "open"
        else:
            self._target = target
            self._moved_at = now
            self.status = "opening" if target > self.position else "closing"
        return self._state()


class Lock(SimDevice):
    """A battery-powered door lock."""

    slug = "lock"
    model = "Smart Lock L2"
    firmware = "2.3.0"
    radio = "zigbee"
    ACTIONS: ClassVar[tuple[str, ...]] = ("lock", "unlock")

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(device_id, area=area, name=name, rng=rng, identities=identities)
        self.locked = True
        self.battery = self._rng.uniform(40, 100)

    def entities(self) -> dict[str, dict[str, Any]]:
        return {"lock": {"kind": "lock", "name": "Lock"}}

    def _state(self) -> dict[str, Any]:
        state = "locked" if self.locked else "unlocked"
        return {"lock": {"state": state, "battery": round(self.battery)}}

    def initial_state(self) -> dict[str, Any]:
        return self._state()

    def next_report(self, now: float, rng: random.Random) -> dict[str, Any]:
        self.battery = max(1.0, self.battery - 0.0005)
        return self._state()

    def _command(
        self, entity: str, action: str, params: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        if action not in self.ACTIONS:
            raise _no_such_action(entity, action, self.ACTIONS)
        _allow_params(params)
        self.locked = action == "lock"
        return self._state()


class Button(_BatterySensor):
    """A wall switch that now and then reports a press, otherwise its battery level."""

    slug = "button"
    model = "Wall Button W1"
    firmware = "1.0.3"
    ACTIONS: ClassVar[tuple[str, ...]] = ("press",)

    def __init__(
        self,
        device_id: str,
        *,
        area: str,
        name: str | None = None,
        rng: random.Random | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(device_id, area=area, name=name, rng=rng, identities=identities)
        self.last_press = "single"

    def entities(self) -> dict[str, dict[str, Any]]:
        return {
            "button": {"kind": "button", "name": "Button"},
            "battery": {
                "kind": "sensor",
                "unit": "%",
                "device_class": "battery",
                "name": "Battery",
            },
        }

    def initial_state(self) -> dict[str, Any]:
        # No press has happened yet: a press is an event, not a standing state.
        return {"battery": round(self.battery)}

    def next_report(self, now: float, rng: random.Random) -> dict[str, Any]:
        battery = self._drain()
        if rng.random() < 0.03:
            self.last_press = rng.choices(PRESSES, weights=(0.7, 0.2, 0.1))[0]
            return {"button": self.last_press}
        return {"battery": battery}

    def _command(
        self, entity: str, action: str, params: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        if entity != "button":
            raise _CommandError(f"entity {entity!r} is a sensor and takes no commands")
        if action not in self.ACTIONS:
            raise _no_such_action(entity, action, self.ACTIONS)
        _allow_params(params, frozenset({"press"}))
        press = params.get("press", "single")
        if press not in PRESSES:
            raise _CommandError(
                f"parameter 'press' must be one of {', '.join(PRESSES)}, got {press!r}"
            )
        self.last_press = str(press)
        return {"button": self.last_press}


# The base household, most varied first so that a small count still covers every kind:
# (device id, class, area, name, extra constructor arguments).
_BASE_HOME: tuple[tuple[str, type[SimDevice], str, str, dict[str, Any]], ...] = (
    ("kitchen_plug", Plug, "kitchen", "Kitchen plug", {"appliance": "kettle"}),
    ("kitchen_light", Light, "kitchen", "Kitchen light", {}),
    ("hallway_motion", MotionSensor, "hallway", "Hallway motion", {}),
    ("front_door", DoorSensor, "hallway", "Front door", {}),
    ("living_room_climate", ClimateSensor, "living_room", "Living room climate", {}),
    ("living_room_thermostat", Thermostat, "living_room", "Living room thermostat", {}),
    ("living_room_blinds", Cover, "living_room", "Living room blinds", {}),
    ("front_door_lock", Lock, "hallway", "Front door lock", {}),
    ("hallway_button", Button, "hallway", "Hallway wall switch", {}),
    ("living_room_tv_plug", Plug, "living_room", "TV plug", {"appliance": "tv"}),
    ("living_room_light", Light, "living_room", "Living room light", {}),
    ("bedroom_light", Light, "bedroom", "Bedroom light", {}),
    ("bedroom_climate", ClimateSensor, "bedroom", "Bedroom climate", {}),
    ("bathroom_climate", ClimateSensor, "bathroom", "Bathroom climate", {}),
    ("kitchen_fridge_plug", Plug, "kitchen", "Fridge plug", {"appliance": "fridge"}),
    ("office_desk_plug", Plug, "office", "Desk plug", {"appliance": "computer"}),
    ("office_light", Light, "office", "Office light", {}),
    ("bathroom_light", Light, "bathroom", "Bathroom light", {}),
    ("bathroom_motion", MotionSensor, "bathroom", "Bathroom motion", {}),
    ("garage_door", DoorSensor, "garage", "Garage door", {"device_class": "garage_door"}),
    ("garage_light", Light, "garage", "Garage light", {}),
    ("garden_climate", ClimateSensor, "garden", "Garden climate", {}),
    ("garden_light", Light, "garden", "Garden light", {}),
    ("kitchen_motion", MotionSensor, "kitchen", "Kitchen motion", {}),
    ("bedroom_blinds", Cover, "bedroom", "Bedroom blinds", {}),
    ("bedroom_button", Button, "bedroom", "Bedside button", {}),
    ("office_climate", ClimateSensor, "office", "Office climate", {}),
    ("hallway_light", Light, "hallway", "Hallway light", {}),
    ("garage_charger_plug", Plug, "garage", "E-bike charger plug", {"appliance": "charger"}),
    ("living_room_motion", MotionSensor, "living_room", "Living room motion", {}),
    ("bedroom_window", DoorSensor, "bedroom", "Bedroom window", {"device_class": "window"}),
    ("bathroom_towel_rail_plug", Plug, "bathroom", "Towel rail plug", {"appliance": "towel_rail"}),
    ("garage_washer_plug", Plug, "garage", "Washing machine plug", {"appliance": "washer"}),
    ("kitchen_climate", ClimateSensor, "kitchen", "Kitchen climate", {}),
    ("office_motion", MotionSensor, "office", "Office motion", {}),
    ("garden_pump_plug", Plug, "garden", "Garden pump plug", {"appliance": "pump"}),
)
BASE_HOME_SIZE = len(_BASE_HOME)

# The mixed home (`hub demo`, `hub bench --scenario firmware`): which base device speaks which
# firmware. Devices the example rules, scenes and groups name keep their entity ids: plugs on
# Tasmota keep `.power` (the relay is `.relay`), discovery devices choose their own ids, and
# the lights, motion and door sensors the rules use stay on the hub's own convention.
MIXED_DIALECTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "kitchen_plug",
            "kitchen_fridge_plug",
            "office_desk_plug",
            "garage_charger_plug",
            "garage_washer_plug",
            "bathroom_towel_rail_plug",
            "garden_pump_plug",
            "kitchen_climate",
        ),
        "tasmota",
    ),
    # The garage light hangs on a Shelly Plus 1PM relay (switch_0, power_0, energy_0).
    **dict.fromkeys(("garage_light", "garden_climate"), "shelly"),
    **dict.fromkeys(
        (
            "bathroom_motion",
            "living_room_motion",
            "office_motion",
            "living_room_climate",
            "bedroom_climate",
            "bathroom_climate",
            "office_climate",
            "hallway_button",
            "bedroom_button",
            "bathroom_light",
            "garden_light",
            "bedroom_blinds",
        ),
        "zigbee2mqtt",
    ),
    **dict.fromkeys(
        ("living_room_thermostat", "front_door_lock", "living_room_blinds", "living_room_tv_plug"),
        "ha_discovery",
    ),
}
# In the mixed home the garage light is a lamp behind a relay with a power meter.
_MIXED_CLASSES: dict[str, tuple[type[SimDevice], dict[str, Any]]] = {
    "garage_light": (Plug, {"appliance": "lamp"}),
}
# Extras follow _EXTRA_CYCLE (plug, sensor, light, motion, door, plug, sensor, light,
# thermostat, blinds, lock, button): per 12 devices 2 Tasmota (a POW plug, a TH sensor),
# 2 Shelly (a Plus 1PM, a Plus H&T), 5 Zigbee2MQTT (bulbs, motion, lock, button) and
# 3 discovery devices (door sensor, thermostat, blinds).
MIXED_EXTRA_DIALECTS: tuple[str, ...] = (
    "tasmota",
    "tasmota",
    "zigbee2mqtt",
    "zigbee2mqtt",
    "ha_discovery",
    "shelly",
    "shelly",
    "zigbee2mqtt",
    "ha_discovery",
    "ha_discovery",
    "zigbee2mqtt",
    "zigbee2mqtt",
)

# Extra devices cycle through these; plugs and climate sensors come twice because a large
# building is mostly metering and sensing.
_EXTRA_CYCLE: tuple[tuple[str, type[SimDevice]], ...] = (
    ("plug", Plug),
    ("sensor", ClimateSensor),
    ("light", Light),
    ("motion", MotionSensor),
    ("door", DoorSensor),
    ("plug", Plug),
    ("sensor", ClimateSensor),
    ("light", Light),
    ("thermostat", Thermostat),
    ("blinds", Cover),
    ("lock", Lock),
    ("button", Button),
)
_EXTRA_APPLIANCES: tuple[str, ...] = ("lamp", "tv", "computer", "fridge", "router", "towel_rail")


def _device_ip(index: int) -> str:
    """Return a unique documentation or private address for the ``index``-th Wi-Fi device."""
    nets = ("192.0.2", "198.51.100", "203.0.113")  # RFC 5737 documentation networks
    block, host = divmod(index, 250)
    if block < len(nets):
        return f"{nets[block]}.{host + 2}"
    block -= len(nets)
    return f"10.77.{block}.{host + 2}"


def build_home(count: int = 36, *, seed: int = 1, mixed: bool = False) -> list[SimDevice]:
    """Return a household of ``count`` devices over eight areas; the same seed gives the same home.

    Up to 36 devices come from a fixed household (``kitchen_plug``, ``front_door_lock``, ...);
    beyond that, numbered extras (``extra_plug_001``, ``extra_sensor_002``, ...) cycle through
    the kinds and the areas. Every device speaks the hub's own convention, or with ``mixed``
    the firmware dialects of :data:`MIXED_DIALECTS` and :data:`MIXED_EXTRA_DIALECTS`.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"build_home: count must be a positive integer, got {count!r}")
    rng = random.Random(seed)
    seen_macs: set[str] = set()
    wifi_index = 0
    zigbee_index = 0

    def identities(cls: type[SimDevice]) -> dict[str, str]:
        nonlocal wifi_index, zigbee_index
        if cls.radio == "zigbee":
            # Random bits plus a running count: unique, and still depends on the seed.
            zigbee_index += 1
            return {"ieee": f"0x00124b{rng.getrandbits(24):06x}{zigbee_index:04x}"}
        mac = _random_mac(rng)
        while mac in seen_macs:
            mac = _random_mac(rng)
        seen_macs.add(mac)
        ip = _device_ip(wifi_index)
        wifi_index += 1
        return {"mac": mac, "ip": ip}

    devices: list[SimDevice] = []
    for device_id, base_cls, area, name, base_extra in _BASE_HOME[:count]:
        cls, extra = (
            _MIXED_CLASSES[device_id]
            if mixed and device_id in _MIXED_CLASSES
            else (base_cls, base_extra)
        )
        ident = identities(cls)
        device = cls(device_id, area=area, name=name, rng=rng, identities=ident, **extra)
        if mixed:
            _speak(device, MIXED_DIALECTS.get(device_id, "native"))
        devices.append(device)
    extras = count - len(devices)
    width = max(3, len(str(extras)))
    for number in range(1, extras + 1):
        slug, cls = _EXTRA_CYCLE[(number - 1) % len(_EXTRA_CYCLE)]
        area = AREAS[(number - 1) % len(AREAS)]
        device_id = f"extra_{slug}_{number:0{width}d}"
        name = f"{area.replace('_', ' ').capitalize()} extra {slug} {number}"
        kwargs: dict[str, Any] = {}
        if cls is Plug:
            kwargs["appliance"] = rng.choice(_EXTRA_APPLIANCES)
        ident = identities(cls)
        device = cls(device_id, area=area, name=name, rng=rng, identities=ident, **kwargs)
        if mixed:
            _speak(device, MIXED_EXTRA_DIALECTS[(number - 1) % len(MIXED_EXTRA_DIALECTS)])
        devices.append(device)
    return devices


def _speak(device: SimDevice, dialect: str) -> None:
    """Make ``device`` speak ``dialect``, with the identity (IEEE address or MAC) it needs."""
    device.dialect = dialect
    if dialect == "zigbee2mqtt" and "ieee" not in device.identities:
        bits = random.Random(f"ieee:{device.id}").getrandbits(40)
        device.identities = {"ieee": f"0x00158d{bits:010x}"}
    elif dialect in ("tasmota", "shelly", "ha_discovery") and "mac" not in device.identities:
        device.identities = {"mac": _random_mac(random.Random(device.id))}


_PROTOCOLS: dict[str, tuple[MQTTProtocolVersion, ...]] = {
    "auto": (MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311),
    "5": (MQTTProtocolVersion.MQTTv5,),
    "3.1.1": (MQTTProtocolVersion.MQTTv311,),
}
_PROTOCOL_ALIASES = {"mqttv5": "5", "v5": "5", "mqttv311": "3.1.1", "311": "3.1.1"}
_PREFIX_PATTERN = re.compile(r"^[^/+#\x00]+(/[^/+#\x00]+)*$")
# CONNACK codes that mean "not this protocol version": v5's 0x84, and 3.1.1's 1 as paho reads it.
_WRONG_VERSION = frozenset({0x84, 1})
_CONNECT_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


def _set_nodelay(client: mqtt.Client) -> None:
    """Turn Nagle's algorithm off on the client's socket.

    paho leaves it on; with a steady stream of small reports, a command's answer then waits
    for the broker's delayed ACK, about 40 ms, behind them.
    """
    sock = client.socket()
    if isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # not TCP (a unix socket): nothing to tune
            _LOGGER.debug("simulator: cannot set TCP_NODELAY: %s", exc)


def _publish(client: mqtt.Client, msg: Msg) -> mqtt.MQTTMessageInfo:
    return client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)


def _close_client(client: mqtt.Client) -> None:
    """Disconnect, stop the network thread and close every socket of a paho client."""
    client.disconnect()
    client.loop_stop()
    # paho closes its wake-up socket pair only in __del__ (paho.mqtt.python#627); a client
    # caught in a reference cycle with its callbacks would leak it until the next GC run.
    reset = getattr(client, "_reset_sockets", None)
    if callable(reset):
        reset()


class Simulator:
    """Runs simulated devices on an MQTT broker with one client, pacing reports at ``rate``/s.

    ``rate`` is the total across all devices (0: no reports, commands are still answered).
    ``protocol`` is ``auto`` (MQTT 5, then 3.1.1 if the broker refuses it), ``5`` or ``3.1.1``.
    """

    def __init__(
        self,
        broker_url: str,
        devices: list[SimDevice],
        *,
        rate: float = 5.0,
        prefix: str = "home",
        client_id: str | None = None,
        protocol: str = "auto",
    ) -> None:
        self._broker = BrokerAddress.parse(broker_url)
        if not devices:
            raise ValueError("Simulator: no devices to simulate")
        self._devices: dict[str, SimDevice] = {}
        for device in devices:
            if device.id in self._devices:
                raise ValueError(f"Simulator: device id {device.id!r} is used twice")
            self._devices[device.id] = device
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
            raise ValueError(f"Simulator: rate must be a number, got {rate!r}")
        if rate < 0:
            raise ValueError(f"Simulator: rate must be 0 or more reports per second, got {rate}")
        if not _PREFIX_PATTERN.match(prefix):
            raise ValueError(
                f"Simulator: invalid topic prefix {prefix!r}: "
                "use topic levels without '+', '#' or empty levels"
            )
        protocol_key = _PROTOCOL_ALIASES.get(protocol.lower(), protocol.lower())
        if protocol_key not in _PROTOCOLS:
            raise ValueError(f"Simulator: protocol must be auto, 5 or 3.1.1, got {protocol!r}")
        self._protocols = _PROTOCOLS[protocol_key]
        self._rate = float(rate)
        self._prefix = prefix
        self._client_id = client_id or f"hub-sim-{os.getpid()}-{secrets.token_hex(4)}"
        self._order = list(self._devices.values())
        # Each device speaks its own dialect (the hub's convention under `prefix` by default).
        self._dialects = make_dialects(prefix)
        for device in self._order:
            dialect = self._dialects.get(device.dialect)
            if dialect is None:
                raise ValueError(
                    f"Simulator: {device.id} speaks an unknown dialect {device.dialect!r} "
                    f"(use {', '.join(self._dialects)})"
                )
            dialect.add(device)
        self._dialect_of = {d.id: self._dialects[d.dialect] for d in self._order}
        self._rng = random.Random(0x5EED)

        # Guards every device's state, the wake-up heap and the round-robin cursor. It is
        # held across computing *and* queueing a state message, so that a report computed
        # before a command can never be published after that command's answer.
        self._lock = threading.Lock()
        self._wakeups: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}
        self._cursor = 0

        self._client: mqtt.Client | None = None
        self._protocol: MQTTProtocolVersion | None = None
        self._connack: threading.Event = threading.Event()
        self._connack_code: int | None = None
        self._connack_reason = ""
        self._announced: list[mqtt.MQTTMessageInfo] = []
        self._stop_event = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

        self._reports_sent = 0
        self._commands_received = 0
        self._commands_applied = 0
        self._commands_invalid = 0

    @property
    def stats(self) -> dict[str, int]:
        """Counters: reports_sent, commands_received, commands_applied, commands_invalid."""
        return {
            "reports_sent": self._reports_sent,
            "commands_received": self._commands_received,
            "commands_applied": self._commands_applied,
            "commands_invalid": self._commands_invalid,
        }

    @property
    def devices(self) -> list[SimDevice]:
        """The simulated devices, in report order."""
        return list(self._order)

    @property
    def protocol(self) -> str | None:
        """The MQTT version in use once started: ``"5"`` or ``"3.1.1"``."""
        if self._protocol is None:
            return None
        return "5" if self._protocol is MQTTProtocolVersion.MQTTv5 else "3.1.1"

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- connection --------------------------------------------------------------------

    def start(self) -> None:
        """Connect, announce every device (config, online, state), listen for commands, pace."""
        if self._client is not None:
            raise SimulatorError("Simulator: already started")
        self._stop_event.clear()
        self._stopping = False
        reasons: list[str] = []
        for protocol in self._protocols:
            client = self._connect(protocol)
            if client is not None:
                self._client, self._protocol = client, protocol
                break
            reasons.append(self._connack_reason)
            if self._connack_code not in _WRONG_VERSION:
                break  # refused for another reason (credentials...): another version won't help
        if self._client is None:
            raise SimulatorError(
                f"MQTT broker at {self._broker.host}:{self._broker.port} refused the simulator: "
                + "; ".join(reasons)
            )
        # The first announcement was queued by on_connect; make sure it reached the broker so
        # that whoever subscribes after start() returns finds every retained config.
        with self._lock:
            pending = list(self._announced)
        try:
            self._wait_published(pending, _CONNECT_TIMEOUT, "announcing devices")
        except SimulatorError:
            client, self._client = self._client, None
            _close_client(client)
            raise
        if self._rate > 0:
            self._thread = threading.Thread(target=self._pace, name="hub-sim-pacer", daemon=True)
            self._thread.start()
        _LOGGER.info(
            "simulating %d devices on %s:%d (MQTT %s, prefix %r, %g reports/s)",
            len(self._order),
            self._broker.host,
            self._broker.port,
            self.protocol,
            self._prefix,
            self._rate,
        )

    def _connect(self, protocol: MQTTProtocolVersion) -> mqtt.Client | None:
        """Return a connected client speaking ``protocol``, or None if the broker refused it."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=protocol,
        )
        if self._broker.username is not None:
            client.username_pw_set(self._broker.username, self._broker.password)
        if self._broker.tls:
            client.tls_set_context(ssl.create_default_context())
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._reset_connack()
        try:
            client.connect(self._broker.host, self._broker.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise SimulatorError(
                f"cannot connect to MQTT broker at {self._broker.host}:{self._broker.port}: {exc}"
            ) from exc
        _set_nodelay(client)
        client.loop_start()
        if not self._connack.wait(_CONNECT_TIMEOUT):
            _close_client(client)
            raise SimulatorError(
                f"MQTT broker at {self._broker.host}:{self._broker.port} did not answer "
                f"CONNECT within {_CONNECT_TIMEOUT:g} s"
            )
        if self._connack_code == 0:
            return client
        # Refused: stop paho's automatic retries before trying anything else.
        _close_client(client)
        return None

    def _reset_connack(self) -> None:
        self._connack.clear()
        self._connack_code = None
        self._connack_reason = ""

    # The callbacks below run on paho's network thread. Every exception is caught: one that
    # escaped would end that thread and with it all commands and reconnects.

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if reason_code.is_failure:
                self._connack_code = int(reason_code.value)
                version = "5" if client.protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1"
                self._connack_reason = f"MQTT {version}: {reason_code}"
                self._connack.set()
                return
            _set_nodelay(client)  # a reconnect made a new socket
            # A clean session: subscribe and re-announce on every (re)connect, since a broker
            # that restarted may have lost the retained configs too.
            filters = [f for d in self._dialects.values() for f in d.filters()]
            if filters:
                client.subscribe([(f, 1) for f in filters])
            infos = self._announce(client)
            with self._lock:
                self._announced = infos
            self._connack_code = 0
            self._connack.set()
        except Exception:
            _LOGGER.exception("simulator: error while handling CONNACK")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not self._connack.is_set():
            # Closed before any CONNACK: what a broker that cannot parse the version does.
            self._connack_code = 1
            self._connack_reason = f"connection closed before CONNACK ({reason_code})"
            self._connack.set()
        elif client is self._client and not self._stopping:
            # paho's network thread reconnects by itself; on_connect then re-announces.
            _LOGGER.warning("simulator: disconnected from broker (%s), reconnecting", reason_code)

    def _announce(self, client: mqtt.Client) -> list[mqtt.MQTTMessageInfo]:
        """Publish every device's retained config, availability online and full state."""
        infos: list[mqtt.MQTTMessageInfo] = []
        for dialect in self._dialects.values():
            infos.extend(_publish(client, msg) for msg in dialect.hello())
        for device in self._order:
            with self._lock:
                msgs = self._dialect_of[device.id].announce(device)
                infos.extend(_publish(client, msg) for msg in msgs)
        return infos

    def _wait_published(self, infos: list[mqtt.MQTTMessageInfo], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        for info in infos:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise SimulatorError(
                    f"simulator: {what}: publish failed ({mqtt.error_string(info.rc)})"
                )
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                raise SimulatorError(f"simulator: {what}: {exc}") from exc
            if not info.is_published():
                raise SimulatorError(
                    f"simulator: {what}: broker did not acknowledge in {timeout:g} s"
                )

    def stop(self) -> None:
        """Stop reports, publish every device offline (acknowledged) and disconnect."""
        self._stopping = True
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.is_connected():
                infos = [
                    _publish(client, msg)
                    for d in self._order
                    for msg in self._dialect_of[d.id].goodbye(d)
                ]
                try:
                    self._wait_published(infos, _STOP_TIMEOUT, "publishing offline")
                except SimulatorError as exc:
                    _LOGGER.warning("%s", exc)
        finally:
            _close_client(client)
        _LOGGER.info("simulator stopped: %s", self.stats)

    # -- commands ----------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._handle_command(client, message.topic, message.payload)
        except Exception:
            _LOGGER.exception("simulator: error while handling %s", message.topic)

    def _handle_command(self, client: mqtt.Client, topic: str, payload: bytes | bytearray) -> None:
        if self._stopping:
            return
        body = bytes(payload)
        for dialect in self._dialects.values():
            if isinstance(dialect, HaDiscovery) and dialect.birth(topic, body):
                # The hub (as Home Assistant would) came online: announce again.
                with self._lock:
                    for device in dialect.devices.values():
                        for msg in dialect.announce(device):
                            _publish(client, msg)
                return
            request = dialect.request(topic, body)
            if request is not None:
                break
        else:
            return  # someone else's device or topic
        self._commands_received += 1
        if request.invalid:
            self._commands_invalid += 1
            return
        device = request.device
        with self._lock:
            update: dict[str, Any] | None = {}
            for command in request.commands:
                applied = device.apply_command(command, now=time.time())
                if applied is None:
                    update = None
                    break
                assert update is not None
                update.update(applied)
            for msg in request.reply(update):
                _publish(client, msg)
            self._schedule(device)
        if update is None:
            self._commands_invalid += 1
        else:
            self._commands_applied += 1

    # -- pacing ------------------------------------------------------------------------

    def _schedule(self, device: SimDevice) -> None:
        """Queue the device's next own report, if it wants one. Call with the lock held."""
        when = device.next_wakeup()
        if when is None:
            self._scheduled.pop(device.id, None)
        elif self._scheduled.get(device.id) != when:
            self._scheduled[device.id] = when
            heapq.heappush(self._wakeups, (when, device.id))

    def _next_device(self, now: float) -> SimDevice:
        """Return the device to report next: a due wake-up first, else round-robin."""
        while self._wakeups and self._wakeups[0][0] <= now:
            when, device_id = heapq.heappop(self._wakeups)
            if self._scheduled.get(device_id) == when:  # else superseded by a later schedule
                del self._scheduled[device_id]
                return self._devices[device_id]
        device = self._order[self._cursor]
        self._cursor = (self._cursor + 1) % len(self._order)
        return device

    def _send_reports(self, client: mqtt.Client, count: int) -> None:
        now = time.time()
        rng = self._rng
        ok = MQTTErrorCode.MQTT_ERR_SUCCESS
        for _ in range(count):
            with self._lock:
                device = self._next_device(now)
                report = device.next_report(now, rng)
                msg, _carried = self._dialect_of[device.id].report(device, report)
                info = client.publish(msg.topic, msg.payload, qos=0, retain=msg.retain)
                self._schedule(device)
            if info.rc == ok:
                self._reports_sent += 1

    def _pace(self) -> None:
        """Publish ``rate`` reports per second on a monotonic schedule, in small bursts."""
        client = self._client
        assert client is not None
        rate = self._rate
        # A tick sleeps at least ~1 ms, so high rates go out as bursts; cap a burst at 50 ms
        # worth so that stop() stays prompt even when the host falls behind.
        max_burst = max(1, int(rate * 0.05))
        start = time.monotonic()
        scheduled = 0
        try:
            while not self._stop_event.is_set():
                due = int((time.monotonic() - start) * rate) - scheduled
                if due > rate * 2:
                    # More than two seconds behind (host stalled or suspended): forgive the
                    # debt instead of flooding the broker to catch up.
                    scheduled += due - max_burst
                    due = max_burst
                if due > 0:
                    burst = min(due, max_burst)
                    self._send_reports(client, burst)
                    scheduled += burst
                    if burst < due:
                        continue
                delay = start + (scheduled + 1) / rate - time.monotonic()
                self._stop_event.wait(max(delay, 0.001))
        except Exception:
            _LOGGER.exception("simulator: report pacing stopped by an error")


def run_simulator(
    broker_url: str,
    *,
    devices: int,
    rate: float,
    prefix: str,
    seed: int,
    stop_event: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
    progress_interval: float = 5.0,
    mixed: bool = False,
) -> None:
    """Run ``hub simulate``: a home on the broker until ``stop_event`` is set or Ctrl-C.

    With ``mixed``, devices speak Tasmota, Shelly, Zigbee2MQTT and discovery as in ``hub demo``.
    """
    say = progress or (lambda line: print(line, flush=True))
    event = stop_event or threading.Event()
    previous_handler: Any = None
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C (or SIGINT from a supervisor) ends the wait below instead of raising
        # KeyboardInterrupt at whatever the main thread is doing at that moment (inside a
        # print or a lock), which could leave the shutdown stuck.
        previous_handler = signal.signal(signal.SIGINT, lambda _signum, _frame: event.set())
    home = build_home(devices, seed=seed, mixed=mixed)
    simulator = Simulator(broker_url, home, rate=rate, prefix=prefix)
    try:
        simulator.start()
    except BaseException:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
        raise
    say(
        f"simulating {devices} devices under {prefix}/ at {rate:g} reports/s "
        f"(MQTT {simulator.protocol}); Ctrl-C stops"
    )
    try:
        last_time = time.monotonic()
        last_sent = 0
        while not event.wait(progress_interval):
            stats = simulator.stats
            now = time.monotonic()
            achieved = (stats["reports_sent"] - last_sent) / max(now - last_time, 1e-9)
            last_time, last_sent = now, stats["reports_sent"]
            say(
                f"{achieved:.1f} reports/s (target {rate:g}), {stats['reports_sent']} sent; "
                f"commands {stats['commands_received']} received, "
                f"{stats['commands_applied']} applied, {stats['commands_invalid']} invalid"
            )
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
        say(f"simulator stopped; {len(simulator.devices)} devices marked offline")
