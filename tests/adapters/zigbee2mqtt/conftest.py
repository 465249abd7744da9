"""Fixtures for the Zigbee2MQTT suites: a hub running the adapter, a real broker, a fake bridge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mqttprobe import MqttProbe
from z2mtest import FakeBridge, HubFactory, Z2mSetup, adapter_of, eventually, write_config

from adapters.zigbee2mqtt.adapter import OWNER


@pytest.fixture
async def z2m(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, probe: MqttProbe
) -> AsyncIterator[Z2mSetup]:
    """A hub running the adapter; the fake bridge has not published anything yet."""
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    await eventually(lambda: OWNER in hub.commands._dialects, 5, "the adapter did not start")
    adapter = adapter_of(hub)
    await asyncio.to_thread(probe.subscribe, f"{adapter.base}/#")
    await asyncio.to_thread(probe.subscribe, f"{hub.base_topic}/#")
    bridge = FakeBridge(probe, adapter.base)
    yield Z2mSetup(hub, adapter, bridge, probe)
    await asyncio.to_thread(bridge.clear_retained)
