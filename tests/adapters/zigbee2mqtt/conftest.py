"""Fixtures for the Zigbee2MQTT suites: a hub running the adapter, a real broker, a fake bridge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mqttprobe import MqttProbe
from z2mtest import FakeBridge, HubFactory, Z2mSetup, adapter_of, eventually, write_config

from adapters.zigbee2mqtt.adapter import OWNER
from hub.config import load_config
from hub.core import Hub


@pytest.fixture
async def hub_factory(tmp_path: Path) -> AsyncIterator[HubFactory]:
    """Start hubs from config files; every hub started is stopped at the end."""
    started: list[Hub] = []

    async def make(config_path: Path, *, start_plugins: bool = True) -> Hub:
        loaded = load_config(config_path)
        hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
        await hub.start(start_plugins=start_plugins)
        started.append(hub)
        return hub

    yield make
    for hub in started:
        if hub.started:
            await hub.stop()


@pytest.fixture
def probe(mqtt_url: str) -> Iterator[MqttProbe]:
    """A connected MQTT probe."""
    with MqttProbe(mqtt_url) as client:
        yield client


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
