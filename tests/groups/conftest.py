"""Fixtures for the groups suites: configured, started hubs against the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hubtest import HubFactory
from mqttprobe import MqttProbe

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
