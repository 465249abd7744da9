"""Helpers for the firmware-profile suites: hub configs, fixtures, polling the running hub."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import hubtest
from hubtest import eventually
from mqttprobe import MqttProbe, Payload

from hub.core import Hub

HubFactory = Callable[..., Awaitable[Hub]]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> bytes:
    """A fixture payload, byte for byte."""
    return (FIXTURES / name).read_bytes().strip()


def fixture_json(name: str) -> Any:
    """A fixture payload, decoded."""
    return json.loads(fixture(name))


def unique(prefix: str = "t") -> str:
    """A name no other test uses (topics on the shared broker)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def write_config(tmp_path: Path, mqtt_url: str, firmware: str, *, name: str = "hub.yaml") -> Path:
    """A hub.yaml with private base topics and ``firmware`` as the adapter's settings.

    ``firmware`` is YAML indented for the adapter section (4 spaces).
    """
    return hubtest.write_config(
        tmp_path, mqtt_url, f"adapters:\n  firmware:\n{firmware}", name=name
    )


async def publish(
    probe: MqttProbe, topic: str, payload: Payload, *, retain: bool = False, qos: int = 1
) -> None:
    """Publish from the test (the probe is synchronous: run it off the loop)."""
    await asyncio.to_thread(probe.publish, topic, payload, qos, retain)


async def wait_for(probe: MqttProbe, topic_filter: str, timeout: float = 5.0) -> tuple[str, bytes]:
    """The next message on ``topic_filter`` (see MqttProbe.wait_for)."""
    return await asyncio.to_thread(probe.wait_for, topic_filter, None, timeout)


def state(hub: Hub, entity_id: str) -> Any:
    """An entity's current value, or None."""
    found = hub.registry.states.get(entity_id)
    return None if found is None else found.value


def attributes(hub: Hub, entity_id: str) -> dict[str, Any]:
    """An entity's current attributes."""
    found = hub.registry.states.get(entity_id)
    return {} if found is None else dict(found.attributes)


def plugin_status(hub: Hub) -> dict[str, Any]:
    """The firmware adapter's health as the supervisor sees it."""
    assert hub.plugins is not None
    return hub.plugins.health().get("adapter:firmware", {})


def rejected(hub: Hub, kind: str) -> int:
    """How many inbound messages the hub ignored for this reason."""
    return hub.stats.rejected_by_reason.get(kind, 0)


async def running(hub: Hub) -> None:
    """Wait until the firmware adapter has started (it starts in the background)."""
    await eventually(
        lambda: plugin_status(hub).get("state") in ("running", "failed", "restarting"),
        message="the firmware adapter did not start",
    )
    status = plugin_status(hub)
    assert status.get("state") == "running", status


async def until(
    probe: MqttProbe,
    topic: str,
    payload: Payload,
    check: Callable[[], Any],
    *,
    attempts: int = 20,
) -> Any:
    """Publish an idempotent message until ``check()`` holds.

    The adapter subscribes as it starts; the first message may reach the broker before the
    subscription does, so the first thing a test says is repeated until it is heard.
    """
    for _ in range(attempts):
        await publish(probe, topic, payload)
        try:
            return await eventually(check, timeout=0.25)
        except AssertionError:
            continue
    raise AssertionError(f"{topic} {payload!r} was never taken into account")
