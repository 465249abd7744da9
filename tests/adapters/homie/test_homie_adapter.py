"""The Homie 5 adapter against a real hub and a real Mosquitto, with the convention's payloads."""

from __future__ import annotations

import asyncio

import pytest
from conftest import StartHub
from homie_support import (
    HomieDevice,
    attrs,
    fixture,
    hub_id,
    issue,
    rejected,
    state,
)
from hubtest import eventually
from mqttprobe import MqttProbe

from hub.broker import MosquittoBroker
from hub.commands import CommandError
from hub.model import EntityKind


async def test_device_appears_with_entities_units_and_states(
    start_hub: StartHub, probe: MqttProbe
) -> None:
    car = fixture("super_car")
    hub = await start_hub()
    device = HomieDevice(probe, car["id"])
    # Retained topics arrive in any order: values before the description still count.
    for path, value in car["values"].items():
        await device.publish(path, value)
    await device.publish("$description", car["description"])
    await device.publish("$state", "ready")

    did = hub_id("super-car")
    await eventually(lambda: state(hub, f"{did}.engine_temperature") == 21.5)
    registered = hub.registry.devices[did]
    assert registered.name == "Supercar"
    assert registered.owner == "homie"
    assert registered.native["version"] == 7
    entities = {e.key: e for e in hub.registry.entities_of(did)}
    assert set(entities) == {
        "wheels_angle",
        "engine_speed",
        "engine_direction",
        "engine_temperature",
        "lights_intensity",
        "lights_color",
    }
    temperature = entities["engine_temperature"]
    assert (temperature.kind, temperature.unit, temperature.device_class) == (
        EntityKind.SENSOR,
        "°C",
        "temperature",
    )
    assert (temperature.options["min"], temperature.options["max"]) == (-20, 120)
    assert entities["engine_speed"].unit == "rpm"
    assert entities["engine_direction"].options["options"] == ["forward", "reverse"]
    await eventually(lambda: state(hub, f"{did}.lights_color") == "rgb,100,100,100")
    assert state(hub, f"{did}.engine_speed") == 3500
    assert state(hub, f"{did}.engine_direction") == "forward"
    assert state(hub, f"{did}.wheels_angle") == -12.5
    assert state(hub, f"{did}.lights_intensity") == 80
    assert attrs(hub, f"{did}.lights_color") == {"color_mode": "rgb", "color": [100, 100, 100]}
    await eventually(lambda: hub.registry.devices[did].available)

    # A live reading after that.
    await device.publish("engine/temperature", "22.25")
    await eventually(lambda: state(hub, f"{did}.engine_temperature") == 22.25)


async def test_state_drives_availability(start_hub: StartHub, probe: MqttProbe) -> None:
    light = fixture("kitchen_switch")
    hub = await start_hub()
    device = HomieDevice(probe, light["id"])
    did = hub_id("kitchen-light")
    await device.publish("$state", "init")
    await device.publish("$description", light["description"])
    await eventually(lambda: did in hub.registry.devices)
    # init: known, not yet operating.
    await asyncio.sleep(0.1)
    assert not hub.registry.devices[did].available
    expected = {
        "ready": True,
        "sleeping": True,
        "disconnected": False,
        "init": False,
        "lost": False,
    }
    for word, available in [*expected.items(), ("ready", True)]:
        await device.publish("$state", word)
        await eventually(
            lambda word=word: hub.registry.devices[did].native.get("state") == word,
            message=f"$state {word} not applied",
        )
        assert hub.registry.devices[did].available is available, word

    # Anything else is not a Homie state: counted, nothing changes.
    before = rejected(hub, "bad_state")
    await device.publish("$state", "alert")
    await eventually(lambda: rejected(hub, "bad_state") == before + 1)
    assert hub.registry.devices[did].available
    assert hub.registry.devices[did].native["state"] == "ready"


async def test_command_sends_exact_set_and_confirms_on_report(
    start_hub: StartHub, probe: MqttProbe
) -> None:
    light = fixture("kitchen_switch")
    hub = await start_hub()
    device = HomieDevice(probe, light["id"])
    await device.announce(light["description"], {"light/power": "false"})
    entity = f"{hub_id('kitchen-light')}.light_power"
    await eventually(lambda: state(hub, entity) == "off")
    assert hub.registry.entities[entity].kind is EntityKind.SWITCH
    await eventually(lambda: hub.registry.devices[hub_id("kitchen-light")].available)

    future = issue(hub, entity, "turn_on")
    # The convention's example: homie/5/kitchen-light/light/power/set <- "true", not retained.
    payload, qos, retain = await device.next_set("light/power")
    assert (payload, qos, retain) == (b"true", 2, False)
    await asyncio.sleep(0.2)
    assert not future.done(), "confirmed before the device reported"
    await device.publish("light/power", "true")
    result = await asyncio.wait_for(future, 5)
    assert result.ok
    assert state(hub, entity) == "on"
    assert hub.registry.states[entity].context.parent is not None  # caused by the command

    future = issue(hub, entity, "toggle")
    assert (await device.next_set("light/power"))[0] == b"false"
    await device.publish("light/power", "false")
    assert (await asyncio.wait_for(future, 5)).ok
    sets = [m for m in probe.messages if m.topic.endswith("/set")]
    assert [m.payload for m in sets] == [b"true", b"false"]


async def test_dimmable_node_becomes_a_light(start_hub: StartHub, probe: MqttProbe) -> None:
    light = fixture("kitchen_light")
    hub = await start_hub()
    device = HomieDevice(probe, light["id"])
    await device.announce(light["description"], {"light/power": "false", "light/brightness": "20"})
    entity = f"{hub_id('kitchen-light')}.light"
    await eventually(lambda: state(hub, entity) == "off")
    assert hub.registry.entities[entity].kind is EntityKind.LIGHT
    assert attrs(hub, entity)["brightness"] == 51  # 20 % of 255

    future = issue(hub, entity, "turn_on", {"brightness": 200})
    assert await device.next_set("light/brightness") == (b"78", 2, False)
    assert await device.next_set("light/power") == (b"true", 2, False)
    await device.publish("light/brightness", "78")
    await device.publish("light/power", "true")
    assert (await asyncio.wait_for(future, 5)).ok
    assert state(hub, entity) == "on"
    assert attrs(hub, entity)["brightness"] == 200


async def test_energy_and_other_datatypes(start_hub: StartHub, probe: MqttProbe) -> None:
    plug = fixture("plug")
    hub = await start_hub()
    device = HomieDevice(probe, plug["id"])
    await device.announce(plug["description"], plug["values"])
    did = hub_id("garage-plug")
    await eventually(lambda: state(hub, f"{did}.button_door") == "off")
    entities = {e.key: e for e in hub.registry.entities_of(did)}
    energy = entities["meter_energy"]
    assert (energy.kind, energy.unit) == (EntityKind.ENERGY_METER, "kWh")
    assert entities["meter_energy-wh"].kind is EntityKind.ENERGY_METER
    power = entities["meter_power"]
    assert (power.kind, power.unit, power.device_class) == (EntityKind.SENSOR, "W", "power")
    assert entities["relay_on"].kind is EntityKind.SWITCH
    assert entities["button_door"].kind is EntityKind.BINARY_SENSOR
    assert entities["button_pressed"].kind is EntityKind.BUTTON
    await eventually(lambda: state(hub, f"{did}.meter_stats") == "object")
    assert state(hub, f"{did}.meter_energy") == 12.75
    assert state(hub, f"{did}.meter_energy-wh") == 12.75  # 12750 Wh in kWh
    assert state(hub, f"{did}.meter_power") == 1200.5
    assert state(hub, f"{did}.meter_runtime") == 12 * 3600 + 5 * 60 + 46
    assert state(hub, f"{did}.meter_last-reset") == "2024-03-01T00:00:00+01:00"
    assert attrs(hub, f"{did}.meter_stats") == {"value": {"samples": [1, 2, 3]}}
    assert state(hub, f"{did}.relay_on") == "on"

    # A momentary event: not retained, the last press is the state.
    await device.publish("button/pressed", "double", retain=False, qos=0)
    await eventually(lambda: state(hub, f"{did}.button_pressed") == "double")
    # Energy readings keep coming as numbers.
    await device.publish("meter/energy", "12.8")
    await eventually(lambda: state(hub, f"{did}.meter_energy") == 12.8)


async def test_child_devices_are_via_their_parent_and_lost_with_their_root(
    start_hub: StartHub, probe: MqttProbe
) -> None:
    zwave = fixture("zwave")
    hub = await start_hub()
    devices = {name: HomieDevice(probe, name) for name in zwave}
    for name, description in zwave.items():
        await devices[name].announce(
            description, {"relay/power": "true"} if "light" in name else {}
        )
    for name in zwave:
        await eventually(lambda name=name: hub.registry.devices.get(hub_id(name)) is not None)
    assert hub.registry.devices[hub_id("bridge")].via is None
    assert hub.registry.devices[hub_id("dualrelay")].via == hub_id("bridge")
    assert hub.registry.devices[hub_id("light1")].via == hub_id("dualrelay")
    assert hub.registry.devices[hub_id("light2")].via == hub_id("dualrelay")
    assert hub.registry.devices[hub_id("bridge")].native["children"] == ["dualrelay"]
    await eventually(lambda: all(hub.registry.devices[hub_id(n)].available for n in zwave))

    # The root's last will: every device in its tree is lost too, their own $state unchanged.
    await devices["bridge"].publish("$state", "lost")
    await eventually(lambda: not any(hub.registry.devices[hub_id(n)].available for n in zwave))
    assert hub.registry.devices[hub_id("light1")].native["state"] == "ready"
    await devices["bridge"].publish("$state", "ready")
    await eventually(lambda: all(hub.registry.devices[hub_id(n)].available for n in zwave))


async def test_removal_clears_the_device(start_hub: StartHub, probe: MqttProbe) -> None:
    light = fixture("kitchen_switch")
    hub = await start_hub()
    device = HomieDevice(probe, light["id"])
    await device.announce(light["description"], {"light/power": "true"})
    did = hub_id("kitchen-light")
    await eventually(lambda: state(hub, f"{did}.light_power") == "on")
    await device.remove()
    await eventually(lambda: did not in hub.registry.devices)
    assert f"{did}.light_power" not in hub.registry.entities
    assert f"{did}.light_power" not in hub.registry.states
    # Nothing counts as rejected: clearing retained topics is how Homie removes things.
    await device.publish("light/power", b"")
    await asyncio.sleep(0.2)
    assert hub.stats.rejected == 0


async def test_new_description_version_replaces_entities(
    start_hub: StartHub, probe: MqttProbe
) -> None:
    light = fixture("kitchen_switch")
    hub = await start_hub()
    device = HomieDevice(probe, light["id"])
    await device.announce(light["description"], {"light/power": "true"})
    did = hub_id("kitchen-light")
    await eventually(lambda: state(hub, f"{did}.light_power") == "on")

    # The convention's reconfiguration: init, a new description with a higher version, ready.
    dimmable = fixture("kitchen_light")["description"]
    await device.announce({**dimmable, "version": 2, "name": "Kitchen"}, {"light/power": "true"})
    await eventually(lambda: f"{did}.light" in hub.registry.entities)
    await eventually(lambda: state(hub, f"{did}.light") == "on")
    assert f"{did}.light_power" not in hub.registry.entities
    assert hub.registry.devices[did].name == "Kitchen"
    assert hub.registry.devices[did].native["version"] == 2


async def test_restart_keeps_identity_and_a_rename_keeps_the_id(
    start_hub: StartHub, probe: MqttProbe
) -> None:
    plug = fixture("plug")
    hub = await start_hub()
    config = hub.config_path
    device = HomieDevice(probe, plug["id"])
    await device.announce(plug["description"], plug["values"])
    did = hub_id("garage-plug")
    await eventually(lambda: state(hub, f"{did}.meter_energy") == 12.75)
    entity_ids = sorted(hub.registry.devices[did].entity_ids)
    await hub.stop()

    hub = await start_hub(config=config)
    # From storage first, then confirmed by the retained topics: the same ids, no duplicate.
    assert did in hub.registry.devices
    await eventually(lambda: hub.registry.devices[did].available)
    assert sorted(hub.registry.devices[did].entity_ids) == entity_ids
    assert state(hub, f"{did}.meter_energy") == 12.75
    homie_devices = [d for d in hub.registry.devices.values() if d.owner == "homie"]
    assert [d.id for d in homie_devices] == [did]

    renamed = {**plug["description"], "name": "Workshop plug", "version": 4}
    await device.announce(renamed)
    await eventually(lambda: hub.registry.devices[did].name == "Workshop plug")
    assert sorted(hub.registry.devices[did].entity_ids) == entity_ids
    assert state(hub, f"{did}.meter_energy") == 12.75


async def test_broker_restart_resubscribes_and_rereads(
    start_hub: StartHub, broker: MosquittoBroker, probe: MqttProbe
) -> None:
    light = fixture("kitchen_switch")
    hub = await start_hub()
    assert hub.mqtt is not None
    device = HomieDevice(probe, light["id"])
    await device.announce(light["description"], {"light/power": "false"})
    did = hub_id("kitchen-light")
    await eventually(lambda: state(hub, f"{did}.light_power") == "off")
    connects = hub.mqtt.stats.connects

    # A broker without persistence forgets every retained topic and subscription.
    await broker.restart()
    await eventually(lambda: hub.mqtt is not None and hub.mqtt.stats.connects > connects, 15)
    await asyncio.to_thread(probe.wait_connected, 15)
    # A Homie device publishes everything again when it reconnects; here a new version.
    dimmable = fixture("kitchen_light")["description"]
    await device.announce({**dimmable, "version": 2}, {"light/power": "true"})
    await eventually(lambda: state(hub, f"{did}.light") == "on", 10)
    future = issue(hub, f"{did}.light", "turn_off")
    assert (await device.next_set("light/power"))[0] == b"false"
    await device.publish("light/power", "false")
    assert (await asyncio.wait_for(future, 5)).ok


@pytest.mark.skipif(
    not hasattr(EntityKind, "NUMBER"), reason="the core has no number/select kinds (set_value)"
)
async def test_settable_numbers_and_enums_take_set_value(
    start_hub: StartHub, probe: MqttProbe
) -> None:
    thermostat = fixture("thermostat")
    hub = await start_hub()
    device = HomieDevice(probe, thermostat["id"])
    await device.announce(thermostat["description"], thermostat["values"])
    did = hub_id("hall-thermostat")
    await eventually(lambda: state(hub, f"{did}.thermostat_label") == "Hall")
    entities = {e.key: e for e in hub.registry.entities_of(did)}
    setpoint = entities["thermostat_setpoint"]
    assert (setpoint.kind, setpoint.unit) == (EntityKind.NUMBER, "°C")
    assert (setpoint.options["min"], setpoint.options["max"], setpoint.options["step"]) == (
        5,
        35,
        0.5,
    )
    assert entities["thermostat_mode"].kind is EntityKind.SELECT
    assert entities["thermostat_mode"].options["options"] == ["off", "heat", "auto"]
    # A settable string has no hub action: read only, and it says so.
    assert entities["thermostat_label"].kind is EntityKind.SENSOR
    assert entities["thermostat_label"].options["device_settable"] is True
    assert state(hub, f"{did}.thermostat_setpoint") == 20
    await eventually(lambda: hub.registry.devices[did].available)

    future = issue(hub, f"{did}.thermostat_setpoint", "set_value", {"value": 21.5})
    assert await device.next_set("thermostat/setpoint") == (b"21.5", 2, False)
    await device.publish("thermostat/setpoint", "21.5")
    assert (await asyncio.wait_for(future, 5)).ok
    assert state(hub, f"{did}.thermostat_setpoint") == 21.5

    future = issue(hub, f"{did}.thermostat_mode", "set_value", {"value": "auto"})
    assert await device.next_set("thermostat/mode") == (b"auto", 2, False)
    await device.publish("thermostat/mode", "auto")
    assert (await asyncio.wait_for(future, 5)).ok

    # Out of the device's range: refused before anything is sent.
    with pytest.raises(CommandError, match="between 5 and 35"):
        issue(hub, f"{did}.thermostat_setpoint", "set_value", {"value": 50})
    with pytest.raises(CommandError, match="no option"):
        issue(hub, f"{did}.thermostat_mode", "set_value", {"value": "cool"})
    await asyncio.sleep(0.2)
    sets = [m.payload for m in probe.messages if m.topic.endswith("/set")]
    assert sets == [b"21.5", b"auto"]
