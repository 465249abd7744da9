"""Fixtures for the Homie suites: a private broker, hubs with the adapter, a device probe."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from homie_support import adapter_running, write_config
from mqttprobe import MqttProbe

from hub.broker import MosquittoBroker
from hub.config import load_config
from hub.core import Hub

StartHub = Callable[..., Awaitable[Hub]]


@pytest.fixture
def broker(fresh_mosquitto: MosquittoBroker) -> MosquittoBroker:
    """A private Mosquitto per test: retained Homie topics never leak between tests."""
    return fresh_mosquitto


@pytest.fixture
async def start_hub(tmp_path: Path, broker: MosquittoBroker) -> AsyncIterator[StartHub]:
    """Start a hub with the homie adapter (again on the same config and database if given)."""
    started: list[Hub] = []

    async def make(settings: str = "", *, config: Path | None = None) -> Hub:
        path = config or write_config(tmp_path, broker.url, settings)
        loaded = load_config(path)
        hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
        await hub.start()
        started.append(hub)
        await adapter_running(hub)
        return hub

    yield make
    for hub in started:
        if hub.started:
            await hub.stop()


@pytest.fixture
def probe(broker: MosquittoBroker) -> Iterator[MqttProbe]:
    """A probe playing the Homie devices: publishes their topics, receives /set commands."""
    with MqttProbe(broker.url) as client:
        client.subscribe("homie/5/+/+/+/set", qos=2)
        yield client
