"""The device block's suggested area (``sa``) places a discovered device, unless hub.yaml does.

Payloads: fixtures/areas.json (an ESPHome node's abbreviated config from
esphome/feature-requests#2459, the unabbreviated one of home-assistant.io#17579).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from conftest import StartHub
from hadisc_support import (
    adapter_running,
    eventually,
    fixture,
    publish,
    publish_configs,
    settle,
)
from mqttprobe import MqttProbe

from hub.core import Hub
from hub.model import Registry
from hub.storage import Storage

AREAS = fixture("areas")
ESPHOME = AREAS["esphome_sa"]
HA_DOCS_ISSUE = AREAS["suggested_area"]
NODE = ESPHOME["device_id"]
TESTDEV = HA_DOCS_ISSUE["device_id"]


def _area(hub: Hub, device_id: str) -> str | None:
    device = hub.registry.devices.get(device_id)
    return None if device is None else device.area


def _with_area(item: dict[str, Any], area: Any) -> dict[str, Any]:
    """The ESPHome config with another ``sa`` (None: without one)."""
    config = copy.deepcopy(item["config"])
    if area is None:
        del config["dev"]["sa"]
    else:
        config["dev"]["sa"] = area
    return config


async def _reading(hub: Hub, device: MqttProbe, value: str) -> None:
    """Send the node's illuminance and wait until the hub has it."""
    entity_id = ESPHOME["entity_id"]
    await settle()  # the state topic's SUBSCRIBE, queued when the config came, reaches the broker
    await publish(device, "bh1750test/sensor/bh1750_illuminance/state", value)
    await eventually(
        lambda: (
            (state := hub.registry.states.get(entity_id)) is not None
            and state.value == float(value)
        ),
        message=f"{entity_id} did not read {value}",
    )


async def _stored(tmp_path: Path) -> Registry:
    """The registry the next start loads from the test's database."""
    storage = Storage(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    await storage.start()
    registry = Registry()
    try:
        await storage.load_into(registry)
    finally:
        await storage.close()
    return registry


async def test_a_suggested_area_is_made_stored_and_followed(
    start_hub: StartHub, device: MqttProbe, tmp_path: Path
) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    await publish_configs(device, [ESPHOME])
    await eventually(lambda: _area(hub, NODE) == "test_area", message="the node was not placed")
    assert hub.registry.areas["test_area"].name == "Test area"
    assert [e.id for e in hub.registry.resolve("area:test_area")] == list(
        hub.registry.devices[NODE].entity_ids
    )

    # The node's area: changes in its ESPHome YAML: the device follows (names fold to ids).
    topic = ESPHOME["config_topic"]
    await publish(device, topic, _with_area(ESPHOME, "Küche"), retain=True)
    await eventually(lambda: _area(hub, NODE) == "kuche", message="the node did not move")
    assert hub.registry.areas["kuche"].name == "Küche"
    # A name with no Latin letters still makes an area, under a stable id.
    await publish(device, topic, _with_area(ESPHOME, "客厅"), retain=True)
    await eventually(lambda: (_area(hub, NODE) or "").startswith("area_"))
    living = _area(hub, NODE)
    assert living is not None
    assert hub.registry.areas[living].name == "客厅"
    # Without a suggestion the device stays where it is (the state message, sent after the
    # config on the same connection, shows the config was handled).
    await publish(device, topic, _with_area(ESPHOME, None), retain=True)
    await _reading(hub, device, "12.5")
    assert _area(hub, NODE) == living
    await hub.stop()

    stored = await _stored(tmp_path)
    assert {a.id: a.name for a in stored.areas.values()} == {
        "test_area": "Test area",
        "kuche": "Küche",
        living: "客厅",
    }
    assert stored.devices[NODE].area == living


async def test_hub_yaml_areas_are_matched_and_its_devices_section_wins(
    start_hub: StartHub, device: MqttProbe
) -> None:
    hub = await start_hub(
        "areas:\n"
        "  - {id: office, name: Office room}\n"
        "  - {id: garage, name: Garage}\n"
        "devices:\n"
        f"  {NODE}: {{area: garage}}\n"
    )
    await adapter_running(hub)
    await publish_configs(device, [ESPHOME, HA_DOCS_ISSUE])
    await eventually(lambda: TESTDEV in hub.registry.devices and NODE in hub.registry.devices)

    # "Office Room" is hub.yaml's office: matched by name (case aside), no second office.
    assert _area(hub, TESTDEV) == "office"
    assert hub.registry.areas["office"].name == "Office room"
    # hub.yaml places the node in the garage: its "Test area" neither moves it nor is made.
    assert _area(hub, NODE) == "garage"
    assert sorted(hub.registry.areas) == ["garage", "office"]


async def test_an_unusable_suggestion_leaves_the_device_without_an_area(
    start_hub: StartHub, device: MqttProbe
) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    hostile = dict(ESPHOME, config=_with_area(ESPHOME, "Test\u0007area"))
    await publish_configs(device, [hostile])
    await eventually(lambda: NODE in hub.registry.devices, message="the node was not registered")
    assert _area(hub, NODE) is None
    assert hub.registry.areas == {}
    # Too long for a room name: ignored the same way; a plain one afterwards is taken.
    topic = ESPHOME["config_topic"]
    await publish(device, topic, _with_area(ESPHOME, "x" * 101), retain=True)
    await _reading(hub, device, "3")
    assert _area(hub, NODE) is None
    assert hub.registry.areas == {}
    await publish(device, topic, _with_area(ESPHOME, "  Test   area "), retain=True)
    await eventually(lambda: _area(hub, NODE) == "test_area")
    assert hub.registry.areas["test_area"].name == "Test area"
