"""Broker restarts: the hub says hello again, resubscribes, and the devices carry on."""

from __future__ import annotations

import asyncio

from conftest import StartHub
from hadisc_support import (
    adapter_running,
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

from hub.broker import MosquittoBroker


async def test_broker_restart_birth_resubscribe_and_reannounce(
    start_hub: StartHub, broker: MosquittoBroker, device: MqttProbe
) -> None:
    relays = fixture("tasmota")["relays"]
    device.subscribe("homeassistant/status")
    device.subscribe("XefilHome/GARDEN02/cmnd/#")
    hub = await start_hub()
    assert hub.mqtt is not None
    births: list[bytes] = []
    # The hub's own link hears its birth message too: proof it is sent after each connect.
    hub.mqtt.subscribe("homeassistant/status", lambda t, p, r: births.append(p), owner="test")
    await adapter_running(hub)
    assert await wait_message(device, "homeassistant/status") == b"online"
    # The firmware answers the birth message by announcing itself.
    await publish(device, relays["lwt_topic"], "Online", retain=True)
    await publish_configs(device, relays["configs"])
    await eventually(lambda: "d04df5.d04df5_rl_2" in hub.registry.entities)
    await eventually(lambda: hub.registry.devices["d04df5"].available)
    await settle()
    await publish(device, relays["state_topic"], relays["state"])
    await eventually(lambda: state(hub, "d04df5.d04df5_rl_2") == "on")
    connects = hub.mqtt.stats.connects
    await eventually(lambda: births == [b"online"])

    # The broker restarts without persistence: every retained config and subscription is gone.
    await broker.restart()
    await eventually(lambda: hub.mqtt.stats.connects > connects, timeout=15)
    await eventually(
        lambda: births == [b"online", b"online"], timeout=5, message="no birth after reconnect"
    )
    await asyncio.to_thread(device.wait_connected, 15)
    # Tasmota announces itself (LWT and discovery) again when it reconnects.
    await publish(device, relays["lwt_topic"], "Online", retain=True)
    await publish_configs(device, relays["configs"])
    # Nothing was removed meanwhile; the state topic subscription came back with the link.
    assert "d04df5.d04df5_rl_1" in hub.registry.entities
    await publish(device, relays["state_topic"], {**relays["state"], "POWER1": "ON"})
    await eventually(lambda: state(hub, "d04df5.d04df5_rl_1") == "on", timeout=5)
    assert hub.registry.devices["d04df5"].available
    # Commands reach the firmware over the new connection.
    device.clear()
    future = issue(hub, "d04df5.d04df5_rl_1", "turn_off")
    assert await wait_message(device, "XefilHome/GARDEN02/cmnd/POWER1") == b"OFF"
    await publish(device, relays["state_topic"], {**relays["state"], "POWER1": "OFF"})
    assert (await future).ok


async def test_retained_birth_reaches_late_devices(start_hub: StartHub, device: MqttProbe) -> None:
    hub = await start_hub("    birth_retain: true\n    prefix: ha\n")
    await adapter_running(hub)
    # A device that connects after the hub still learns that the hub is there.
    device.subscribe("ha/status")
    assert await wait_message(device, "ha/status") == b"online"
    sensor = fixture("esphome")["sensor"]
    topic = sensor["config_topic"].replace("homeassistant/", "ha/", 1)
    await publish(device, topic, sensor["config"], retain=True)
    await eventually(lambda: "6055f97b55e0.pressure_voltage" in hub.registry.entities)
