"""Home Assistant MQTT discovery: real configs from the HA docs, Tasmota, ESPHome, Zigbee2MQTT.

Each test plays a firmware with a probe on a private Mosquitto: it publishes the firmware's
own (retained) discovery configs and states, and checks the devices, entities, states,
availability and energy readings the hub makes of them, and that a hub command publishes
exactly the message that firmware expects.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import StartHub
from hadisc_support import (
    adapter_running,
    attrs,
    eventually,
    fixture,
    issue,
    publish,
    publish_configs,
    settle,
    state,
    wait_message,
)
from mqttprobe import MqttProbe

from hub.commands import CommandError
from hub.model import EntityKind


async def test_ha_docs_binary_sensor_state_and_removal(
    start_hub: StartHub, device: MqttProbe
) -> None:
    example = fixture("ha_docs")["examples"]["motion_binary_sensor"]
    device.subscribe("homeassistant/status")
    hub = await start_hub()
    await adapter_running(hub)
    # The hub's birth message, so that devices announce themselves.
    assert await wait_message(device, "homeassistant/status") == b"online"
    await publish(device, example["config_topic"], example["config"], retain=True)
    await eventually(lambda: "garden.garden" in hub.registry.entities)
    entity = hub.registry.entities["garden.garden"]
    assert entity.kind is EntityKind.BINARY_SENSOR
    assert entity.device_class == "motion"
    garden = hub.registry.devices["garden"]
    assert garden.owner == "ha_discovery"
    assert garden.available  # no availability topic: available once discovered
    await settle()
    await publish(device, example["state_topic"], example["state"])
    await eventually(lambda: state(hub, "garden.garden") == "on")
    await publish(device, example["state_topic"], "OFF")
    await eventually(lambda: state(hub, "garden.garden") == "off")
    # "Delete the sensor by sending an empty message."
    await publish(device, example["config_topic"], "", retain=True)
    await eventually(lambda: "garden" not in hub.registry.devices)
    assert "garden.garden" not in hub.registry.entities


async def test_ha_docs_sensors_sharing_a_state_topic(
    start_hub: StartHub, device: MqttProbe
) -> None:
    example = fixture("ha_docs")["examples"]["sensors_sharing_a_topic"]
    hub = await start_hub()
    await adapter_running(hub)
    await publish_configs(device, example["configs"])
    await eventually(
        lambda: (
            {"sensorbedroomt.sensorbedroomt", "sensorbedroomh.sensorbedroomh"}
            <= set(hub.registry.entities)
        )
    )
    assert hub.registry.entities["sensorbedroomt.sensorbedroomt"].unit == "°C"
    await settle()
    await publish(device, example["state_topic"], example["state"])
    await eventually(lambda: state(hub, "sensorbedroomh.sensorbedroomh") == 43.7)
    assert state(hub, "sensorbedroomt.sensorbedroomt") == 23.2


async def test_ha_docs_abbreviated_switch_command(start_hub: StartHub, device: MqttProbe) -> None:
    example = fixture("ha_docs")["examples"]["switch_with_abbreviations"]
    device.subscribe(example["command_topic"])
    hub = await start_hub()
    await adapter_running(hub)
    await publish(device, example["config_topic"], example["config"], retain=True)
    entity_id = "irrigation.irrigation"
    await eventually(lambda: entity_id in hub.registry.entities)
    assert hub.registry.entities[entity_id].name == "garden"
    await settle()
    await publish(device, example["state_topic"], "OFF")
    await eventually(lambda: state(hub, entity_id) == "off")
    future = issue(hub, entity_id, "turn_on")
    # "~/set" expanded to the base topic; the default payload_on.
    assert await wait_message(device, example["command_topic"]) == b"ON"
    await publish(device, example["state_topic"], "ON")
    result = await future
    assert result.ok, result.reason
    assert state(hub, entity_id) == "on"


async def test_ha_docs_json_light(start_hub: StartHub, device: MqttProbe) -> None:
    example = fixture("ha_docs")["examples"]["json_light_with_abbreviations"]
    device.subscribe(example["command_topic"])
    hub = await start_hub()
    await adapter_running(hub)
    await publish(device, example["config_topic"], example["config"], retain=True)
    # No device block: one device per unique_id.
    entity_id = "kitchen_light.kitchen"
    await eventually(lambda: entity_id in hub.registry.entities)
    assert hub.registry.entities[entity_id].kind is EntityKind.LIGHT
    await settle()
    await publish(device, example["state_topic"], example["state"])
    await eventually(lambda: state(hub, entity_id) == "on")
    assert attrs(hub, entity_id)["brightness"] == 255
    future = issue(hub, entity_id, "turn_on", {"brightness": 128, "transition": 2})
    sent = json.loads(await wait_message(device, example["command_topic"]))
    assert sent == {"state": "ON", "brightness": 128, "transition": 2}
    await publish(device, example["state_topic"], {"state": "ON", "brightness": 128})
    assert (await future).ok
    future = issue(hub, entity_id, "turn_off")
    assert json.loads(await wait_message(device, example["command_topic"])) == {"state": "OFF"}
    await publish(device, example["state_topic"], {"state": "OFF"})
    assert (await future).ok
    assert state(hub, entity_id) == "off"


async def test_ha_docs_device_discovery(start_hub: StartHub, device: MqttProbe) -> None:
    example = fixture("ha_docs")["examples"]["device_discovery"]
    hub = await start_hub()
    await adapter_running(hub)
    await publish(device, example["config_topic"], example["config"], retain=True)
    await eventually(lambda: "ea334450945afc" in hub.registry.devices)
    kitchen = hub.registry.devices["ea334450945afc"]
    assert kitchen.name == "Kitchen"
    assert (kitchen.manufacturer, kitchen.model, kitchen.firmware) == (
        "Bla electronics",
        "xya",
        "1.0",
    )
    assert kitchen.identities["serial_number"] == "ea334450945afc"
    assert sorted(kitchen.entity_ids) == [
        "ea334450945afc.some_unique_component_id1",
        "ea334450945afc.some_unique_id2",
    ]
    await settle()
    # The shared state_topic at the root reaches both components.
    await publish(device, example["state_topic"], example["state"])
    await eventually(lambda: state(hub, "ea334450945afc.some_unique_id2") == 43.7)
    assert state(hub, "ea334450945afc.some_unique_component_id1") == 23.2
    # A component published with only its platform is removed; the device stays.
    config = json.loads(json.dumps(example["config"]))
    config["cmps"]["some_unique_id2"] = {"p": "sensor"}
    await publish(device, example["config_topic"], config, retain=True)
    await eventually(lambda: "ea334450945afc.some_unique_id2" not in hub.registry.entities)
    assert kitchen.id in hub.registry.devices
    await publish(device, example["config_topic"], "", retain=True)
    await eventually(lambda: "ea334450945afc" not in hub.registry.devices)


async def test_tasmota_energy_plug(start_hub: StartHub, device: MqttProbe) -> None:
    plug = fixture("tasmota")["energy_plug"]
    hub = await start_hub()
    await adapter_running(hub)
    await publish_configs(device, plug["configs"])
    await eventually(lambda: len(hub.registry.devices.get("522851", _NoDevice).entity_ids) == 3)
    tasmota = hub.registry.devices["522851"]
    assert tasmota.identities["mac"] == "84:0d:8e:52:28:51"
    assert not tasmota.available  # until its LWT says Online
    today = hub.registry.entities["522851.522851_energy_today"]
    assert (today.kind, today.unit) == (EntityKind.ENERGY_METER, "kWh")
    power = hub.registry.entities["522851.522851_energy_power"]
    assert (power.kind, power.unit, power.device_class) == (EntityKind.SENSOR, "W", "power")
    await settle()
    await publish(device, plug["lwt_topic"], "Online", retain=True)
    await eventually(lambda: hub.registry.devices["522851"].available)
    await publish(device, plug["sensor_topic"], plug["sensor"])
    await eventually(lambda: state(hub, "522851.522851_energy_power") == 145)
    assert state(hub, "522851.522851_energy_today") == 0.984
    assert state(hub, "522851.522851_energy_yesterday") == 0.0
    await publish(device, plug["lwt_topic"], "Offline", retain=True)
    await eventually(lambda: not hub.registry.devices["522851"].available)


class _NoDevice:
    entity_ids: tuple[str, ...] = ()


async def test_tasmota_relays_and_their_commands(start_hub: StartHub, device: MqttProbe) -> None:
    relays = fixture("tasmota")["relays"]
    device.subscribe("XefilHome/GARDEN02/cmnd/#")
    hub = await start_hub()
    await adapter_running(hub)
    await publish(device, relays["lwt_topic"], "Online", retain=True)
    await publish_configs(device, relays["configs"])
    await eventually(lambda: len(hub.registry.devices.get("d04df5", _NoDevice).entity_ids) == 2)
    await eventually(lambda: hub.registry.devices["d04df5"].available)
    await settle()
    await publish(device, relays["state_topic"], relays["state"])
    await eventually(lambda: state(hub, "d04df5.d04df5_rl_2") == "on")
    assert state(hub, "d04df5.d04df5_rl_1") == "off"
    assert hub.registry.entities["d04df5.d04df5_rl_1"].name == "RELAY02-01"
    future = issue(hub, "d04df5.d04df5_rl_1", "turn_on")
    assert await wait_message(device, "XefilHome/GARDEN02/cmnd/POWER1") == b"ON"
    await publish(device, relays["state_topic"], {**relays["state"], "POWER1": "ON"})
    assert (await future).ok
    future = issue(hub, "d04df5.d04df5_rl_2", "toggle")
    assert await wait_message(device, "XefilHome/GARDEN02/cmnd/POWER2") == b"OFF"
    await publish(
        device, relays["state_topic"], {**relays["state"], "POWER1": "ON", "POWER2": "OFF"}
    )
    assert (await future).ok


async def test_tasmota_light_default_schema(start_hub: StartHub, device: MqttProbe) -> None:
    light = fixture("tasmota")["cct_light"]
    device.subscribe("cmnd/led1/#")
    hub = await start_hub()
    await adapter_running(hub)
    await publish(device, light["config_topic"], light["config"], retain=True)
    entity_id = "led1.led1"
    await eventually(lambda: entity_id in hub.registry.entities)
    await settle()
    await publish(device, light["lwt_topic"], "Online")
    await publish(device, light["state_topic"], light["state"])
    await eventually(lambda: state(hub, entity_id) == "on")
    # Dimmer 40 on Tasmota's 0-100 scale is 102 on the hub's 0-255.
    assert attrs(hub, entity_id) == {"brightness": 102, "color_temp": 327}
    assert hub.registry.devices["led1"].available
    # on_command_type "brightness": the Dimmer command alone turns it on.
    future = issue(hub, entity_id, "turn_on", {"brightness": 128})
    assert await wait_message(device, "cmnd/led1/Dimmer") == b"50"
    await publish(device, light["state_topic"], {"POWER": "ON", "Dimmer": 50, "CT": 327})
    assert (await future).ok
    future = issue(hub, entity_id, "turn_on", {"color_temp": 250})
    assert await wait_message(device, "cmnd/led1/Dimmer") == b"50"  # keeps the brightness
    assert await wait_message(device, "cmnd/led1/CT") == b"250"
    await publish(device, light["state_topic"], {"POWER": "ON", "Dimmer": 50, "CT": 250})
    assert (await future).ok
    future = issue(hub, entity_id, "turn_off")
    assert await wait_message(device, "cmnd/led1/POWER") == b"OFF"
    await publish(device, light["state_topic"], {"POWER": "OFF"})
    assert (await future).ok
    assert not [m for m in device.messages if m.topic == "cmnd/led1/POWER" and m.payload == b"ON"]


async def test_esphome_sensor_and_json_light(start_hub: StartHub, device: MqttProbe) -> None:
    esphome = fixture("esphome")
    sensor, light = esphome["sensor"], esphome["json_light"]
    device.subscribe(light["command_topic"])
    hub = await start_hub()
    await adapter_running(hub)
    await publish_configs(device, [sensor, light])
    await eventually(
        lambda: len(hub.registry.devices.get("6055f97b55e0", _NoDevice).entity_ids) == 2
    )
    node = hub.registry.devices["6055f97b55e0"]
    assert (node.name, node.manufacturer, node.model) == (
        "c3-debug-7b55e0",
        "espressif",
        "airm2m_core_esp32c3",
    )
    assert node.firmware == "esphome v2023.6.2 Jun 28 2023, 07:57:41"
    voltage = hub.registry.entities["6055f97b55e0.pressure_voltage"]
    assert (voltage.unit, voltage.device_class, voltage.name) == (
        "V",
        "voltage",
        "c3-debug-7b55e0 Pressure voltage",
    )
    await settle()
    await publish(device, sensor["availability_topic"], "online", retain=True)
    await eventually(lambda: hub.registry.devices["6055f97b55e0"].available)
    await publish(device, sensor["state_topic"], sensor["state"])
    await eventually(lambda: state(hub, "6055f97b55e0.pressure_voltage") == 1.234)
    await publish(device, light["state_topic"], light["state"])
    await eventually(lambda: state(hub, "6055f97b55e0.desk_lamp") == "off")
    future = issue(hub, "6055f97b55e0.desk_lamp", "turn_on", {"brightness": 64})
    sent = json.loads(await wait_message(device, light["command_topic"]))
    assert sent == {"state": "ON", "brightness": 64}
    await publish(
        device, light["state_topic"], {"state": "ON", "brightness": 64, "color_mode": "brightness"}
    )
    assert (await future).ok
    await publish(device, sensor["availability_topic"], "offline", retain=True)
    await eventually(lambda: not hub.registry.devices["6055f97b55e0"].available)


async def test_zigbee2mqtt_sensor_availability_all(start_hub: StartHub, device: MqttProbe) -> None:
    sensor = fixture("zigbee2mqtt")["temperature_sensor"]
    hub = await start_hub()
    await adapter_running(hub)
    await publish_configs(device, sensor["configs"])
    device_id = "zigbee2mqtt_0x00158d0003cb2b18"
    await eventually(lambda: len(hub.registry.devices.get(device_id, _NoDevice).entity_ids) == 3)
    xiaomi = hub.registry.devices[device_id]
    assert (xiaomi.manufacturer, xiaomi.firmware) == ("Xiaomi", "3000-0001")
    assert hub.registry.entities[f"{device_id}.humidity"].unit == "%"
    await settle()
    await publish(device, sensor["state_topic"], sensor["state"])
    await eventually(lambda: state(hub, f"{device_id}.temperature") == 22.5)
    assert state(hub, f"{device_id}.humidity") == 43.7
    assert state(hub, f"{device_id}.voltage") == 3005
    # json_attributes_topic: the whole payload as attributes.
    assert attrs(hub, f"{device_id}.humidity")["linkquality"] == 102
    # availability_mode "all": the bridge and the device must both be online.
    await publish(device, sensor["bridge_topic"], "online", retain=True)
    await settle()
    assert not hub.registry.devices[device_id].available
    await publish(device, sensor["availability_topic"], "online", retain=True)
    await eventually(lambda: hub.registry.devices[device_id].available)
    await publish(device, sensor["bridge_topic"], "offline", retain=True)
    await eventually(lambda: not hub.registry.devices[device_id].available)


async def test_zigbee2mqtt_plug_power_energy_and_switch(
    start_hub: StartHub, device: MqttProbe
) -> None:
    plug = fixture("zigbee2mqtt")["plug"]
    device.subscribe(plug["command_topic"])
    hub = await start_hub()
    await adapter_running(hub)
    await publish(device, plug["bridge_topic"], "online", retain=True)
    await publish_configs(device, plug["configs"])
    device_id = "zigbee2mqtt_0xa4c138280528b031"
    await eventually(lambda: len(hub.registry.devices.get(device_id, _NoDevice).entity_ids) == 3)
    await eventually(lambda: hub.registry.devices[device_id].available)
    assert hub.registry.entities[f"{device_id}.energy"].kind is EntityKind.ENERGY_METER
    assert hub.registry.entities[f"{device_id}.power"].unit == "W"
    await settle()
    await publish(device, plug["state_topic"], {**plug["state"], "state": "OFF", "power": 0})
    await eventually(lambda: state(hub, f"{device_id}.switch") == "off")
    assert state(hub, f"{device_id}.power") == 0
    assert state(hub, f"{device_id}.energy") == 0
    future = issue(hub, f"{device_id}.switch", "turn_on")
    assert await wait_message(device, plug["command_topic"]) == b"ON"
    await publish(device, plug["state_topic"], {**plug["state"], "power": 1200, "energy": 2.31})
    assert (await future).ok
    await eventually(lambda: state(hub, f"{device_id}.power") == 1200)
    assert state(hub, f"{device_id}.energy") == 2.31


async def test_zigbee2mqtt_json_light(start_hub: StartHub, device: MqttProbe) -> None:
    light = fixture("zigbee2mqtt")["json_light"]
    device.subscribe(light["command_topic"])
    hub = await start_hub()
    await adapter_running(hub)
    await publish(device, light["config_topic"], light["config"], retain=True)
    entity_id = "zigbee2mqtt_0x00124b001b50416b.light"
    await eventually(lambda: entity_id in hub.registry.entities)
    await settle()
    await publish(device, light["availability_topic"], "online")
    await publish(device, light["state_topic"], light["state"])
    await eventually(lambda: state(hub, entity_id) == "on")
    assert attrs(hub, entity_id) == {"brightness": 200, "color_temp": 350}
    future = issue(hub, entity_id, "turn_on", {"color_temp": 300})
    assert json.loads(await wait_message(device, light["command_topic"])) == {
        "state": "ON",
        "color_temp": 300,
    }
    await publish(device, light["state_topic"], {**light["state"], "color_temp": 300})
    assert (await future).ok


async def test_zigbee2mqtt_climate_lock_cover(start_hub: StartHub, device: MqttProbe) -> None:
    z2m = fixture("zigbee2mqtt")["zigbee2mqtt_2"]
    device.subscribe("zigbee2mqtt/#")
    hub = await start_hub()
    await adapter_running(hub)
    await publish(device, z2m["bridge_topic"], z2m["bridge_online"], retain=True)
    await publish_configs(device, z2m["configs"])
    trv, lock, curtain = (
        "zigbee2mqtt_0x000b57fffe0a1b2c",
        "zigbee2mqtt_0x000d6f0011223344",
        "zigbee2mqtt_0x00158d000447aa11",
    )
    await eventually(lambda: len(hub.registry.devices.get(trv, _NoDevice).entity_ids) == 3)
    await eventually(lambda: curtain in hub.registry.devices and lock in hub.registry.devices)
    assert hub.registry.devices[trv].via == "zigbee2mqtt_bridge_0xe0798dfffefee583"
    assert hub.registry.devices[trv].name == "Bedroom TRV"
    assert hub.registry.entities[f"{trv}.climate"].name == "Bedroom TRV"
    await eventually(lambda: all(hub.registry.devices[d].available for d in (trv, lock, curtain)))
    await settle()
    for topic, payload in z2m["states"].items():
        await publish(device, topic, payload)
    await eventually(lambda: state(hub, f"{trv}.climate") == "heat")
    assert attrs(hub, f"{trv}.climate") == {
        "current_temperature": 19.5,
        "target_temperature": 21,
        "hvac_action": "heating",
    }
    await eventually(lambda: state(hub, f"{lock}.lock") == "locked")
    await eventually(lambda: state(hub, f"{curtain}.cover") == "open")
    assert attrs(hub, f"{curtain}.cover") == {"position": 100}
    # number and select: settable, with their range and options.
    calibration = hub.registry.entities[f"{trv}.local_temperature_calibration"]
    assert calibration.kind is EntityKind.NUMBER
    assert (calibration.options["min"], calibration.options["max"]) == (-12.8, 12.7)
    assert calibration.options["step"] == 0.1
    assert state(hub, f"{trv}.local_temperature_calibration") == -1.5
    keypad = hub.registry.entities[f"{trv}.keypad_lockout"]
    assert keypad.kind is EntityKind.SELECT
    assert keypad.options["options"] == ["unlock", "lock1"]
    assert state(hub, f"{trv}.keypad_lockout") == "unlock"

    device.clear()
    future = issue(hub, f"{trv}.climate", "set_temperature", {"temperature": 21.5})
    assert (
        await wait_message(device, "zigbee2mqtt/Bedroom TRV/set/occupied_heating_setpoint")
        == b"21.5"
    )
    await publish(
        device,
        "zigbee2mqtt/Bedroom TRV",
        {**z2m["states"]["zigbee2mqtt/Bedroom TRV"], "occupied_heating_setpoint": 21.5},
    )
    assert (await future).ok
    future = issue(hub, f"{trv}.climate", "set_mode", {"mode": "off"})
    assert await wait_message(device, "zigbee2mqtt/Bedroom TRV/set/system_mode") == b"off"
    await publish(
        device,
        "zigbee2mqtt/Bedroom TRV",
        {**z2m["states"]["zigbee2mqtt/Bedroom TRV"], "system_mode": "off", "running_state": "idle"},
    )
    assert (await future).ok

    # set_value: the number's and the select's own command topics, confirmed by the report.
    trv_state = {**z2m["states"]["zigbee2mqtt/Bedroom TRV"], "system_mode": "off"}
    future = issue(hub, f"{trv}.local_temperature_calibration", "set_value", {"value": -1})
    topic = "zigbee2mqtt/Bedroom TRV/set/local_temperature_calibration"
    assert await wait_message(device, topic) == b"-1"
    trv_state["local_temperature_calibration"] = -1
    await publish(device, "zigbee2mqtt/Bedroom TRV", trv_state)
    assert (await future).ok
    future = issue(hub, f"{trv}.local_temperature_calibration", "set_value", {"value": 2.3})
    assert await wait_message(device, topic) == b"2.3"
    trv_state["local_temperature_calibration"] = 2.3
    await publish(device, "zigbee2mqtt/Bedroom TRV", trv_state)
    assert (await future).ok
    assert state(hub, f"{trv}.local_temperature_calibration") == 2.3
    future = issue(hub, f"{trv}.keypad_lockout", "set_value", {"value": "lock1"})
    assert await wait_message(device, "zigbee2mqtt/Bedroom TRV/set/keypad_lockout") == b"lock1"
    trv_state["keypad_lockout"] = "lock1"
    await publish(device, "zigbee2mqtt/Bedroom TRV", trv_state)
    assert (await future).ok
    # Out of range, off the step, or not an option: refused before anything is sent.
    for entity, value, reason in (
        ("local_temperature_calibration", 20, "between -12.8 and 12.7, got 20"),
        ("local_temperature_calibration", 0.25, "-12.8 plus a multiple of 0.1, got 0.25"),
        ("keypad_lockout", "lock9", "has no option 'lock9'; its options are unlock, lock1"),
    ):
        with pytest.raises(CommandError, match=re.escape(reason)):
            issue(hub, f"{trv}.{entity}", "set_value", {"value": value})
    await settle()
    sent = [
        m.payload for m in device.messages if m.topic.startswith("zigbee2mqtt/Bedroom TRV/set/")
    ]
    assert sent == [b"21.5", b"off", b"-1", b"2.3", b"lock1"]

    future = issue(hub, f"{lock}.lock", "unlock")
    assert await wait_message(device, "zigbee2mqtt/Front door/set") == b"UNLOCK"
    await publish(
        device, "zigbee2mqtt/Front door", {"battery": 64, "linkquality": 98, "state": "UNLOCK"}
    )
    assert (await future).ok

    future = issue(hub, f"{curtain}.cover", "set_position", {"position": 40})
    assert json.loads(await wait_message(device, "zigbee2mqtt/Living curtain/set")) == {
        "position": 40
    }
    await publish(
        device,
        "zigbee2mqtt/Living curtain",
        {"linkquality": 150, "position": 40, "running": False, "state": "OPEN"},
    )
    assert (await future).ok
    future = issue(hub, f"{curtain}.cover", "close")
    assert await wait_message(device, "zigbee2mqtt/Living curtain/set") == b"CLOSE"
    await publish(
        device,
        "zigbee2mqtt/Living curtain",
        {"linkquality": 150, "position": 0, "running": False, "state": "CLOSE"},
    )
    assert (await future).ok
    assert state(hub, f"{curtain}.cover") == "closed"
