"""Fixtures for the firmware-profile suites: hubs started from a config, a probe client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from firmwarehub import HubFactory

from hub.config import load_config
from hub.core import Hub


@pytest.fixture
async def hub_factory(tmp_path: Path) -> AsyncIterator[HubFactory]:
    """Start hubs from config files; every hub started is stopped at the end."""
    started: list[Hub] = []

    async def make(config_path: Path) -> Hub:
        loaded = load_config(config_path)
        hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
        await hub.start(start_rules=False)
        started.append(hub)
        return hub

    yield make
    for hub in started:
        if hub.started:
            await hub.stop()
