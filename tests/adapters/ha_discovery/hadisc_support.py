"""Helpers for the Home Assistant discovery suites: fixtures, a hub with the adapter, probes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import hubtest
from hubtest import eventually
from mqttprobe import MqttProbe

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    """Load ``fixtures/<name>.json`` (real discovery payloads, each with its source)."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def write_config(tmp_path: Path, mqtt_url: str, settings: str = "") -> Path:
    """Write a hub.yaml enabling the ha_discovery adapter (private hub topics per test)."""
    return hubtest.write_config(
        tmp_path, mqtt_url, f"adapters:\n  ha_discovery:\n    enabled: true\n{settings}"
    )


def encode(payload: Any) -> str | bytes:
    """Fixture payloads: objects are sent as JSON, strings as they are."""
    if isinstance(payload, dict | list):
        return json.dumps(payload, ensure_ascii=False)
    return payload  # type: ignore[no-any-return]


async def publish(
    probe: MqttProbe, topic: str, payload: Any, *, retain: bool = False, qos: int = 1
) -> None:
    """Publish from the test through the probe's own thread (it waits for the PUBACK)."""
    await asyncio.to_thread(probe.publish, topic, encode(payload), qos, retain)


async def publish_configs(probe: MqttProbe, configs: list[dict[str, Any]]) -> None:
    """Publish discovery configs, retained, as firmwares do."""
    for item in configs:
        await publish(probe, item["config_topic"], item["config"], retain=True)


async def wait_message(probe: MqttProbe, topic: str, timeout: float = 5.0) -> bytes:
    """The next message on ``topic`` the probe has not returned yet."""
    _topic, payload = await asyncio.to_thread(probe.wait_for, topic, None, timeout)
    return payload


def rejected(hub: Any, kind: str) -> int:
    """How many messages the hub ignored for ``kind``."""
    count: int = hub.stats.rejected_by_reason.get(kind, 0)
    return count


async def adapter_running(hub: Any) -> None:
    """Wait until the ha_discovery plug-in has started (it starts in its own task)."""
    await eventually(
        lambda: any(
            s.name == "ha_discovery" and s.state == "running" for s in hub.plugins.status.values()
        ),
        message="the ha_discovery adapter did not start",
    )
    # Its SUBSCRIBE packets were queued by start(); give the broker a moment to take them.
    await asyncio.sleep(0.05)


async def settle() -> None:
    """Let freshly queued SUBSCRIBEs for newly discovered state topics reach the broker."""
    await asyncio.sleep(0.1)


def state(hub: Any, entity_id: str) -> Any:
    """The entity's current value (None when it has no state)."""
    current = hub.registry.states.get(entity_id)
    return None if current is None else current.value


def attrs(hub: Any, entity_id: str) -> dict[str, Any]:
    """The entity's current attributes."""
    current = hub.registry.states.get(entity_id)
    return {} if current is None else dict(current.attributes)


def issue(hub: Any, target: str, action: str, params: dict[str, Any] | None = None) -> Any:
    """Issue a hub command as the CLI would; return the future of its single result."""
    from hub.commands import Command
    from hub.model import Context, Origin

    command = Command(target, action, Context(Origin.CLI, "test"), params or {})
    (future,) = hub.commands.issue(command)
    return future
