"""Fixtures for the SMS suites: the Twilio stand-in and a hub running the SMS front-end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hubtest import HubFactory
from smstest import (
    PUBLIC_URL,
    UNREACHABLE,
    SmsSetup,
    hub_config,
    record_layer,
    running_plugin,
)

from frontends.sms.standin import TwilioStandin


@pytest.fixture
async def standin() -> AsyncIterator[TwilioStandin]:
    """The Twilio stand-in on a free loopback port."""
    async with TwilioStandin(
        unreachable=frozenset({UNREACHABLE}), invalid=frozenset({"+15550000666"})
    ) as twilio:
        yield twilio


@pytest.fixture
async def sms(
    tmp_path: Path, mqtt_url: str, standin: TwilioStandin, hub_factory: HubFactory
) -> SmsSetup:
    """A hub with the scripted household's people and the SMS front-end, running."""
    hub = await hub_factory(hub_config(tmp_path, mqtt_url, standin))
    plugin = await running_plugin(hub)
    # The reverse proxy: Twilio calls the public URL, the hub listens on loopback.
    standin.routes[PUBLIC_URL] = f"http://127.0.0.1:{plugin.port}"
    return SmsSetup(hub, plugin, standin, record_layer(hub))
