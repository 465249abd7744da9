"""Shelly Gen2 through its profile: JSON-RPC over MQTT, status topics, notifications.

Payloads are the examples of Shelly's Gen2 API documentation (see fixtures/README.md).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from firmwarehub import (
    HubFactory,
    eventually,
    fixture,
    fixture_json,
    publish,
    rejected,
    running,
    state,
    until,
    wait_for,
    write_config,
)
from mqttprobe import MqttProbe, Payload

from hub.commands import Command, CommandResult
from hub.core import Hub
from hub.model import Context, EntityKind, Origin


def _command(
    hub: Hub, target: str, action: str, **params: object
) -> asyncio.Task[list[CommandResult]]:
    cmd = Command(target, action, Context(Origin.CLI, "test"), dict(params))
    return asyncio.get_running_loop().create_task(hub.commands.execute(cmd, timeout=3))


async def _request(probe: MqttProbe, prefix: str) -> dict[str, Any]:
    _topic, payload = await wait_for(probe, f"{prefix}/rpc")
    request: dict[str, Any] = json.loads(payload)
    return request


async def test_rpc_status_notifications_energy_and_commands(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """online, GetDeviceInfo/GetStatus answers, status/switch:0, NotifyStatus/Event, Switch.Set."""
    prefix = f"shellyplus1pm-{uuid.uuid4().hex[:12]}"
    config = write_config(
        tmp_path,
        mqtt_url,
        f"    profiles: [shelly-gen2]\n    shelly-gen2:\n      devices: [{prefix}]\n",
    )
    probe.subscribe(f"{prefix}/rpc")
    hub = await hub_factory(config)
    await running(hub)
    src = f"{hub.base_topic}/firmware/shelly"
    assert hub.registry.devices[prefix].manufacturer == "Shelly"

    await until(probe, f"{prefix}/online", "true", lambda: hub.registry.devices[prefix].available)
    # Coming online, the device is asked who it is and for its whole status.
    info_request = await _request(probe, prefix)
    status_request = await _request(probe, prefix)
    assert info_request == {"id": info_request["id"], "src": src, "method": "Shelly.GetDeviceInfo"}
    assert status_request["method"] == "Shelly.GetStatus"
    assert status_request["src"] == src
    info = fixture_json("shelly/device_info.json")
    await publish(
        probe,
        f"{src}/rpc",
        {"id": info_request["id"], "src": prefix, "dst": src, "result": info},
    )
    await eventually(lambda: hub.registry.devices[prefix].model == "SPSW-004PE16EU")
    device = hub.registry.devices[prefix]
    assert (device.firmware, device.identities) == ("0.6.7", {"mac": "F008D1D8B8B8"})
    switch_status = fixture_json("shelly/switch_status.json")
    await publish(
        probe,
        f"{src}/rpc",
        {
            "id": status_request["id"],
            "src": prefix,
            "dst": src,
            "result": {"switch:0": switch_status, "sys": {"mac": "F008D1D8B8B8"}},
        },
    )
    await eventually(lambda: state(hub, f"{prefix}.switch_0") == "off")

    entities = hub.registry.entities
    expected = {
        "switch_0": ("off", EntityKind.SWITCH, None),
        "power_0": (0, EntityKind.SENSOR, "W"),
        "voltage_0": (225.9, EntityKind.SENSOR, "V"),
        "current_0": (0, EntityKind.SENSOR, "A"),
        "energy_0": (0.011679, EntityKind.ENERGY_METER, "kWh"),  # aenergy.total 11.679 Wh
        "device_temperature_0": (53.3, EntityKind.SENSOR, "°C"),
    }
    for key, (value, kind, unit) in expected.items():
        entity = entities[f"{prefix}.{key}"]
        assert (state(hub, entity.id), entity.kind, entity.unit) == (value, kind, unit), key

    # The generic status topic says the same; a NotifyStatus carries only what changed.
    await publish(probe, f"{prefix}/status/switch:0", {**switch_status, "apower": 42.5})
    await eventually(lambda: state(hub, f"{prefix}.power_0") == 42.5)
    await publish(probe, f"{prefix}/events/rpc", fixture("shelly/notify_status.json"))
    await eventually(lambda: state(hub, f"{prefix}.switch_0") == "on")
    assert state(hub, f"{prefix}.power_0") == 42.5
    await publish(probe, f"{prefix}/events/rpc", fixture("shelly/notify_event.json"))
    await eventually(lambda: state(hub, f"{prefix}.button_0") == "single_push")
    assert entities[f"{prefix}.button_0"].kind is EntityKind.BUTTON

    # Commands are RPC requests; the notification that follows confirms them.
    task = _command(hub, f"{prefix}.switch_0", "turn_off")
    request = await _request(probe, prefix)
    assert request == {
        "id": request["id"],
        "src": src,
        "method": "Switch.Set",
        "params": {"id": 0, "on": False},
    }
    assert isinstance(request["id"], int)
    # The device answers the request, then notifies the change.
    await publish(
        probe,
        f"{src}/rpc",
        {"id": request["id"], "src": prefix, "dst": src, "result": {"was_on": True}},
    )
    await publish(
        probe,
        f"{prefix}/events/rpc",
        {
            "src": prefix,
            "dst": src,
            "method": "NotifyStatus",
            "params": {"ts": 1631186546.0, "switch:0": {"id": 0, "output": False}},
        },
    )
    (result,) = await task
    assert result.ok, result.reason

    task = _command(hub, f"{prefix}.switch_0", "toggle")
    request = await _request(probe, prefix)
    assert (request["method"], request["params"]) == ("Switch.Toggle", {"id": 0})
    await publish(probe, f"{prefix}/status/switch:0", {**switch_status, "output": True})
    assert (await task)[0].ok

    await publish(probe, f"{prefix}/online", "false")
    await eventually(lambda: not hub.registry.devices[prefix].available)


async def test_shelly_errors_and_hostile_payloads(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """An RPC error is logged; bad payloads are counted and change nothing."""
    prefix = f"shellyplus1-{uuid.uuid4().hex[:12]}"
    config = write_config(
        tmp_path,
        mqtt_url,
        f"    profiles: [shelly-gen2]\n    shelly-gen2:\n      devices: [{prefix}]\n",
    )
    hub = await hub_factory(config)
    await running(hub)
    switch_status = fixture_json("shelly/switch_status.json")
    await until(
        probe,
        f"{prefix}/status/switch:0",
        switch_status,
        lambda: state(hub, f"{prefix}.switch_0") == "off",
    )

    async def rejected_as(kind: str, topic: str, payload: Payload) -> None:
        count = rejected(hub, kind)
        await publish(probe, topic, payload)
        await eventually(lambda: rejected(hub, kind) > count, message=f"{topic} not {kind}")

    await rejected_as("wrong_type", f"{prefix}/status/switch:0", {"output": "yes please"})
    await rejected_as(
        "wrong_type", f"{prefix}/status/switch:0", {"output": True, "aenergy": {"total": "lots"}}
    )
    await rejected_as("not_json", f"{prefix}/events/rpc", b"NotifyStatus switch:0 on")
    await rejected_as("wrong_type", f"{prefix}/online", "perhaps")
    await rejected_as("too_large", f"{prefix}/events/rpc", b"[" + b"0," * 600_000 + b"0]")
    assert state(hub, f"{prefix}.switch_0") == "off"
    assert state(hub, f"{prefix}.energy_0") == 0.011679
    # Unknown components and answers to requests nobody sent are not ours: ignored quietly.
    await publish(probe, f"{prefix}/status/ble", {"id": 0})
    await publish(probe, f"{hub.base_topic}/firmware/shelly/rpc", {"id": 999999, "result": {}})
    await publish(probe, f"{prefix}/status/switch:0", {**switch_status, "output": True})
    await eventually(lambda: state(hub, f"{prefix}.switch_0") == "on")
