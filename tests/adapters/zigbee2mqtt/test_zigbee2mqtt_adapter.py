"""The Zigbee2MQTT adapter in a running hub, against a real Mosquitto and a fake bridge.

Payloads are the Zigbee2MQTT docs' own (see fixtures/README.md for each one's source).
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from mqttprobe import MqttProbe
from z2mtest import (
    FakeBridge,
    HubFactory,
    Z2mSetup,
    adapter_of,
    eventually,
    fixture,
    write_config,
)

from adapters.zigbee2mqtt import BridgeRequestError
from adapters.zigbee2mqtt.adapter import OWNER
from hub.api import Command, CommandError, Context, EntityKind, Origin
from hub.events import StateChanged

BRIDGE_IEEE = "0x00124b00120144ae"
BULB = "0x000b57fffec6a5b2"
BULB_2 = "0x000b57fffec6a5b4"
BULB_COLOR = "0x000b57fffec6a5b3"
ROUTER = "0x0017880104e45559"
BUTTON = "0x0017880104e45521"
PLUG = "0xa4c138d2a1b2c3d4"
MOTION = "0x00158d000224aa01"
DOOR = "0x00158d000224aa02"
SENSOR = "0x00158d000224aa03"
BLIND = "0x680ae2fffe5b3c01"
LOCK = "0x000b57fffe123456"
RADIATOR = "0x00158d000224aa06"
UNSUPPORTED = "0x00169a00022256da"
ALL_DEVICES = [
    BULB, BULB_2, BULB_COLOR, ROUTER, BUTTON, PLUG, MOTION, DOOR, SENSOR, BLIND, LOCK, RADIATOR,
    UNSUPPORTED,
]  # fmt: skip
CLI = Context(Origin.CLI, "test")


async def started(z2m: Z2mSetup, **kwargs: Any) -> None:
    """Let the fake bridge start and wait until every device is registered."""
    await asyncio.to_thread(z2m.bridge.start, **kwargs)
    devices = z2m.hub.registry.devices
    await eventually(lambda: all(d in devices for d in ALL_DEVICES), 5, "devices not registered")


async def publish_state(z2m: Z2mSetup, friendly_name: str, payload: Any) -> None:
    """Publish a device's state as Zigbee2MQTT does."""
    await asyncio.to_thread(z2m.bridge.publish, friendly_name, payload)


def value(z2m: Z2mSetup, entity_id: str) -> Any:
    """An entity's current value (None if it has no state yet)."""
    state = z2m.hub.registry.states.get(entity_id)
    return None if state is None else state.value


def attrs(z2m: Z2mSetup, entity_id: str) -> dict[str, Any]:
    """An entity's current attributes."""
    state = z2m.hub.registry.states.get(entity_id)
    return {} if state is None else dict(state.attributes)


async def test_devices_entities_states_and_energy_readings(z2m: Z2mSetup) -> None:
    await started(z2m)
    hub = z2m.hub
    registry = hub.registry
    bridge = registry.devices[z2m.adapter.bridge_id]
    assert bridge.owner == "zigbee2mqtt"
    assert bridge.identities == {"ieee": BRIDGE_IEEE}  # the coordinator entry of the list
    assert BRIDGE_IEEE not in registry.devices  # the coordinator is the bridge, not a device
    bulb = registry.devices[BULB]
    assert (bulb.name, bulb.manufacturer, bulb.model, bulb.firmware) == (
        "bulb",
        "IKEA",
        "LED1545G12",
        "2.3.093",
    )
    assert bulb.via == z2m.adapter.bridge_id
    assert bulb.identities == {"ieee": BULB}
    assert bulb.native["topic"] == f"{z2m.base}/bulb"
    assert all(registry.devices[d].via == z2m.adapter.bridge_id for d in ALL_DEVICES)

    def kinds(device_id: str) -> dict[str, tuple[EntityKind, str | None]]:
        return {e.key: (e.kind, e.unit) for e in registry.entities_of(device_id)}

    # Write-only exposes (effect, identify) and composites (color_options) are not entities;
    # the settable power_on_behavior enum, which the bulb reports, is a select.
    assert kinds(BULB) == {
        "light": (EntityKind.LIGHT, None),
        "power_on_behavior": (EntityKind.SELECT, None),
        "linkquality": (EntityKind.SENSOR, "lqi"),
    }
    assert registry.entities[f"{BULB}.light"].options["features"] == ["brightness", "color_temp"]
    assert registry.entities[f"{BULB}.light"].options["color_temp_range"] == [250, 454]
    assert kinds(PLUG) == {
        "switch": (EntityKind.SWITCH, None),
        "power": (EntityKind.SENSOR, "W"),
        "current": (EntityKind.SENSOR, "A"),
        "voltage": (EntityKind.SENSOR, "V"),
        "energy": (EntityKind.ENERGY_METER, "kWh"),
        "child_lock": (EntityKind.SWITCH, None),
        "power_outage_memory": (EntityKind.SELECT, None),
        "switch_type_button": (EntityKind.SELECT, None),
        "indicator_mode": (EntityKind.SELECT, None),
        "linkquality": (EntityKind.SENSOR, "lqi"),
    }  # its write-only countdown is not an entity
    assert kinds(MOTION)["occupancy"] == (EntityKind.BINARY_SENSOR, None)
    assert registry.entities[f"{MOTION}.occupancy"].device_class == "motion"
    assert registry.entities[f"{DOOR}.contact"].device_class == "door"
    assert kinds(SENSOR)["temperature"] == (EntityKind.SENSOR, "°C")
    assert kinds(SENSOR)["pressure"] == (EntityKind.SENSOR, "hPa")
    assert kinds(BUTTON)["action"] == (EntityKind.BUTTON, None)
    assert kinds(BLIND)["cover"] == (EntityKind.COVER, None)
    assert kinds(LOCK)["lock"] == (EntityKind.LOCK, None)
    assert kinds(RADIATOR)["climate"] == (EntityKind.CLIMATE, None)
    assert kinds(ROUTER)["led"] == (EntityKind.SWITCH, None)  # a settable binary
    assert kinds(UNSUPPORTED) == {}  # definition null: a device, no entities
    assert all(registry.devices[d].available for d in ALL_DEVICES)  # bridge online
    assert bridge.available

    for name, payload in fixture("device_states.json").items():
        await publish_state(z2m, name, payload)
    await eventually(lambda: value(z2m, f"{ROUTER}.led") == "off", 5, "states not applied")
    assert value(z2m, f"{BULB}.light") == "on"
    assert attrs(z2m, f"{BULB}.light") == {"brightness": 215, "color_temp": 325}
    assert value(z2m, f"{BULB_COLOR}.light") == "on"
    assert attrs(z2m, f"{BULB_COLOR}.light")["color"] == {
        "hue": 0,
        "saturation": 100,
        "x": 0.7006,
        "y": 0.2993,
    }
    assert value(z2m, f"{BULB_COLOR}.linkquality") == 86
    # The plug's power and energy readings.
    assert value(z2m, f"{PLUG}.switch") == "on"
    assert value(z2m, f"{PLUG}.power") == 1150.5
    assert value(z2m, f"{PLUG}.energy") == 12.34
    assert value(z2m, f"{PLUG}.current") == 5.02
    assert value(z2m, f"{PLUG}.voltage") == 229
    assert value(z2m, f"{PLUG}.child_lock") == "off"
    assert value(z2m, f"{MOTION}.occupancy") == "on"
    assert value(z2m, f"{DOOR}.contact") == "off"  # contact true: the door is closed
    assert value(z2m, f"{DOOR}.battery") == 100
    assert value(z2m, f"{SENSOR}.temperature") == 19.59
    assert value(z2m, f"{SENSOR}.humidity") == 69.01
    assert value(z2m, f"{BUTTON}.action") == "single_left"
    assert value(z2m, f"{BLIND}.cover") == "open"
    assert attrs(z2m, f"{BLIND}.cover") == {"position": 100}
    assert value(z2m, f"{LOCK}.lock") == "locked"
    assert value(z2m, f"{RADIATOR}.climate") == "heat"
    assert attrs(z2m, f"{RADIATOR}.climate") == {
        "system_mode": "heat",
        "target_temperature": 21,
        "current_temperature": 19.5,
        "running_state": "heat",
        "preset": "program",
    }
    # Zigbee2MQTT's empty "action" after a press is a reset, not a press.
    await publish_state(z2m, "button_double_key", {"action": "", "linkquality": 71})
    await eventually(lambda: value(z2m, f"{BUTTON}.linkquality") == 71)
    assert value(z2m, f"{BUTTON}.action") == "single_left"
    # The door opens.
    await publish_state(z2m, "entrance/door", {"contact": False, "battery": 99})
    await eventually(lambda: value(z2m, f"{DOOR}.contact") == "on")
    # The hub mirrors it like any device.
    _topic, payload = await asyncio.to_thread(
        z2m.probe.wait_for,
        f"{z2m.hub.base_topic}/devices/{PLUG}/state",
        lambda p: "energy" in json.loads(p)["entities"],
    )
    assert json.loads(payload)["entities"]["energy"]["state"] == 12.34
    assert z2m.hub.stats.rejected == 0


async def test_availability_and_an_offline_bridge_marks_its_subtree(z2m: Z2mSetup) -> None:
    await started(z2m)
    devices = z2m.hub.registry.devices
    bridge_id = z2m.adapter.bridge_id
    # Per-device availability, the JSON form and the legacy plain form.
    await asyncio.to_thread(
        z2m.bridge.publish, "bulb/availability", {"state": "offline"}, retain=True
    )
    await asyncio.to_thread(z2m.bridge.publish, "kitchen/plug/availability", "offline", retain=True)
    await eventually(lambda: not devices[BULB].available and not devices[PLUG].available)
    assert devices[BULB_COLOR].available
    await asyncio.to_thread(z2m.bridge.publish, "kitchen/plug/availability", "online", retain=True)
    await eventually(lambda: devices[PLUG].available)

    # The bridge goes offline: it and every device reached through it are unavailable.
    await asyncio.to_thread(z2m.bridge.publish, "bridge/state", "offline", retain=True)
    await eventually(lambda: not devices[bridge_id].available)
    await eventually(lambda: not any(devices[d].available for d in ALL_DEVICES))
    # The hub announces each one (dashboards and "device offline" rules follow the events).
    await asyncio.to_thread(
        z2m.probe.wait_for,
        f"{z2m.hub.base_topic}/events/device_availability",
        lambda p: json.loads(p) == {"device_id": BULB_COLOR, "available": False},
    )
    # Back (the JSON form of bridge/state): devices return, except the one that said offline.
    await asyncio.to_thread(z2m.bridge.publish, "bridge/state", {"state": "online"}, retain=True)
    await eventually(lambda: devices[bridge_id].available and devices[PLUG].available)
    assert devices[BULB_COLOR].available
    assert not devices[BULB].available
    await asyncio.to_thread(
        z2m.bridge.publish, "bulb/availability", {"state": "online"}, retain=True
    )
    await eventually(lambda: devices[BULB].available)
    for suffix in ("bulb/availability", "kitchen/plug/availability"):
        await asyncio.to_thread(z2m.bridge.publish, suffix, b"", retain=True)


async def test_rename_keeps_identity_and_moves_topics(z2m: Z2mSetup) -> None:
    await started(z2m)
    registry = z2m.hub.registry
    await publish_state(z2m, "bulb", {"state": "ON", "brightness": 215, "color_temp": 325})
    await eventually(lambda: value(z2m, f"{BULB}.light") == "on")
    devices = copy.deepcopy(fixture("bridge_devices.json"))
    for entry in devices:
        if entry["ieee_address"] == BULB:
            entry["friendly_name"] = "living/ceiling"
    await asyncio.to_thread(z2m.bridge.publish, "bridge/devices", devices, retain=True)
    await eventually(lambda: registry.devices[BULB].name == "living/ceiling")
    device = registry.devices[BULB]
    assert device.native["topic"] == f"{z2m.base}/living/ceiling"
    assert value(z2m, f"{BULB}.light") == "on"  # same id: the state (and history) stay
    assert len([d for d in registry.devices.values() if d.identities.get("ieee") == BULB]) == 1
    # The old topic is no longer the bulb's; the new one is.
    await publish_state(z2m, "bulb", {"state": "OFF"})
    await publish_state(z2m, "living/ceiling", {"state": "ON", "brightness": 100})
    await eventually(lambda: attrs(z2m, f"{BULB}.light").get("brightness") == 100)
    assert value(z2m, f"{BULB}.light") == "on"
    # Commands follow the new name.
    futures = z2m.hub.commands.issue(Command(f"{BULB}.light", "turn_off", CLI))
    assert await asyncio.to_thread(z2m.bridge.next_set, "living/ceiling") == {"state": "OFF"}
    await publish_state(z2m, "living/ceiling", {"state": "OFF", "brightness": 100})
    assert (await futures[0]).ok


async def test_commands_publish_exactly_the_set_payload_from_the_exposes(z2m: Z2mSetup) -> None:
    await started(z2m)
    for name, payload in fixture("device_states.json").items():
        await publish_state(z2m, name, payload)
    await eventually(lambda: value(z2m, f"{ROUTER}.led") == "off")

    async def check(
        target: str,
        action: str,
        params: dict[str, Any],
        friendly_name: str,
        expected: dict[str, Any],
        report: dict[str, Any] | None,
    ) -> None:
        futures = z2m.hub.commands.issue(Command(target, action, CLI, params))
        sent = await asyncio.to_thread(z2m.bridge.next_set, friendly_name)
        assert sent == expected, f"{target} {action} {params}"
        if report is not None:
            await publish_state(z2m, friendly_name, report)
            result = await futures[0]
            assert result.ok, result.reason

    await check(
        f"{BULB}.light",
        "turn_on",
        {"brightness": 128, "color_temp": 300, "transition": 2},
        "bulb",
        {"state": "ON", "brightness": 128, "color_temp": 300, "transition": 2},
        {"state": "ON", "brightness": 128, "color_temp": 300},
    )
    # The hub's full brightness (255) is Zigbee's 254, and confirms with it.
    await check(
        f"{BULB}.light",
        "turn_on",
        {"brightness": 255},
        "bulb",
        {"state": "ON", "brightness": 254},
        {"state": "ON", "brightness": 254, "color_temp": 300},
    )
    await check(f"{BULB}.light", "toggle", {}, "bulb", {"state": "OFF"}, {"state": "OFF"})
    await check(
        f"{BULB_COLOR}.light",
        "turn_on",
        {"color": {"x": 0.3, "y": 0.4}},
        "bulb_color",
        {"state": "ON", "color": {"x": 0.3, "y": 0.4}},
        None,
    )
    await check(
        f"{PLUG}.switch", "turn_off", {}, "kitchen/plug", {"state": "OFF"}, {"state": "OFF"}
    )
    await check(
        f"{PLUG}.child_lock", "turn_on", {}, "kitchen/plug", {"child_lock": "LOCK"},
        {"child_lock": "LOCK"},
    )  # fmt: skip
    await check(f"{ROUTER}.led", "turn_on", {}, "cc2530_router", {"led": True}, {"led": True})
    await check(
        f"{BLIND}.cover",
        "close",
        {},
        "living/blind",
        {"state": "CLOSE"},
        {"state": "CLOSE", "position": 0},
    )
    await check(f"{BLIND}.cover", "open", {}, "living/blind", {"state": "OPEN"}, {"state": "OPEN"})
    await check(f"{BLIND}.cover", "stop", {}, "living/blind", {"state": "STOP"}, None)
    await check(
        f"{BLIND}.cover", "set_position", {"position": 40}, "living/blind", {"position": 40},
        {"position": 40},
    )  # fmt: skip
    await check(
        f"{LOCK}.lock",
        "unlock",
        {},
        "front_door/lock",
        {"state": "UNLOCK"},
        {"state": "UNLOCK", "lock_state": "unlocked"},
    )
    await check(
        f"{LOCK}.lock",
        "lock",
        {},
        "front_door/lock",
        {"state": "LOCK"},
        {"state": "LOCK", "lock_state": "locked"},
    )
    await check(
        f"{RADIATOR}.climate", "set_temperature", {"temperature": 21.5}, "living/radiator",
        {"occupied_heating_setpoint": 21.5}, {"occupied_heating_setpoint": 21.5},
    )  # fmt: skip
    await check(
        f"{RADIATOR}.climate", "set_mode", {"mode": "off"}, "living/radiator",
        {"system_mode": "off"}, {"system_mode": "off"},
    )  # fmt: skip
    await check(
        f"{RADIATOR}.climate", "turn_on", {}, "living/radiator", {"system_mode": "heat"},
        {"system_mode": "heat"},
    )  # fmt: skip

    # What the device cannot do fails at once, with the reason, and sends nothing.
    async def refused(target: str, action: str, params: dict[str, Any]) -> str:
        results = await z2m.hub.commands.execute(Command(target, action, CLI, params))
        assert not results[0].ok
        return results[0].reason

    assert "cannot be pressed" in await refused(f"{BUTTON}.action", "press", {})
    assert "outside the device's range" in await refused(
        f"{BULB}.light", "turn_on", {"color_temp": 500}
    )
    assert "has no colour control" in await refused(
        f"{BULB}.light", "turn_on", {"color": {"x": 1, "y": 0}}
    )
    assert "has no mode 'dry'" in await refused(f"{RADIATOR}.climate", "set_mode", {"mode": "dry"})
    assert "outside the device's range" in await refused(
        f"{RADIATOR}.climate", "set_temperature", {"temperature": 35}
    )
    await asyncio.sleep(0.2)
    sets = [m for m in z2m.probe.messages if m.topic.endswith("/set")]
    assert len(sets) == 16  # the refused commands published nothing


TRV = "0x000b57fffe9a3c71"  # the Danfoss 014G2461 of fixtures/settable_devices.json


async def test_settable_numbers_and_selects_set_exactly_and_confirm_on_report(
    z2m: Z2mSetup,
) -> None:
    devices = [*fixture("bridge_devices.json"), *fixture("settable_devices.json")]
    await started(z2m, devices=devices)
    registry = z2m.hub.registry
    await eventually(lambda: TRV in registry.devices, 5, "thermostat not registered")
    setpoint = registry.entities[f"{TRV}.occupied_heating_setpoint_scheduled"]
    assert (setpoint.kind, setpoint.unit) == (EntityKind.NUMBER, "°C")
    assert setpoint.options == {"min": 5.0, "max": 35.0, "step": 0.5}
    day = registry.entities[f"{TRV}.day_of_week"]
    assert day.kind is EntityKind.SELECT
    assert registry.entities[f"{TRV}.setpoint_change_source"].kind is EntityKind.SENSOR
    await publish_state(
        z2m,
        "study/radiator",
        {"occupied_heating_setpoint_scheduled": 18, "day_of_week": "monday", "linkquality": 90},
    )
    await eventually(lambda: value(z2m, f"{TRV}.day_of_week") == "monday")
    assert value(z2m, setpoint.id) == 18

    # The command goes out as exactly {"<property>": value} and stays pending until the
    # device reports that value.
    futures = z2m.hub.commands.issue(Command(setpoint.id, "set_value", CLI, {"value": 21.5}))
    sent = await asyncio.to_thread(z2m.bridge.next_set, "study/radiator")
    assert sent == {"occupied_heating_setpoint_scheduled": 21.5}
    await asyncio.sleep(0.2)
    assert not futures[0].done()  # sent, not yet confirmed
    await publish_state(z2m, "study/radiator", {"occupied_heating_setpoint_scheduled": 21.5})
    result = await futures[0]
    assert result.ok, result.reason
    assert value(z2m, setpoint.id) == 21.5

    futures = z2m.hub.commands.issue(Command(day.id, "set_value", CLI, {"value": "friday"}))
    assert await asyncio.to_thread(z2m.bridge.next_set, "study/radiator") == {
        "day_of_week": "friday"
    }
    await publish_state(z2m, "study/radiator", {"day_of_week": "friday"})
    assert (await futures[0]).ok
    # The docs' bulb: power_on_behavior is a select too.
    futures = z2m.hub.commands.issue(
        Command(f"{BULB}.power_on_behavior", "set_value", CLI, {"value": "previous"})
    )
    assert await asyncio.to_thread(z2m.bridge.next_set, "bulb") == {"power_on_behavior": "previous"}
    await publish_state(z2m, "bulb", {"state": "ON", "power_on_behavior": "previous"})
    assert (await futures[0]).ok

    # Out of range, off the step or not an option: refused before anything is sent.
    for target, wrong, reason in (
        (setpoint.id, 40, "between 5 and 35"),
        (setpoint.id, 21.3, "multiple of 0.5"),
        (day.id, "someday", "has no option 'someday'"),
    ):
        with pytest.raises(CommandError, match=reason):
            z2m.hub.commands.issue(Command(target, "set_value", CLI, {"value": wrong}))
    # A report the exposes do not allow changes nothing and is counted as rejected.
    await publish_state(z2m, "study/radiator", {"day_of_week": "funday"})
    await eventually(lambda: z2m.hub.stats.rejected >= 1, 5, "bad report not rejected")
    assert value(z2m, f"{TRV}.day_of_week") == "friday"
    await asyncio.sleep(0.2)
    sets = [m for m in z2m.probe.messages if m.topic.endswith("/set")]
    assert len(sets) == 3  # the refused commands published nothing


async def test_zigbee_groups_become_hub_groups_and_use_the_group_topic(z2m: Z2mSetup) -> None:
    await started(z2m)
    registry = z2m.hub.registry
    group_id = await eventually(lambda: z2m.adapter.hub_group_id("living/lights"))
    assert group_id in registry.groups
    group = registry.groups[group_id]
    assert group.name == "living/lights"
    assert sorted(group.members) == [f"{BULB}.light", f"{BULB_2}.light"]
    # The docs' my_group holds a bulb this network does not have: no hub group.
    assert z2m.adapter.hub_group_id("my_group") not in registry.groups

    # A command to the group goes out once, on the Zigbee group's own topic.
    futures = z2m.hub.commands.issue(
        Command(f"group:{group_id}", "turn_on", CLI, {"brightness": 100})
    )
    assert await asyncio.to_thread(z2m.bridge.next_set, "living/lights") == {
        "state": "ON",
        "brightness": 100,
    }
    for name in ("bulb", "bulb_2"):  # Zigbee2MQTT then reports each member's state
        await publish_state(z2m, name, {"state": "ON", "brightness": 100})
    assert all(r.ok for r in await asyncio.gather(*futures))
    await asyncio.sleep(0.1)
    assert not [
        m
        for m in z2m.probe.messages
        if m.topic in (f"{z2m.base}/bulb/set", f"{z2m.base}/bulb_2/set")
    ]
    # One member alone is commanded on its own topic.
    z2m.hub.commands.issue(Command(f"{BULB}.light", "turn_off", CLI))
    assert await asyncio.to_thread(z2m.bridge.next_set, "bulb") == {"state": "OFF"}

    # The group disappears from Zigbee2MQTT: it disappears from the hub.
    await asyncio.to_thread(z2m.bridge.publish, "bridge/groups", [], retain=True)
    await eventually(lambda: group_id not in registry.groups)


async def test_bridge_requests_match_transactions_and_always_clean_up(z2m: Z2mSetup) -> None:
    await started(z2m)
    adapter = z2m.adapter
    task = asyncio.create_task(adapter.request("permit_join", {"value": True, "time": 20}))
    body = await asyncio.to_thread(z2m.bridge.next_request, "permit_join")
    transaction = body.pop("transaction")
    assert body == {"value": True, "time": 20}
    assert transaction in adapter.requests.pending
    # Another client's response (other transaction, or none) is not ours.
    await asyncio.to_thread(
        z2m.bridge.respond,
        "permit_join",
        {"data": {"value": False}, "status": "ok", "transaction": 7},
    )
    await asyncio.to_thread(z2m.bridge.respond, "permit_join", {"data": {}, "status": "ok"})
    await asyncio.sleep(0.2)
    assert not task.done()
    await asyncio.to_thread(
        z2m.bridge.respond,
        "permit_join",
        {"data": {"value": True, "time": 20}, "status": "ok", "transaction": transaction},
    )
    assert await task == {"value": True, "time": 20}
    assert adapter.requests.pending == {}

    # An error response raises with Zigbee2MQTT's reason.
    task = asyncio.create_task(adapter.request("device/remove", {"id": "my_sensor"}))
    body = await asyncio.to_thread(z2m.bridge.next_request, "device/remove")
    await asyncio.to_thread(
        z2m.bridge.respond,
        "device/remove",
        {
            "data": {"id": "my_sensor", "block": False, "force": False},
            "status": "error",
            "error": "Failed to remove dimmer (Error: AREQ - ZDO - mgmtLeaveRsp after 10000ms)",
            "transaction": body["transaction"],
        },
    )
    with pytest.raises(BridgeRequestError, match="mgmtLeaveRsp"):
        await task
    assert adapter.requests.pending == {}

    # No answer: a timeout, and nothing left pending; the late answer is ignored.
    with pytest.raises(BridgeRequestError, match="did not answer"):
        await adapter.request("health_check", timeout=0.3)
    assert adapter.requests.pending == {}
    assert adapter.requests.timed_out == 1
    late = await asyncio.to_thread(z2m.bridge.next_request, "health_check")
    await asyncio.to_thread(
        z2m.bridge.respond,
        "health_check",
        {"data": {"healthy": True}, "status": "ok", "transaction": late["transaction"]},
    )
    await asyncio.sleep(0.2)
    assert adapter.requests.pending == {}
    assert z2m.hub.stats.rejected == 0
    # A request still pending when the adapter stops fails rather than hangs.
    task = asyncio.create_task(adapter.request("restart"))
    await asyncio.to_thread(z2m.bridge.next_request, "restart")
    await adapter.stop()
    with pytest.raises(BridgeRequestError, match="stopped"):
        await task
    assert adapter.requests.pending == {}


async def test_network_map_only_on_demand_turned_into_links(z2m: Z2mSetup) -> None:
    await started(z2m)
    hub_base = z2m.hub.base_topic
    # By default nothing ever asks for a network map: a scan stalls the Zigbee network.
    await asyncio.sleep(1.0)
    assert not [m for m in z2m.probe.messages if "bridge/request/networkmap" in m.topic]

    await asyncio.to_thread(z2m.probe.publish, f"{hub_base}/zigbee2mqtt/networkmap/request", "", 1)
    body = await asyncio.to_thread(z2m.bridge.next_request, "networkmap")
    transaction = body.pop("transaction")
    assert body == {"type": "raw", "routes": False}
    response = fixture("networkmap_raw_response.json")
    response["transaction"] = transaction
    await asyncio.to_thread(z2m.bridge.respond, "networkmap", response)
    _topic, answer = await asyncio.to_thread(
        z2m.probe.wait_for, f"{hub_base}/zigbee2mqtt/networkmap/response"
    )
    assert json.loads(answer) == {
        "status": "ok",
        "nodes": 7,
        "links": 6,
        "topic": f"{hub_base}/topology/zigbee",
    }
    devices = z2m.hub.registry.devices
    bridge_id = z2m.adapter.bridge_id
    assert devices[BULB].native["zigbee_links"] == [{"to": bridge_id, "lqi": 92}]
    assert devices[BULB_COLOR].native["zigbee_links"] == [
        {"to": BULB, "lqi": 110},
        {"to": bridge_id, "lqi": 120},
    ]
    assert devices[ROUTER].native["zigbee_links"] == [{"to": BULB, "lqi": 100}]
    assert devices[BUTTON].native["zigbee_links"] == [{"to": ROUTER, "lqi": 130}]
    assert devices[PLUG].native["zigbee_links"] == []  # not in this map
    # The map is published, retained, for the dashboard's topology page.
    _topic, payload = await asyncio.to_thread(z2m.probe.wait_for, f"{hub_base}/topology/zigbee")
    topology = json.loads(payload)
    assert topology["bridge"] == bridge_id
    assert {"from": BUTTON, "to": ROUTER, "lqi": 130, "depth": 2, "relationship": 1} in topology[
        "links"
    ]
    unknown = next(n for n in topology["nodes"] if n["ieee"] == "0x0017880104e45511")
    assert unknown["known"] is False
    assert next(n for n in topology["nodes"] if n["id"] == bridge_id)["type"] == "Coordinator"
    # The links reach the hub's mirror (the device config carries native).
    await asyncio.to_thread(
        z2m.probe.wait_for,
        f"{hub_base}/devices/{BUTTON}/config",
        lambda p: bool(json.loads(p).get("native", {}).get("zigbee_links")),
    )
    # Asked again within a minute: the last map, and no new scan.
    summary = await z2m.adapter.request_networkmap()
    assert summary == {"nodes": 7, "links": 6}
    await asyncio.sleep(0.2)
    assert (
        len([m for m in z2m.probe.messages if m.topic.endswith("bridge/request/networkmap")]) == 1
    )


async def test_malformed_and_hostile_payloads_are_rejected_counted_and_harmless(
    z2m: Z2mSetup,
) -> None:
    await started(z2m)
    hub = z2m.hub
    await publish_state(z2m, "bedroom/sensor", {"temperature": 19.59, "humidity": 69.01})
    await eventually(lambda: value(z2m, f"{SENSOR}.temperature") == 19.59)
    reasons = hub.stats.rejected_by_reason

    async def rejected(kind: str, count: int = 1) -> None:
        await eventually(lambda: reasons.get(kind, 0) >= count, 5, f"no {kind} rejection")

    # Not JSON; not an object; a wrong type next to a good value (nothing of it applies).
    await publish_state(z2m, "bedroom/sensor", b"{temperature: 21")
    await rejected("not_json")
    await publish_state(z2m, "bedroom/sensor", [1, 2])
    await rejected("wrong_type")
    await publish_state(z2m, "bedroom/sensor", {"temperature": 30.5, "humidity": "wet"})
    await rejected("wrong_type", 2)
    await publish_state(z2m, "bedroom/sensor", {"temperature": True})
    await rejected("wrong_type", 3)
    await publish_state(z2m, "bulb", {"state": "MAYBE", "brightness": 10})
    await rejected("wrong_type", 4)
    # 1 MB.
    await publish_state(z2m, "bedroom/sensor", b'{"temperature": 1' + b" " * (1024 * 1024) + b"}")
    await rejected("too_large")
    # Availability that is neither online nor offline; a garbled bridge state.
    await asyncio.to_thread(z2m.bridge.publish, "bulb/availability", "maybe")
    await asyncio.to_thread(z2m.bridge.publish, "bridge/state", {"state": 1})
    await rejected("wrong_type", 6)
    assert hub.registry.devices[BULB].available
    assert hub.registry.devices[z2m.adapter.bridge_id].available
    assert value(z2m, f"{SENSOR}.temperature") == 19.59
    assert value(z2m, f"{SENSOR}.humidity") == 69.01
    assert value(z2m, f"{BULB}.light") is None

    # A device list with hostile entries: the good ones still apply, the bad are counted,
    # and since some were unreadable no known device is dropped.
    devices = fixture("bridge_devices.json")
    hostile = [
        *devices,
        {"ieee_address": "0x1111111111111111", "type": "Router", "friendly_name": "a/+/b"},
        {"ieee_address": "0x2222222222222222", "type": "Router", "friendly_name": "a/../b"},
        {"ieee_address": "0x3333333333333333", "type": "Router", "friendly_name": "#"},
        {"ieee_address": "not-an-ieee", "type": "Router", "friendly_name": "x"},
        {"ieee_address": "0x4444444444444444", "type": "Router", "friendly_name": "bridge/x"},
        {
            "ieee_address": "0x5555555555555555",
            "type": "Router",
            "friendly_name": "weird",
            "definition": {"exposes": [{"type": "switch", "features": "nope"}]},
        },
        "not a device",
        {"ieee_address": "0x6666666666666666", "type": "EndDevice", "friendly_name": "ok_new"},
    ]
    await asyncio.to_thread(z2m.bridge.publish, "bridge/devices", hostile, retain=True)
    await rejected("bad_config", 7)
    await eventually(lambda: "0x6666666666666666" in hub.registry.devices)
    assert all(d in hub.registry.devices for d in ALL_DEVICES)
    for bad in ("0x1111111111111111", "0x2222222222222222", "0x5555555555555555"):
        assert bad not in hub.registry.devices
    await asyncio.to_thread(z2m.bridge.publish, "bridge/devices", {"not": "a list"})
    await asyncio.to_thread(z2m.bridge.publish, "bridge/groups", b"\xff\xfe")
    await asyncio.to_thread(
        z2m.bridge.publish,
        "bridge/response/networkmap",
        {"status": "ok", "data": {"type": "raw", "value": {"nodes": "x"}}},
    )
    await rejected("bad_networkmap")
    await rejected("not_json", 2)
    # The adapter is still healthy and still works.
    await publish_state(z2m, "bedroom/sensor", {"temperature": 20.25})
    await eventually(lambda: value(z2m, f"{SENSOR}.temperature") == 20.25)
    assert hub.plugins is not None
    status = hub.plugins.status["adapter:zigbee2mqtt"]
    assert status.healthy
    assert status.restarts == 0
    await asyncio.to_thread(z2m.bridge.publish, "bridge/devices", devices, retain=True)


async def test_devices_that_left_the_network_are_removed(z2m: Z2mSetup) -> None:
    await started(z2m)
    devices = [d for d in fixture("bridge_devices.json") if d["ieee_address"] != DOOR]
    await asyncio.to_thread(z2m.bridge.publish, "bridge/devices", devices, retain=True)
    await eventually(lambda: DOOR not in z2m.hub.registry.devices)
    assert f"{DOOR}.contact" not in z2m.hub.registry.entities
    assert BULB in z2m.hub.registry.devices


async def test_identity_survives_a_hub_restart_and_departures_meanwhile_are_removed(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    config = write_config(tmp_path, mqtt_url)
    hub = await hub_factory(config)
    await eventually(lambda: OWNER in hub.commands._dialects)
    bridge = FakeBridge(probe, adapter_of(hub).base)
    try:
        await asyncio.to_thread(bridge.start)
        await eventually(lambda: all(d in hub.registry.devices for d in ALL_DEVICES))
        await asyncio.to_thread(bridge.publish, "bulb", {"state": "ON", "brightness": 215})
        await eventually(lambda: f"{BULB}.light" in hub.registry.states)
        await hub.stop()
        # While the hub is down the door leaves the network.
        devices = [d for d in fixture("bridge_devices.json") if d["ieee_address"] != DOOR]
        await asyncio.to_thread(bridge.publish, "bridge/devices", devices, retain=True)

        hub = await hub_factory(config)
        registry = hub.registry
        await eventually(lambda: DOOR not in registry.devices, 5, "the departed door stayed")
        await eventually(lambda: registry.devices[BULB].available)
        assert registry.devices[BULB].name == "bulb"
        assert registry.states[f"{BULB}.light"].value == "on"  # same id: its state came back
        assert sorted(d.id for d in registry.devices.values()) == sorted(
            [adapter_of(hub).bridge_id, *(d for d in ALL_DEVICES if d != DOOR)]
        )
    finally:
        await asyncio.to_thread(bridge.clear_retained)


async def test_device_messages_before_the_device_list_are_kept_until_it_comes(
    z2m: Z2mSetup,
) -> None:
    # Retained topics come back in no particular order: states may precede bridge/devices.
    await asyncio.to_thread(z2m.bridge.publish, "bridge/state", "online", retain=True)
    await publish_state(z2m, "bulb", {"state": "ON", "brightness": 215, "color_temp": 325})
    await asyncio.to_thread(z2m.bridge.publish, "kitchen/plug/availability", {"state": "offline"})
    await asyncio.sleep(0.2)
    assert BULB not in z2m.hub.registry.devices
    await asyncio.to_thread(
        z2m.bridge.publish, "bridge/devices", fixture("bridge_devices.json"), retain=True
    )
    await eventually(lambda: value(z2m, f"{BULB}.light") == "on")
    assert attrs(z2m, f"{BULB}.light") == {"brightness": 215, "color_temp": 325}
    assert not z2m.hub.registry.devices[PLUG].available
    assert z2m.hub.registry.devices[BULB].available


async def test_the_same_state_again_is_a_repeat_and_never_hides_a_change_press_or_command(
    z2m: Z2mSetup,
) -> None:
    """A device's state message again, byte for byte, is taken as the repeats it was (see
    hub.repeats); whatever it would do beyond moving last_reported still happens."""
    await started(z2m)
    hub = z2m.hub
    changes: list[str] = []
    hub.bus.subscribe(StateChanged, lambda e: changes.append(e.entity_id), owner="test")
    sensor = {"temperature": 19.59, "humidity": 69.01, "battery": 100, "linkquality": 66}
    await publish_state(z2m, "bedroom/sensor", sensor)
    await eventually(lambda: value(z2m, f"{SENSOR}.linkquality") == 66)
    first = hub.registry.states[f"{SENSOR}.temperature"]
    sensor_changes = len([c for c in changes if c.startswith(SENSOR)])
    hits = z2m.adapter._repeats.hits
    for _ in range(3):
        await publish_state(z2m, "bedroom/sensor", sensor)
    await eventually(lambda: z2m.adapter._repeats.hits >= hits + 2, 5, "no repeat taken")
    repeated = hub.registry.states[f"{SENSOR}.temperature"]
    assert repeated is first
    assert repeated.last_reported > repeated.last_updated
    assert len([c for c in changes if c.startswith(SENSOR)]) == sensor_changes

    # A change in between, then the first message again: both are changes.
    await publish_state(z2m, "bedroom/sensor", {**sensor, "temperature": 20.5})
    await eventually(lambda: value(z2m, f"{SENSOR}.temperature") == 20.5)
    await publish_state(z2m, "bedroom/sensor", sensor)
    await eventually(lambda: value(z2m, f"{SENSOR}.temperature") == 19.59)
    # Or changed by anyone else (another plug-in, a correction): the device's message wins.
    hits = z2m.adapter._repeats.hits
    for _ in range(2):  # read the full way once more, then taken as a repeat
        await publish_state(z2m, "bedroom/sensor", sensor)
    await eventually(lambda: z2m.adapter._repeats.hits > hits, 5, "no repeat taken")
    hub.report_state(f"{SENSOR}.temperature", 25.0)
    await publish_state(z2m, "bedroom/sensor", sensor)
    await eventually(lambda: value(z2m, f"{SENSOR}.temperature") == 19.59)

    # The same press twice is two presses.
    press = {"action": "single_left", "linkquality": 71}
    await publish_state(z2m, "button_double_key", press)
    await publish_state(z2m, "button_double_key", press)
    await eventually(lambda: changes.count(f"{BUTTON}.action") >= 2, 5, "a press was lost")

    # A repeat that confirms a command confirms it.
    bulb = {"state": "ON", "brightness": 215, "color_temp": 325}
    for _ in range(2):
        await publish_state(z2m, "bulb", bulb)
    await eventually(lambda: value(z2m, f"{BULB}.light") == "on")
    futures = hub.commands.issue(Command(f"{BULB}.light", "turn_on", CLI, {}))
    assert await asyncio.to_thread(z2m.bridge.next_set, "bulb") == {"state": "ON"}
    await publish_state(z2m, "bulb", bulb)
    result = await asyncio.wait_for(futures[0], 5)
    assert result.ok, result.reason
