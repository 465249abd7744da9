"""Helpers for the groups suites: native-convention devices and reading group states."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hubtest import eventually
from mqttprobe import MqttProbe

from hub.core import Hub

LIGHT = {"light": {"kind": "light"}}
PLUG = {"switch": {"kind": "switch"}, "power": {"kind": "sensor", "unit": "W"}}
SENSOR = {"temperature": {"kind": "sensor", "unit": "°C"}}


async def announce(
    hub: Hub, probe: MqttProbe, device_id: str, entities: dict[str, Any], **fields: Any
) -> None:
    """Announce a device in the hub's own convention and wait until it is registered."""
    prefix = hub.config.hub.device_topic
    config = {"name": device_id, "entities": entities, **fields}
    await asyncio.to_thread(probe.publish, f"{prefix}/{device_id}/config", config, 1, True)
    await asyncio.to_thread(probe.publish, f"{prefix}/{device_id}/availability", "online", 1, True)
    await eventually(
        lambda: device_id in hub.registry.devices and hub.registry.devices[device_id].available,
        message=f"{device_id} was not registered",
    )


async def report(hub: Hub, probe: MqttProbe, device_id: str, states: dict[str, Any]) -> None:
    """Publish a device's state report in the hub's own convention."""
    prefix = hub.config.hub.device_topic
    await asyncio.to_thread(probe.publish, f"{prefix}/{device_id}/state", states, 1)


async def next_json(probe: MqttProbe, topic: str, check: Any = None) -> Any:
    """The next message on ``topic`` (whose JSON passes ``check``), decoded."""

    def predicate(payload: bytes) -> bool:
        return check is None or bool(payload and check(json.loads(payload)))

    _topic, payload = await asyncio.to_thread(probe.wait_for, topic, predicate)
    return json.loads(payload)
