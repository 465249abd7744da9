"""hub.yaml groups over Zigbee devices: native Zigbee group messages, fan-out across dialects.

A hub group whose Zigbee members are exactly a Zigbee2MQTT group's is commanded with one
message on the group's topic; anything else gets one message per device, each in its own
dialect. Every member is still confirmed on its own report.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from mqttprobe import MqttProbe
from z2mtest import FakeBridge, HubFactory, adapter_of, eventually, write_config

from hub.api import Command, Context, Origin
from hub.core import Hub

BULB = "0x000b57fffec6a5b2"  # "bulb", in the Zigbee group "living/lights"
BULB_2 = "0x000b57fffec6a5b4"  # "bulb_2", in the Zigbee group "living/lights"
BULB_COLOR = "0x000b57fffec6a5b3"  # "bulb_color", in no Zigbee group
CLI = Context(Origin.CLI, "test")

GROUPS = f"""\
devices:
  "{BULB}": {{tags: [living]}}
  "{BULB_2}": {{tags: [living]}}
  floor_lamp: {{tags: [living, evening]}}
  "{BULB_COLOR}": {{tags: [evening]}}
groups:
  - {{id: living, name: Living room, members: [tag:living], kind: light}}
  - {{id: evening, name: Evening, members: [tag:evening]}}
  - {{id: mixed, name: Mixed, members: ["{BULB}.light", "{BULB_COLOR}.light"]}}
"""


async def start(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> tuple[Hub, FakeBridge, str]:
    """A hub with the adapter and the groups above, the bridge started, a native lamp."""
    hub = await hub_factory(write_config(tmp_path, mqtt_url, GROUPS))
    await eventually(lambda: "zigbee2mqtt" in hub.commands._dialects, 5, "no adapter")
    adapter = adapter_of(hub)
    await asyncio.to_thread(probe.subscribe, f"{adapter.base}/#")
    prefix = hub.config.hub.device_topic
    await asyncio.to_thread(probe.subscribe, f"{prefix}/+/set")
    await asyncio.to_thread(probe.subscribe, f"{hub.base_topic}/groups/#")
    bridge = FakeBridge(probe, adapter.base)
    await asyncio.to_thread(bridge.start)
    lamp = {"name": "Floor lamp", "entities": {"light": {"kind": "light"}}}
    await asyncio.to_thread(probe.publish, f"{prefix}/floor_lamp/config", lamp, 1, True)
    await asyncio.to_thread(probe.publish, f"{prefix}/floor_lamp/availability", "online", 1, True)
    devices = hub.registry.devices
    await eventually(
        lambda: all(d in devices for d in (BULB, BULB_2, BULB_COLOR, "floor_lamp")),
        5,
        "devices not registered",
    )
    await eventually(lambda: adapter.hub_group_id("living/lights") in hub.registry.groups)
    return hub, bridge, prefix


def sets(probe: MqttProbe, topic: str) -> list[Any]:
    """Every command published on ``topic`` so far, decoded."""
    return [json.loads(m.payload) for m in probe.messages if m.topic == topic]


async def test_a_hub_group_matching_a_zigbee_group_is_one_native_message(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    hub, bridge, prefix = await start(tmp_path, mqtt_url, hub_factory, probe)
    try:
        base = bridge.base
        futures = hub.commands.issue(Command("group:living", "turn_on", CLI, {"brightness": 80}))
        # The Zigbee share (both bulbs of living/lights) is one message on the group's topic;
        # the native lamp gets its own, in its own convention.
        assert await asyncio.to_thread(bridge.next_set, "living/lights") == {
            "state": "ON",
            "brightness": 80,
        }
        _, lamp = await asyncio.to_thread(probe.wait_for, f"{prefix}/floor_lamp/set")
        lamp_body = json.loads(lamp)
        assert (lamp_body["entity"], lamp_body["action"], lamp_body["params"]) == (
            "light",
            "turn_on",
            {"brightness": 80},
        )
        # Each member is confirmed by its own report, and only by it.
        await asyncio.to_thread(bridge.publish, "bulb", {"state": "ON", "brightness": 80})
        await asyncio.to_thread(
            probe.publish,
            f"{prefix}/floor_lamp/state",
            {"light": {"state": "on", "brightness": 80}},
        )
        await asyncio.sleep(0.3)
        assert [f.done() for f in futures].count(True) == 2
        await asyncio.to_thread(bridge.publish, "bulb_2", {"state": "ON", "brightness": 80})
        results = await asyncio.gather(*futures)
        assert {r.entity_id for r in results if r.ok} == {
            f"{BULB}.light",
            f"{BULB_2}.light",
            "floor_lamp.light",
        }
        assert len({r.command_id for r in results}) == 3
        assert sets(probe, f"{base}/bulb/set") == sets(probe, f"{base}/bulb_2/set") == []

        # Both the hub.yaml group and the one the adapter registered publish their state.
        def group_state(group_id: str) -> Any:
            topic = f"{hub.base_topic}/groups/{group_id}/state"
            found = [json.loads(m.payload) for m in probe.messages if m.topic == topic]
            return found[-1] if found else None

        zigbee_group = adapter_of(hub).hub_group_id("living/lights")
        assert zigbee_group is not None
        await eventually(lambda: (group_state("living") or {}).get("on") == 3)
        await eventually(lambda: (group_state(zigbee_group) or {}).get("members") == 2)
        assert group_state(zigbee_group)["state"] == "on"
    finally:
        await asyncio.to_thread(bridge.clear_retained)


async def test_a_group_that_matches_no_zigbee_group_gets_one_message_per_device(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    hub, bridge, prefix = await start(tmp_path, mqtt_url, hub_factory, probe)
    try:
        base = bridge.base
        # bulb is in living/lights, bulb_color is not: no Zigbee group covers them exactly.
        futures = hub.commands.issue(Command("group:mixed", "turn_off", CLI))
        assert await asyncio.to_thread(bridge.next_set, "bulb") == {"state": "OFF"}
        assert await asyncio.to_thread(bridge.next_set, "bulb_color") == {"state": "OFF"}
        await asyncio.to_thread(bridge.publish, "bulb", {"state": "OFF"})
        await asyncio.to_thread(bridge.publish, "bulb_color", {"state": "OFF"})
        assert all(r.ok for r in await asyncio.gather(*futures))
        assert sets(probe, f"{base}/living/lights/set") == []

        # Two dialects in one group (tag:evening): the Zigbee bulb and the native lamp each
        # get their own native message.
        futures = hub.commands.issue(Command("group:evening", "turn_on", CLI, {"brightness": 30}))
        assert await asyncio.to_thread(bridge.next_set, "bulb_color") == {
            "state": "ON",
            "brightness": 30,
        }
        _, lamp = await asyncio.to_thread(probe.wait_for, f"{prefix}/floor_lamp/set")
        assert json.loads(lamp)["params"] == {"brightness": 30}
        await asyncio.to_thread(bridge.publish, "bulb_color", {"state": "ON", "brightness": 30})
        await asyncio.to_thread(
            probe.publish,
            f"{prefix}/floor_lamp/state",
            {"light": {"state": "on", "brightness": 30}},
        )
        results = await asyncio.gather(*futures)
        assert {r.entity_id for r in results if r.ok} == {f"{BULB_COLOR}.light", "floor_lamp.light"}
        assert sets(probe, f"{base}/living/lights/set") == []
    finally:
        await asyncio.to_thread(bridge.clear_retained)
