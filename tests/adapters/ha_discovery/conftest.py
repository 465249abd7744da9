"""Fixtures for the Home Assistant discovery suites: a fresh broker, a hub with the adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hadisc_support import write_config
from mqttprobe import MqttProbe

from hub.broker import MosquittoBroker
from hub.config import load_config
from hub.core import Hub

StartHub = Callable[..., Awaitable[Hub]]


@pytest.fixture
def broker(fresh_mosquitto: MosquittoBroker) -> MosquittoBroker:
    """A private Mosquitto per test: retained discovery configs never leak between tests."""
    return fresh_mosquitto


@pytest.fixture
async def start_hub(tmp_path: Path, broker: MosquittoBroker) -> AsyncIterator[StartHub]:
    """Start a hub with the ha_discovery adapter on the test's broker; stopped afterwards."""
    started: list[Hub] = []

    async def make(settings: str = "") -> Hub:
        path = write_config(tmp_path, broker.url, settings)
        loaded = load_config(path)
        hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
        await hub.start()
        started.append(hub)
        return hub

    yield make
    for hub in started:
        if hub.started:
            await hub.stop()


@pytest.fixture
def device(broker: MosquittoBroker) -> Iterator[MqttProbe]:
    """A probe playing the firmware: publishes configs and states, receives commands."""
    with MqttProbe(broker.url) as probe:
        yield probe
