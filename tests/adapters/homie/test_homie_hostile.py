"""Hostile and malformed Homie input: rejected with topic and reason, counted, nothing changes."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from conftest import StartHub
from homie_support import HomieDevice, fixture, hub_id, rejected, state
from hubtest import eventually
from mqttprobe import MqttProbe

from hub.core import Hub

CAR = hub_id("super-car")


async def _described_car(start_hub: StartHub, probe: MqttProbe) -> tuple[Hub, HomieDevice]:
    car = fixture("super_car")
    hub = await start_hub()
    device = HomieDevice(probe, car["id"])
    await device.announce(car["description"], car["values"])
    await eventually(lambda: state(hub, f"{CAR}.lights_color") == "rgb,100,100,100")
    await eventually(lambda: hub.registry.devices[CAR].available)
    return hub, device


def _snapshot(hub: Hub) -> dict[str, Any]:
    device = hub.registry.devices[CAR]
    return {
        "device": device.to_dict(),
        "entities": sorted(device.entity_ids),
        "states": {e: hub.registry.states[e].value for e in device.entity_ids},
    }


async def _rejected_once(hub: Hub, kind: str, before: int) -> None:
    await eventually(
        lambda: rejected(hub, kind) >= before + 1, message=f"nothing rejected as {kind}"
    )


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("engine/temperature", "NaN"),
        ("engine/temperature", "1,5"),
        ("engine/temperature", " 21.5"),
        ("engine/temperature", "121"),  # above the format's -20:120
        ("engine/speed", "2.5"),
        ("engine/speed", "-"),
        ("engine/direction", "Forward"),  # enums are case sensitive
        ("lights/color", "rgb,256,0,0"),
        ("lights/color", "xyz,0.25,0.34"),  # not in the format rgb,hsv
        ("lights/intensity", b"\xff\xfe"),  # not UTF-8
        ("lights/intensity", b"\x00"),  # the empty string is no integer
    ],
)
async def test_bad_values_are_rejected_and_change_nothing(
    start_hub: StartHub, probe: MqttProbe, path: str, payload: str | bytes
) -> None:
    hub, device = await _described_car(start_hub, probe)
    before, snapshot = rejected(hub, "wrong_type"), _snapshot(hub)
    await device.publish(path, payload)
    await _rejected_once(hub, "wrong_type", before)
    assert _snapshot(hub) == snapshot
    # The device carries on: the next good value applies.
    await device.publish("engine/temperature", "30")
    await eventually(lambda: state(hub, f"{CAR}.engine_temperature") == 30)


async def test_hostile_descriptions_topics_and_sizes(
    start_hub: StartHub, probe: MqttProbe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    hub, device = await _described_car(start_hub, probe)
    good = fixture("super_car")["description"]
    snapshot = _snapshot(hub)

    cases: list[tuple[str, str, Any]] = [
        ("not_json", "$description", "{not json"),
        ("bad_description", "$description", {**good, "version": "8"}),
        ("bad_description", "$description", {**good, "homie": "4.0", "version": 8}),
        ("bad_description", "$description", {**good, "name": 7, "version": 8}),
        ("bad_description", "$description", {**good, "children": ["a/#"], "version": 8}),
        ("bad_description", "$description", {**good, "root": "..", "version": 8}),
        ("bad_description", "$description", {**good, "nodes": ["engine"], "version": 8}),
        ("bad_description", "$description", [1, 2, 3]),
        ("too_large", "$description", "x" * (1024 * 1024)),
        ("too_large", "engine/temperature", "1" * (1024 * 1024)),
        ("unknown_property", "engine/oil", "5"),
        ("bad_state", "$state", "READY"),
    ]
    for kind, suffix, payload in cases:
        before = rejected(hub, kind)
        await device.publish(suffix, payload)
        await _rejected_once(hub, kind, before)
        assert _snapshot(hub) == snapshot, (kind, suffix)
    # Ids the convention does not allow, straight in the topic.
    for topic in (
        "homie/5/Super_Car/$state",
        "homie/5/super-car/Engine/temperature",
        "homie/5/super-car/../temperature",
        "homie/5/-car/$state",
    ):
        before = rejected(hub, "bad_topic")
        await asyncio.to_thread(probe.publish, topic, "ready", 1, False)
        await _rejected_once(hub, "bad_topic", before)
    assert _snapshot(hub) == snapshot
    assert [d for d in hub.registry.devices.values() if d.owner == "homie"] == [
        hub.registry.devices[CAR]
    ]
    # Every rejection was logged with its topic and reason.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "homie/5/super-car/$description" in logged
    assert "'version' must be an integer" in logged
    assert "homie/5/super-car/Engine/temperature" in logged
    assert "is over" in logged


async def test_broken_properties_are_left_out_and_the_rest_kept(
    start_hub: StartHub, probe: MqttProbe
) -> None:
    hub = await start_hub()
    device = HomieDevice(probe, "odd-device")
    description = {
        "homie": "5.0",
        "name": "Odd device",
        "version": 1,
        "nodes": {
            "main": {
                "properties": {
                    "ok": {"datatype": "integer", "format": "0:10"},
                    "weird": {"datatype": "quaternion"},
                    "range": {"datatype": "integer", "format": "10:1"},
                    "choice": {"datatype": "enum"},
                    "tint": {"datatype": "color", "format": "cmyk"},
                    "flag": {"datatype": "boolean", "settable": "yes"},
                    "Upper": {"datatype": "string"},
                }
            },
            "+": {"properties": {"x": {"datatype": "string"}}},
        },
    }
    before = rejected(hub, "bad_description")
    await device.announce(description, {"main/ok": "7"})
    did = hub_id("odd-device")
    await eventually(lambda: state(hub, f"{did}.main_ok") == 7)
    assert hub.registry.devices[did].entity_ids == [f"{did}.main_ok"]
    assert rejected(hub, "bad_description") == before + 1  # one message, one count
    # A value for a left-out property is not applied anywhere.
    await device.publish("main/weird", "1,2,3,4")
    await eventually(lambda: rejected(hub, "unknown_property") == 1)
    assert hub.registry.devices[did].entity_ids == [f"{did}.main_ok"]


async def test_a_flood_of_devices_is_bounded(start_hub: StartHub, probe: MqttProbe) -> None:
    hub = await start_hub("    max_devices: 3\n")
    light = fixture("kitchen_switch")["description"]
    for index in range(5):
        device = HomieDevice(probe, f"light-{index}")
        await device.publish("$description", json.dumps(light))
    await eventually(lambda: rejected(hub, "too_many") == 2)
    homie = [d.id for d in hub.registry.devices.values() if d.owner == "homie"]
    assert sorted(homie) == [hub_id(f"light-{i}") for i in range(3)]
