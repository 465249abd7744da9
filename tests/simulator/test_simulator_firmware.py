"""The mixed simulated home (`hub demo`): firmware dialects through the real adapters."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from adapters.zigbee2mqtt.exposes import entity_maps
from hub.commands import Command
from hub.config import load_config
from hub.core import Hub
from hub.model import Context, Origin
from hub.simfirmware import DIALECTS, Request, make_dialects
from hub.simulator import MIXED_DIALECTS, SimDevice, Simulator, build_home

REPO = Path(__file__).resolve().parents[2]
ENTITY_REF = re.compile(r"\b([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\b")


def _by_id(home: list[SimDevice]) -> dict[str, SimDevice]:
    return {d.id: d for d in home}


def test_mixed_home_speaks_every_dialect_and_native_home_does_not() -> None:
    mixed = build_home(200, seed=7, mixed=True)
    assert {d.dialect for d in mixed} == set(DIALECTS)
    assert {d.dialect for d in build_home(200, seed=7)} == {"native"}
    for device in mixed:
        if device.dialect == "zigbee2mqtt":
            assert re.fullmatch(r"0x[0-9a-f]{16}", device.identities["ieee"])
        elif device.dialect != "native":
            assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", device.identities["mac"])
    ieees = [d.identities["ieee"] for d in mixed if d.dialect == "zigbee2mqtt"]
    assert len(set(ieees)) == len(ieees)


def test_zigbee_bridge_list_gives_the_entities_the_adapter_expects() -> None:
    home = [d for d in build_home(36, mixed=True) if d.dialect == "zigbee2mqtt"]
    dialect = make_dialects()["zigbee2mqtt"]
    for device in home:
        dialect.add(device)
    msgs = {m.topic: m for m in dialect.hello()}
    assert msgs["zigbee2mqtt/bridge/state"].payload == b'{"state":"online"}'
    listed = orjson.loads(msgs["zigbee2mqtt/bridge/devices"].payload)
    assert listed[0]["type"] == "Coordinator"
    for entry, device in zip(listed[1:], home, strict=True):
        maps = entity_maps(entry["definition"]["exposes"], device.id)
        for key in device.entities():
            assert dialect.hub_key(device, key) in maps, (device.id, key, sorted(maps))


def _answer(request: Request | None) -> list[tuple[str, Any]]:
    assert request is not None
    update: dict[str, Any] | None = {}
    for command in request.commands:
        applied = request.device.apply_command(command, now=1_700_000_000.0)
        assert applied is not None, command
        assert update is not None
        update.update(applied)
    out = []
    for msg in request.reply(update):
        try:
            out.append((msg.topic, orjson.loads(msg.payload)))
        except orjson.JSONDecodeError:
            out.append((msg.topic, msg.payload.decode()))
    return out


def test_each_dialect_obeys_its_own_commands_and_answers_like_the_firmware() -> None:
    home = _by_id(build_home(36, mixed=True))
    dialects = make_dialects()
    for device in home.values():
        dialects[device.dialect].add(device)

    plug = home["kitchen_plug"]
    answer = _answer(dialects["tasmota"].request("cmnd/kitchen_plug/POWER", b"ON"))
    assert answer == [
        ("stat/kitchen_plug/RESULT", {"POWER": "ON"}),
        ("stat/kitchen_plug/POWER", "ON"),
    ]
    assert plug.initial_state()["switch"] == "on"
    status = _answer(dialects["tasmota"].request("cmnd/kitchen_plug/STATUS", b"10"))
    assert status[0][0] == "stat/kitchen_plug/STATUS10"
    assert set(status[0][1]["StatusSNS"]["ENERGY"]) >= {"Power", "Total", "Voltage", "Current"}

    rpc = orjson.dumps(
        {
            "id": 7,
            "src": "hub/firmware/shelly",
            "method": "Switch.Set",
            "params": {"id": 0, "on": True},
        }
    )
    shelly = _answer(dialects["shelly"].request("garage_light/rpc", rpc))
    assert shelly[0][0] == "hub/firmware/shelly/rpc"
    assert shelly[0][1]["id"] == 7
    assert shelly[0][1]["src"] == "garage_light"
    assert "was_on" in shelly[0][1]["result"]
    topic, notify = shelly[1]
    assert topic == "garage_light/events/rpc"
    assert notify["method"] == "NotifyStatus"
    assert notify["params"]["switch:0"]["output"] is True

    light = home["bathroom_light"]
    z2m = _answer(
        dialects["zigbee2mqtt"].request(
            "zigbee2mqtt/bathroom_light/set", b'{"state":"ON","brightness":120}'
        )
    )
    assert z2m == [("zigbee2mqtt/bathroom_light", {**z2m[0][1], "state": "ON", "brightness": 120})]
    assert light.initial_state()["light"]["brightness"] == 120

    ha = dialects["ha_discovery"]
    thermostat = _answer(
        ha.request("hasim/living_room_thermostat/thermostat/temperature/set", b"19.5")
    )
    assert thermostat[0][0] == "hasim/living_room_thermostat/state"
    assert thermostat[0][1]["target_temperature"] == 19.5
    lock = _answer(ha.request("hasim/front_door_lock/lock/set", b"UNLOCK"))
    assert lock[0][1]["lock"] == "UNLOCKED"


# ----- inside a real hub ---------------------------------------------------------------------


def _retained_topics(home: list[SimDevice]) -> set[str]:
    dialects = make_dialects("unused")
    for device in home:
        dialects[device.dialect].add(device)
    topics = {m.topic for d in dialects.values() for m in d.hello() if m.retain}
    for device in home:
        dialect = dialects[device.dialect]
        for msg in [*dialect.announce(device), *dialect.goodbye(device)]:
            if msg.retain:
                topics.add(msg.topic)
    return topics


def _clear_retained(url: str, topics: set[str]) -> None:
    """Leave the shared test broker as we found it: other suites follow the same topics."""
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect(host, int(port))
    client.loop_start()
    infos = [client.publish(topic, b"", qos=1, retain=True) for topic in sorted(topics)]
    for info in infos:
        info.wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
async def demo_hub(
    tmp_path: Path, mqtt_url: str
) -> AsyncIterator[tuple[Hub, dict[str, SimDevice]]]:
    """The example household's hub.yaml (adapters, areas, groups, rules) with the mixed home."""
    example = yaml.safe_load((REPO / "hub.yaml").read_text())
    config = {
        "hub": {"base_topic": "demo_t/hub", "device_topic": "demo_t/home", "command_timeout": "5s"},
        "mqtt": {"url": mqtt_url, "client_id": "hub-test-demo"},
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", "flush_interval": "0.2s"},
        "areas": example["areas"],
        "groups": example["groups"],
        "adapters": example["adapters"],
        "rules": {"paths": [str(REPO / "rules")]},
    }
    path = tmp_path / "hub.yaml"
    path.write_text(orjson.dumps(config).decode())
    loaded = load_config(path)
    hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
    await hub.start()
    home = build_home(36, mixed=True)
    sim = Simulator(mqtt_url, home, rate=20, prefix="demo_t/home", client_id="demo-t-sim")
    try:
        await asyncio.to_thread(sim.start)
        yield hub, _by_id(home)
    finally:
        await asyncio.to_thread(sim.stop)
        await hub.stop()
        await asyncio.to_thread(_clear_retained, mqtt_url, _retained_topics(home))


async def _wait_for(hub: Hub, entity_ids: set[str], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        missing = entity_ids - set(hub.registry.states)
        if not missing:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no state for {sorted(missing)}")
        await asyncio.sleep(0.05)


async def test_demo_home_entities_and_commands_through_every_dialect(
    demo_hub: tuple[Hub, dict[str, SimDevice]],
) -> None:
    hub, home = demo_hub
    bathroom_light = home["bathroom_light"].identities["ieee"]
    # Every entity the example rules, scenes and groups name exists, with a state.
    named: set[str] = set()
    sources = [
        *(REPO / "rules").glob("*.yaml"),
        *(REPO / "scenes").glob("*.yaml"),
        REPO / "hub.yaml",
    ]
    for source in sources:
        for device_id, key in ENTITY_REF.findall(source.read_text()):
            if device_id in home:
                named.add(f"{device_id}.{key}")
    assert len(named) > 20
    await _wait_for(
        hub,
        named
        | {
            "kitchen_plug.relay",
            "kitchen_plug.energy",
            "kitchen_climate.am2301_temperature",
            "garage_light.switch_0",
            "garden_climate.humidity_0",
            f"{bathroom_light}.light",
            "living_room_tv_plug.switch",
        },
    )
    assert hub.registry.devices["kitchen_plug"].area == "kitchen"  # listed in hub.yaml
    assert hub.registry.devices["garage_light"].owner == "firmware"
    for dialect in ("tasmota", "shelly", "zigbee2mqtt", "ha_discovery"):
        assert any(d.dialect == dialect for d in home.values())

    cli = Context(Origin.CLI, "test")
    commands = [
        Command("kitchen_plug.relay", "toggle", cli),  # Tasmota cmnd/.../POWER
        Command("garage_light.switch_0", "toggle", cli),  # Shelly Switch.Toggle
        Command(f"{bathroom_light}.light", "turn_on", cli, {"brightness": 99}),  # Zigbee2MQTT /set
        Command("living_room_tv_plug.switch", "toggle", cli),  # discovery command_topic
        Command("front_door_lock.lock", "unlock", cli),
        Command("living_room_thermostat.thermostat", "set_temperature", cli, {"temperature": 19.5}),
        Command("hallway_light.light", "turn_on", cli, {"brightness": 180}),  # the hub's own
    ]
    for command in commands:
        results = await hub.commands.execute(command)
        assert [r.ok for r in results] == [True], (command.target, results)
    assert hub.registry.states[f"{bathroom_light}.light"].attributes["brightness"] == 99
    assert home["bathroom_light"].initial_state()["light"]["brightness"] == 99
    assert hub.registry.states["front_door_lock.lock"].value == "unlocked"
    thermostat = hub.registry.states["living_room_thermostat.thermostat"]
    assert thermostat.attributes["target_temperature"] == 19.5
    # The Shelly relay answered by RPC and by NotifyStatus; the hub follows the device.
    relay = home["garage_light"].initial_state()["switch"]
    assert hub.registry.states["garage_light.switch_0"].value == relay
    assert set(MIXED_DIALECTS) <= set(home)
