"""Helpers for the Homie suites: fixtures, hub configs and a device played through a probe."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import hubtest
from hubtest import eventually
from mqttprobe import MqttProbe

from adapters.homie.adapter import OWNER

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> Any:
    """A section of ``fixtures/spec_examples.json`` (sources in fixtures/README.md)."""
    return json.loads((FIXTURES / "spec_examples.json").read_text())[name]


def write_config(tmp_path: Path, mqtt_url: str, settings: str = "") -> Path:
    """A hub.yaml enabling the homie adapter, with private hub topics."""
    return hubtest.write_config(
        tmp_path, mqtt_url, f"adapters:\n  homie:\n    enabled: true\n{settings}"
    )


class HomieDevice:
    """Plays one Homie 5 device (or a bridge's child) over a real broker."""

    def __init__(self, probe: MqttProbe, homie_id: str, domain: str = "homie") -> None:
        self.probe = probe
        self.id = homie_id
        self.base = f"{domain}/5/{homie_id}"

    async def publish(
        self, suffix: str, payload: Any, *, retain: bool = True, qos: int = 1
    ) -> None:
        """Publish ``payload`` (objects as JSON) on ``<base>/<suffix>``, retained by default."""
        if isinstance(payload, dict | list):
            payload = json.dumps(payload, ensure_ascii=False)
        await asyncio.to_thread(self.probe.publish, f"{self.base}/{suffix}", payload, qos, retain)

    async def announce(
        self, description: dict[str, Any], values: dict[str, str] | None = None
    ) -> None:
        """What a Homie device does when it connects: init, description, values, ready."""
        await self.publish("$state", "init")
        await self.publish("$description", description)
        for path, value in (values or {}).items():
            await self.publish(path, value)
        await self.publish("$state", "ready")

    async def next_set(self, path: str, timeout: float = 5.0) -> tuple[bytes, int, bool]:
        """The next ``/set`` message for ``<node>/<prop>``: payload, QoS and retain flag."""
        topic = f"{self.base}/{path}/set"
        await asyncio.to_thread(self.probe.wait_for, topic, None, timeout)
        message = next(m for m in reversed(self.probe.messages) if m.topic == topic)
        return message.payload, message.qos, message.retain

    async def remove(self) -> None:
        """The convention's removal: clear ``$state`` first, then the other retained topics."""
        await self.publish("$state", b"")
        await self.publish("$description", b"")


def hub_id(homie_id: str) -> str:
    """The hub's device id of a Homie device (default id_prefix)."""
    return f"homie_{homie_id}"


def state(hub: Any, entity_id: str) -> Any:
    """The entity's current value (None when it has none)."""
    current = hub.registry.states.get(entity_id)
    return None if current is None else current.value


def attrs(hub: Any, entity_id: str) -> dict[str, Any]:
    """The entity's current attributes."""
    current = hub.registry.states.get(entity_id)
    return {} if current is None else dict(current.attributes)


def rejected(hub: Any, kind: str) -> int:
    """How many messages the hub ignored for ``kind``."""
    count: int = hub.stats.rejected_by_reason.get(kind, 0)
    return count


def issue(hub: Any, target: str, action: str, params: dict[str, Any] | None = None) -> Any:
    """Issue a hub command as the CLI would; return the future of its single result."""
    from hub.commands import Command
    from hub.model import Context, Origin

    command = Command(target, action, Context(Origin.CLI, "test"), params or {})
    (future,) = hub.commands.issue(command)
    return future


async def adapter_running(hub: Any) -> None:
    """Wait until the homie plug-in has started and its subscription reached the broker."""
    await eventually(
        lambda: (
            OWNER in hub.commands._dialects
            and any(s.name == "homie" and s.state == "running" for s in hub.plugins.status.values())
        ),
        message="the homie adapter did not start",
    )
    await asyncio.sleep(0.1)
