"""Exposes → entities, the raw network map, settings, the map schedule, register_group.

Exposes are the docs' own (https://www.zigbee2mqtt.io/guide/usage/exposes.html and the device
pages named in fixtures/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from z2mtest import eventually, fixture, write_config

from adapters.zigbee2mqtt import Zigbee2Mqtt
from adapters.zigbee2mqtt.exposes import (
    EntityMap,
    entity_maps,
    read_message,
)
from adapters.zigbee2mqtt.networkmap import parse_raw
from adapters.zigbee2mqtt.settings import Settings
from hub.api import CommandError, EntityKind, InvalidValue, PluginContext
from hub.config import load_config
from hub.core import Hub
from hub.model import Group
from hub.repeats import RepeatMemo


def maps_of(model: str) -> dict[str, EntityMap]:
    """The entity maps of a device of the fixture list, by model."""
    entry = next(
        d
        for d in fixture("bridge_devices.json")
        if d.get("definition") and d["definition"]["model"] == model
    )
    return entity_maps(entry["definition"]["exposes"], entry["friendly_name"])


def read(
    maps: dict[str, EntityMap], message: dict[str, Any], known: bool = False
) -> dict[str, Any]:
    """Read a message: {key: (value, attributes)}."""
    has_state = dict.fromkeys(maps, known)
    return {k: (v, a) for k, v, a in read_message(maps.items(), message, has_state)}


# The docs' example of a two-gang switch: one ``switch`` expose per endpoint.
TWO_GANG = [
    {
        "type": "switch",
        "endpoint": endpoint,
        "features": [
            {
                "type": "binary",
                "name": "state",
                "label": "State",
                "property": f"state_{endpoint}",
                "value_on": "ON",
                "value_off": "OFF",
                "value_toggle": "TOGGLE",
                "access": 7,
                "endpoint": endpoint,
            }
        ],
    }
    for endpoint in ("left", "right")
]


def test_a_light_reads_and_commands_the_properties_its_exposes_name() -> None:
    maps = maps_of("LED1545G12")
    light = maps["light"]
    assert light.kind is EntityKind.LIGHT
    assert read(maps, {"state": "ON", "brightness": 215, "color_temp": 325}) == {
        "light": ("on", {"brightness": 215, "color_temp": 325})
    }
    # A brightness alone can only update a light the hub already knows the state of.
    assert read(maps, {"brightness": 10}) == {}
    assert read(maps, {"brightness": 10}, known=True) == {"light": (None, {"brightness": 10})}
    assert light.command("turn_on", {"brightness": 255}, "off") == {
        "state": "ON",
        "brightness": 254,
    }
    assert light.command("toggle", {}, "on") == {"state": "OFF"}
    assert light.command("turn_off", {"transition": 1.5}, "on") == {
        "state": "OFF",
        "transition": 1.5,
    }
    with pytest.raises(CommandError, match=r"outside the device's range 250\.0\.\.454\.0"):
        light.command("turn_on", {"color_temp": 153}, "on")
    with pytest.raises(InvalidValue, match="state: expected 'ON' or 'OFF'"):
        read(maps, {"state": "DIM"})
    with pytest.raises(InvalidValue, match="brightness: expected a number"):
        read(maps, {"state": "ON", "brightness": "215"})


def test_endpoints_get_their_own_entities_and_properties() -> None:
    maps = entity_maps(TWO_GANG, "hall switch")
    assert list(maps) == ["switch_left", "switch_right"]
    assert maps["switch_left"].options == {"endpoint": "left"}
    assert read(maps, {"state_left": "ON", "state_right": "OFF"}) == {
        "switch_left": ("on", {}),
        "switch_right": ("off", {}),
    }
    assert maps["switch_right"].command("turn_on", {}, None) == {"state_right": "ON"}
    # A Zigbee group's /set says "state", not "state_right": not a native group member.
    assert not maps["switch_right"].plain_properties


def test_sensors_energy_and_binaries_follow_units_and_value_on() -> None:
    plug = maps_of("BW-SHP13")
    assert read(plug, {"power": 3.5, "energy": 0.25, "child_lock": "LOCK"}) == {
        "power": (3.5, {}),
        "energy": (0.25, {}),
        "child_lock": ("on", {}),
    }
    meter = entity_maps(
        [{"type": "numeric", "name": "energy", "property": "energy", "unit": "Wh", "access": 1}],
        "meter",
    )
    assert meter["energy"].kind is EntityKind.ENERGY_METER
    assert meter["energy"].unit == "kWh"
    assert read(meter, {"energy": 1500}) == {"energy": (1.5, {})}
    door = maps_of("MCCGQ11LM")
    # value_on of contact is false (open): "on" means open, as the hub's door sensors say.
    assert read(door, {"contact": False}) == {"contact": ("on", {})}
    assert read(door, {"contact": True}) == {"contact": ("off", {})}
    with pytest.raises(InvalidValue, match="contact"):
        read(door, {"contact": 1})  # 1 is not true
    with pytest.raises(InvalidValue, match="battery: expected a number"):  # null is "no value"
        read(door, {"temperature": None, "battery": "full"})
    assert read(door, {"temperature": None, "unknown": "ignored"}) == {}


def test_cover_lock_and_climate() -> None:
    blind = maps_of("E1757")["cover"]
    assert blind.read({"position": 0}, True) == ("closed", {"position": 0})
    assert blind.read({"state": "CLOSE", "position": 0}, True) == ("closed", {"position": 0})
    assert blind.command("set_position", {"position": 33.4}, None) == {"position": 33}
    lock = maps_of("V3-BTZB/V3-BTZBE")["lock"]
    assert lock.read({"state": "LOCK", "lock_state": "not_fully_locked"}, True) == (
        "jammed",
        {"lock_state": "not_fully_locked"},
    )
    assert lock.read({"lock_state": "unlocked"}, True) == ("unlocked", {"lock_state": "unlocked"})
    climate = maps_of("SPZB0001")["climate"]
    # A mode the hub does not model keeps the last one and is still shown.
    assert climate.read({"system_mode": "emergency_heating"}, True) == (
        None,
        {"system_mode": "emergency_heating"},
    )
    assert climate.command("turn_off", {}, "heat") == {"system_mode": "off"}
    with pytest.raises(CommandError, match="has no mode 'dry'"):
        climate.command("set_mode", {"mode": "dry"}, "heat")
    # A thermostat that exposes no system_mode starts as heating.
    trv = entity_maps(
        [
            {
                "type": "climate",
                "features": [
                    {
                        "type": "numeric",
                        "name": "current_heating_setpoint",
                        "property": "current_heating_setpoint",
                        "access": 7,
                        "value_min": 5,
                        "value_max": 30,
                    },
                    {
                        "type": "numeric",
                        "name": "local_temperature",
                        "property": "local_temperature",
                        "access": 5,
                    },
                ],
            }
        ],
        "trv",
    )["climate"]
    assert trv.read({"current_heating_setpoint": 20, "local_temperature": 18.5}, False) == (
        "heat",
        {"target_temperature": 20, "current_temperature": 18.5},
    )
    with pytest.raises(CommandError, match="no system mode"):
        trv.command("turn_off", {}, "heat")


def settable_maps() -> dict[str, EntityMap]:
    """The Danfoss 014G2461 thermostat's maps (fixtures/settable_devices.json)."""
    entry = fixture("settable_devices.json")[0]
    return entity_maps(entry["definition"]["exposes"], entry["friendly_name"])


def test_settable_numerics_are_numbers_with_their_range_step_and_unit() -> None:
    maps = settable_maps()
    setpoint = maps["occupied_heating_setpoint_scheduled"]
    assert setpoint.kind is EntityKind.NUMBER
    entity = setpoint.entity("trv")
    assert (entity.unit, entity.options) == ("°C", {"min": 5.0, "max": 35.0, "step": 0.5})
    assert entity.name == "study/radiator Occupied heating setpoint scheduled"
    # The /set payload is exactly the property and the value; whole numbers go bare.
    assert setpoint.command("set_value", {"value": 21.5}, None) == {
        "occupied_heating_setpoint_scheduled": 21.5
    }
    assert setpoint.command("set_value", {"value": 19.0}, None) == {
        "occupied_heating_setpoint_scheduled": 19
    }
    with pytest.raises(CommandError, match=r"outside the device's range 5\.0\.\.35\.0"):
        setpoint.command("set_value", {"value": 40}, None)
    with pytest.raises(CommandError, match="must be a number"):
        setpoint.command("set_value", {"value": "warm"}, None)
    with pytest.raises(CommandError, match="cannot turn_on"):
        setpoint.command("turn_on", {}, None)
    # No unit and no step in the exposes: none in the entity either.
    offset = maps["regulation_setpoint_offset"].entity("trv")
    assert (offset.kind, offset.unit, offset.options) == (
        EntityKind.NUMBER,
        None,
        {"min": -25.0, "max": 25.0},
    )
    assert maps["regulation_setpoint_offset"].command("set_value", {"value": -3}, None) == {
        "regulation_setpoint_offset": -3
    }
    # The device's report is the state; a wrong type is refused naming the property.
    assert read(maps, {"occupied_heating_setpoint_scheduled": 20.5}) == {
        "occupied_heating_setpoint_scheduled": (20.5, {})
    }
    with pytest.raises(InvalidValue, match="occupied_heating_setpoint_scheduled: expected a num"):
        read(maps, {"occupied_heating_setpoint_scheduled": "20.5"})


def test_settable_enums_are_selects_and_read_only_ones_stay_sensors() -> None:
    maps = settable_maps()
    kinds = {key: m.kind for key, m in maps.items()}
    assert kinds == {
        "occupied_heating_setpoint_scheduled": EntityKind.NUMBER,
        "regulation_setpoint_offset": EntityKind.NUMBER,
        "window_open_internal": EntityKind.SENSOR,  # access 5: read-only
        "setpoint_change_source": EntityKind.SENSOR,  # access 1: read-only
        "day_of_week": EntityKind.SELECT,
        "adaptation_run_control": EntityKind.SELECT,
        "linkquality": EntityKind.SENSOR,
    }
    day = maps["day_of_week"]
    assert day.entity("trv").options["options"][:2] == ["sunday", "monday"]
    assert day.command("set_value", {"value": "away_or_vacation"}, None) == {
        "day_of_week": "away_or_vacation"
    }
    with pytest.raises(CommandError, match="has no option 'someday'"):
        day.command("set_value", {"value": "someday"}, None)
    assert read(maps, {"day_of_week": "friday"}) == {"day_of_week": ("friday", {})}
    with pytest.raises(InvalidValue, match="day_of_week: expected one of sunday"):
        read(maps, {"day_of_week": "funday"})
    # The docs' IKEA bulb: power_on_behavior (access 7) is a select; effect and identify
    # (access 2, write-only, never reported) are not entities at all.
    bulb = maps_of("LED1545G12")
    assert set(bulb) == {"light", "power_on_behavior", "linkquality"}
    assert bulb["power_on_behavior"].entity("b").options == {
        "options": ["off", "on", "toggle", "previous"],
        "category": "config",
    }
    assert bulb["power_on_behavior"].command("set_value", {"value": "previous"}, None) == {
        "power_on_behavior": "previous"
    }


def test_broken_settable_exposes_are_refused_with_the_reason() -> None:
    def numeric(**extra: Any) -> list[dict[str, Any]]:
        return [{"type": "numeric", "name": "n", "property": "n", "access": 7, **extra}]

    with pytest.raises(
        ValueError, match=r"expose #0 \(numeric\): value_min 30 is above value_max 5"
    ):
        entity_maps(numeric(value_min=30, value_max=5), "x")
    with pytest.raises(ValueError, match="value_step must be above 0"):
        entity_maps(numeric(value_step=0), "x")
    with pytest.raises(ValueError, match="must list its string 'values'"):
        entity_maps([{"type": "enum", "name": "e", "property": "e", "access": 7}], "x")
    # A settable text is configuration, not an entity.
    assert entity_maps([{"type": "text", "name": "t", "property": "t", "access": 7}], "x") == {}


def test_broken_exposes_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="must be a list"):
        entity_maps({"type": "light"}, "x")
    with pytest.raises(ValueError, match=r"expose #0 \(switch\).*'features' list"):
        entity_maps([{"type": "switch", "features": "nope"}], "x")
    with pytest.raises(ValueError, match="'property' must be a non-empty string"):
        entity_maps([{"type": "numeric", "name": "power", "access": 1}], "x")
    with pytest.raises(ValueError, match="more than 512 exposes"):
        entity_maps([{"type": "numeric", "property": "p", "access": 1}] * 513, "x")
    # Unknown types are tomorrow's exposes: ignored, not refused.
    assert entity_maps([{"type": "hologram", "property": "h"}], "x") == {}
    # Two exposes on one property (or a property that sanitises alike) get distinct keys.
    twice = entity_maps(
        [
            {"type": "numeric", "name": "power", "property": "power", "access": 1},
            {"type": "numeric", "name": "power", "property": "Power", "access": 1},
        ],
        "x",
    )
    assert list(twice) == ["power", "power_2"]


def test_raw_network_map_parsing() -> None:
    network = parse_raw(fixture("networkmap_raw_response.json")["data"]["value"])
    assert len(network.nodes) == 7
    assert network.links[0].source == "0x000b57fffec6a5b3"
    assert network.links[0].lqi == 120
    # Older releases: flat sourceIeeeAddr/targetIeeeAddr and linkquality only.
    legacy = parse_raw(
        {
            "nodes": [],
            "links": [
                {
                    "sourceIeeeAddr": "0x000B57FFFEC6A5B3",
                    "targetIeeeAddr": "0x00124b00120144ae",
                    "linkquality": 77,
                }
            ],
        }
    )
    assert (legacy.links[0].source, legacy.links[0].lqi) == ("0x000b57fffec6a5b3", 77)
    with pytest.raises(ValueError, match=r"links\[0\].lqi"):
        parse_raw(
            {
                "nodes": [],
                "links": [
                    {
                        "source": {"ieeeAddr": "0x000b57fffec6a5b3"},
                        "target": {"ieeeAddr": "0x00124b00120144ae"},
                        "lqi": 300,
                    }
                ],
            }
        )
    with pytest.raises(ValueError, match=r"nodes\[0\].ieeeAddr"):
        parse_raw({"nodes": [{"ieeeAddr": "../etc"}], "links": []})


def test_settings() -> None:
    settings = Settings()
    assert settings.base_topic == "zigbee2mqtt"
    assert settings.networkmap_interval is None  # never on a schedule unless asked
    assert settings.request_timeout == 10.0
    assert Settings(networkmap_interval="6h", request_timeout="500ms").networkmap_interval == 21600
    with pytest.raises(ValidationError, match="stalls the Zigbee network"):
        Settings(networkmap_interval="10s")
    for bad in ("a/+/b", "zigbee2mqtt/", "a/../b", "#"):
        with pytest.raises(ValidationError, match="base_topic"):
            Settings(base_topic=bad)
    with pytest.raises(ValidationError, match="Extra inputs"):
        Settings.model_validate({"base_topc": "x"})


def test_register_group_owns_replaces_and_undoes(tmp_path: Path) -> None:
    hub = Hub(load_config(write_config(tmp_path, "mqtt://127.0.0.1:1")).config)
    groups = hub.registry.groups
    groups["kitchen"] = Group("kitchen", "Kitchen", ["kitchen_light"])  # from hub.yaml
    mine = PluginContext(hub, "zigbee2mqtt", "adapter")
    other = PluginContext(hub, "other", "adapter")
    with pytest.raises(ValueError, match="already exists"):
        mine.register_group("kitchen", "Kitchen", ["a.light"])
    first = mine.register_group("z_group_1", "Living", ["a.light", "b.light"])
    assert groups["z_group_1"].members == ["a.light", "b.light"]
    with pytest.raises(ValueError, match="not other's"):
        other.register_group("z_group_1", "Mine now", [])
    mine.register_group("z_group_1", "Living", ["a.light"], aggregate="all")
    first()  # the undo of a replaced registration is stale: nothing happens
    assert groups["z_group_1"].members == ["a.light"]
    with pytest.raises(ValueError, match="invalid group id"):
        mine.register_group("Bad Id", "x", [])
    mine.close()  # the plug-in stops: its groups go, hub.yaml's stay
    assert "z_group_1" not in groups
    assert "kitchen" in groups


class _RecordingContext:
    """Just enough of a PluginContext for the adapter's schedule (no hub, no broker)."""

    base_topic = "hub"
    name = "zigbee2mqtt"

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.logger = logging.getLogger("test.zigbee2mqtt")

    def publish_mqtt(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> None:
        self.published.append((topic, payload))

    def register_device(self, device: Any, entities: Any) -> bool:
        return True

    def repeat_memo(self) -> RepeatMemo:
        return RepeatMemo(None)  # type: ignore[arg-type]  # no state messages here


async def test_a_configured_schedule_requests_raw_maps_and_publishes_them() -> None:
    context = _RecordingContext()
    # Below the 5 min floor only to keep the test short (the model would refuse it).
    settings = Settings.model_construct(
        base_topic="zigbee2mqtt",
        networkmap_interval=0.05,
        request_timeout=1.0,
        networkmap_timeout=1.0,
    )
    adapter = Zigbee2Mqtt(context, settings)  # type: ignore[arg-type]
    task = asyncio.create_task(adapter.run())
    try:
        for round_ in (1, 2):  # forced on schedule: the 60 s reuse is for on-demand requests
            await eventually(lambda: len(adapter.requests.pending) == 1, 3, "no scheduled map")
            topic, payload = context.published[-1]
            assert topic == "zigbee2mqtt/bridge/request/networkmap"
            body = json.loads(payload)
            assert (body["type"], body["routes"]) == ("raw", False)
            response = fixture("networkmap_raw_response.json")
            response["transaction"] = body["transaction"]
            adapter._on_response(
                "zigbee2mqtt/bridge/response/networkmap", json.dumps(response).encode()
            )
            await eventually(lambda: context.published[-1][0] == "hub/topology/zigbee")
            assert len([t for t, _ in context.published if t.endswith("networkmap")]) == round_
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
