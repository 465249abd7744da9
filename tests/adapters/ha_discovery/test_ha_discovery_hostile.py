"""Malformed and hostile discovery traffic is rejected, counted, and never changes a state."""

from __future__ import annotations

import json

from conftest import StartHub
from hadisc_support import (
    adapter_running,
    eventually,
    fixture,
    publish,
    publish_configs,
    rejected,
    settle,
    state,
)
from mqttprobe import MqttProbe

from hub.core import Hub

GOOD_SENSOR = {"name": "t", "state_topic": "lab/t/state", "unit_of_measurement": "°C"}


def adapter_healthy(hub: Hub) -> bool:
    """The adapter is running and was never restarted (nothing crashed it)."""
    (status,) = [s for s in hub.plugins.status.values() if s.name == "ha_discovery"]  # type: ignore[union-attr]
    return status.state == "running" and status.restarts == 0


async def test_bad_configs_are_rejected_and_counted(start_hub: StartHub, device: MqttProbe) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    cases = [
        # (config topic, payload, rejection kind)
        ("homeassistant/sensor/nostate/config", {"name": "no state topic"}, "missing_topic"),
        (
            "homeassistant/binary_sensor/nostate/config",
            {"name": "x", "device_class": "motion"},
            "missing_topic",
        ),
        ("homeassistant/switch/nocmd/config", {"name": "x", "state_topic": "a/b"}, "missing_topic"),
        ("homeassistant/teleporter/x/config", GOOD_SENSOR, "unknown_component"),
        ("homeassistant/sensor/badjson/config", '{"name": "x", "state_topic": ', "not_json"),
        ("homeassistant/sensor/array/config", [1, 2, 3], "bad_config"),
        ("homeassistant/sensor/wild/config", {"state_topic": "lab/+/state"}, "bad_topic"),
        ("homeassistant/sensor/deep/config", {"state_topic": "lab/#"}, "bad_topic"),
        ("homeassistant/sensor/dots/config", {"state_topic": "lab/../etc"}, "bad_topic"),
        ("homeassistant/sensor/numtopic/config", {"state_topic": 42}, "bad_topic"),
        ("homeassistant/sensor/qos/config", {**GOOD_SENSOR, "qos": "high"}, "bad_config"),
        ("homeassistant/sensor/name/config", {**GOOD_SENSOR, "name": 7}, "bad_config"),
        (
            "homeassistant/sensor/tpl/config",
            {**GOOD_SENSOR, "value_template": "{{ value | evil }}"},
            "bad_config",
        ),
        (
            "homeassistant/sensor/loop/config",
            {**GOOD_SENSOR, "value_template": "{% for x in value %}{% endfor %}"},
            "bad_config",
        ),
        (
            "homeassistant/sensor/dunder/config",
            {**GOOD_SENSOR, "value_template": "{{ value.__class__.__mro__ }}"},
            None,
        ),
        ("homeassistant/sensor/tilde/config", {"~": 5, "stat_t": "~/x"}, "bad_config"),
        (
            "homeassistant/sensor/avty/config",
            {**GOOD_SENSOR, "availability_topic": "a", "availability": [{"topic": "b"}]},
            "bad_config",
        ),
        (
            "homeassistant/device/nodev/config",
            {"cmps": {"a": {"p": "sensor", "state_topic": "x"}}},
            "bad_config",
        ),
        (
            "homeassistant/device/halfbad/config",
            {
                "dev": {"ids": "halfbad"},
                "cmps": {
                    "a": {"p": "sensor", "state_topic": "x"},
                    "b": {"p": "sensor"},
                    "c": {"p": "switch", "name": "c"},
                },
            },
            "missing_topic",
        ),
    ]
    for topic, payload, kind in cases:
        before = rejected(hub, kind) if kind else 0
        await publish(device, topic, payload if isinstance(payload, str) else json.dumps(payload))
        if kind is not None:
            await eventually(
                lambda k=kind, b=before: rejected(hub, k) > b, message=f"{topic}: no {kind}"
            )
    # Valid configs of platforms the adapter does not map are ignored, not counted as errors
    # (a Zigbee2MQTT network publishes many device_automation and update configs).
    total = hub.stats.rejected
    await publish(device, "homeassistant/vacuum/x/config", json.dumps(GOOD_SENSOR))
    await publish(
        device,
        "homeassistant/light/tpl/config",
        json.dumps({"schema": "template", "command_topic": "a"}),
    )
    # None of them made a device; the harmless template evaluated to nothing but was accepted.
    await eventually(lambda: "dunder" in hub.registry.devices)
    assert set(hub.registry.devices) == {"dunder"}
    assert hub.stats.rejected == total
    # A topic with a '..' level or characters outside [A-Za-z0-9_-] is not a discovery topic.
    before = rejected(hub, "bad_topic")
    await publish(device, "homeassistant/sensor/../config", json.dumps(GOOD_SENSOR))
    await publish(device, "homeassistant/sensor/bad id!/config", json.dumps(GOOD_SENSOR))
    await eventually(lambda: rejected(hub, "bad_topic") == before + 2)
    assert adapter_healthy(hub)


async def test_commands_may_not_target_the_hubs_own_topics(
    start_hub: StartHub, device: MqttProbe
) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    # A "switch" whose ON payload is a hub command: turning it on must not unlock anything.
    unlock = json.dumps({"target": "front_door", "action": "unlock"})
    hostile = [
        {"name": "x", "cmd_t": f"{hub.base_topic}/command", "pl_on": unlock},
        {"name": "x", "cmd_t": f"{hub.base_topic}/devices/lock/set"},
        {"name": "x", "cmd_t": "homeassistant/lock/front/config", "ret": True},
        {"name": "x", "cmd_t": "homeassistant/status", "pl_on": "offline"},
    ]
    for index, config in enumerate(hostile):
        await publish(device, f"homeassistant/switch/evil{index}/config", json.dumps(config))
    await eventually(lambda: rejected(hub, "bad_topic") == len(hostile))
    assert not hub.registry.devices
    assert adapter_healthy(hub)


async def test_one_megabyte_payloads(start_hub: StartHub, device: MqttProbe) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    huge = json.dumps({**GOOD_SENSOR, "junk": "x" * 1_000_000})
    await publish(device, "homeassistant/sensor/huge/config", huge)
    await eventually(lambda: rejected(hub, "too_large") == 1)
    assert "huge" not in hub.registry.devices
    await publish(device, "homeassistant/sensor/lab/config", json.dumps(GOOD_SENSOR))
    await eventually(lambda: "lab.lab" in hub.registry.entities)
    await settle()
    await publish(device, "lab/t/state", "21.5")
    await eventually(lambda: state(hub, "lab.lab") == 21.5)
    await publish(device, "lab/t/state", "9" * 1_000_000)
    await eventually(lambda: rejected(hub, "too_large") == 2)
    assert state(hub, "lab.lab") == 21.5
    assert adapter_healthy(hub)


async def test_bad_states_change_nothing(start_hub: StartHub, device: MqttProbe) -> None:
    example = fixture("ha_docs")["examples"]["sensors_sharing_a_topic"]
    garden = fixture("ha_docs")["examples"]["motion_binary_sensor"]
    hub = await start_hub()
    await adapter_running(hub)
    await publish_configs(device, [*example["configs"], garden])
    temperature, humidity = "sensorbedroomt.sensorbedroomt", "sensorbedroomh.sensorbedroomh"
    await eventually(lambda: {temperature, humidity, "garden.garden"} <= set(hub.registry.entities))
    await settle()
    await publish(device, example["state_topic"], {"temperature": 20.5, "humidity": 40})
    await eventually(lambda: state(hub, humidity) == 40)
    topic = example["state_topic"]
    bad = [
        ("not JSON at all", "not_json"),  # the templates read value_json
        ({"temperature": "hot", "humidity": 55}, "bad_state"),  # one bad part: nothing applied
        ({"temperature": [1, 2], "humidity": 55}, "bad_state"),
        ({"temperature": 1e400, "humidity": 55}, "not_json"),  # orjson refuses infinities
        (b"\xff\xfe\x00garbage", "not_text"),
    ]
    for payload, kind in bad:
        before = rejected(hub, kind)
        data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        await publish(device, topic, data)
        await eventually(
            lambda k=kind, b=before: rejected(hub, k) > b, message=f"{payload!r}: no {kind}"
        )
    assert (state(hub, temperature), state(hub, humidity)) == (20.5, 40)
    # A binary sensor payload that is neither payload_on nor payload_off.
    before = rejected(hub, "bad_state")
    await publish(device, garden["state_topic"], "MAYBE")
    await eventually(lambda: rejected(hub, "bad_state") > before)
    assert state(hub, "garden.garden") is None
    # The rejections reach the bus too (hub/events/payload_rejected on MQTT).
    assert adapter_healthy(hub)
    # Good traffic still flows.
    await publish(device, topic, {"temperature": 19, "humidity": 41})
    await eventually(lambda: state(hub, temperature) == 19)


async def test_bad_update_keeps_the_working_config(start_hub: StartHub, device: MqttProbe) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    await publish(device, "homeassistant/sensor/lab/config", json.dumps(GOOD_SENSOR), retain=True)
    await eventually(lambda: "lab.lab" in hub.registry.entities)
    broken = {**GOOD_SENSOR, "state_topic": "lab/#"}
    await publish(device, "homeassistant/sensor/lab/config", json.dumps(broken), retain=True)
    await eventually(lambda: rejected(hub, "bad_topic") == 1)
    await settle()
    await publish(device, "lab/t/state", "18")
    await eventually(lambda: state(hub, "lab.lab") == 18)


async def test_template_errors_at_run_time(start_hub: StartHub, device: MqttProbe) -> None:
    hub = await start_hub()
    await adapter_running(hub)
    config = {**GOOD_SENSOR, "value_template": "{{ value | float * 2 }}"}
    await publish(device, "homeassistant/sensor/lab/config", json.dumps(config), retain=True)
    await eventually(lambda: "lab.lab" in hub.registry.entities)
    await settle()
    await publish(device, "lab/t/state", "10.25")
    await eventually(lambda: state(hub, "lab.lab") == 20.5)
    await publish(device, "lab/t/state", "n/a")  # float without a default fails, as in HA
    await eventually(lambda: rejected(hub, "bad_state") == 1)
    assert state(hub, "lab.lab") == 20.5
