"""Lanes (a device's telemetry read straight from how its last message was read), and the
repeat memo behind them (the same bytes again), change nothing a user can see: the same
messages give the same states, changes and rejections with lanes as without them.

Payloads are Tasmota's and Shelly's documented ones (fixtures/README.md), varied as devices
vary them: repeats, changed readings, partial Shelly notifications, a second channel, bad
values, a device going offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from firmwarehub import HubFactory, fixture_json, running, unique, write_config

import adapters.firmware.adapter as firmware_adapter
from adapters.firmware.shapes import Shape
from hub.core import Hub
from hub.events import StateChanged
from hub.repeats import RepeatMemo


def _script(tasmota: str, shelly: str) -> list[tuple[str, Any]]:
    energy = fixture_json("tasmota/sensor_energy.json")
    two_channels = fixture_json("tasmota/sensor_energy_2ch.json")
    state = fixture_json("tasmota/state.json")

    def sensor(time: str, **changes: Any) -> tuple[str, Any]:
        body = json.loads(json.dumps(energy))
        body["Time"] = time
        body["ENERGY"].update(changes)
        return f"tele/{tasmota}/SENSOR", body

    def notify(ts: float, **components: Any) -> tuple[str, Any]:
        params = {"ts": ts, **{name.replace("_", ":"): c for name, c in components.items()}}
        body = {"src": shelly, "dst": "user_1", "method": "NotifyStatus", "params": params}
        return f"{shelly}/events/rpc", body

    full = {"id": 0, "output": True, "apower": 12.5, "voltage": 230.1, "aenergy": {"total": 1000}}
    return [
        (f"tele/{tasmota}/LWT", "Online"),
        (f"{shelly}/online", "true"),
        sensor("2022-01-11T21:57:38"),
        sensor("2022-01-11T21:57:48"),  # a repeat, but for the time
        sensor("2022-01-11T21:57:58", Power=7, Current=0.03, Today=0.027),
        sensor("2022-01-11T21:58:08", Power=7, Current=0.03, Today=0.027),
        sensor("2022-01-11T21:58:08", Power=7, Current=0.03, Today=0.027),  # the same bytes
        sensor("2022-01-11T21:58:08", Power=7, Current=0.03, Today=0.027),
        sensor("2022-01-11T21:58:18", Power="x", Current=0.03, Today=0.027),  # refused whole
        sensor("2022-01-11T21:58:28", Power=7.0, Current=0.03, Today=0.027),  # 7.0 is 7
        sensor("2022-01-11T21:58:38", Power=8, Current=None, Today=0.027),  # no current
        (f"tele/{tasmota}/SENSOR", two_channels),  # a second channel appears
        sensor("2022-01-11T21:58:48", Power=8, Current=0.04, Today=0.028),
        notify(1.0, switch_0=full),
        notify(2.0, switch_0=full),
        notify(2.0, switch_0=full),
        notify(2.0, switch_0=full),
        # The same shape with other values: read from the places the last one had them.
        notify(2.5, switch_0={**full, "apower": 14.0}),
        notify(2.6, switch_0={**full, "apower": 14.5, "voltage": 229.8}),
        # The same keys in another order, a value that became an object, an object that
        # became a value: not the shape the lane knows.
        notify(2.7, switch_0={"apower": 15.0, **full}),
        notify(2.8, switch_0={**full, "apower": {"value": 15.5}}),  # refused whole
        notify(2.9, switch_0={**full, "aenergy": 1200}),
        notify(3.0, switch_0={"id": 0, "apower": 12.5}),  # Shelly sends what changed
        notify(4.0, switch_0={"id": 0, "apower": 13.0, "current": 0.06}),
        notify(5.0, switch_0={"id": 0, "output": False, "apower": 0}),
        notify(6.0, switch_1={"id": 1, "output": True}),  # another channel
        notify(7.0, switch_0={"id": 0, "apower": "bad"}),  # refused whole
        notify(8.0, switch_0={"id": 0, "apower": 0}, switch_1={"id": 1, "output": True}),
        notify(9.0, switch_0={"id": 0, "aenergy": {"total": 1500}}),
        sensor("2022-01-11T21:58:48", Power=8, Current=0.04, Today=0.028),
        sensor("2022-01-11T21:58:48", Power=8, Current=0.04, Today=0.028),
        (f"tele/{tasmota}/LWT", "Offline"),
        sensor("2022-01-11T21:58:48", Power=8, Current=0.04, Today=0.028),  # while offline
        sensor("2022-01-11T21:59:08", Power=9, Current=0.04, Today=0.028),
        (f"tele/{tasmota}/LWT", "Online"),
        sensor("2022-01-11T21:59:18", Power=9, Current=0.04, Today=0.028),
        sensor("2022-01-11T21:59:28", Power=10, Current=0.05, Today=0.029),
        sensor("2022-01-11T21:59:38", Power=11, Current=0.05, Today=0.029),  # by its shape
        # A sensor block appears beside the meter, then a plain member becomes an object that
        # a "{sensor}.Temperature" mapping reads: new readings, never the old shape's.
        (f"tele/{tasmota}/SENSOR", {**energy, "AM2301": {"Temperature": 21.5, "Humidity": 40}}),
        (f"tele/{tasmota}/SENSOR", {**energy, "AM2301": {"Temperature": 21.7, "Humidity": 40}}),
        (f"tele/{tasmota}/SENSOR", {**energy, "AM2301": {"Temperature": 21.7, "Humidity": 41}}),
        (f"tele/{tasmota}/SENSOR", {**energy, "Time": {"Temperature": 5}}),
        (f"tele/{tasmota}/STATE", state),
        (f"tele/{tasmota}/STATE", state),
        (f"stat/{tasmota}/RESULT", {"POWER": "ON"}),  # switched on at the device
        (f"tele/{tasmota}/STATE", state),  # the same telemetry as before: off again
    ]


async def _run(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, *, lanes: bool
) -> tuple[list[Any], int, int, int]:
    tasmota, shelly = unique("plug_"), f"shellyplus1pm-{unique('')}"
    config = write_config(
        tmp_path,
        mqtt_url,
        "    profiles: [tasmota, shelly-gen2]\n"
        f"    tasmota:\n      devices: [{tasmota}]\n      discover: false\n"
        f"    shelly-gen2:\n      devices: [{shelly}]\n",
        name=f"hub-{'lanes' if lanes else 'full'}.yaml",
    )
    hub: Hub = await hub_factory(config)
    await running(hub)
    assert hub.mqtt is not None
    changes: list[tuple[str, Any, Any]] = []
    hub.bus.subscribe(
        StateChanged,
        lambda e: changes.append((e.entity_id, e.old.value if e.old else None, e.new.value)),
        owner="test",
    )
    taken = repeated = by_shape = 0
    original = firmware_adapter.FirmwareProfiles._via_lane
    original_replay = RepeatMemo.replay
    original_shape_read = Shape.read

    def counting_shapes(self: Any, data: Any) -> Any:
        nonlocal by_shape
        read = original_shape_read(self, data)
        by_shape += read is not None
        return read

    def counting_repeats(self: Any, *args: Any) -> bool:
        nonlocal repeated
        went = original_replay(self, *args)
        repeated += went
        return went

    def counting(self: Any, *args: Any) -> bool:
        nonlocal taken
        went = original(self, *args) if lanes else False  # the full way for everything
        taken += went
        return went

    steps: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(firmware_adapter.FirmwareProfiles, "_via_lane", counting)
        patch.setattr(RepeatMemo, "replay", counting_repeats)
        patch.setattr(Shape, "read", counting_shapes)
        if not lanes:
            patch.setattr(firmware_adapter.FirmwareProfiles, "_keep_lane", lambda *args: None)
        for topic, body in _script(tasmota, shelly):
            payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            changes.clear()
            reported_before = {e: s.last_reported for e, s in hub.registry.states.items()}
            # The dispatcher the broker's messages reach, so every step is handled in full.
            hub.mqtt._dispatch(topic, payload)

            def plain(text: str) -> str:
                return text.replace(tasmota, "<tasmota>").replace(shelly, "<shelly>")

            steps.append(
                (
                    plain(topic),
                    sorted((plain(e), old, new) for e, old, new in changes),
                    sorted(
                        (plain(entity_id), s.value, sorted(s.attributes.items()))
                        for entity_id, s in hub.registry.states.items()
                    ),
                    sorted(
                        (plain(d.id), d.available)
                        for d in hub.registry.devices.values()
                        if d.owner == "firmware"
                    ),
                    dict(hub.stats.rejected_by_reason),
                    # Repeats too: the same entities were seen reporting.
                    sorted(
                        plain(e)
                        for e, s in hub.registry.states.items()
                        if s.last_reported != reported_before.get(e)
                    ),
                )
            )
    return steps, taken, repeated, by_shape


async def test_lanes_give_the_same_states_changes_and_rejections_as_the_full_way(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    with_lanes, taken, repeated, by_shape = await _run(tmp_path, mqtt_url, hub_factory, lanes=True)
    without, none_taken, none_repeated, none_by_shape = await _run(
        tmp_path, mqtt_url, hub_factory, lanes=False
    )
    assert none_taken == none_repeated == none_by_shape == 0
    assert taken >= 10  # most telemetry after the first of its shape went through a lane
    assert repeated >= 4  # the same bytes again after a lane read them as repeats only
    assert by_shape >= 6  # and most of it was read by its shape, without the decode plan
    for index, (fast, full) in enumerate(zip(with_lanes, without, strict=True)):
        assert fast == full, f"step {index} ({full[0]}) differs"
    # The script did what it says: values changed, bad values were refused.
    assert without[-1][4].get("wrong_type") == 3
    assert ("<tasmota>.power", 9, 10) in without[-10][1]
    assert ("<tasmota>.power", 10, 11) in without[-9][1]
    assert ("<tasmota>.am2301_temperature", 21.5, 21.7) in without[-7][1]
    assert without[-1][1] == [("<tasmota>.relay", "on", "off")]


async def test_telemetry_that_keeps_changing_shape_stops_costing_shape_builds(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    # A device that sends a different set of fields every time (a Shelly reports only what
    # changed) never matches a kept shape: after a bounded number of tries its messages go
    # the decode plan's way without a shape being built each time, and still read right.
    shelly = f"shellyplus1pm-{unique('')}"
    config = write_config(
        tmp_path,
        mqtt_url,
        f"    profiles: [shelly-gen2]\n    shelly-gen2:\n      devices: [{shelly}]\n",
    )
    hub: Hub = await hub_factory(config)
    await running(hub)
    assert hub.mqtt is not None
    builds = 0
    original = firmware_adapter.build_shape

    def counting(*args: Any) -> Any:
        nonlocal builds
        builds += 1
        return original(*args)

    fields = ["apower", "voltage", "current", "freq", "pf"]
    last_power = 0.0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(firmware_adapter, "build_shape", counting)
        hub.mqtt._dispatch(f"{shelly}/online", b"true")
        for number in range(60):
            # Every message another subset of the fields, in another order.
            chosen = [f for bit, f in enumerate(fields) if (number + 1) >> bit & 1] or ["apower"]
            chosen = chosen[number % len(chosen) :] + chosen[: number % len(chosen)]
            switch = {"id": 0, **dict.fromkeys(chosen, 100.0 + number)}
            if "apower" in chosen:
                last_power = 100.0 + number
            body = {
                "src": shelly,
                "method": "NotifyStatus",
                "params": {"ts": number, "switch:0": switch},
            }
            hub.mqtt._dispatch(f"{shelly}/events/rpc", json.dumps(body).encode())
    assert 1 <= builds <= 20, f"{builds} shapes built for 60 messages"
    device = next(d for d in hub.registry.devices.values() if d.owner == "firmware")
    assert hub.registry.states[f"{device.id}.power_0"].value == last_power
