"""Settable number and select entities in the hub's own convention: set_value end to end."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from groupstest import announce, next_json, report
from hubtest import HubFactory, eventually, write_config
from mqttprobe import MqttProbe

from hub.commands import Command, CommandError
from hub.model import Context, EntityKind, Origin
from hub.scenes import commands_for

CLI = Context(Origin.CLI, "test")
HEATER = {
    "setpoint": {"kind": "number", "unit": "°C", "min": 10, "max": 30, "step": 0.5},
    "preset": {"kind": "select", "options": ["eco", "comfort", "boost"]},
}


async def test_set_value_reaches_the_device_and_is_confirmed_by_its_report(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    path = write_config(tmp_path, mqtt_url)
    hub = await hub_factory(path)
    prefix, base = hub.config.hub.device_topic, hub.base_topic
    await asyncio.to_thread(probe.subscribe, f"{prefix}/heater/set")
    await asyncio.to_thread(probe.subscribe, f"{base}/events/#")
    await announce(hub, probe, "heater", HEATER)
    setpoint = hub.registry.entities["heater.setpoint"]
    assert setpoint.kind is EntityKind.NUMBER
    assert setpoint.options == {"min": 10, "max": 30, "step": 0.5}
    assert hub.registry.entities["heater.preset"].options == {
        "options": ["eco", "comfort", "boost"]
    }
    await report(hub, probe, "heater", {"setpoint": 19, "preset": "eco"})
    await eventually(lambda: "heater.preset" in hub.registry.states)

    # Over MQTT, as a dashboard would.
    command = {"target": "heater.setpoint", "action": "set_value", "params": {"value": 21.5}}
    await asyncio.to_thread(probe.publish, f"{base}/command", {**command, "id": "sp-1"}, 1)
    body = await next_json(probe, f"{prefix}/heater/set")
    assert body == {
        "entity": "setpoint",
        "action": "set_value",
        "params": {"value": 21.5},
        "id": "sp-1",
    }
    await report(hub, probe, "heater", {"setpoint": 21.5})
    confirmed = await next_json(probe, f"{base}/events/command_confirmed")
    assert confirmed["request_id"] == "sp-1"

    futures = hub.commands.issue(Command("heater.preset", "set_value", CLI, {"value": "boost"}))
    body = await next_json(probe, f"{prefix}/heater/set")
    assert (body["entity"], body["params"]) == ("preset", {"value": "boost"})
    await report(hub, probe, "heater", {"preset": "comfort"})  # not what was asked
    await asyncio.sleep(0.2)
    assert not futures[0].done()
    await report(hub, probe, "heater", {"preset": "boost"})
    assert (await futures[0]).ok

    # Refused before sending: out of range, off the step, not an option, no value.
    for target, value, reason in (
        ("heater.setpoint", 31, "between 10 and 30, got 31"),
        ("heater.setpoint", 20.2, "10 plus a multiple of 0.5, got 20.2"),
        ("heater.setpoint", "warm", "must be a number, got 'warm'"),
        ("heater.preset", "turbo", "has no option 'turbo'; its options are eco, comfort, boost"),
        ("heater.preset", None, "must be one of the options, got None"),
    ):
        with pytest.raises(CommandError, match=re.escape(reason)):
            hub.commands.issue(Command(target, "set_value", CLI, {"value": value}))
    with pytest.raises(CommandError, match=r"heater\.preset is a select and cannot turn_on"):
        hub.commands.issue(Command("heater.preset", "turn_on", CLI))
    await asyncio.sleep(0.2)
    sets = [m for m in probe.messages if m.topic == f"{prefix}/heater/set"]
    assert len(sets) == 2

    # A select's report must be one of its options; a number's must be a number.
    rejected = hub.stats.rejected
    await report(hub, probe, "heater", {"preset": "turbo"})
    await report(hub, probe, "heater", {"setpoint": "hot"})
    await eventually(lambda: hub.stats.rejected == rejected + 2)
    assert hub.registry.states["heater.preset"].value == "boost"
    assert hub.registry.states["heater.setpoint"].value == 21.5

    # A scene sets them with the same action.
    assert commands_for(setpoint, {"state": 20}, None) == [("set_value", {"value": 20})]

    # Stored and loaded again: the kinds and their options survive a restart.
    await hub.stop()
    again = await hub_factory(path)
    assert again.registry.entities["heater.setpoint"].kind is EntityKind.NUMBER
    assert again.registry.entities["heater.preset"].options["options"][2] == "boost"
    assert again.registry.states["heater.setpoint"].value == 21.5


async def test_bad_number_and_select_configs_are_rejected(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    prefix = hub.config.hub.device_topic
    await asyncio.to_thread(probe.subscribe, f"{hub.base_topic}/events/payload_rejected")
    for entities, reason in (
        ({"v": {"kind": "number", "min": 5, "max": 1}}, "'min' is above 'max'"),
        ({"v": {"kind": "number", "step": 0}}, "'step' must be above 0"),
        ({"v": {"kind": "number", "max": "ten"}}, "'max' must be a number"),
        ({"v": {"kind": "select"}}, "'options' must be a list of 1-256 texts"),
        ({"v": {"kind": "select", "options": ["a", 2]}}, "'options' must be a list"),
    ):
        config = {"name": "bad", "entities": entities}
        await asyncio.to_thread(probe.publish, f"{prefix}/bad/config", config, 1)
        body = await next_json(probe, f"{hub.base_topic}/events/payload_rejected")
        assert reason in body["reason"], body
    assert "bad" not in hub.registry.devices
