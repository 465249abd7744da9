"""Helpers for the Zigbee2MQTT adapter suites: configs, fixtures, and a fake bridge on MQTT."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubtest import eventually  # noqa: F401 - shared by every suite, re-exported here
from mqttprobe import MqttProbe

from adapters.zigbee2mqtt import Zigbee2Mqtt
from adapters.zigbee2mqtt.adapter import OWNER
from hub.core import Hub

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HubFactory = Callable[..., Awaitable[Hub]]


def fixture(name: str) -> Any:
    """Load a JSON fixture (see fixtures/README.md for where each comes from)."""
    return json.loads((FIXTURES / name).read_text())


def write_config(tmp_path: Path, mqtt_url: str, adapter: str = "", *, enabled: bool = True) -> Path:
    """A hub.yaml with private topics and the zigbee2mqtt adapter on a private base topic."""
    suffix = uuid.uuid4().hex[:8]
    path = tmp_path / "hub.yaml"
    section = (
        f"adapters:\n  zigbee2mqtt:\n    base_topic: z{suffix}/zigbee2mqtt\n{adapter}"
        if enabled
        else ""
    )
    path.write_text(
        "hub:\n"
        f"  base_topic: t{suffix}/hub\n"
        f"  device_topic: t{suffix}/home\n"
        "  command_timeout: 3s\n"
        "mqtt:\n"
        f"  url: {mqtt_url}\n"
        f"  client_id: hub-test-{suffix}\n"
        "database:\n"
        f"  url: sqlite+aiosqlite:///{tmp_path / 'hub.db'}\n"
        "  flush_interval: 0.2s\n"
        f"{section}"
    )
    return path


class FakeBridge:
    """Plays Zigbee2MQTT's side of the MQTT API through a real broker (sync; use to_thread)."""

    def __init__(self, probe: MqttProbe, base: str) -> None:
        self.probe = probe
        self.base = base

    def publish(self, suffix: str, payload: Any, *, retain: bool = False) -> None:
        """Publish ``payload`` (dicts and lists as JSON) on ``<base>/<suffix>``, QoS 1."""
        self.probe.publish(f"{self.base}/{suffix}", payload, 1, retain)

    def start(self, devices: Any | None = None, groups: Any | None = None) -> None:
        """What a starting Zigbee2MQTT publishes: state, device list, group list (retained)."""
        self.publish("bridge/state", "online", retain=True)
        self.publish(
            "bridge/devices",
            fixture("bridge_devices.json") if devices is None else devices,
            retain=True,
        )
        self.publish(
            "bridge/groups",
            fixture("bridge_groups.json") if groups is None else groups,
            retain=True,
        )

    def next_request(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the hub's ``bridge/request/<name>`` and return its JSON body."""
        _topic, payload = self.probe.wait_for(f"{self.base}/bridge/request/{name}", timeout=timeout)
        body: dict[str, Any] = json.loads(payload)
        return body

    def respond(self, name: str, body: dict[str, Any]) -> None:
        """Answer on ``bridge/response/<name>``."""
        self.publish(f"bridge/response/{name}", body)

    def next_set(self, friendly_name: str, timeout: float = 5.0) -> Any:
        """Wait for a command on ``<base>/<friendly_name>/set`` and return its JSON."""
        _topic, payload = self.probe.wait_for(f"{self.base}/{friendly_name}/set", timeout=timeout)
        return json.loads(payload)

    def clear_retained(self) -> None:
        """Remove the retained bridge topics so later tests start clean."""
        for suffix in ("bridge/state", "bridge/devices", "bridge/groups"):
            self.publish(suffix, b"", retain=True)


@dataclass
class Z2mSetup:
    """A running hub with the adapter, its plug-in instance, and a fake bridge."""

    hub: Hub
    adapter: Zigbee2Mqtt
    bridge: FakeBridge
    probe: MqttProbe

    @property
    def base(self) -> str:
        """Zigbee2MQTT's base topic in this test."""
        return self.adapter.base


def adapter_of(hub: Hub) -> Zigbee2Mqtt:
    """The running adapter instance (it is the dialect registered for its owner)."""
    dialect = hub.commands._dialects[OWNER]  # tests may look inside
    assert isinstance(dialect, Zigbee2Mqtt)
    return dialect
