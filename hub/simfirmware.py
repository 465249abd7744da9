"""The MQTT dialects the simulated home speaks: the hub's own convention and real firmwares.

A :class:`Dialect` turns a simulated device (``hub.simulator``) into the messages one firmware
family publishes (announcements, telemetry, answers) and turns that firmware's commands back
into the hub convention's ``{"entity", "action", "params"}`` the device classes apply. The
payloads follow each firmware's documentation (and the adapters' test fixtures):

* ``native``: ``<prefix>/<id>/config|availability|state|set`` (the hub's own convention);
* ``tasmota``: ``tasmota/discovery/<MAC>/config``, ``tele/<topic>/LWT|STATE|SENSOR``,
  ``cmnd/<topic>/POWER|STATE|STATUS`` answered on ``stat/<topic>/RESULT|POWER|STATUS10``;
* ``shelly``: Shelly Gen2 ``<prefix>/online``, ``status/<component:id>``, ``events/rpc``
  (NotifyStatus, NotifyFullStatus) and JSON-RPC on ``<prefix>/rpc`` answered on ``<src>/rpc``;
* ``zigbee2mqtt``: ``bridge/state``, ``bridge/devices`` with exposes, ``<name>`` state JSON,
  ``<name>/availability``, ``<name>/set`` and ``<name>/get``;
* ``ha_discovery``: Home Assistant discovery configs under ``homeassistant/`` with a JSON state
  topic per device and one command topic per control, re-announced on the ``status`` birth.

Nothing here touches MQTT: the :class:`~hub.simulator.Simulator` and ``hub bench`` publish what
a dialect returns.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from hub.simulator import SimDevice

_LOGGER = logging.getLogger(__name__)

DIALECTS: tuple[str, ...] = ("native", "tasmota", "shelly", "zigbee2mqtt", "ha_discovery")
TASMOTA_VERSION = "14.3.0(release-tasmota)"
SHELLY_VERSION = "1.4.4"
Z2M_BASE = "zigbee2mqtt"
HA_PREFIX = "homeassistant"
HA_ROOT = "hasim"  # where the discovery-speaking devices keep their state and command topics
SHELLY_SRC_DEFAULT = "hub/firmware/shelly"


@dataclass(frozen=True, slots=True)
class Msg:
    """One MQTT message to publish."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0


@dataclass(slots=True)
class Request:
    """A command a device received in its own dialect.

    ``commands`` are hub-convention commands for :meth:`SimDevice.apply_command` (none for a
    query); ``reply`` turns the merged update (None when a command was refused) into the
    messages the firmware answers with.
    """

    device: SimDevice
    commands: list[dict[str, Any]]
    reply: Callable[[dict[str, Any] | None], list[Msg]]
    invalid: bool = False  # not even a command (bad JSON, not an RPC request): counted, ignored


def _value(body: Any) -> Any:
    return body.get("state") if isinstance(body, dict) else body


def _attr(body: Any, name: str, default: Any = None) -> Any:
    return body.get(name, default) if isinstance(body, dict) else default


def _mac_hex(device: SimDevice) -> str:
    return device.identities.get("mac", "02:00:00:00:00:00").replace(":", "").upper()


def _on(value: Any) -> bool:
    return bool(value == "on")


class _Clock:
    """Firmware timestamps, formatted once a second rather than once a message."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def iso(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
        return self._text


class Dialect(ABC):
    """How one firmware family speaks MQTT, for the simulated devices assigned to it."""

    name: str = "native"

    def __init__(self) -> None:
        self.devices: dict[str, SimDevice] = {}
        # Each device's entity keys, known once: reports ask for them on every message.
        self._keys: dict[str, tuple[str, ...]] = {}

    def add(self, device: SimDevice) -> None:
        """Speak for ``device``."""
        self.devices[device.id] = device
        self._keys[device.id] = tuple(device.entities())

    def keys_of(self, device: SimDevice) -> tuple[str, ...]:
        """Return ``device``'s entity keys (remembered for the devices this dialect speaks for)."""
        keys = self._keys.get(device.id)
        return keys if keys is not None else tuple(device.entities())

    @abstractmethod
    def filters(self) -> list[str]:
        """Topic filters to subscribe to for this dialect's commands."""

    def hello(self) -> list[Msg]:
        """Messages about the dialect as a whole (a Zigbee bridge), before any device's."""
        return []

    @abstractmethod
    def announce(self, device: SimDevice) -> list[Msg]:
        """What the device publishes when it connects: description, online, full state."""

    @abstractmethod
    def report(self, device: SimDevice, state: dict[str, Any]) -> tuple[Msg, dict[str, Any]]:
        """One message carrying (part of) the hub-convention ``state``, and what it carried."""

    @abstractmethod
    def goodbye(self, device: SimDevice) -> list[Msg]:
        """What says the device is gone (its last will)."""

    @abstractmethod
    def request(self, topic: str, payload: bytes) -> Request | None:
        """The command on ``topic``, or None if the topic is not one of this dialect's."""

    def hub_device_id(self, device: SimDevice) -> str:
        """The id the hub's adapter gives the device."""
        return device.id

    def hub_key(self, device: SimDevice, key: str) -> str | None:
        """The entity key the hub's adapter gives the device's hub-convention ``key``."""
        return key

    def echoes(self, topic: str) -> bool:
        """True when the hub also receives its own command on ``topic`` (it subscribes there)."""
        return False


# ----- the hub's own convention ------------------------------------------------------------------


class Native(Dialect):
    """``<prefix>/<id>/...``: the hub's own device convention."""

    name = "native"

    def __init__(self, prefix: str = "home") -> None:
        super().__init__()
        self.prefix = prefix
        self._state_topics: dict[str, str] = {}

    def add(self, device: SimDevice) -> None:
        super().add(device)
        self._state_topics[device.id] = f"{self.prefix}/{device.id}/state"

    def filters(self) -> list[str]:
        return [f"{self.prefix}/+/set"] if self.devices else []

    def announce(self, device: SimDevice) -> list[Msg]:
        base = f"{self.prefix}/{device.id}"
        return [
            Msg(f"{base}/config", orjson.dumps(device.config_payload()), True, 1),
            Msg(f"{base}/availability", b"online", True, 1),
            Msg(f"{base}/state", orjson.dumps(device.initial_state()), False, 1),
        ]

    def report(self, device: SimDevice, state: dict[str, Any]) -> tuple[Msg, dict[str, Any]]:
        return Msg(self._state_topics[device.id], orjson.dumps(state)), state

    def goodbye(self, device: SimDevice) -> list[Msg]:
        return [Msg(f"{self.prefix}/{device.id}/availability", b"offline", True, 1)]

    def request(self, topic: str, payload: bytes) -> Request | None:
        if not topic.startswith(f"{self.prefix}/") or not topic.endswith("/set"):
            return None
        device = self.devices.get(topic[len(self.prefix) + 1 : -4])
        if device is None:
            return None
        try:
            command = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            _LOGGER.warning("%s: ignored command: not JSON (%s): %r", device.id, exc, payload[:200])
            return Request(device, [], lambda update: [], invalid=True)
        state_topic = self._state_topics[device.id]

        def reply(update: dict[str, Any] | None) -> list[Msg]:
            return [] if update is None else [Msg(state_topic, orjson.dumps(update))]

        return Request(device, [command], reply)


# ----- Tasmota -----------------------------------------------------------------------------------


class Tasmota(Dialect):
    """Tasmota 14 with its default FullTopic ``%prefix%/%topic%/``; the topic is the device id.

    Plugs are a Sonoff POW (relay and ENERGY), climate sensors a Sonoff TH with an AM2301.
    """

    name = "tasmota"
    SENSOR = "AM2301"

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()
        self._started = time.time()

    def filters(self) -> list[str]:
        return ["cmnd/+/+"] if self.devices else []

    def _is_plug(self, device: SimDevice) -> bool:
        return "switch" in self.keys_of(device)

    def hub_key(self, device: SimDevice, key: str) -> str | None:
        if self._is_plug(device):
            return {"switch": "relay", "power": "power", "energy": "energy"}.get(key)
        sensor = self.SENSOR.lower()
        return {"temperature": f"{sensor}_temperature", "humidity": f"{sensor}_humidity"}.get(key)

    def _discovery(self, device: SimDevice) -> dict[str, Any]:
        plug = self._is_plug(device)
        mac = _mac_hex(device)
        return {
            "ip": device.identities.get("ip", ""),
            "dn": device.name,
            "fn": [device.name, None, None, None, None, None, None, None],
            "hn": f"{device.id.replace('_', '-')}-{mac[-4:]}",
            "mac": mac,
            "md": "Sonoff Pow R2" if plug else "Sonoff TH",
            "ty": 0,
            "if": 0,
            "ofln": "Offline",
            "onln": "Online",
            "state": ["OFF", "ON", "TOGGLE", "HOLD"],
            "sw": TASMOTA_VERSION.split("(", maxsplit=1)[0],
            "t": device.id,
            "ft": "%prefix%/%topic%/",
            "tp": ["cmnd", "stat", "tele"],
            "rl": [1 if plug else 0, 0, 0, 0, 0, 0, 0, 0],
            "swc": [-1] * 8,
            "swn": [None] * 8,
            "btn": [0] * 8,
            "so": {"4": 0, "11": 0, "13": 0, "17": 0, "20": 0, "30": 0, "68": 0, "73": 0},
            "lk": 0,
            "lt_st": 0,
            "sho": [],
            "sht": [],
            "ver": 1,
        }

    def _energy(self, state: Mapping[str, Any]) -> dict[str, Any]:
        watts = round(float(state["power"]))
        volts = 230
        return {
            "TotalStartTime": "2024-01-01T00:00:00",
            "Total": round(float(state["energy"]), 3),
            "Yesterday": 1.204,
            "Today": 0.318,
            "Power": watts,
            "ApparentPower": watts,
            "ReactivePower": 0,
            "Factor": 1.0 if watts else 0.0,
            "Voltage": volts,
            "Current": round(watts / volts, 3),
        }

    def _sensor_body(self, device: SimDevice, state: Mapping[str, Any], now: float) -> bytes:
        body: dict[str, Any] = {"Time": self._clock.iso(now)}
        if self._is_plug(device):
            body["ENERGY"] = self._energy(state)
        else:
            body[self.SENSOR] = {
                "Temperature": state["temperature"],
                "Humidity": state["humidity"],
                "DewPoint": round(state["temperature"] - (100 - state["humidity"]) / 5, 1),
            }
            body["TempUnit"] = "C"
        return orjson.dumps(body)

    def _state_body(self, power: str, now: float) -> dict[str, Any]:
        up = int(now - self._started)
        return {
            "Time": self._clock.iso(now),
            "Uptime": f"{up // 86400}T{time.strftime('%H:%M:%S', time.gmtime(up))}",
            "UptimeSec": up,
            "Heap": 26,
            "SleepMode": "Dynamic",
            "Sleep": 50,
            "LoadAvg": 19,
            "MqttCount": 1,
            "POWER": power,
            "Wifi": {
                "AP": 1,
                "SSId": "home",
                "Channel": 6,
                "Mode": "11n",
                "RSSI": 72,
                "Signal": -64,
            },
        }

    def announce(self, device: SimDevice) -> list[Msg]:
        now = time.time()
        state = device.initial_state()
        mac = _mac_hex(device)
        msgs = [
            Msg(f"tasmota/discovery/{mac}/config", orjson.dumps(self._discovery(device)), True, 1),
            Msg(f"tele/{device.id}/LWT", b"Online", True, 1),
        ]
        if self._is_plug(device):
            body = orjson.dumps(self._state_body(state["switch"].upper(), now))
            msgs.append(Msg(f"tele/{device.id}/STATE", body))
        msgs.append(Msg(f"tele/{device.id}/SENSOR", self._sensor_body(device, state, now)))
        return msgs

    def report(self, device: SimDevice, state: dict[str, Any]) -> tuple[Msg, dict[str, Any]]:
        now = time.time()
        if "switch" in state and "power" not in state:
            body = orjson.dumps(self._state_body(state["switch"].upper(), now))
            return Msg(f"tele/{device.id}/STATE", body), {"switch": state["switch"]}
        full = {**device.initial_state(), **state}
        carried: dict[str, Any]
        if self._is_plug(device):
            carried = {"power": round(float(full["power"])), "energy": round(full["energy"], 3)}
        else:
            carried = {"temperature": full["temperature"], "humidity": full["humidity"]}
        return Msg(f"tele/{device.id}/SENSOR", self._sensor_body(device, full, now)), carried

    def goodbye(self, device: SimDevice) -> list[Msg]:
        return [Msg(f"tele/{device.id}/LWT", b"Offline", True, 1)]

    def request(self, topic: str, payload: bytes) -> Request | None:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != "cmnd":
            return None
        device = self.devices.get(parts[1])
        if device is None:
            return None
        command = parts[2].upper()
        word = payload.decode("utf-8", "replace").strip().upper()
        stat = f"stat/{device.id}"
        if command == "POWER" and self._is_plug(device):
            action = {"ON": "turn_on", "1": "turn_on", "OFF": "turn_off", "0": "turn_off"}.get(
                word, "toggle" if word in ("TOGGLE", "2") else None
            )

            def power_reply(update: dict[str, Any] | None) -> list[Msg]:
                if update is None:
                    return []
                power = device.initial_state()["switch"].upper()
                return [
                    Msg(f"{stat}/RESULT", orjson.dumps({"POWER": power})),
                    Msg(f"{stat}/POWER", power.encode()),
                ]

            commands = [] if action is None else [{"entity": "switch", "action": action}]
            return Request(device, commands, power_reply)
        if command == "STATE" and self._is_plug(device):

            def state_reply(update: dict[str, Any] | None) -> list[Msg]:
                power = device.initial_state()["switch"].upper()
                body = self._state_body(power, time.time())
                return [Msg(f"{stat}/RESULT", orjson.dumps(body))]

            return Request(device, [], state_reply)
        if command == "STATUS" and word == "10":

            def status_reply(update: dict[str, Any] | None) -> list[Msg]:
                sensor = orjson.loads(
                    self._sensor_body(device, device.initial_state(), time.time())
                )
                return [Msg(f"{stat}/STATUS10", orjson.dumps({"StatusSNS": sensor}))]

            return Request(device, [], status_reply)

        def unknown(update: dict[str, Any] | None) -> list[Msg]:
            return [Msg(f"{stat}/RESULT", b'{"Command":"Unknown"}')]

        return Request(device, [], unknown)


# ----- Shelly Gen2 -------------------------------------------------------------------------------


class Shelly(Dialect):
    """Shelly Gen2 JSON-RPC over MQTT; the topic prefix is the device id.

    Plugs are a Shelly Plus 1PM (``switch:0``), climate sensors a Plus H&T (``temperature:0``,
    ``humidity:0``, ``devicepower:0``).
    """

    name = "shelly"

    def filters(self) -> list[str]:
        return ["+/rpc"] if self.devices else []

    def _is_plug(self, device: SimDevice) -> bool:
        return "switch" in self.keys_of(device)

    def hub_key(self, device: SimDevice, key: str) -> str | None:
        if self._is_plug(device):
            return {"switch": "switch_0", "power": "power_0", "energy": "energy_0"}.get(key)
        return {"temperature": "temperature_0", "humidity": "humidity_0"}.get(key)

    def _switch(self, state: Mapping[str, Any], *, full: bool, now: float) -> dict[str, Any]:
        body: dict[str, Any] = {"id": 0}
        if full:
            body["source"] = "init"
        if "switch" in state:
            body["output"] = _on(state["switch"])
        if "power" in state:
            watts = float(state["power"])
            body["apower"] = watts
            body["voltage"] = 231.4
            body["current"] = round(watts / 231.4, 3)
        if "energy" in state:
            minute = int(now // 60 * 60)
            body["aenergy"] = {
                "total": round(float(state["energy"]) * 1000, 3),
                "by_minute": [0.0, 0.0, 0.0],
                "minute_ts": minute,
            }
        if full:
            body["temperature"] = {"tC": 41.2, "tF": 106.2}
        return body

    def _components(
        self, device: SimDevice, state: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        if self._is_plug(device):
            return {"switch:0": self._switch(state, full=False, now=now)}
        out: dict[str, Any] = {}
        if "temperature" in state:
            celsius = float(state["temperature"])
            out["temperature:0"] = {"id": 0, "tC": celsius, "tF": round(celsius * 1.8 + 32, 1)}
        if "humidity" in state:
            out["humidity:0"] = {"id": 0, "rh": state["humidity"]}
        return out

    def _battery(self, device: SimDevice) -> dict[str, Any]:
        percent = round(getattr(device, "battery", 80))
        return {
            "id": 0,
            "battery": {"V": round(4.2 + percent / 100 * 1.8, 2), "percent": percent},
            "external": {"present": False},
        }

    def _notify(self, device: SimDevice, method: str, params: dict[str, Any], now: float) -> Msg:
        body = {
            "src": device.id,
            "dst": f"{device.id}/events",
            "method": method,
            "params": {"ts": round(now, 2), **params},
        }
        return Msg(f"{device.id}/events/rpc", orjson.dumps(body))

    def _info(self, device: SimDevice) -> dict[str, Any]:
        plug = self._is_plug(device)
        return {
            "name": device.name,
            "id": device.id,
            "mac": _mac_hex(device),
            "slot": 0,
            "model": "SNSW-001P16EU" if plug else "SNSN-0013A",
            "gen": 2,
            "fw_id": f"20241011-114455/{SHELLY_VERSION}-g6d2a586",
            "ver": SHELLY_VERSION,
            "app": "Plus1PM" if plug else "PlusHT",
            "auth_en": False,
            "auth_domain": None,
        }

    def _status(self, device: SimDevice, now: float) -> dict[str, Any]:
        state = device.initial_state()
        if self._is_plug(device):
            status = {"switch:0": self._switch(state, full=True, now=now)}
        else:
            status = {
                **self._components(device, state, now),
                "devicepower:0": self._battery(device),
            }
        status["sys"] = {"mac": _mac_hex(device), "restart_required": False, "uptime": 3600}
        return status

    def announce(self, device: SimDevice) -> list[Msg]:
        now = time.time()
        msgs = [Msg(f"{device.id}/online", b"true", True, 1)]
        for component, body in self._status(device, now).items():
            if component != "sys":
                msgs.append(Msg(f"{device.id}/status/{component}", orjson.dumps(body)))
        return msgs

    def report(self, device: SimDevice, state: dict[str, Any]) -> tuple[Msg, dict[str, Any]]:
        now = time.time()
        if self._is_plug(device):
            carried = {k: v for k, v in state.items() if k in ("switch", "power", "energy")}
            params = self._components(device, state, now)
            return self._notify(device, "NotifyStatus", params, now), carried
        # A Plus H&T wakes up, sends everything, and sleeps again.
        full = {**device.initial_state(), **state}
        params = {**self._components(device, full, now), "devicepower:0": self._battery(device)}
        carried = {"temperature": full["temperature"], "humidity": full["humidity"]}
        return self._notify(device, "NotifyFullStatus", params, now), carried

    def goodbye(self, device: SimDevice) -> list[Msg]:
        return [Msg(f"{device.id}/online", b"false", True, 1)]

    def request(self, topic: str, payload: bytes) -> Request | None:
        if not topic.endswith("/rpc"):
            return None
        device = self.devices.get(topic[:-4])
        if device is None:
            return None
        try:
            call = orjson.loads(payload)
        except orjson.JSONDecodeError:
            call = None
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            _LOGGER.warning("%s: ignored RPC: not a JSON-RPC request: %r", device.id, payload[:200])
            return Request(device, [], lambda update: [], invalid=True)
        src = call.get("src") if isinstance(call.get("src"), str) else SHELLY_SRC_DEFAULT
        method: str = call["method"]
        raw_params = call.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        was_on = _on(device.initial_state().get("switch"))

        def answer(body: dict[str, Any]) -> Msg:
            return Msg(
                f"{src}/rpc",
                orjson.dumps({"id": call.get("id"), "src": device.id, "dst": src, **body}),
            )

        commands: list[dict[str, Any]] = []
        if method in ("Switch.Set", "Switch.Toggle") and self._is_plug(device):
            if params.get("id", 0) != 0:
                return Request(
                    device,
                    [],
                    lambda u: [
                        answer(
                            {
                                "error": {
                                    "code": -105,
                                    "message": "Argument 'id', value 1 not found!",
                                }
                            }
                        )
                    ],
                )
            if method == "Switch.Toggle":
                commands = [{"entity": "switch", "action": "toggle"}]
            elif isinstance(params.get("on"), bool):
                action = "turn_on" if params["on"] else "turn_off"
                commands = [{"entity": "switch", "action": action}]
            else:
                return Request(
                    device,
                    [],
                    lambda u: [
                        answer(
                            {"error": {"code": -103, "message": "Missing required argument 'on'!"}}
                        )
                    ],
                )

            def switched(update: dict[str, Any] | None) -> list[Msg]:
                if update is None:
                    return []
                now = time.time()
                change = {"switch": update["switch"], "power": update["power"]}
                notify = self._notify(
                    device, "NotifyStatus", self._components(device, change, now), now
                )
                return [answer({"result": {"was_on": was_on}}), notify]

            return Request(device, commands, switched)
        if method == "Shelly.GetDeviceInfo":
            return Request(device, [], lambda u: [answer({"result": self._info(device)})])
        if method == "Shelly.GetStatus":
            return Request(
                device, [], lambda u: [answer({"result": self._status(device, time.time())})]
            )
        return Request(
            device,
            [],
            lambda u: [answer({"error": {"code": 404, "message": f"No handler for {method}"}})],
        )


# ----- Zigbee2MQTT -------------------------------------------------------------------------------


def _binary(
    name: str, on: Any, off: Any, access: int = 1, label: str | None = None
) -> dict[str, Any]:
    return {
        "type": "binary",
        "name": name,
        "label": label or name.capitalize(),
        "property": name,
        "access": access,
        "value_on": on,
        "value_off": off,
    }


def _numeric(name: str, unit: str | None = None, **extra: Any) -> dict[str, Any]:
    expose: dict[str, Any] = {
        "type": "numeric",
        "name": name,
        "label": name.replace("_", " ").capitalize(),
        "property": name,
        "access": 1,
    }
    if unit is not None:
        expose["unit"] = unit
    expose.update(extra)
    return expose


_BATTERY = _numeric("battery", "%", value_min=0, value_max=100, category="diagnostic")
_VOLTAGE = _numeric("voltage", "mV", category="diagnostic")
_LINKQUALITY = _numeric("linkquality", "lqi", value_min=0, value_max=255, category="diagnostic")


class Zigbee2Mqtt(Dialect):
    """A Zigbee2MQTT 2.x bridge; each device's friendly name is its simulated id."""

    name = "zigbee2mqtt"

    def __init__(self, base: str = Z2M_BASE) -> None:
        super().__init__()
        self.base = base
        self.coordinator = "0x00124b0012ab34cd"
        self._state_topics: dict[str, str] = {}
        self._lqi: dict[str, int] = {}

    def add(self, device: SimDevice) -> None:
        super().add(device)
        self._state_topics[device.id] = f"{self.base}/{device.id}"

    def filters(self) -> list[str]:
        return [f"{self.base}/+/set", f"{self.base}/+/get"] if self.devices else []

    def echoes(self, topic: str) -> bool:
        # The adapter follows <base>/#, so it receives its own /set and /get too.
        return topic.startswith(f"{self.base}/")

    def hub_device_id(self, device: SimDevice) -> str:
        return device.identities["ieee"]

    def hub_key(self, device: SimDevice, key: str) -> str | None:
        return {"motion": "occupancy", "button": "action"}.get(key, key)

    def _kind(self, device: SimDevice) -> str:
        return self.keys_of(device)[0]

    def _definition(self, device: SimDevice) -> dict[str, Any]:
        kind = self._kind(device)
        if kind == "light":
            exposes = [
                {
                    "type": "light",
                    "features": [
                        {**_binary("state", "ON", "OFF", 7), "value_toggle": "TOGGLE"},
                        _numeric("brightness", None, access=7, value_min=0, value_max=254),
                        _numeric("color_temp", "mired", access=7, value_min=153, value_max=500),
                    ],
                },
                _LINKQUALITY,
            ]
            return {
                "model": "LED1545G12",
                "vendor": "IKEA",
                "description": "TRADFRI bulb E26/E27, white spectrum",
                "exposes": exposes,
            }
        if kind == "motion":
            exposes = [
                _BATTERY,
                _binary("occupancy", True, False),
                _numeric("illuminance_lux", "lx"),
                _VOLTAGE,
                _LINKQUALITY,
            ]
            return {
                "model": "RTCGQ11LM",
                "vendor": "Aqara",
                "description": "Motion sensor",
                "exposes": exposes,
            }
        if kind == "contact":
            exposes = [_BATTERY, _binary("contact", False, True), _VOLTAGE, _LINKQUALITY]
            return {
                "model": "MCCGQ11LM",
                "vendor": "Aqara",
                "description": "Door and window sensor",
                "exposes": exposes,
            }
        if kind == "temperature":
            exposes = [
                _BATTERY,
                _numeric("temperature", "°C"),
                _numeric("humidity", "%"),
                _numeric("pressure", "hPa"),
                _VOLTAGE,
                _LINKQUALITY,
            ]
            return {
                "model": "WSDCGQ11LM",
                "vendor": "Aqara",
                "description": "Temperature, humidity and pressure sensor",
                "exposes": exposes,
            }
        if kind == "button":
            action = {
                "type": "enum",
                "name": "action",
                "label": "Action",
                "property": "action",
                "access": 1,
                "values": ["single", "double", "long"],
            }
            return {
                "model": "WXKG11LM",
                "vendor": "Aqara",
                "description": "Wireless mini switch",
                "exposes": [_BATTERY, action, _VOLTAGE, _LINKQUALITY],
            }
        if kind == "cover":
            features = [
                {
                    "type": "enum",
                    "name": "state",
                    "label": "State",
                    "property": "state",
                    "access": 3,
                    "values": ["OPEN", "CLOSE", "STOP"],
                },
                _numeric("position", "%", access=7, value_min=0, value_max=100),
            ]
            return {
                "model": "E1757",
                "vendor": "IKEA",
                "description": "FYRTUR roller blind",
                "exposes": [{"type": "cover", "features": features}, _LINKQUALITY],
            }
        if kind == "lock":
            features = [
                {**_binary("state", "LOCK", "UNLOCK", 3)},
                {
                    "type": "enum",
                    "name": "lock_state",
                    "label": "Lock state",
                    "property": "lock_state",
                    "access": 1,
                    "values": ["not_fully_locked", "locked", "unlocked"],
                },
            ]
            return {
                "model": "V3-BTZB",
                "vendor": "Danalock",
                "description": "BT/ZB smartlock",
                "exposes": [{"type": "lock", "features": features}, _BATTERY, _LINKQUALITY],
            }
        raise ValueError(f"{device.id}: no Zigbee2MQTT model for a {type(device).__name__}")

    def _bridge_devices(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {
                "ieee_address": self.coordinator,
                "type": "Coordinator",
                "network_address": 0,
                "supported": False,
                "disabled": False,
                "friendly_name": "Coordinator",
                "definition": None,
                "power_source": None,
                "interview_completed": True,
            }
        ]
        for number, device in enumerate(self.devices.values(), start=1):
            battery = hasattr(device, "battery")
            out.append(
                {
                    "ieee_address": device.identities["ieee"],
                    "type": "EndDevice" if battery else "Router",
                    "network_address": 0x1000 + number,
                    "supported": True,
                    "disabled": False,
                    "friendly_name": device.id,
                    "definition": self._definition(device),
                    "power_source": "Battery" if battery else "Mains (single phase)",
                    "software_build_id": device.firmware,
                    "interview_completed": True,
                    "interviewing": False,
                }
            )
        return out

    def hello(self) -> list[Msg]:
        if not self.devices:
            return []
        info = {
            "version": "2.1.1",
            "coordinator": {"ieee_address": self.coordinator, "type": "zStack3x0"},
        }
        return [
            Msg(f"{self.base}/bridge/state", b'{"state":"online"}', True, 1),
            Msg(f"{self.base}/bridge/info", orjson.dumps(info), True, 1),
            Msg(f"{self.base}/bridge/devices", orjson.dumps(self._bridge_devices()), True, 1),
            Msg(f"{self.base}/bridge/groups", b"[]", True, 1),
        ]

    def _full(self, device: SimDevice) -> dict[str, Any]:
        state = device.initial_state()
        kind = self._kind(device)
        lqi = self._lqi.get(device.id)
        if lqi is None:
            lqi = self._lqi[device.id] = 60 + (sum(map(ord, device.id)) % 150)
        battery = round(getattr(device, "battery", 0))
        body: dict[str, Any]
        if kind == "light":
            light = state["light"]
            body = {
                "state": light["state"].upper(),
                "brightness": light["brightness"],
                "color_temp": light["color_temp"],
                "color_mode": "color_temp",
            }
        elif kind == "motion":
            body = {
                "battery": battery,
                "occupancy": _on(_value(state["motion"])),
                "illuminance_lux": 120,
                "voltage": 3005,
            }
        elif kind == "contact":
            body = {
                "battery": battery,
                "contact": not _on(_value(state["contact"])),
                "voltage": 3015,
            }
        elif kind == "temperature":
            body = {
                "battery": battery,
                "temperature": state["temperature"],
                "humidity": state["humidity"],
                "pressure": 1012.4,
                "voltage": 2985,
            }
        elif kind == "button":
            body = {"battery": battery, "voltage": 3000}
        elif kind == "cover":
            cover = state["cover"]
            body = {
                "position": cover["position"],
                "state": "OPEN" if cover["position"] > 0 else "CLOSE",
            }
        else:  # lock
            locked = _value(state["lock"]) == "locked"
            body = {
                "state": "LOCK" if locked else "UNLOCK",
                "lock_state": "locked" if locked else "unlocked",
                "battery": battery,
            }
        body["linkquality"] = lqi
        return body

    def _carried(
        self, device: SimDevice, body: Mapping[str, Any], state: Mapping[str, Any]
    ) -> dict[str, Any]:
        kind = self._kind(device)
        if kind == "temperature":
            return {"temperature": body["temperature"], "humidity": body["humidity"]}
        if kind == "button":
            return {"button": state["button"]} if "button" in state else {}
        if kind == "motion":
            return {"motion": "on" if body["occupancy"] else "off"}
        if kind == "contact":
            return {"contact": "off" if body["contact"] else "on"}
        return {k: v for k, v in state.items() if k == kind}

    def announce(self, device: SimDevice) -> list[Msg]:
        topic = self._state_topics[device.id]
        return [
            Msg(f"{topic}/availability", b'{"state":"online"}', True, 1),
            Msg(topic, orjson.dumps(self._full(device)), False, 1),
        ]

    def report(self, device: SimDevice, state: dict[str, Any]) -> tuple[Msg, dict[str, Any]]:
        body = self._full(device)
        if "button" in state:
            body["action"] = state["button"]
        return Msg(self._state_topics[device.id], orjson.dumps(body)), self._carried(
            device, body, state
        )

    def goodbye(self, device: SimDevice) -> list[Msg]:
        return [
            Msg(f"{self._state_topics[device.id]}/availability", b'{"state":"offline"}', True, 1)
        ]

    def request(self, topic: str, payload: bytes) -> Request | None:
        if not topic.startswith(f"{self.base}/"):
            return None
        name, _, verb = topic[len(self.base) + 1 :].rpartition("/")
        device = self.devices.get(name)
        if device is None or verb not in ("set", "get"):
            return None
        state_topic = self._state_topics[device.id]

        def full_state(update: dict[str, Any] | None) -> list[Msg]:
            return [] if update is None else [Msg(state_topic, orjson.dumps(self._full(device)))]

        if verb == "get":
            return Request(
                device, [], lambda u: [Msg(state_topic, orjson.dumps(self._full(device)))]
            )
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            _LOGGER.warning("%s: ignored /set: not a JSON object: %r", device.id, payload[:200])
            return Request(device, [], lambda u: [], invalid=True)
        return Request(device, [self._command(device, body)], full_state)

    def _command(self, device: SimDevice, body: dict[str, Any]) -> dict[str, Any]:
        kind = self._kind(device)
        state = str(body.get("state", "")).upper()
        if kind == "light":
            params = {k: body[k] for k in ("brightness", "color_temp", "transition") if k in body}
            action = {"ON": "turn_on", "OFF": "turn_off", "TOGGLE": "toggle"}.get(state, "turn_on")
            return {"entity": "light", "action": action, "params": params}
        if kind == "cover":
            if "position" in body:
                return {
                    "entity": "cover",
                    "action": "set_position",
                    "params": {"position": body["position"]},
                }
            action = {"OPEN": "open", "CLOSE": "close", "STOP": "stop"}.get(state, state.lower())
            return {"entity": "cover", "action": action}
        if kind == "lock":
            return {
                "entity": "lock",
                "action": {"LOCK": "lock", "UNLOCK": "unlock"}.get(state, state.lower()),
            }
        return {"entity": kind, "action": "set", "params": body}  # refused by the device class


# ----- Home Assistant MQTT discovery ---------------------------------------------------------


class HaDiscovery(Dialect):
    """A device that announces itself with Home Assistant MQTT discovery (as ESPHome does).

    Its readings travel as one JSON object on ``hasim/<id>/state`` that the components read
    with value templates; each control has its own command topic.
    """

    name = "ha_discovery"

    def __init__(self, prefix: str = HA_PREFIX, root: str = HA_ROOT) -> None:
        super().__init__()
        self.prefix = prefix
        self.root = root

    def filters(self) -> list[str]:
        return (
            [f"{self.root}/+/+/set", f"{self.root}/+/+/+/set", f"{self.prefix}/status"]
            if self.devices
            else []
        )

    def _device_block(self, device: SimDevice) -> dict[str, Any]:
        block: dict[str, Any] = {
            "identifiers": [device.id],
            "name": device.name,
            "manufacturer": "Espressif",
            "model": f"ESPHome {device.model}",
            "sw_version": "2024.12.4",
            "suggested_area": device.area.replace("_", " ").title(),
        }
        if "mac" in device.identities:
            block["connections"] = [["mac", device.identities["mac"]]]
        return block

    def _configs(self, device: SimDevice) -> list[tuple[str, str, dict[str, Any]]]:
        base = f"{self.root}/{device.id}"
        state_topic = f"{base}/state"
        common = {"state_topic": state_topic, "availability_topic": f"{base}/status"}
        out: list[tuple[str, str, dict[str, Any]]] = []
        for key, spec in device.entities().items():
            kind = spec["kind"]
            cfg: dict[str, Any] = {
                "name": spec.get("name", key),
                "unique_id": f"{device.id}_{key}",
                **common,
            }
            if kind == "climate":
                cfg = {
                    "name": spec.get("name", key),
                    "unique_id": f"{device.id}_{key}",
                    "availability_topic": f"{base}/status",
                    "mode_state_topic": state_topic,
                    "mode_state_template": "{{ value_json.mode }}",
                    "current_temperature_topic": state_topic,
                    "current_temperature_template": "{{ value_json.current_temperature }}",
                    "temperature_state_topic": state_topic,
                    "temperature_state_template": "{{ value_json.target_temperature }}",
                    "action_topic": state_topic,
                    "action_template": "{{ value_json.hvac_action }}",
                    "temperature_command_topic": f"{base}/{key}/temperature/set",
                    "mode_command_topic": f"{base}/{key}/mode/set",
                    "modes": ["off", "heat", "cool", "auto"],
                    "min_temp": 5,
                    "max_temp": 30,
                    "temp_step": 0.5,
                    "temperature_unit": "C",
                }
                out.append(("climate", key, cfg))
            elif kind == "lock":
                cfg.update(
                    value_template=f"{{{{ value_json.{key} }}}}", command_topic=f"{base}/{key}/set"
                )
                out.append(("lock", key, cfg))
            elif kind == "cover":
                cfg.update(
                    value_template=f"{{{{ value_json.{key} }}}}",
                    position_topic=state_topic,
                    position_template="{{ value_json.position }}",
                    command_topic=f"{base}/{key}/set",
                    set_position_topic=f"{base}/{key}/position/set",
                    device_class=spec.get("device_class", "blind"),
                )
                out.append(("cover", key, cfg))
            elif kind == "switch":
                cfg.update(
                    value_template=f"{{{{ value_json.{key} }}}}", command_topic=f"{base}/{key}/set"
                )
                out.append(("switch", key, cfg))
            elif kind == "binary_sensor":
                cfg.update(
                    value_template=f"{{{{ value_json.{key} }}}}",
                    device_class=spec.get("device_class"),
                )
                out.append(("binary_sensor", key, cfg))
            elif kind in ("sensor", "energy_meter"):
                cfg.update(
                    value_template=f"{{{{ value_json.{key} }}}}",
                    unit_of_measurement=spec.get("unit"),
                    device_class=spec.get("device_class"),
                    state_class="total_increasing" if kind == "energy_meter" else "measurement",
                )
                out.append(("sensor", key, cfg))
            else:
                raise ValueError(f"{device.id}: no discovery component for a {kind}")
        for _component, _key, cfg in out:
            cfg["device"] = self._device_block(device)
        return out

    def _json_state(self, device: SimDevice, state: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, body in state.items():
            value = _value(body)
            if key == "thermostat":
                out["mode"] = value
                for name in ("current_temperature", "target_temperature", "hvac_action"):
                    if _attr(body, name) is not None:
                        out[name] = _attr(body, name)
            elif key == "cover":
                out["cover"] = value
                if _attr(body, "position") is not None:
                    out["position"] = _attr(body, "position")
            elif key == "lock":
                out["lock"] = str(value).upper()
            elif value in ("on", "off"):
                out[key] = str(value).upper()
            else:
                out[key] = value
        return out

    def announce(self, device: SimDevice) -> list[Msg]:
        msgs = [
            Msg(f"{self.prefix}/{component}/{device.id}/{key}/config", orjson.dumps(cfg), True, 1)
            for component, key, cfg in self._configs(device)
        ]
        msgs.append(Msg(f"{self.root}/{device.id}/status", b"online", True, 1))
        body = self._json_state(device, device.initial_state())
        msgs.append(Msg(f"{self.root}/{device.id}/state", orjson.dumps(body), True, 1))
        return msgs

    def report(self, device: SimDevice, state: dict[str, Any]) -> tuple[Msg, dict[str, Any]]:
        body = self._json_state(device, state)
        return Msg(f"{self.root}/{device.id}/state", orjson.dumps(body)), state

    def goodbye(self, device: SimDevice) -> list[Msg]:
        return [Msg(f"{self.root}/{device.id}/status", b"offline", True, 1)]

    def birth(self, topic: str, payload: bytes) -> bool:
        """True when ``topic`` is Home Assistant's (the hub's) birth message: re-announce."""
        return topic == f"{self.prefix}/status" and payload.strip() == b"online"

    def request(self, topic: str, payload: bytes) -> Request | None:
        if not topic.startswith(f"{self.root}/") or not topic.endswith("/set"):
            return None
        parts = topic.split("/")
        device = self.devices.get(parts[1])
        if device is None:
            return None
        key, what = parts[2], parts[3] if len(parts) == 5 else ""
        word = payload.decode("utf-8", "replace").strip()
        state_topic = f"{self.root}/{device.id}/state"

        def reply(update: dict[str, Any] | None) -> list[Msg]:
            if update is None:
                return []
            return [Msg(state_topic, orjson.dumps(self._json_state(device, update)), True)]

        command: dict[str, Any] = {"entity": key}
        if what == "temperature":
            try:
                command.update(action="set_temperature", params={"temperature": float(word)})
            except ValueError:
                command.update(action="set_temperature", params={"temperature": word})
        elif what == "mode":
            command.update(action="set_mode", params={"mode": word})
        elif what == "position":
            try:
                command.update(action="set_position", params={"position": float(word)})
            except ValueError:
                command.update(action="set_position", params={"position": word})
        else:
            actions = {
                "ON": "turn_on",
                "OFF": "turn_off",
                "OPEN": "open",
                "CLOSE": "close",
                "STOP": "stop",
                "LOCK": "lock",
                "UNLOCK": "unlock",
            }
            command["action"] = actions.get(word.upper(), word)
        return Request(device, [command], reply)


def make_dialects(prefix: str = "home") -> dict[str, Dialect]:
    """One fresh instance of every dialect, by name (the native one under ``prefix``)."""
    return {
        "native": Native(prefix),
        "tasmota": Tasmota(),
        "shelly": Shelly(),
        "zigbee2mqtt": Zigbee2Mqtt(),
        "ha_discovery": HaDiscovery(),
    }
