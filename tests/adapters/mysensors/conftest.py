"""Fixtures for the MySensors suites."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mystest import Bench


@pytest.fixture
async def bench(tmp_path: Path, mqtt_url: str) -> AsyncIterator[Bench]:
    """A test bench; every hub, wire and node it started is stopped at the end."""
    setup = Bench(tmp_path, mqtt_url)
    yield setup
    await setup.close()
