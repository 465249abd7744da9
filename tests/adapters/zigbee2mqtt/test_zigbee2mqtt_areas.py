"""Areas from Zigbee2MQTT: the Home Assistant area a device's options suggest places it.

Zigbee2MQTT has no area of its own. Its users give Home Assistant one with the discovery
override ``homeassistant: {device: {suggested_area: ...}}`` in a device's options (Zigbee2MQTT
docs, *Home Assistant* guide, "Overriding discovery properties"; merged into each discovery
payload's device block by ``lib/extension/homeassistant.ts``), and ``bridge/info`` carries the
whole config. Payloads: fixtures/bridge_info.json and bridge_devices.json (see fixtures/README).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from mqttprobe import MqttProbe
from z2mtest import FakeBridge, HubFactory, adapter_of, eventually, fixture, write_config

from adapters.zigbee2mqtt.adapter import OWNER
from hub.core import Hub

BULB = "0x000b57fffec6a5b2"
PLUG = "0xa4c138d2a1b2c3d4"
MOTION = "0x00158d000224aa01"
SENSOR = "0x00158d000224aa03"
DOOR = "0x00158d000224aa02"

# hub.yaml: a kitchen of the user's own, and the bedroom sensor placed by the user.
HUB_YAML = """\
areas:
  - {id: kitchen, name: Kitchen}
  - {id: bedroom, name: Bedroom}
devices:
  "0x00158d000224aa03": {area: bedroom}
"""


async def _start(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> tuple[Hub, FakeBridge]:
    path = write_config(tmp_path, mqtt_url)
    # The adapter section ends the file; the user's areas and devices follow at the top level.
    path.write_text(path.read_text() + HUB_YAML)
    hub = await hub_factory(path)
    await eventually(lambda: OWNER in hub.commands._dialects, 5, "the adapter did not start")
    return hub, FakeBridge(probe, adapter_of(hub).base)


def _area(hub: Hub, ieee: str) -> str | None:
    return hub.registry.devices[ieee].area


async def _publish_info(bridge: FakeBridge, info: dict[str, Any]) -> None:
    await asyncio.to_thread(bridge.publish, "bridge/info", info, retain=True)


async def test_the_suggested_area_places_the_device_unless_hub_yaml_does(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    hub, bridge = await _start(tmp_path, mqtt_url, hub_factory, probe)
    areas = hub.registry.areas
    try:
        await asyncio.to_thread(bridge.start)
        await eventually(lambda: PLUG in hub.registry.devices, 5, "devices not registered")
        assert _area(hub, PLUG) is None  # nothing suggested yet
        await _publish_info(bridge, fixture("bridge_info.json"))

        # "Kitchen" is the user's kitchen (matched by name): no second kitchen.
        await eventually(lambda: _area(hub, PLUG) == "kitchen", 5, "the plug was not placed")
        assert areas["kitchen"].name == "Kitchen"
        # "Hallway" is new: the area is made, and the motion sensor is in it.
        await eventually(lambda: _area(hub, MOTION) == "hallway")
        assert areas["hallway"].name == "Hallway"
        # hub.yaml places the sensor: its suggestion ("Guest room") changes nothing, makes nothing.
        assert _area(hub, SENSOR) == "bedroom"
        assert "guest_room" not in areas
        # The free-text description is no area; a device without options is in none.
        assert _area(hub, BULB) is None
        assert _area(hub, DOOR) is None
        assert sorted(areas) == ["bedroom", "hallway", "kitchen"]
        # The area works as a command target and in the conversation's names.
        assert [e.id for e in hub.registry.resolve("area:hallway")] == [
            e.id for e in hub.registry.entities_of(MOTION)
        ]

        # The user moves the plug in Zigbee2MQTT's frontend and drops the motion sensor's area.
        info = copy.deepcopy(fixture("bridge_info.json"))
        devices = info["config"]["devices"]
        devices[PLUG]["homeassistant"]["device"]["suggested_area"] = "Living room"
        del devices[MOTION]["homeassistant"]["device"]
        await _publish_info(bridge, info)
        await eventually(lambda: _area(hub, PLUG) == "living_room", 5, "the plug did not move")
        assert areas["living_room"].name == "Living room"
        await eventually(lambda: _area(hub, MOTION) is None)
    finally:
        await asyncio.to_thread(bridge.publish, "bridge/info", b"", retain=True)
        await asyncio.to_thread(bridge.clear_retained)


async def test_device_options_suggest_a_default_and_odd_shapes_suggest_nothing(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    hub, bridge = await _start(tmp_path, mqtt_url, hub_factory, probe)
    try:
        # bridge/info first this time (retained messages come in any order).
        info = copy.deepcopy(fixture("bridge_info.json"))
        config = info["config"]
        # device_options holds defaults for every device; a device's own value wins, and an
        # explicit null means none (Zigbee2MQTT then sends suggested_area: null).
        config["device_options"] = {"homeassistant": {"device": {"suggested_area": "Ground floor"}}}
        config["devices"][MOTION]["homeassistant"]["device"]["suggested_area"] = None
        # Shapes that fit no suggestion: not a string, not an IEEE key, options not an object.
        config["devices"][BULB]["homeassistant"] = {"device": {"suggested_area": ["Attic"]}}
        config["devices"]["my_bulb"] = {"homeassistant": {"device": {"suggested_area": "Loft"}}}
        config["devices"][DOOR] = "Porch"
        await _publish_info(bridge, info)
        await asyncio.to_thread(bridge.start)
        await eventually(lambda: PLUG in hub.registry.devices, 5, "devices not registered")

        await eventually(lambda: _area(hub, PLUG) == "kitchen")
        assert _area(hub, MOTION) is None
        assert _area(hub, BULB) is None
        assert _area(hub, DOOR) == "ground_floor"  # its options are no object: the default
        assert hub.registry.areas["ground_floor"].name == "Ground floor"
        assert {"attic", "loft", "porch"}.isdisjoint(hub.registry.areas)
        assert _area(hub, SENSOR) == "bedroom"

        # bridge/info without a config (older Zigbee2MQTT): no suggestions, devices leave them.
        await _publish_info(bridge, {"version": "1.13.0-dev", "commit": "772f6c0"})
        await eventually(lambda: _area(hub, PLUG) is None, 5, "the plug kept its suggestion")
        assert _area(hub, DOOR) is None
        assert _area(hub, SENSOR) == "bedroom"  # the user's choice never moves
    finally:
        await asyncio.to_thread(bridge.publish, "bridge/info", b"", retain=True)
        await asyncio.to_thread(bridge.clear_retained)


async def test_a_created_area_is_stored_and_the_device_keeps_it_after_a_restart(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    hub, bridge = await _start(tmp_path, mqtt_url, hub_factory, probe)
    try:
        await _publish_info(bridge, fixture("bridge_info.json"))
        await asyncio.to_thread(bridge.start)
        await eventually(lambda: MOTION in hub.registry.devices and _area(hub, MOTION))
        await hub.stop()

        # Read the database as the next start does, before any message comes in.
        from hub.model import Registry
        from hub.storage import Storage

        storage = Storage(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
        await storage.start()
        stored = Registry()
        try:
            await storage.load_into(stored)
        finally:
            await storage.close()
        assert stored.areas["hallway"].name == "Hallway"
        assert stored.devices[MOTION].area == "hallway"
        assert stored.devices[PLUG].area == "kitchen"
    finally:
        await asyncio.to_thread(bridge.publish, "bridge/info", b"", retain=True)
        await asyncio.to_thread(bridge.clear_retained)
