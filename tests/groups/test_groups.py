"""Groups end to end: tag and area members that appear later, fan-out, customisation.

A real hub against the real Mosquitto; devices speak the hub's own convention.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from groupstest import LIGHT, PLUG, announce, next_json, report
from hubtest import HubFactory, eventually, write_config
from mqttprobe import MqttProbe

from hub.commands import Command, CommandError
from hub.model import Context, Origin

CLI = Context(Origin.CLI, "test")

CONFIG = """\
areas:
  - {id: kitchen, name: Kitchen}
  - {id: garden, name: Garden}
devices:
  porch_light:
    name: Porch
    area: garden
    tags: [outdoor, christmas]
  garden_plug:
    entities:
      switch: {name: Fountain pump, tags: outdoor}
groups:
  - id: outdoor
    name: Outdoor
    members: [tag:outdoor]
  - id: kitchen_lights
    name: Kitchen lights
    members: [area:kitchen]
    kind: light
  - id: garden
    name: Everything in the garden
    members: [area:garden]
"""


async def test_tag_and_area_groups_gain_members_that_appear_later(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url, CONFIG))
    registry = hub.registry

    def group(group_id: str) -> set[str]:
        return {e.id for e in registry.group_entities(group_id)}

    # No device yet: the groups exist and are empty; a command says so before sending.
    assert group("outdoor") == group("kitchen_lights") == set()
    with pytest.raises(CommandError, match="'group:outdoor' has no entities"):
        hub.commands.issue(Command("group:outdoor", "turn_on", CLI))

    # The porch light's own config names no area: hub.yaml gives it one, a name and tags.
    await announce(hub, probe, "porch_light", LIGHT)
    device = registry.devices["porch_light"]
    assert (device.name, device.area, device.tags) == ("Porch", "garden", ("outdoor", "christmas"))
    assert group("outdoor") == {"porch_light.light"}
    assert group("garden") == {"porch_light.light"}

    # An entity's tag takes only that entity in, not its device's other entities.
    await announce(hub, probe, "garden_plug", PLUG)
    assert registry.entities["garden_plug.switch"].name == "Fountain pump"
    assert registry.entities["garden_plug.switch"].tags == ("outdoor",)
    assert group("outdoor") == {"porch_light.light", "garden_plug.switch"}

    # The kitchen group keeps only lights of devices in the kitchen (their own config's area).
    await announce(hub, probe, "kitchen_light", LIGHT, area="kitchen")
    await announce(hub, probe, "kitchen_plug", PLUG, area="kitchen")
    assert group("kitchen_lights") == {"kitchen_light.light"}

    # The mirrored config shows the customisation to everything else on the LAN.
    base = hub.base_topic
    await asyncio.to_thread(probe.subscribe, f"{base}/devices/porch_light/config")
    config = await next_json(probe, f"{base}/devices/porch_light/config")
    assert (config["name"], config["area"], config["tags"]) == (
        "Porch",
        "garden",
        ["outdoor", "christmas"],
    )

    # A tag is a command target of its own, and so is the group over it.
    prefix = hub.config.hub.device_topic
    await asyncio.to_thread(probe.subscribe, f"{prefix}/+/set")
    futures = hub.commands.issue(Command("tag:christmas", "turn_on", CLI))
    body = await next_json(probe, f"{prefix}/porch_light/set")
    assert (body["entity"], body["action"]) == ("light", "turn_on")
    await report(hub, probe, "porch_light", {"light": "on"})
    assert [r.ok for r in await asyncio.gather(*futures)] == [True]

    # The device leaves: it leaves the groups too.
    await asyncio.to_thread(probe.publish, f"{prefix}/garden_plug/config", b"", 1, True)
    await eventually(lambda: "garden_plug" not in registry.devices)
    assert group("outdoor") == {"porch_light.light"}


async def test_group_command_fans_out_to_tag_and_area_members_each_in_its_own_message(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url, CONFIG))
    prefix, base = hub.config.hub.device_topic, hub.base_topic
    await asyncio.to_thread(probe.subscribe, f"{prefix}/+/set")
    await asyncio.to_thread(probe.subscribe, f"{base}/events/#")
    await announce(hub, probe, "porch_light", LIGHT)
    await announce(hub, probe, "garden_plug", PLUG)

    # Over MQTT, as a dashboard would: the light gets its brightness, the plug (a switch) too
    # only what a switch takes, so the brightness goes to lights alone.
    await asyncio.to_thread(
        probe.publish,
        f"{base}/command",
        {"target": "group:outdoor", "action": "turn_off", "id": "evening-1"},
        1,
    )
    light = await next_json(probe, f"{prefix}/porch_light/set")
    plug = await next_json(probe, f"{prefix}/garden_plug/set")
    assert (light["entity"], light["action"], light["params"]) == ("light", "turn_off", {})
    assert (plug["entity"], plug["action"], plug["params"]) == ("switch", "turn_off", {})
    assert {light["id"], plug["id"]} == {"evening-1.1", "evening-1.2"}
    await report(hub, probe, "porch_light", {"light": "off"})
    await report(hub, probe, "garden_plug", {"switch": "off", "power": 0})
    for _ in range(2):
        confirmed = await next_json(probe, f"{base}/events/command_confirmed")
        assert confirmed["request_id"] == "evening-1"

    # A group command to a member that refuses the action skips it, and says nothing is left
    # when none accepts it.
    with pytest.raises(CommandError, match="nothing in 'group:outdoor' accepts set_position"):
        hub.commands.issue(Command("group:outdoor", "set_position", CLI, {"position": 5}))


async def test_group_state_is_published_for_every_aggregate_and_follows_its_members(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    numeric = "".join(
        f"  - {{id: t_{name}, name: Temp {name}, members: [tag:temp], aggregate: {name}}}\n"
        for name in ("average", "sum", "min", "max")
    )
    config = (
        "devices:\n"
        "  t1: {tags: [temp]}\n"
        "  t2: {tags: [temp]}\n"
        "  t3: {tags: [temp]}\n"
        "  l1: {tags: [lamps]}\n"
        "  l2: {tags: [lamps]}\n"
        "groups:\n"
        "  - {id: any_lamp, name: Any lamp, members: [tag:lamps], aggregate: any}\n"
        "  - {id: all_lamps, name: All lamps, members: [tag:lamps], aggregate: all}\n"
        f"{numeric}"
    )
    hub = await hub_factory(write_config(tmp_path, mqtt_url, config))
    base = hub.base_topic
    await asyncio.to_thread(probe.subscribe, f"{base}/groups/#")

    def topic(group_id: str) -> str:
        return f"{base}/groups/{group_id}/state"

    # At start every configured group is published, with no members yet.
    empty = await next_json(probe, topic("any_lamp"))
    assert empty["state"] is None
    assert (empty["members"], empty["on"], empty["known"]) == (0, 0, 0)

    sensor = {"temperature": {"kind": "sensor", "unit": "°C"}}
    for device_id in ("t1", "t2"):
        await announce(hub, probe, device_id, sensor)
    await announce(hub, probe, "l1", LIGHT)
    await announce(hub, probe, "l2", LIGHT)
    await report(hub, probe, "t1", {"temperature": 20})
    await report(hub, probe, "t2", {"temperature": 23})
    await report(hub, probe, "l1", {"light": "on"})
    await report(hub, probe, "l2", {"light": "off"})

    expected = {"average": 21.5, "sum": 43, "min": 20, "max": 23}
    for name, value in expected.items():
        body = await next_json(probe, topic(f"t_{name}"), lambda b: b["known"] == 2)
        assert (body["state"], body["aggregate"], body["members"]) == (value, name, 2)
    any_lamp = await next_json(probe, topic("any_lamp"), lambda b: b["known"] == 2)
    all_lamps = await next_json(probe, topic("all_lamps"), lambda b: b["known"] == 2)
    assert (any_lamp["state"], any_lamp["on"]) == ("on", 1)
    assert (all_lamps["state"], all_lamps["on"]) == ("off", 1)

    # A member changes: the groups follow, and last_changed moves only where the state did.
    probe.clear()
    await report(hub, probe, "l2", {"light": "on"})
    all_on = await next_json(probe, topic("all_lamps"), lambda b: b["state"] == "on")
    assert all_on["on"] == 2
    assert all_on["last_changed"] > all_lamps["last_changed"]
    any_on = await next_json(probe, topic("any_lamp"), lambda b: b["on"] == 2)
    assert any_on["state"] == "on"
    assert any_on["last_changed"] == any_lamp["last_changed"]  # it was on already

    # A member that appears later joins the aggregate (unknown until it reports).
    await announce(hub, probe, "t3", sensor)
    joined = await next_json(probe, topic("t_sum"), lambda b: b["members"] == 3)
    assert (joined["state"], joined["known"]) == (43, 2)
    await report(hub, probe, "t3", {"temperature": 2})
    assert (await next_json(probe, topic("t_min"), lambda b: b["known"] == 3))["state"] == 2
    assert (await next_json(probe, topic("t_average"), lambda b: b["known"] == 3))["state"] == 15

    # The same report again changes nothing, so nothing is published again.
    await asyncio.sleep(0.2)
    probe.clear()
    reports = hub.stats.reports
    await report(hub, probe, "t3", {"temperature": 2})
    await eventually(lambda: hub.stats.reports > reports)  # the repeat has been handled
    await asyncio.sleep(0.3)
    assert not [m for m in probe.messages if m.topic.startswith(f"{base}/groups/")]

    # The retained topic holds the latest state for a dashboard that connects now.
    with MqttProbe(mqtt_url) as late:
        await asyncio.to_thread(late.subscribe, topic("t_max"))
        _, payload = await asyncio.to_thread(late.wait_for, topic("t_max"))
        assert json.loads(payload)["state"] == 23
        assert late.messages[0].retain


async def test_group_state_is_coalesced_per_loop_turn(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    config = (
        "devices:\n  t1: {tags: [temp]}\n"
        "groups:\n  - {id: temps, name: Temps, members: [tag:temp], aggregate: max}\n"
    )
    hub = await hub_factory(write_config(tmp_path, mqtt_url, config))
    base = hub.base_topic
    await announce(hub, probe, "t1", {"a": {"kind": "sensor", "unit": "W"}})
    await asyncio.to_thread(probe.subscribe, f"{base}/groups/temps/state")
    await next_json(probe, f"{base}/groups/temps/state")
    probe.clear()
    # Several reports within one loop turn: one group publish, with the last value.
    for value in (1, 2, 3, 4):
        hub.report_state("t1.a", value)
    body = await next_json(probe, f"{base}/groups/temps/state")
    assert body["state"] == 4
    await asyncio.sleep(0.3)
    assert len([m for m in probe.messages if m.topic == f"{base}/groups/temps/state"]) == 1
