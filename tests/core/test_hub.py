"""The hub end to end: config -> start -> MQTT in -> assert MQTT out and stored state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hubtest import HubFactory, eventually, write_config
from mqttprobe import MqttProbe

from hub.commands import Command, CommandError
from hub.core import Hub
from hub.events import StateChanged
from hub.model import Context, Origin
from hub.simulator import Simulator, build_home

PLUG_CONFIG = {
    "name": "Test plug",
    "area": "kitchen",
    "entities": {
        "switch": {"kind": "switch"},
        "power": {"kind": "sensor", "unit": "W", "device_class": "power"},
        "energy": {"kind": "energy_meter", "unit": "kWh"},
    },
}


def prefixes(hub: Hub) -> tuple[str, str]:
    return hub.config.hub.device_topic, hub.base_topic


async def announce_plug(hub: Hub, probe: MqttProbe, device_id: str = "plug1") -> None:
    dev, _ = prefixes(hub)
    await asyncio.to_thread(probe.publish, f"{dev}/{device_id}/config", PLUG_CONFIG, 1, True)
    await asyncio.to_thread(probe.publish, f"{dev}/{device_id}/availability", "online", 1, True)
    await eventually(
        lambda: device_id in hub.registry.devices and hub.registry.devices[device_id].available
    )


async def test_native_device_is_registered_and_its_state_is_mirrored(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    dev, base = prefixes(hub)
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.subscribe, f"{base}/devices/plug1/#")
        await announce_plug(hub, probe)
        await asyncio.to_thread(
            probe.publish, f"{dev}/plug1/state", {"switch": "on", "power": 12.5, "energy": 1.25}
        )
        await eventually(lambda: "plug1.power" in hub.registry.states)
        assert hub.registry.states["plug1.power"].value == 12.5
        assert hub.registry.states["plug1.switch"].value == "on"
        _, payload = await asyncio.to_thread(
            probe.wait_for,
            f"{base}/devices/plug1/state",
            lambda p: b'"power"' in p,
        )
        body = json.loads(payload)
        assert body["available"] is True
        assert body["entities"]["power"]["state"] == 12.5
        assert body["entities"]["switch"]["cause"] == "device plug1"
        _, config = await asyncio.to_thread(probe.wait_for, f"{base}/devices/plug1/config")
        assert {e["id"] for e in json.loads(config)["entities"]} == {
            "plug1.switch",
            "plug1.power",
            "plug1.energy",
        }


async def test_hub_status_is_online_retained_and_offline_after_stop(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    _, base = prefixes(hub)
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.subscribe, f"{base}/status")
        await asyncio.to_thread(probe.wait_for, f"{base}/status", lambda p: p == b"online")
        await hub.stop()
        await asyncio.to_thread(probe.wait_for, f"{base}/status", lambda p: p == b"offline")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json at all", "not_json"),
        (b"\x00\xff\xfe binary", "not_json"),
        (b'["a", "list"]', "wrong_type"),
        (b'{"power": "lots"}', "wrong_type"),
        (b'{"switch": 42}', "wrong_type"),
        (b'{"power": 5, "switch": "maybe"}', "wrong_type"),
        (b'{"power": NaN}', "not_json"),
        (b'{"nosuch": 1}', "unknown_entity"),
        (b'{"power": {"state": 3, "brightness": "x"}}', "wrong_type"),
        (b'{"power": ' + b"1" * 70000 + b"}", "too_large"),
    ],
)
async def test_malformed_payloads_are_counted_and_never_change_state(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, payload: bytes, reason: str
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    dev, _ = prefixes(hub)
    with MqttProbe(mqtt_url) as probe:
        await announce_plug(hub, probe)
        await asyncio.to_thread(
            probe.publish, f"{dev}/plug1/state", {"switch": "off", "power": 1.0}
        )
        await eventually(lambda: "plug1.power" in hub.registry.states)
        before = dict(hub.registry.states)
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", payload)
        await eventually(lambda: hub.stats.rejected >= 1, message="the bad payload was not counted")
        assert hub.stats.rejected_by_reason.get(reason) == 1, hub.stats.rejected_by_reason
        # A good message afterwards still works: the hub did not stall or crash.
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", {"power": 2.0})
        await eventually(lambda: hub.registry.states["plug1.power"].value == 2.0)
        assert hub.registry.states["plug1.switch"] == before["plug1.switch"]


async def test_state_for_unknown_device_and_bad_config_are_rejected(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    dev, _ = prefixes(hub)
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.publish, f"{dev}/ghost/state", {"power": 1})
        await asyncio.to_thread(
            probe.publish, f"{dev}/bad/config", {"entities": {"x": {"kind": "toaster"}}}
        )
        await asyncio.to_thread(probe.publish, f"{dev}/BAD..ID/state", {"power": 1})
        await eventually(lambda: hub.stats.rejected >= 3)
    assert hub.stats.rejected_by_reason == {"unknown_device": 1, "bad_config": 1, "bad_topic": 1}
    assert "bad" not in hub.registry.devices


async def _start_sim(url: str, prefix: str, count: int = 36) -> Simulator:
    sim = Simulator(url, build_home(count, seed=1), rate=1.0, prefix=prefix)
    await asyncio.to_thread(sim.start)
    return sim


async def test_command_is_confirmed_and_state_remembers_who_caused_it(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    dev, _ = prefixes(hub)
    sim = await _start_sim(mqtt_url, dev)
    try:
        await eventually(lambda: "kitchen_light.light" in hub.registry.states, 10)
        alice = Context(Origin.PERSON, "alice", via="discord")
        results = await hub.commands.execute(
            Command("kitchen_light.light", "turn_on", alice, {"brightness": 77})
        )
        assert [r.ok for r in results] == [True], results
        state = hub.registry.states["kitchen_light.light"]
        assert state.value == "on"
        assert state.attributes["brightness"] == 77
        chain = [c.describe() for c in state.context.chain()]
        assert chain == ["device kitchen_light", "person alice via discord"]
        # the audit table has the command with its context
        await hub.storage.flush()  # type: ignore[union-attr]
        audit = await hub.storage.audit(target="kitchen_light.light")  # type: ignore[union-attr]
        assert {a.result for a in audit} >= {"issued", "confirmed"}
        assert any(a.context is not None and a.context.source == "alice" for a in audit)
    finally:
        await asyncio.to_thread(sim.stop)


async def test_command_over_mqtt_topic_with_request_id(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    dev, base = prefixes(hub)
    sim = await _start_sim(mqtt_url, dev)
    try:
        await eventually(lambda: "kitchen_plug.switch" in hub.registry.states, 10)
        with MqttProbe(mqtt_url) as probe:
            await asyncio.to_thread(probe.subscribe, f"{base}/events/#")
            await asyncio.to_thread(
                probe.publish,
                f"{base}/devices/kitchen_plug/set",
                {"entity": "switch", "action": "turn_off", "id": "req-1"},
                1,
            )
            _, payload = await asyncio.to_thread(probe.wait_for, f"{base}/events/command_confirmed")
            assert json.loads(payload)["request_id"] == "req-1"
            assert hub.registry.states["kitchen_plug.switch"].value == "off"
            # a command the entity cannot do gets a clear refusal on the event stream
            await asyncio.to_thread(
                probe.publish,
                f"{base}/devices/kitchen_plug/set",
                {"entity": "power", "action": "turn_on", "id": "req-2"},
                1,
            )
            _, payload = await asyncio.to_thread(probe.wait_for, f"{base}/events/command_failed")
            failed = json.loads(payload)
            assert failed["request_id"] == "req-2"
            assert "is a sensor and cannot turn_on" in failed["reason"]
    finally:
        await asyncio.to_thread(sim.stop)


async def test_area_and_group_commands_fan_out(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    extra = (
        "areas:\n  - {id: kitchen, name: Kitchen}\n  - {id: living_room, name: Living room}\n"
        "groups:\n  - id: two_lights\n    name: Two lights\n"
        "    members: [kitchen_light, living_room_light]\n"
    )
    hub = await hub_factory(write_config(tmp_path, mqtt_url, extra))
    dev, _ = prefixes(hub)
    sim = await _start_sim(mqtt_url, dev)
    try:
        await eventually(lambda: "living_room_light.light" in hub.registry.states, 10)
        cli = Context(Origin.CLI, "test")
        results = await hub.commands.execute(Command("group:two_lights", "turn_off", cli))
        assert sorted(r.entity_id for r in results if r.ok) == [
            "kitchen_light.light",
            "living_room_light.light",
        ]
        assert hub.registry.group_state("two_lights") == "off"
        results = await hub.commands.execute(Command("area:kitchen", "turn_on", cli))
        assert results
        assert all(r.ok for r in results), results
        kitchen = {r.entity_id for r in results}
        assert "kitchen_light.light" in kitchen
        assert all(hub.registry.entities[e].device_id.startswith("kitchen") for e in kitchen)
        assert hub.registry.group_state("two_lights") == "on"
    finally:
        await asyncio.to_thread(sim.stop)


async def test_unknown_target_and_bad_parameters_fail_before_sending(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    with MqttProbe(mqtt_url) as probe:
        await announce_plug(hub, probe)
    cli = Context(Origin.CLI, "test")
    with pytest.raises(CommandError, match="no entity, device, group or area is called 'nope'"):
        hub.commands.issue(Command("nope", "turn_on", cli))
    with pytest.raises(CommandError, match="unknown parameter"):
        hub.commands.issue(Command("plug1.switch", "turn_on", cli, {"colour": "red"}))
    with pytest.raises(CommandError, match="between 0 and 255"):
        hub.commands.issue(Command("plug1.switch", "turn_on", cli, {"brightness": 999}))


async def test_command_to_silent_device_fails_after_timeout_with_reason(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    with MqttProbe(mqtt_url) as probe:
        await announce_plug(hub, probe)  # nobody answers commands for this device
    results = await hub.commands.execute(
        Command("plug1.switch", "turn_on", Context(Origin.CLI, "t")), timeout=0.5
    )
    assert not results[0].ok
    assert "plug1.switch did not report the expected state within 0.5 s" in results[0].reason


async def test_a_repeated_report_is_not_a_state_change(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    # Periodic telemetry repeats most readings; only what changed is announced and recorded,
    # while last_reported shows the device is still reporting (Home Assistant's model).
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    dev, _ = prefixes(hub)
    changes: list[StateChanged] = []
    hub.bus.subscribe(StateChanged, changes.append, owner="test")
    with MqttProbe(mqtt_url) as probe:
        await announce_plug(hub, probe)
        await asyncio.to_thread(
            probe.publish, f"{dev}/plug1/state", {"switch": "on", "power": 33.0}
        )
        await eventually(lambda: "plug1.power" in hub.registry.states)
        first = hub.registry.states["plug1.power"]
        first_switch = hub.registry.states["plug1.switch"]
        changes.clear()
        reports = hub.stats.reports
        await asyncio.sleep(0.05)
        await asyncio.to_thread(
            probe.publish, f"{dev}/plug1/state", {"switch": "on", "power": 34.5}
        )
        await eventually(lambda: hub.stats.reports == reports + 2)
    # Only the power changed: one StateChanged, the switch's repeat moved last_reported only.
    assert [event.entity_id for event in changes] == ["plug1.power"]
    switch = hub.registry.states["plug1.switch"]
    power = hub.registry.states["plug1.power"]
    assert switch.last_reported > switch.last_updated
    assert switch.to_dict()["last_reported"] == switch.last_reported
    assert power.last_updated > first.last_updated
    assert power.last_reported == power.last_updated
    # The switch's repeat is not a new cause either: its context is the first report's.
    assert switch.context.id == first_switch.context.id
    assert switch.last_updated == first_switch.last_updated


async def test_a_repeated_report_that_confirms_a_command_is_announced(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    dev, _ = prefixes(hub)
    with MqttProbe(mqtt_url) as probe:
        await announce_plug(hub, probe)
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", {"switch": "on"})
        await eventually(lambda: "plug1.switch" in hub.registry.states)
        changes: list[StateChanged] = []
        hub.bus.subscribe(StateChanged, changes.append, owner="test")
        alice = Context(Origin.PERSON, "alice", via="discord")
        futures = hub.commands.issue(Command("plug1.switch", "turn_on", alice), timeout=5)
        # The plug was already on: its answer repeats the state, and confirms the command.
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", {"switch": "on"})
        [result] = await asyncio.gather(*futures)
    assert result.ok
    assert [event.entity_id for event in changes] == ["plug1.switch"]
    state = hub.registry.states["plug1.switch"]
    assert [c.describe() for c in state.context.chain()] == [
        "device plug1",
        "person alice via discord",
    ]


async def test_registry_and_last_states_survive_a_restart(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    config = write_config(tmp_path, mqtt_url)
    hub = await hub_factory(config)
    dev, _ = prefixes(hub)
    with MqttProbe(mqtt_url) as probe:
        await announce_plug(hub, probe)
        await asyncio.to_thread(
            probe.publish, f"{dev}/plug1/state", {"switch": "on", "power": 33.0}
        )
        await eventually(lambda: "plug1.power" in hub.registry.states)
    context_id = hub.registry.states["plug1.power"].context.id
    await hub.stop()
    with MqttProbe(mqtt_url) as probe:  # the device has gone: no retained "online" left
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/availability", b"", 1, True)
    again = await hub_factory(config)
    assert again.registry.devices["plug1"].name == "Test plug"
    assert again.registry.states["plug1.power"].value == 33.0
    assert again.registry.states["plug1.power"].context.id == context_id
    assert again.registry.devices["plug1"].available is False  # until it says otherwise


async def test_broker_restart_mid_command_stream_loses_no_command(
    tmp_path: Path, fresh_mosquitto: Any, hub_factory: HubFactory
) -> None:
    url = fresh_mosquitto.url
    hub = await hub_factory(write_config(tmp_path, url))
    dev, base = prefixes(hub)
    sim = await _start_sim(url, dev)
    try:
        await eventually(lambda: "office_light.light" in hub.registry.states, 10)
        cli = Context(Origin.CLI, "stream")
        futures = []
        for i in range(40):
            brightness = 10 + i
            futures += hub.commands.issue(
                Command("office_light.light", "turn_on", cli, {"brightness": brightness}),
                timeout=20,
            )
            if i == 15:
                await asyncio.to_thread(fresh_mosquitto.stop_sync)
            if i == 25:
                await asyncio.to_thread(fresh_mosquitto.start_sync)
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*futures)
        failed = [r for r in results if not r.ok]
        assert not failed, failed[:3]
        # Each command was confirmed by the device, or settled by a newer one to the same
        # light (last command wins); the newest one was confirmed itself.
        assert results[-1].superseded_by is None
        # Commands well before the outage (at least 250 ms) were confirmed by the device
        # itself; the last few before it may still have been in flight when the broker died.
        assert all(r.superseded_by is None for r in results[:10])
        assert hub.registry.states["office_light.light"].attributes["brightness"] == 49
        # after the restart the broker had no retained state: the hub republished it
        with MqttProbe(url) as probe:
            await asyncio.to_thread(probe.subscribe, f"{base}/status")
            await asyncio.to_thread(probe.wait_for, f"{base}/status", lambda p: p == b"online")
            await asyncio.to_thread(probe.subscribe, f"{base}/devices/office_light/state")
            _, payload = await asyncio.to_thread(
                probe.wait_for, f"{base}/devices/office_light/state"
            )
            assert json.loads(payload)["entities"]["light"]["attributes"]["brightness"] == 49
    finally:
        await asyncio.to_thread(sim.stop)


async def test_embedded_broker_starts_when_none_is_configured(
    tmp_path: Path, hub_factory: HubFactory
) -> None:
    hub = await hub_factory(write_config(tmp_path, None))
    assert hub.broker is not None
    assert hub.broker.kind == "mosquitto"
    assert hub.broker.url.startswith("mqtt://127.0.0.1:")
    assert hub.mqtt is not None
    assert hub.mqtt.connected


async def test_same_ingest_and_commands_on_both_brokers(
    tmp_path: Path, any_broker: Any, hub_factory: HubFactory
) -> None:
    """The MQTT suite runs over Mosquitto (MQTT 5) and amqtt (3.1.1 only: the hub falls back)."""
    hub = await hub_factory(write_config(tmp_path, any_broker.url))
    assert hub.mqtt is not None
    assert hub.mqtt.protocol_version == ("5" if any_broker.supports_mqtt5 else "3.1.1")
    dev, _ = prefixes(hub)
    sim = await _start_sim(any_broker.url, dev)
    try:
        await eventually(lambda: "garage_light.light" in hub.registry.states, 10)
        results = await hub.commands.execute(
            Command("garage_light.light", "turn_on", Context(Origin.CLI, "t"), {"brightness": 9})
        )
        assert results[0].ok, results
        assert hub.registry.states["garage_light.light"].attributes["brightness"] == 9
    finally:
        await asyncio.to_thread(sim.stop)


async def test_hub_falls_back_to_the_in_process_broker_without_mosquitto(
    tmp_path: Path, hub_factory: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hub.broker

    monkeypatch.setattr(hub.broker, "mosquitto_binary", lambda: None)
    started = await hub_factory(write_config(tmp_path, None))
    assert started.broker is not None
    assert started.broker.kind == "amqtt"
    assert started.broker.url.startswith("mqtt://127.0.0.1:")
    assert started.mqtt is not None
    assert started.mqtt.protocol_version == "3.1.1"
    dev, _ = prefixes(started)
    # The broker runs on this test's loop: connect the probe from a thread, never block here.
    probe = await asyncio.to_thread(lambda: MqttProbe(started.broker.url).__enter__())  # type: ignore[union-attr]
    try:
        await announce_plug(started, probe)
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", {"power": 7.5})
        await eventually(lambda: "plug1.power" in started.registry.states)
    finally:
        await asyncio.to_thread(probe.close)


def test_killed_hub_is_reported_offline_by_its_last_will(tmp_path: Path, mqtt_url: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    config = write_config(tmp_path, mqtt_url)
    base = next(
        line.split(":", 1)[1].strip()
        for line in config.read_text().splitlines()
        if line.strip().startswith("base_topic:")
    )
    with MqttProbe(mqtt_url) as probe:
        probe.subscribe(f"{base}/status")
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "run", "--config", str(config)],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        try:
            probe.wait_for(f"{base}/status", lambda p: p == b"online", timeout=20)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        # No goodbye was possible: the broker publishes the hub's last will.
        probe.wait_for(f"{base}/status", lambda p: p == b"offline", timeout=60)


def _meter_hub() -> Hub:
    """A hub, not started (the registry and the state path need no broker), with a meter:
    ``meter.power`` (a sensor in W) and ``meter.relay`` (a switch)."""
    from hub.config import HubConfig
    from hub.model import Device, Entity, EntityKind

    hub = Hub(HubConfig())
    hub.register_device(
        Device(id="meter", name="Meter", owner="test"),
        [
            Entity("meter.power", "meter", "power", EntityKind.SENSOR, "Power", unit="W"),
            Entity("meter.relay", "meter", "relay", EntityKind.SWITCH, "Relay"),
        ],
    )
    return hub


def test_a_bare_repeat_skips_checks_only_when_it_is_the_same_value_of_the_same_type() -> None:
    from hub.model import InvalidValue

    hub = _meter_hub()
    hub.report_states([("meter.power", 1, None), ("meter.relay", "ON", None)])
    power = hub.registry.states["meter.power"]
    relay = hub.registry.states["meter.relay"]
    first_reported = power.last_reported
    # True equals 1 but is not a power reading: it is checked (and refused), not a repeat.
    # All or nothing: the good repeat beside it does not move last_reported either.
    with pytest.raises(InvalidValue, match=r"meter\.power"):
        hub.report_states([("meter.relay", "on", None), ("meter.power", True, None)])
    assert hub.registry.states["meter.power"].last_reported == first_reported
    # "ON" is checked again (the stored value is "on"); 1 again is a bare repeat.
    changes: list[StateChanged] = []
    hub.bus.subscribe(StateChanged, changes.append, owner="test")
    hub.report_states([("meter.power", 1, None), ("meter.relay", "ON", None)])
    assert changes == []
    assert hub.registry.states["meter.power"] is power  # the same state, reported again
    assert power.last_reported > first_reported
    assert hub.registry.states["meter.relay"].last_reported > relay.last_updated


async def test_repeats_a_plug_in_found_move_only_last_reported_unless_a_command_awaits_them() -> (
    None
):
    hub = _meter_hub()
    hub.report_states([("meter.power", 5, None), ("meter.relay", "on", None)])
    power = hub.registry.states["meter.power"]
    relay = hub.registry.states["meter.relay"]
    changes: list[StateChanged] = []
    hub.bus.subscribe(StateChanged, changes.append, owner="test")

    # A State that is no longer current is refused, and nothing of the message is applied.
    hub.report_states([("meter.power", 6, None)])
    newer_power = hub.registry.states["meter.power"]
    changes.clear()
    with pytest.raises(KeyError, match=r"meter\.power"):
        hub.report_states([("meter.relay", "off", None)], [power])
    assert hub.registry.states["meter.relay"] is relay
    assert changes == []

    # Current States only move last_reported, beside a real change in the same message.
    before = newer_power.last_reported
    hub.report_states([("meter.relay", "off", None)], [newer_power])
    assert hub.registry.states["meter.power"] is newer_power
    assert newer_power.last_reported > before
    assert [c.entity_id for c in changes] == ["meter.relay"]

    # A command awaiting the entity sees the repeat: it may be the confirmation. The relay is
    # already off, so the next "off" it repeats confirms "turn off", with the command's cause.
    sent: list[str] = []

    class Relays:
        def send_command(self, device: Any, entity: Any, action: str, *args: Any) -> None:
            sent.append(action)

    hub.commands.register_dialect("test", Relays())
    asked = Context(Origin.PERSON, "test")
    [result] = hub.commands.issue(Command("meter.relay", "turn_off", asked), timeout=5)
    assert sent == ["turn_off"]
    assert not result.done()
    changes.clear()
    hub.report_states([], [hub.registry.states["meter.relay"]])
    assert (await result).ok
    assert [c.entity_id for c in changes] == ["meter.relay"]
    assert changes[0].new.context.parent is asked


def test_a_button_state_handed_in_as_a_repeat_is_a_new_press() -> None:
    from hub.model import Device, Entity, EntityKind

    hub = _meter_hub()
    hub.register_device(
        Device(id="remote", name="Remote", owner="test"),
        [Entity("remote.action", "remote", "action", EntityKind.BUTTON, "Action")],
    )
    hub.report_states([("remote.action", "single", None)])
    press = hub.registry.states["remote.action"]
    changes: list[StateChanged] = []
    hub.bus.subscribe(StateChanged, changes.append, owner="test")
    hub.report_states([], [press])
    assert [c.entity_id for c in changes] == ["remote.action"]
    assert hub.registry.states["remote.action"] is not press


def _last_payload(probe: MqttProbe, topic: str) -> bytes | None:
    for message in reversed(list(probe.messages)):
        if message.topic == topic:
            return message.payload
    return None


async def test_the_mirrored_device_state_always_shows_every_entity_as_it_is_now(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    # The mirror keeps each device's body and updates only the entities that changed: after
    # partial reports, a repeat that confirms a command (it moves last_updated and the cause),
    # a first state and a device that registers anew, the retained state must still be the
    # hub's own view of every entity.
    hub = await hub_factory(write_config(tmp_path, mqtt_url))
    dev, base = prefixes(hub)
    topic = f"{base}/devices/plug1/state"

    async def mirrored_matches_the_hub(probe: MqttProbe) -> None:
        def matches() -> bool:
            received = _last_payload(probe, topic)
            if received is None:
                return False
            body = json.loads(received)
            states = {
                entity.key: hub.registry.states[entity.id]
                for entity in hub.registry.entities_of("plug1")
                if entity.id in hub.registry.states
            }
            return body["entities"] == {
                key: {
                    "state": state.value,
                    "attributes": dict(state.attributes),
                    "last_changed": state.last_changed,
                    "last_updated": state.last_updated,
                    "context": state.context.id,
                    "cause": state.context.describe(),
                }
                for key, state in states.items()
            }

        await eventually(matches, 5, "the mirrored state is not the hub's")

    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.subscribe, topic)
        await announce_plug(hub, probe)
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", {"switch": "on"})
        await eventually(lambda: "plug1.switch" in hub.registry.states)
        await mirrored_matches_the_hub(probe)
        # A first state for another entity, then reports that change one entity at a time.
        for body in ({"power": 10.0}, {"power": 11.0}, {"energy": 1.5}, {"power": 12.0}):
            await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", body)
            await mirrored_matches_the_hub(probe)
        # The plug is on already: its answer confirms the command without a new value.
        before = hub.registry.states["plug1.switch"].context.id
        alice = Context(Origin.PERSON, "alice", via="discord")
        futures = hub.commands.issue(Command("plug1.switch", "turn_on", alice), timeout=5)
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", {"switch": "on"})
        await asyncio.gather(*futures)
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", {"power": 13.0})
        await mirrored_matches_the_hub(probe)
        mirrored = json.loads(_last_payload(probe, topic) or b"{}")["entities"]["switch"]
        assert mirrored["context"] != before  # the confirmation's, not the first report's
        # Registered anew with one more entity, which then reports.
        config = {
            **PLUG_CONFIG,
            "entities": {**PLUG_CONFIG["entities"], "voltage": {"kind": "sensor", "unit": "V"}},
        }
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/config", config, 1, True)
        await eventually(lambda: "plug1.voltage" in hub.registry.entities)
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", {"voltage": 230.0})
        await mirrored_matches_the_hub(probe)
        await asyncio.to_thread(probe.publish, f"{dev}/plug1/state", {"power": 14.0})
        await mirrored_matches_the_hub(probe)
