"""The planned decode (adapters/firmware/decode.py) reads exactly what walking the profile reads.

The plan matches groups that share literal keys in one pass over the object's keys and
remembers entity keys; these tests hold it to the plain reading of the profile: every group
in order, every path with ``find``, every condition checked.
"""

from __future__ import annotations

from typing import Any

import pytest

from adapters.firmware.decode import DecodePlan, bind_conditions
from adapters.firmware.paths import Bindings
from adapters.firmware.profile import BUNDLED_DIR, Rule, load_profile


def walk(rule: Rule, data: Any, bindings: Bindings) -> list[tuple[str, Any, Bindings]]:
    """The reference: each group in order, each node ``at`` reaches, each mapping's ``find``."""
    out: list[tuple[str, Any, Bindings]] = []
    for group in rule.decode:
        for node, found in group.at.find(data, bindings):
            at_bindings = bind_conditions(group.when, node, found)
            if at_bindings is None:
                continue
            for fmap in group.maps:
                for value, map_bindings in fmap.path.find(node, at_bindings):
                    out.append((fmap.where, value, map_bindings))
    return out


def planned(rule: Rule, data: Any, bindings: Bindings) -> list[tuple[str, Any, Bindings]]:
    """What the plan reads, in the same form."""
    return [(plan.fmap.where, value, b) for plan, value, b in rule.plan.readings(data, bindings)]


def rule_named(profile: str, name: str) -> Rule:
    """One rule of a bundled profile."""
    loaded = load_profile(BUNDLED_DIR / f"{profile}.yaml")
    return next(rule for rule in loaded.rules if rule.name == name)


SWITCH = {"id": 0, "output": True, "apower": 12.5, "voltage": 230.1, "current": 0.05}
FULL_STATUS = {
    "src": "shellypro4pm-1",
    "method": "NotifyFullStatus",
    "params": {
        "ts": 1700000000.5,
        "switch:0": {**SWITCH, "aenergy": {"total": 1234.5}, "temperature": {"tC": 41.0}},
        "input:3": {"id": 3, "state": False},
        "switch:1": {**SWITCH, "id": 1, "output": False},
        "pm1:0": {"id": 0, "apower": 3.0, "voltage": 229.0},
        "humidity:0": {"id": 0, "rh": 55},
        "devicepower:0": {"id": 0, "battery": {"percent": 80}},
        "temperature:0": {"id": 0, "tC": 21.5},
        "sys": {"mac": "A8032AB12345"},
        "switch:x": {"output": True},  # not a channel: no group takes it
    },
}


@pytest.mark.parametrize(
    ("profile", "rule", "data", "bindings"),
    [
        ("shelly-gen2", "notify-full-status", FULL_STATUS, {"prefix": "shellypro4pm-1"}),
        # A channel the topic already named: other channels are not this message's.
        ("shelly-gen2", "switch-status", SWITCH, {"prefix": "p", "channel": 0}),
        (
            "shelly-gen2",
            "notify-event",
            {
                "params": {
                    "events": [
                        {"component": "input:0", "event": "single_push"},
                        {"component": "switch:0", "event": "toggle"},
                        {"component": "input:2", "event": "long_push"},
                    ]
                }
            },
            {"prefix": "p"},
        ),
        (
            "tasmota",
            "sensor",
            {
                "Time": "2024-01-01T00:00:00",
                "ENERGY": {"Power": [12, 0], "Total": 1.5, "Voltage": 230},
                "AM2301": {"Temperature": 24.6, "Humidity": 58.2},
                "BME280": {"Temperature": 21.0, "Pressure": 1013.2},
                "TempUnit": "C",
            },
            {"topic": "plug", "temp_unit": "C"},
        ),
        # Members of every kind beside the sensors: only objects holding the keys are read.
        (
            "tasmota",
            "sensor",
            {
                "Time": "2024-01-01T00:00:00",
                "SI7021": {"Humidity": 40.0, "Temperature": {"nested": 1}},
                "Switch1": "ON",
                "ANALOG": {"A0": 512},
                "DS18B20": [{"Temperature": 20.0}],
                "ENERGY": "broken",
                "TempUnit": "C",
            },
            {"topic": "th", "temp_unit": "C"},
        ),
        # A sensor the topic variables already name: other sensors are not this message's.
        (
            "tasmota",
            "sensor",
            {"AM2301": {"Temperature": 24.6}, "BME280": {"Temperature": 21.0}},
            {"topic": "th", "temp_unit": "C", "sensor": "BME280"},
        ),
        (
            "tasmota",
            "status11",
            {"StatusSTS": {"POWER1": "ON", "POWER2": "OFF", "Dimmer": 40, "Wifi": {"Signal": -60}}},
            {"topic": "plug"},
        ),
    ],
)
def test_the_plan_reads_what_the_profile_says_in_its_order(
    profile: str, rule: str, data: Any, bindings: Bindings
) -> None:
    """Same readings, same variables, same order as the plain walk (order decides which of
    two readings of one entity wins)."""
    compiled = rule_named(profile, rule)
    expected = walk(compiled, data, bindings)
    assert expected, "the example should decode to something"
    assert planned(compiled, data, bindings) == expected
    # Again: what the plan remembers from the first message does not change the second.
    assert planned(compiled, data, bindings) == expected


def test_a_channel_bound_by_the_topic_keeps_other_channels_out() -> None:
    """notify-full-status under a topic that named channel 1 reads only switch:1."""
    compiled = rule_named("shelly-gen2", "notify-full-status")
    readings = planned(compiled, FULL_STATUS, {"prefix": "p", "channel": 1})
    assert readings == walk(compiled, FULL_STATUS, {"prefix": "p", "channel": 1})
    assert {b["channel"] for _, _, b in readings} == {1}


def test_the_plan_remembers_a_bounded_number_of_keys() -> None:
    """A device inventing a new key in every message does not grow the adapter's memory."""
    compiled = rule_named("shelly-gen2", "notify-status")
    plan: DecodePlan = compiled.plan
    for n in range(5000):
        data = {"params": {f"switch:{n}": {"output": True}, f"junk{n}": 1}}
        readings = planned(compiled, data, {"prefix": "p"})
        assert readings == [(readings[0][0], True, {"prefix": "p", "channel": n})]
    memos = [len(fan._memo) for fan in plan._fans]
    memos += [len(pattern.memo) for fan in plan._fans for _, pattern in fan._members]
    assert memos
    assert max(memos) <= 1024
