"""Tasmota through its profile: devices, entities, states, availability, energy, commands.

Payloads are the fixtures named in fixtures/README.md (Tasmota's docs and real captures).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from firmwarehub import (
    HubFactory,
    attributes,
    eventually,
    fixture,
    publish,
    rejected,
    running,
    state,
    unique,
    until,
    wait_for,
    write_config,
)
from mqttprobe import MqttProbe, Payload

from hub.commands import Command, CommandResult
from hub.core import Hub
from hub.model import Context, EntityKind, Origin


def _command(
    hub: Hub, target: str, action: str, **params: object
) -> asyncio.Task[list[CommandResult]]:
    cmd = Command(target, action, Context(Origin.CLI, "test"), dict(params))
    return asyncio.get_running_loop().create_task(hub.commands.execute(cmd, timeout=3))


async def test_listed_device_lwt_state_power_and_commands(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """The default FullTopic: LWT, STATE, RESULT, POWER, and cmnd/<topic>/POWER ON/OFF/TOGGLE."""
    topic = unique("plug_")
    config = write_config(
        tmp_path,
        mqtt_url,
        f"    profiles: [tasmota]\n    tasmota:\n      devices: [{topic}]\n      discover: false\n",
    )
    probe.subscribe(f"cmnd/{topic}/#")
    hub = await hub_factory(config)
    await running(hub)
    device = hub.registry.devices[topic]  # listed devices exist from the start
    assert (device.owner, device.manufacturer, device.available) == ("firmware", "Tasmota", False)

    await until(probe, f"tele/{topic}/LWT", "Online", lambda: hub.registry.devices[topic].available)
    # Coming online, the device is asked for its state and its sensors.
    assert await wait_for(probe, f"cmnd/{topic}/STATE") == (f"cmnd/{topic}/STATE", b"")
    assert await wait_for(probe, f"cmnd/{topic}/STATUS") == (f"cmnd/{topic}/STATUS", b"10")

    await publish(probe, f"tele/{topic}/STATE", fixture("tasmota/state.json"))
    relay = f"{topic}.relay"
    await eventually(lambda: state(hub, relay) == "off")
    assert hub.registry.entities[relay].kind is EntityKind.SWITCH
    assert state(hub, f"{topic}.wifi_signal") == -82
    assert hub.registry.entities[f"{topic}.wifi_signal"].unit == "dBm"

    await publish(probe, f"stat/{topic}/RESULT", fixture("tasmota/result_power_on.json"))
    await eventually(lambda: state(hub, relay) == "on")
    await publish(probe, f"stat/{topic}/POWER", "OFF")
    await eventually(lambda: state(hub, relay) == "off")

    # A hub command becomes exactly Tasmota's command; the device's answer confirms it.
    task = _command(hub, relay, "turn_on")
    assert await wait_for(probe, f"cmnd/{topic}/POWER") == (f"cmnd/{topic}/POWER", b"ON")
    await publish(probe, f"stat/{topic}/POWER", "ON")
    (result,) = await task
    assert result.ok, result.reason

    task = _command(hub, relay, "turn_off")
    assert await wait_for(probe, f"cmnd/{topic}/POWER") == (f"cmnd/{topic}/POWER", b"OFF")
    await publish(probe, f"stat/{topic}/RESULT", {"POWER": "OFF"})
    assert (await task)[0].ok

    task = _command(hub, relay, "toggle")
    assert await wait_for(probe, f"cmnd/{topic}/POWER") == (f"cmnd/{topic}/POWER", b"TOGGLE")
    await publish(probe, f"stat/{topic}/POWER", "ON")
    assert (await task)[0].ok

    await publish(probe, f"tele/{topic}/LWT", "Offline")
    await eventually(lambda: not hub.registry.devices[topic].available)


async def test_multi_relay_and_dimmer(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """POWER1/POWER2 are two relays; a relay with a Dimmer is a light (0-100 scaled to 0-255)."""
    dual, bulb = unique("dual_"), unique("bulb_")
    config = write_config(
        tmp_path,
        mqtt_url,
        f"    profiles: [tasmota]\n    tasmota:\n      devices: [{dual}, {bulb}]\n"
        "      discover: false\n",
    )
    probe.subscribe(f"cmnd/{dual}/#")
    probe.subscribe(f"cmnd/{bulb}/#")
    hub = await hub_factory(config)
    await running(hub)
    await until(
        probe,
        f"stat/{dual}/RESULT",
        {"POWER1": "ON", "POWER2": "OFF"},
        lambda: state(hub, f"{dual}.relay2") == "off",
    )
    assert state(hub, f"{dual}.relay1") == "on"
    task = _command(hub, f"{dual}.relay2", "turn_on")
    assert await wait_for(probe, f"cmnd/{dual}/POWER2") == (f"cmnd/{dual}/POWER2", b"ON")
    await publish(probe, f"stat/{dual}/POWER2", "ON")
    assert (await task)[0].ok

    await until(
        probe,
        f"stat/{bulb}/RESULT",
        fixture("tasmota/result_dimmer.json"),
        lambda: state(hub, f"{bulb}.relay") == "on",
    )
    light = hub.registry.entities[f"{bulb}.relay"]
    assert light.kind is EntityKind.LIGHT
    assert attributes(hub, light.id)["brightness"] == 128  # Dimmer 50 of 100
    # brightness 200 of 255 is Dimmer 78: one message, which also switches the light on.
    task = _command(hub, light.id, "turn_on", brightness=200)
    assert await wait_for(probe, f"cmnd/{bulb}/#") == (f"cmnd/{bulb}/Dimmer", b"78")
    await publish(probe, f"stat/{bulb}/RESULT", {"POWER": "ON", "Dimmer": 78})
    (result,) = await task
    assert result.ok, result.reason
    assert attributes(hub, light.id)["brightness"] == 199
    task = _command(hub, light.id, "turn_off")
    assert await wait_for(probe, f"cmnd/{bulb}/#") == (f"cmnd/{bulb}/POWER", b"OFF")
    await publish(probe, f"stat/{bulb}/POWER", "OFF")
    assert (await task)[0].ok


async def test_energy_single_and_multi_channel_and_sensors(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """ENERGY: one power/energy entity on a plug, one per channel on a 2-channel meter."""
    plug, meter, th = unique("pow_"), unique("dual_"), unique("th_")
    config = write_config(
        tmp_path,
        mqtt_url,
        f"    profiles: [tasmota]\n    tasmota:\n      devices: [{plug}, {meter}, {th}]\n"
        "      discover: false\n",
    )
    hub = await hub_factory(config)
    await running(hub)
    await until(
        probe,
        f"tele/{plug}/SENSOR",
        fixture("tasmota/sensor_energy.json"),
        lambda: state(hub, f"{plug}.energy") is not None,
    )
    entities = hub.registry.entities
    expected = {
        "power": (5, EntityKind.SENSOR, "W"),
        "energy": (3.705, EntityKind.ENERGY_METER, "kWh"),
        "energy_today": (0.026, EntityKind.SENSOR, "kWh"),
        "voltage": (233, EntityKind.SENSOR, "V"),
        "current": (0.021, EntityKind.SENSOR, "A"),
    }
    for key, (value, kind, unit) in expected.items():
        entity = entities[f"{plug}.{key}"]
        assert (state(hub, entity.id), entity.kind, entity.unit) == (value, kind, unit), key
    assert entities[f"{plug}.power"].device_class == "power"
    assert entities[f"{plug}.energy"].device_class == "energy"

    await until(
        probe,
        f"tele/{meter}/SENSOR",
        fixture("tasmota/sensor_energy_2ch.json"),
        lambda: state(hub, f"{meter}.power_2") is not None,
    )
    expected_2ch = {
        "power_1": (0, "W"),
        "power_2": (26, "W"),
        "energy_1": (0.005, "kWh"),
        "energy_2": (1.507, "kWh"),
        "current_1": (0.0, "A"),
        "current_2": (0.189, "A"),
        "voltage": (225, "V"),  # one voltage for both channels
        "esp32_temperature": (65.6, "°C"),
    }
    for key, (value, unit) in expected_2ch.items():
        entity = entities[f"{meter}.{key}"]
        assert (state(hub, entity.id), entity.unit) == (value, unit), key
    assert entities[f"{meter}.energy_2"].kind is EntityKind.ENERGY_METER
    assert f"{meter}.power" not in entities  # channels only, no merged entity

    await until(
        probe,
        f"tele/{th}/SENSOR",
        fixture("tasmota/sensor_am2301.json"),
        lambda: state(hub, f"{th}.am2301_humidity") is not None,
    )
    temperature = entities[f"{th}.am2301_temperature"]
    assert (state(hub, temperature.id), temperature.unit) == (24.6, "°C")
    assert temperature.device_class == "temperature"
    assert state(hub, f"{th}.am2301_humidity") == 58.2


async def test_native_discovery_lwt_appearance_custom_full_topic_and_rename(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """Tasmota's discovery message names the device by MAC; LWTs make others appear."""
    root = unique("home")
    config = write_config(
        tmp_path,
        mqtt_url,
        "    profiles: [tasmota]\n    tasmota:\n"
        f'      full_topic: "{root}/%prefix%/%topic%/"\n'
        f"      discovery_prefix: {root}/tasmota/discovery\n",
    )
    probe.subscribe("cmnd/Basic-3/#")
    probe.subscribe(f"{root}/cmnd/#")
    hub = await hub_factory(config)
    await running(hub)
    discovery = fixture("tasmota/discovery_config.json")
    device_id = "tasmota-84f3eb487d21"
    await until(
        probe,
        f"{root}/tasmota/discovery/84F3EB487D21/config",
        discovery,
        lambda: device_id in hub.registry.devices,
    )
    device = hub.registry.devices[device_id]
    assert (device.name, device.model, device.firmware) == ("x3", "Sonoff Basic", "9.2.0")
    assert device.identities == {"mac": "84F3EB487D21", "ip": "10.211.10.103"}
    # The discovery message carries the device's own FullTopic (the default one here), which
    # wins over the installation's for this device.
    await until(
        probe, "tele/Basic-3/LWT", "Online", lambda: hub.registry.devices[device_id].available
    )
    await publish(probe, "tele/Basic-3/STATE", fixture("tasmota/state.json"))
    await eventually(lambda: state(hub, f"{device_id}.relay") == "off")
    task = _command(hub, f"{device_id}.relay", "turn_on")
    topic, payload = await wait_for(probe, "cmnd/Basic-3/POWER")
    assert payload == b"ON"
    await publish(probe, "stat/Basic-3/POWER", "ON")
    assert (await task)[0].ok

    # A device that only says hello through its LWT appears too, under the configured topic.
    await until(probe, f"{root}/tele/porch/LWT", "Online", lambda: "porch" in hub.registry.devices)
    assert hub.registry.devices["porch"].available
    await publish(probe, f"{root}/stat/porch/POWER", "OFF")
    await eventually(lambda: state(hub, "porch.relay") == "off")
    task = _command(hub, "porch.relay", "turn_on")
    while True:
        topic, payload = await wait_for(probe, f"{root}/cmnd/porch/#")
        if topic.endswith("/POWER"):
            break  # skip the queries sent when it came online
    assert (topic, payload) == (f"{root}/cmnd/porch/POWER", b"ON")
    await publish(probe, f"{root}/stat/porch/POWER", "ON")
    assert (await task)[0].ok

    # Renamed on the device: same MAC, new topic -> the same hub device, commands follow.
    renamed = json.loads(discovery)
    renamed["t"] = "Basic-4"
    probe.subscribe("cmnd/Basic-4/#")
    await publish(probe, f"{root}/tasmota/discovery/84F3EB487D21/config", renamed)
    await eventually(lambda: hub.registry.devices[device_id].native["key"] == "Basic-4")
    assert [d for d in hub.registry.devices if d.startswith("basic")] == []
    task = _command(hub, f"{device_id}.relay", "turn_off")
    assert (await wait_for(probe, "cmnd/Basic-4/POWER"))[1] == b"OFF"
    await publish(probe, "stat/Basic-4/POWER", "OFF")
    assert (await task)[0].ok

    # An empty retained discovery message is how a device is removed.
    await publish(probe, f"{root}/tasmota/discovery/84F3EB487D21/config", b"")
    await eventually(lambda: device_id not in hub.registry.devices)


async def test_identity_survives_a_restart(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """A device found by discovery keeps its MAC-based id after a restart, before discovery."""
    root = unique("home")
    config = write_config(
        tmp_path,
        mqtt_url,
        "    profiles: [tasmota]\n    tasmota:\n"
        f'      full_topic: "{root}/%prefix%/%topic%/"\n'
        f"      discovery_prefix: {root}/tasmota/discovery\n",
    )
    found = json.loads(fixture("tasmota/discovery_config.json"))
    found["t"], found["ft"] = "kitchen", f"{root}/%prefix%/%topic%/"
    hub = await hub_factory(config)
    await running(hub)
    await until(
        probe,
        f"{root}/tasmota/discovery/84F3EB487D21/config",
        found,
        lambda: "tasmota-84f3eb487d21" in hub.registry.devices,
    )
    await publish(probe, f"{root}/stat/kitchen/POWER", "ON")
    await eventually(lambda: state(hub, "tasmota-84f3eb487d21.relay") == "on")
    await hub.stop()

    hub = await hub_factory(config)
    await running(hub)
    # No discovery message this time: the LWT alone must reach the stored device.
    await until(
        probe,
        f"{root}/tele/kitchen/LWT",
        "Online",
        lambda: hub.registry.devices["tasmota-84f3eb487d21"].available,
    )
    assert "kitchen" not in hub.registry.devices
    assert hub.registry.entities["tasmota-84f3eb487d21.relay"].kind is EntityKind.SWITCH


async def test_hostile_and_malformed_messages_change_nothing(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """Bad JSON, wrong types, huge payloads, '..' topics, bad discovery: counted, ignored."""
    root = unique("home")
    config = write_config(
        tmp_path,
        mqtt_url,
        "    profiles: [tasmota]\n    tasmota:\n      devices: [plug]\n"
        f'      full_topic: "{root}/%prefix%/%topic%/"\n'
        f"      discovery_prefix: {root}/tasmota/discovery\n",
    )
    hub = await hub_factory(config)
    await running(hub)
    await until(
        probe,
        f"{root}/stat/plug/RESULT",
        {"POWER": "ON", "Dimmer": 40},
        lambda: state(hub, "plug.relay") == "on",
    )
    before = dict(attributes(hub, "plug.relay"))

    async def rejected_as(kind: str, topic: str, payload: Payload) -> None:
        count = rejected(hub, kind)
        await publish(probe, topic, payload)
        await eventually(lambda: rejected(hub, kind) > count, message=f"{topic} not {kind}")

    await rejected_as("not_json", f"{root}/stat/plug/RESULT", b'{"POWER": "ON"')
    await rejected_as("wrong_type", f"{root}/stat/plug/RESULT", {"POWER": 5})
    await rejected_as("wrong_type", f"{root}/stat/plug/RESULT", b'["POWER", "OFF"]')
    # One bad part spoils the whole message: the good POWER in it is not applied either.
    await rejected_as("wrong_type", f"{root}/stat/plug/RESULT", {"POWER": "OFF", "Dimmer": "x"})
    await rejected_as("wrong_type", f"{root}/stat/plug/POWER", "MAYBE")
    await rejected_as("wrong_type", f"{root}/tele/plug/LWT", "Sleeping")
    await rejected_as("too_large", f"{root}/tele/plug/SENSOR", b"{" + b" " * (1 << 20) + b"}")
    await rejected_as("bad_topic", f"{root}/tele/../LWT", "Online")
    await rejected_as("unknown_device", f"{root}/tele/stranger/STATE", {"POWER": "ON"})
    discovery = json.loads(fixture("tasmota/discovery_config.json"))
    await rejected_as(
        "bad_config", f"{root}/tasmota/discovery/AABBCCDDEEFF/config", discovery
    )  # its MAC differs from the topic's
    del discovery["t"]
    await rejected_as("bad_config", f"{root}/tasmota/discovery/84F3EB487D21/config", discovery)
    discovery["t"], discovery["ft"] = "evil", "%prefix%/#/"
    await rejected_as("bad_config", f"{root}/tasmota/discovery/84F3EB487D21/config", discovery)

    assert state(hub, "plug.relay") == "on"
    assert attributes(hub, "plug.relay") == before
    assert set(hub.registry.devices) == {"plug"}
    await publish(probe, f"{root}/stat/plug/POWER", "OFF")  # and it still works
    await eventually(lambda: state(hub, "plug.relay") == "off")
