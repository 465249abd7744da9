"""ESPHome's MQTT component and the generic JSON sensor, through their profiles."""

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
from mqttprobe import MqttProbe

from hub.commands import Command, CommandResult
from hub.core import Hub
from hub.model import Context, EntityKind, Origin


def _command(
    hub: Hub, target: str, action: str, **params: object
) -> asyncio.Task[list[CommandResult]]:
    cmd = Command(target, action, Context(Origin.CLI, "test"), dict(params))
    return asyncio.get_running_loop().create_task(hub.commands.execute(cmd, timeout=3))


async def test_esphome_states_availability_and_commands(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """Sensors, binary sensors, switches, JSON lights; status online/offline; commands."""
    node = unique("livingroom-")
    config = write_config(
        tmp_path,
        mqtt_url,
        "    profiles: [esphome]\n    esphome:\n      devices:\n"
        f"        - prefix: {node}\n          name: Living room node\n          area: living\n"
        "          entities:\n"
        "            temperature: {unit: °C, device_class: temperature, name: Room temperature}\n",
    )
    probe.subscribe(f"{node}/+/+/command")
    hub = await hub_factory(config)
    await running(hub)
    device = hub.registry.devices[node]
    assert (device.name, device.area, device.manufacturer) == (
        "Living room node",
        "living",
        "ESPHome",
    )
    await until(probe, f"{node}/status", "online", lambda: hub.registry.devices[node].available)

    await publish(probe, f"{node}/sensor/temperature/state", "23.5")
    await eventually(lambda: state(hub, f"{node}.temperature") == 23.5)
    temperature = hub.registry.entities[f"{node}.temperature"]
    assert (temperature.unit, temperature.device_class, temperature.name) == (
        "°C",
        "temperature",
        "Room temperature",
    )
    count = hub.stats.rejected
    await publish(probe, f"{node}/sensor/temperature/state", "nan")  # no reading: not an error
    await publish(probe, f"{node}/binary_sensor/motion/state", "ON")
    await eventually(lambda: state(hub, f"{node}.motion") == "on")
    assert state(hub, f"{node}.temperature") == 23.5
    assert hub.stats.rejected == count
    assert hub.registry.entities[f"{node}.motion"].kind is EntityKind.BINARY_SENSOR

    await publish(probe, f"{node}/switch/relay/state", "OFF")
    await eventually(lambda: state(hub, f"{node}.relay") == "off")
    await publish(probe, f"{node}/light/desk_lamp/state", fixture("esphome/light_state.json"))
    await eventually(lambda: state(hub, f"{node}.desk_lamp") == "on")
    assert hub.registry.entities[f"{node}.desk_lamp"].kind is EntityKind.LIGHT
    assert attributes(hub, f"{node}.desk_lamp")["brightness"] == 255

    task = _command(hub, f"{node}.relay", "turn_on")
    assert await wait_for(probe, f"{node}/switch/relay/command") == (
        f"{node}/switch/relay/command",
        b"ON",
    )
    await publish(probe, f"{node}/switch/relay/state", "ON")
    assert (await task)[0].ok

    task = _command(hub, f"{node}.desk_lamp", "turn_on", brightness=128, transition=2)
    _topic, payload = await wait_for(probe, f"{node}/light/desk_lamp/command")
    assert json.loads(payload) == {"state": "ON", "brightness": 128, "transition": 2}
    assert payload == b'{"state":"ON","brightness":128,"transition":2}'
    await publish(probe, f"{node}/light/desk_lamp/state", {"state": "ON", "brightness": 128})
    assert (await task)[0].ok
    task = _command(hub, f"{node}.desk_lamp", "turn_off")
    _topic, payload = await wait_for(probe, f"{node}/light/desk_lamp/command")
    assert payload == b'{"state":"OFF"}'
    await publish(probe, f"{node}/light/desk_lamp/state", {"state": "OFF"})
    assert (await task)[0].ok

    count = rejected(hub, "wrong_type")
    await publish(probe, f"{node}/sensor/temperature/state", "warm")
    await publish(probe, f"{node}/light/desk_lamp/state", {"state": "ON", "brightness": "max"})
    await eventually(lambda: rejected(hub, "wrong_type") == count + 2)
    assert state(hub, f"{node}.temperature") == 23.5
    assert state(hub, f"{node}.desk_lamp") == "off"

    await publish(probe, f"{node}/status", "offline")
    await eventually(lambda: not hub.registry.devices[node].available)


async def test_generic_json_sensor(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """A topic per device, a JSON object of readings; online by its messages."""
    root = unique("diy")
    config = write_config(
        tmp_path,
        mqtt_url,
        "    profiles: [generic-json]\n    generic-json:\n"
        f'      topic: "{root}/sensors/{{device}}"\n      devices: [balcony]\n',
    )
    hub = await hub_factory(config)
    await running(hub)
    assert not hub.registry.devices["balcony"].available
    await until(
        probe,
        f"{root}/sensors/balcony",
        fixture("generic/balcony.json"),
        lambda: state(hub, "balcony.temperature") == 21.5,
    )
    assert hub.registry.devices["balcony"].available
    entities = hub.registry.entities
    assert (state(hub, "balcony.humidity"), entities["balcony.humidity"].unit) == (48, "%")
    assert (state(hub, "balcony.battery"), entities["balcony.battery"].device_class) == (
        87,
        "battery",
    )
    assert "balcony.rssi" not in entities  # not in the mapping
    # Devices not listed are not spoken for (discover is off); bad payloads are counted.
    await publish(probe, f"{root}/sensors/garage", {"temperature": 3})
    count = rejected(hub, "wrong_type")
    await publish(probe, f"{root}/sensors/balcony", [21.5])
    await publish(probe, f"{root}/sensors/balcony", {"temperature": "21.5 °C"})
    await eventually(lambda: rejected(hub, "wrong_type") == count + 2)
    assert "garage" not in hub.registry.devices
    assert state(hub, "balcony.temperature") == 21.5
