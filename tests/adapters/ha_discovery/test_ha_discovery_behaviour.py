"""Discovery details: optimistic devices, off_delay, entity keys, moves, attribute hygiene."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conftest import StartHub
from hadisc_support import (
    adapter_running,
    attrs,
    eventually,
    fixture,
    issue,
    publish,
    publish_configs,
    rejected,
    settle,
    state,
    wait_message,
)
from mqttprobe import MqttProbe

from adapters.ha_discovery.adapter import OWNER, HaDiscovery
from hub.events import DeviceRegistered, StateChanged


async def test_optimistic_switch_confirms_its_own_command(
    start_hub: StartHub, device: MqttProbe
) -> None:
    device.subscribe("lab/pump/set")
    hub = await start_hub()
    await adapter_running(hub)
    config = {"name": "Pump", "cmd_t": "lab/pump/set", "uniq_id": "pump-1"}
    await publish(device, "homeassistant/switch/pump/config", json.dumps(config), retain=True)
    await eventually(lambda: "pump-1.pump" in hub.registry.entities)
    result = await issue(hub, "pump-1.pump", "turn_on")
    assert await wait_message(device, "lab/pump/set") == b"ON"
    assert result.ok, result.reason
    assert state(hub, "pump-1.pump") == "on"


async def _ringing_doorbell(start_hub: StartHub, device: MqttProbe, off_delay: float) -> Any:
    """A hub with a discovered doorbell (a binary sensor with ``off_delay``) just rung."""
    hub = await start_hub()
    await adapter_running(hub)
    config = {"name": "Doorbell", "stat_t": "lab/bell", "off_dly": off_delay, "pl_on": "ring"}
    await publish(device, "homeassistant/binary_sensor/bell/config", json.dumps(config))
    await eventually(lambda: "bell.bell" in hub.registry.entities)
    await settle()
    await publish(device, "lab/bell", "ring")
    await eventually(lambda: state(hub, "bell.bell") == "on")
    return hub


async def test_binary_sensor_off_delay(start_hub: StartHub, device: MqttProbe) -> None:
    hub = await _ringing_doorbell(start_hub, device, 0.3)
    await eventually(lambda: state(hub, "bell.bell") == "off", timeout=2)


async def test_entity_keys_stay_unique_and_stable(start_hub: StartHub, device: MqttProbe) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    dev = {"ids": ["boiler-7"], "name": "Boiler"}
    sensor = {"name": "Power", "stat_t": "boiler/power", "unit_of_meas": "W", "dev": dev}
    number = {
        "name": "Power limit",
        "stat_t": "boiler/limit",
        "cmd_t": "boiler/limit/set",
        "min": 0,
        "max": 3000,
        "dev": dev,
    }
    await publish(device, "homeassistant/sensor/boiler/power/config", json.dumps(sensor))
    await eventually(lambda: "boiler-7.power" in hub.registry.entities)
    # A second component with the same object id: both keys name their component.
    await publish(device, "homeassistant/number/boiler/power/config", json.dumps(number))
    await eventually(
        lambda: {"boiler-7.sensor_power", "boiler-7.number_power"} <= set(hub.registry.entities)
    )
    assert "boiler-7.power" not in hub.registry.entities
    assert hub.registry.entities["boiler-7.number_power"].name == "Boiler Power limit"
    await settle()
    await publish(device, "boiler/power", "1800")
    await publish(device, "boiler/limit", "2500")
    await eventually(lambda: state(hub, "boiler-7.number_power") == 2500)
    assert state(hub, "boiler-7.sensor_power") == 1800


async def test_same_config_again_changes_nothing(start_hub: StartHub, device: MqttProbe) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    registered: list[str] = []
    hub.bus.subscribe(DeviceRegistered, lambda e: registered.append(e.device_id), owner="test")
    config = json.dumps({"name": "t", "stat_t": "lab/t", "dev": {"ids": "lab"}})
    for _ in range(3):  # a firmware answering three birth messages
        await publish(device, "homeassistant/sensor/lab/t/config", config)
    await eventually(lambda: "lab.t" in hub.registry.entities)
    await settle()
    assert registered == ["lab"]


async def test_component_moves_to_another_device(start_hub: StartHub, device: MqttProbe) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    config = {"name": "t", "stat_t": "lab/t", "dev": {"ids": "old-node"}}
    await publish(device, "homeassistant/sensor/t/config", json.dumps(config), retain=True)
    await eventually(lambda: "old-node.t" in hub.registry.entities)
    config["dev"] = {"ids": "new-node", "via_device": "Gateway 1"}
    await publish(device, "homeassistant/sensor/t/config", json.dumps(config), retain=True)
    await eventually(lambda: "new-node.t" in hub.registry.entities)
    assert "old-node" not in hub.registry.devices
    assert hub.registry.devices["new-node"].via == "gateway_1"
    await settle()
    await publish(device, "lab/t", "on the move")
    await eventually(lambda: state(hub, "new-node.t") == "on the move")


async def test_json_attributes_are_kept_clean(start_hub: StartHub, device: MqttProbe) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    config = {
        "name": "t",
        "stat_t": "lab/t",
        "json_attr_t": "lab/t",
        "val_tpl": "{{ value_json.t }}",
        "unit_of_meas": "°C",
    }
    await publish(device, "homeassistant/sensor/t/config", json.dumps(config))
    await eventually(lambda: "t.t" in hub.registry.entities)
    await settle()
    payload = {"t": 20.5, "battery": "low", "rssi": -60, "note": None, "x" * 100: 1, "ok": True}
    await publish(device, "lab/t", payload)
    await eventually(lambda: state(hub, "t.t") == 20.5)
    # A non-numeric "battery" would break the hub's numeric attributes: it is left out.
    assert attrs(hub, "t.t") == {"t": 20.5, "rssi": -60, "ok": True}


async def test_identity_survives_restart_and_rename(start_hub: StartHub, device: MqttProbe) -> None:
    sensor = fixture("zigbee2mqtt")["temperature_sensor"]
    device_id = "zigbee2mqtt_0x00158d0003cb2b18"
    hub = await start_hub()
    await adapter_running(hub)
    await publish(device, sensor["bridge_topic"], "online", retain=True)
    await publish(device, sensor["availability_topic"], "online", retain=True)
    await publish_configs(device, sensor["configs"])
    await eventually(lambda: len(hub.registry.devices.get(device_id, _None).entity_ids) == 3)
    entity_ids = sorted(hub.registry.devices[device_id].entity_ids)
    await hub.stop()

    # The same database, a new hub: the retained configs bring back the same ids.
    hub = await start_hub()
    await eventually(lambda: device_id in hub.registry.devices)  # loaded from storage
    await adapter_running(hub)
    await eventually(lambda: hub.registry.devices[device_id].available)
    assert sorted(hub.registry.devices[device_id].entity_ids) == entity_ids

    # Renamed in Zigbee2MQTT: new topics, same IEEE address, same hub ids.
    renamed = json.loads(
        json.dumps(sensor["configs"]).replace("NAS_Temperatuur1", "Bedroom sensor")
    )
    await publish(device, "zigbee2mqtt/Bedroom sensor/availability", "online", retain=True)
    await publish_configs(device, renamed)
    await eventually(
        lambda: hub.registry.devices[device_id].name == "Bedroom sensor", message="not renamed"
    )
    assert sorted(hub.registry.devices[device_id].entity_ids) == entity_ids
    await settle()
    await publish(device, "zigbee2mqtt/Bedroom sensor", sensor["state"])
    await eventually(lambda: state(hub, f"{device_id}.temperature") == 22.5)
    assert hub.registry.devices[device_id].available


class _None:
    entity_ids: tuple[str, ...] = ()


def _repeats_taken(hub: Any) -> int:
    """How many state messages the running adapter took as a repeat of the last one."""
    adapter = hub.commands._dialects[OWNER]  # tests may look inside
    assert isinstance(adapter, HaDiscovery)
    return adapter._repeats.hits


async def test_a_state_message_again_is_a_repeat_until_its_config_changes(
    start_hub: StartHub, device: MqttProbe
) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    config = {"name": "t", "stat_t": "lab/t", "val_tpl": "{{ value_json.t }}", "unit_of_meas": "W"}
    await publish(device, "homeassistant/sensor/t/config", json.dumps(config))
    await eventually(lambda: "t.t" in hub.registry.entities)
    await settle()
    payload = {"t": 1, "u": "x"}
    for _ in range(3):
        await publish(device, "lab/t", payload)
    await eventually(lambda: _repeats_taken(hub) >= 1, message="no repeat taken")
    first = hub.registry.states["t.t"]
    assert first.value == 1
    assert first.last_reported > first.last_updated
    # A new template that cannot read it: the same payload again is refused, not repeated.
    config["val_tpl"] = "{{ value_json.u | int }}"
    await publish(device, "homeassistant/sensor/t/config", json.dumps(config))
    await settle()
    refused = rejected(hub, "bad_state")  # the config's replay of the last payload
    await publish(device, "lab/t", payload)
    await eventually(lambda: rejected(hub, "bad_state") == refused + 1)
    assert state(hub, "t.t") == 1


async def test_an_off_delay_sensor_that_keeps_ringing_stays_on(
    start_hub: StartHub, device: MqttProbe
) -> None:
    hub = await _ringing_doorbell(start_hub, device, 0.5)
    seen: list[str] = []
    hub.bus.subscribe(StateChanged, lambda e: seen.append(e.new.value), owner="test")
    for _ in range(6):  # each ring restarts the delay: the same message again is not a repeat
        await asyncio.sleep(0.2)
        await publish(device, "lab/bell", "ring")
    assert "off" not in seen
    await eventually(lambda: state(hub, "bell.bell") == "off", timeout=2)
