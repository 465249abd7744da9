"""A device that another adapter keeps is not registered a second time from its discovery configs.

Zigbee2MQTT (with its ``homeassistant`` option on) publishes discovery configs for every
device; with the zigbee2mqtt adapter enabled too, the hub must show each device once. These
tests run a real hub with both adapters on a private Mosquitto, play Zigbee2MQTT's bridge
topics (``tests/adapters/zigbee2mqtt/fixtures``) and its discovery configs
(``fixtures/zigbee2mqtt.json``), in both orders, across a restart, and with the skipping off.

The discovery fixtures come from other installations than the bridge's device list, so the
tests give them the addresses and names of the listed devices, as one Zigbee2MQTT would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hadisc_support import adapter_running, fixture, publish, publish_configs, state
from hubtest import eventually
from mqttprobe import MqttProbe

from adapters.ha_discovery.components import DeviceInfo
from adapters.ha_discovery.owners import discovery_keys, identity_keys
from hub.broker import MosquittoBroker
from hub.config import load_config
from hub.core import Hub

Z2M_FIXTURES = Path(__file__).resolve().parents[1] / "zigbee2mqtt" / "fixtures"
PLUG = "0xa4c138d2a1b2c3d4"  # kitchen/plug in bridge_devices.json
COORDINATOR = "0x00124b00120144ae"
PLUG_COPY = f"zigbee2mqtt_{PLUG}"  # the device discovery would make of Zigbee2MQTT's configs
TRV = "zigbee2mqtt_0x000b57fffe0a1b2c"  # a device the bridge's list does not have
BRIDGE = "zigbee2mqtt_bridge"  # the zigbee2mqtt adapter's bridge device
LOGGER = "hub.adapter.ha_discovery"

StartHub = Callable[..., Awaitable[Hub]]


def bridge_devices(*, without: str | None = None) -> list[dict[str, Any]]:
    """Zigbee2MQTT's ``bridge/devices`` list from the docs (optionally without one device)."""
    devices: list[dict[str, Any]] = json.loads((Z2M_FIXTURES / "bridge_devices.json").read_text())
    return [d for d in devices if d["ieee_address"] != without]


def readdressed(configs: list[dict[str, Any]], replace: dict[str, str]) -> list[dict[str, Any]]:
    """The same configs with another device's address and name, everywhere they appear."""
    text = json.dumps(configs, ensure_ascii=False)
    for old, new in replace.items():
        text = text.replace(old, new)
    result: list[dict[str, Any]] = json.loads(text)
    return result


def plug_configs() -> list[dict[str, Any]]:
    """Zigbee2MQTT 1.x configs of a TuYa plug (switch, power, energy) as for kitchen/plug."""
    configs = fixture("zigbee2mqtt")["plug"]["configs"]
    return readdressed(configs, {"0xa4c138280528b031": PLUG, "Küche kaffee": "kitchen/plug"})


def trv_configs() -> list[dict[str, Any]]:
    """Zigbee2MQTT 2.x configs of a thermostat, bridged by this network's coordinator."""
    configs = fixture("zigbee2mqtt")["zigbee2mqtt_2"]["configs"]
    mine = [c for c in configs if "0x000b57fffe0a1b2c" in c["config_topic"]]
    return readdressed(mine, {"0xe0798dfffefee583": COORDINATOR})


def write_config(folder: Path, url: str, *, discovery: str = "", zigbee: bool = True) -> Path:
    """hub.yaml with both adapters (Zigbee2MQTT on its default base topic), private topics."""
    suffix = uuid.uuid4().hex[:8]
    path = folder / "hub.yaml"
    path.write_text(
        "hub:\n"
        f"  base_topic: t{suffix}/hub\n"
        f"  device_topic: t{suffix}/home\n"
        "mqtt:\n"
        f"  url: {url}\n"
        f"  client_id: hub-test-{suffix}\n"
        "database:\n"
        f"  url: sqlite+aiosqlite:///{folder / 'hub.db'}\n"
        "  flush_interval: 0.1s\n"
        "adapters:\n"
        f"  zigbee2mqtt:\n    enabled: {str(zigbee).lower()}\n"
        f"  ha_discovery:\n    enabled: true\n{discovery}"
    )
    return path


@pytest.fixture
async def start_both(tmp_path: Path, broker: MosquittoBroker) -> AsyncIterator[StartHub]:
    """Start a hub with both adapters (settings per call); every hub is stopped at the end."""
    started: list[Hub] = []

    async def make(*, discovery: str = "", zigbee: bool = True) -> Hub:
        loaded = load_config(write_config(tmp_path, broker.url, discovery=discovery, zigbee=zigbee))
        hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
        await hub.start()
        started.append(hub)
        await adapter_running(hub)
        plugins = hub.plugins
        assert plugins is not None
        await eventually(
            lambda: all(s.state == "running" for s in plugins.status.values()),
            message="the adapters did not start",
        )
        return hub

    yield make
    for hub in started:
        if hub.started:
            await hub.stop()


async def bridge_start(device: MqttProbe, devices: list[dict[str, Any]]) -> None:
    """What a starting Zigbee2MQTT publishes: its state and device list, retained."""
    await publish(device, "zigbee2mqtt/bridge/state", "online", retain=True)
    await publish(device, "zigbee2mqtt/bridge/devices", devices, retain=True)


def skipped(hub: Hub) -> int:
    """The discovery adapter's count of configs skipped as another adapter's device's."""
    assert hub.plugins is not None
    counters: dict[str, int] = hub.plugins.health()["adapter:ha_discovery"]["counters"]
    return counters.get("duplicates_skipped", 0)


def told(caplog: pytest.LogCaptureFixture, device_id: str) -> list[logging.LogRecord]:
    """The discovery adapter's log lines about skipping ``device_id``."""
    return [
        r
        for r in caplog.records
        if r.name == LOGGER and f"discovery configs of {device_id}" in r.getMessage()
    ]


async def test_configs_of_a_device_zigbee2mqtt_already_keeps_are_skipped(
    start_both: StartHub, device: MqttProbe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    hub = await start_both()
    await bridge_start(device, bridge_devices())
    await eventually(lambda: PLUG in hub.registry.devices, message="zigbee2mqtt adapter")

    await publish_configs(device, plug_configs())
    await publish_configs(device, trv_configs())
    # The TRV's configs went after the plug's: once it is there, the plug's were handled.
    await eventually(lambda: f"{TRV}.keypad_lockout" in hub.registry.entities)

    assert PLUG_COPY not in hub.registry.devices
    assert not [e for e in hub.registry.entities if e.startswith(PLUG_COPY)]
    assert skipped(hub) == 3
    (line,) = told(caplog, PLUG_COPY)  # once for the device, not once per config
    assert line.levelno == logging.INFO
    assert f"is {PLUG} of the zigbee2mqtt adapter" in line.getMessage()
    # A device only discovery knows stays, reached through the adapter's bridge device.
    trv = hub.registry.devices[TRV]
    assert (trv.owner, trv.via) == ("ha_discovery", BRIDGE)

    # Zigbee2MQTT announcing again (the birth message) changes nothing and counts nothing new.
    await publish_configs(device, plug_configs())
    await publish_configs(device, trv_configs()[:1])
    await asyncio.sleep(0.3)
    assert PLUG_COPY not in hub.registry.devices
    assert skipped(hub) == 3
    assert len(told(caplog, PLUG_COPY)) == 1

    # The plug is the zigbee2mqtt adapter's, with its states.
    await publish(device, "zigbee2mqtt/kitchen/plug", {"state": "ON", "power": 12.5})
    await eventually(lambda: state(hub, f"{PLUG}.power") == 12.5)
    assert hub.registry.devices[PLUG].owner == "zigbee2mqtt"


async def test_the_discovery_copy_goes_when_zigbee2mqtt_claims_the_device_later(
    start_both: StartHub, device: MqttProbe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    hub = await start_both()
    removed: list[str] = []
    device.subscribe(f"{hub.base_topic}/events/device_removed")
    await publish_configs(device, plug_configs())
    await eventually(lambda: f"{PLUG_COPY}.energy" in hub.registry.entities)
    copy_entities = list(hub.registry.devices[PLUG_COPY].entity_ids)
    assert len(copy_entities) == 3

    await bridge_start(device, bridge_devices())
    await eventually(lambda: PLUG in hub.registry.devices and PLUG_COPY not in hub.registry.devices)
    assert not [e for e in copy_entities if e in hub.registry.entities]
    _topic, payload = await asyncio.to_thread(
        device.wait_for, f"{hub.base_topic}/events/device_removed", None, 5.0
    )
    removed.append(json.loads(payload)["device_id"])
    assert removed == [PLUG_COPY]
    assert skipped(hub) == 3
    assert len(told(caplog, PLUG_COPY)) == 1
    # Its retained configs coming again (a reconnect) do not bring the copy back.
    await publish_configs(device, plug_configs())
    await asyncio.sleep(0.3)
    assert PLUG_COPY not in hub.registry.devices

    # The plug leaves the Zigbee network: the adapter removes it, and the discovery configs
    # that are still there describe the device again.
    await publish(device, "zigbee2mqtt/bridge/devices", bridge_devices(without=PLUG), retain=True)
    await eventually(lambda: PLUG not in hub.registry.devices)
    await eventually(lambda: f"{PLUG_COPY}.energy" in hub.registry.entities)
    assert hub.registry.devices[PLUG_COPY].owner == "ha_discovery"


async def test_a_copy_stored_by_an_earlier_run_is_removed_at_start(
    start_both: StartHub, device: MqttProbe
) -> None:
    # An earlier run without the skipping stored both.
    hub = await start_both(discovery="    skip_duplicates: false\n")
    await bridge_start(device, bridge_devices())
    await publish_configs(device, plug_configs())
    await eventually(lambda: PLUG in hub.registry.devices)
    await eventually(lambda: f"{PLUG_COPY}.energy" in hub.registry.entities)
    assert skipped(hub) == 0
    await hub.stop()

    # Started again with the default: the stored copy goes, even before any config arrives.
    hub = await start_both()
    assert PLUG in hub.registry.devices
    await eventually(lambda: PLUG_COPY not in hub.registry.devices)
    await asyncio.sleep(0.3)  # the retained configs have come back by now: still skipped
    assert PLUG_COPY not in hub.registry.devices
    await hub.stop()

    # ... and stays gone from storage.
    hub = await start_both()
    await asyncio.sleep(0.3)
    assert PLUG_COPY not in hub.registry.devices


async def test_devices_left_by_a_disabled_adapter_do_not_hide_discovered_ones(
    start_both: StartHub, device: MqttProbe
) -> None:
    hub = await start_both()
    await bridge_start(device, bridge_devices())
    await eventually(lambda: PLUG in hub.registry.devices)
    await hub.stop()

    # The zigbee2mqtt adapter is switched off; its devices stay stored, but nothing keeps
    # them up any more, so discovery's configs describe the plug.
    hub = await start_both(zigbee=False)
    assert PLUG in hub.registry.devices  # a leftover in storage
    await publish_configs(device, plug_configs())
    await eventually(lambda: f"{PLUG_COPY}.energy" in hub.registry.entities)
    assert skipped(hub) == 0


async def test_skip_duplicates_false_keeps_both(start_both: StartHub, device: MqttProbe) -> None:
    hub = await start_both(discovery="    skip_duplicates: false\n")
    await bridge_start(device, bridge_devices())
    await eventually(lambda: PLUG in hub.registry.devices)
    await publish_configs(device, plug_configs())
    await eventually(lambda: f"{PLUG_COPY}.energy" in hub.registry.entities)
    assert hub.registry.devices[PLUG_COPY].owner == "ha_discovery"
    assert skipped(hub) == 0


async def test_a_tasmota_device_the_hub_convention_announces_is_not_discovered_twice(
    start_both: StartHub, device: MqttProbe
) -> None:
    """Not only Zigbee: Tasmota's legacy discovery names the MAC among its connections."""
    hub = await start_both()
    prefix = hub.config.hub.device_topic
    energy = fixture("tasmota")["energy_plug"]
    await publish(
        device,
        f"{prefix}/dryer_plug/config",
        {
            "name": "Dryer plug",
            "identities": {"mac": "84:0d:8e:52:28:51", "ip": "192.168.1.40"},
            "entities": {"power": {"kind": "sensor", "unit": "W", "device_class": "power"}},
        },
        retain=True,
    )
    await eventually(lambda: "dryer_plug" in hub.registry.devices)
    await publish_configs(device, energy["configs"])
    await publish_configs(device, trv_configs())  # goes after: a marker that they were handled
    await eventually(lambda: TRV in hub.registry.devices)
    assert not [d for d in hub.registry.devices if d.startswith("522851")]
    assert skipped(hub) == len(energy["configs"])


def test_addresses_match_whatever_way_they_are_written() -> None:
    """The matching rule on real discovery device blocks (Z2M, ESPHome, Tasmota)."""
    z2m = DeviceInfo(identifiers=(f"zigbee2mqtt_{PLUG}",))
    assert discovery_keys(z2m) & identity_keys({"ieee": PLUG})
    bridge = DeviceInfo(identifiers=(f"zigbee2mqtt_bridge_{COORDINATOR}",))
    assert discovery_keys(bridge) & identity_keys({"ieee": COORDINATOR})
    esphome = DeviceInfo(identifiers=("6055f97b55e0",))
    assert discovery_keys(esphome) & identity_keys({"mac": "60:55:F9:7B:55:E0"})
    tasmota = DeviceInfo(identifiers=("522851",), connections=(("mac", "84:0D:8E:52:28:51"),))
    assert discovery_keys(tasmota) & identity_keys({"mac": "84-0d-8e-52-28-51"})
    zha_style = DeviceInfo(connections=(("zigbee", "a4:c1:38:d2:a1:b2:c3:d4"),))
    assert discovery_keys(zha_style) & identity_keys({"ieee": PLUG})
    # Not the same device: another address, a short id, or an IP address (reassigned).
    assert not discovery_keys(z2m) & identity_keys({"ieee": COORDINATOR})
    group = DeviceInfo(identifiers=("zigbee2mqtt_1221051039810110150109113116116_1",))
    assert not discovery_keys(group) & identity_keys({"serial": "1"})
    assert not discovery_keys(DeviceInfo(connections=(("ip", "192.168.1.40"),))) & identity_keys(
        {"ip": "192.168.1.40"}
    )
