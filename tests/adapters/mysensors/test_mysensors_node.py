"""The MySensors adapter in a running hub (real Mosquitto, real SQLite) and the reference
node's protocol logic on the other end of a pseudo-terminal."""

from __future__ import annotations

import asyncio
import json

from hubtest import eventually
from mqttprobe import MqttProbe
from mystest import Bench, SimHardware, adapter_of, mysnode

from hub.api import Command, Context, EntityKind, Origin

CLI = Context(Origin.CLI, "test")
NODE = "mys_1"
GATEWAY = "mys_gateway"


def value(bench: Bench, entity_id: str) -> object:
    """An entity's current value in the newest hub (None without a state)."""
    state = bench.hubs[-1].registry.states.get(entity_id)
    return None if state is None else state.value


async def test_node_joins_reports_obeys_and_survives_an_unplug(bench: Bench, mqtt_url: str) -> None:
    hub = await bench.start_hub()
    hardware = SimHardware()
    node = mysnode.Node(hardware, report_ms=150, heartbeat_ms=60_000, id_retry_ms=300)
    wire = bench.plug()
    bench.run_node(node, wire)
    registry = hub.registry

    # The node had no id: it asked, the hub gave it the lowest free one, and it presented.
    await eventually(lambda: NODE in registry.devices and registry.devices[NODE].available, 5)
    assert hardware.stored_id == 1
    assert "255;255;3;0;4;1" in wire.lines()
    await eventually(lambda: len(list(registry.entities_of(NODE))) == 2, 5, "no entities")
    device = registry.devices[NODE]
    assert (device.model, device.firmware, device.via) == ("RelayTemp", "1.0", GATEWAY)
    assert registry.devices[GATEWAY].available
    kinds = {e.key: (e.kind, e.unit, e.name) for e in registry.entities_of(NODE)}
    assert kinds == {
        "switch_1": (EntityKind.SWITCH, None, "Relay"),
        "temperature_2": (EntityKind.SENSOR, "°C", "Temperature"),
    }
    # It asked for the unit system and the time; the hub answered both (the answers are
    # written by the link's writer task, a moment after the lines that asked were handled).
    await eventually(lambda: "1;255;3;0;6;M" in wire.lines(), 5, "no I_CONFIG answer")
    await eventually(
        lambda: any(x.startswith("1;255;3;0;1;") and x[12:].isdigit() for x in wire.lines()),
        5,
        "no I_TIME answer",
    )

    # Temperatures arrive periodically.
    await eventually(lambda: value(bench, f"{NODE}.temperature_2") == 21.5, 5)
    assert value(bench, f"{NODE}.switch_1") == "off"
    hardware.celsius = 23.4
    await eventually(lambda: value(bench, f"{NODE}.temperature_2") == 23.4, 5)

    # A command over MQTT switches the relay; the node's report confirms it.
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.subscribe, f"{bench.base}/events/#")
        await asyncio.to_thread(
            probe.publish,
            f"{bench.base}/devices/{NODE}/set",
            {"entity": "switch_1", "action": "turn_on", "id": "relay-on"},
        )
        _topic, payload = await asyncio.to_thread(
            probe.wait_for, f"{bench.base}/events/command_confirmed"
        )
    assert json.loads(payload)["request_id"] == "relay-on"
    assert hardware.relay_on is True
    assert "1;1;1;1;2;1" in wire.lines()  # a set with an ack requested
    assert value(bench, f"{NODE}.switch_1") == "on"
    cause = registry.states[f"{NODE}.switch_1"].context
    assert cause.parent is not None  # the state carries the command's context

    # And through the plug-in API's command path.
    [result] = await hub.commands.execute(Command(f"{NODE}.switch_1", "turn_off", CLI))
    assert result.ok, result.reason
    assert hardware.relay_switches == [True, False]

    # Unplugged: the gateway and the node behind it go offline; commands fail plainly.
    wire.close()
    await eventually(lambda: not registry.devices[GATEWAY].available, 5, "gateway still up")
    assert not registry.devices[NODE].available
    [failed] = await hub.commands.execute(Command(f"{NODE}.switch_1", "turn_on", CLI))
    assert not failed.ok
    assert "not connected" in failed.reason
    await asyncio.sleep(0.6)  # a few re-open attempts fail meanwhile; nothing crashes

    # Plugged in again: the port re-opens, the hub asks the known node to speak, it answers.
    replugged = bench.plug()
    bench.run_node(node, replugged)
    await eventually(lambda: registry.devices[GATEWAY].available, 5, "gateway not back")
    await eventually(lambda: registry.devices[NODE].available, 5, "node not back")
    assert "1;255;3;0;18;" in replugged.lines()  # the heartbeat request it answered
    assert value(bench, f"{NODE}.switch_1") == "off"
    [result] = await hub.commands.execute(Command(f"{NODE}.switch_1", "turn_on", CLI))
    assert result.ok, result.reason
    assert hardware.relay_on is True


async def test_garbage_lines_are_rejected_counted_and_change_nothing(bench: Bench) -> None:
    hub = await bench.start_hub()
    hardware = SimHardware(node_id=1)
    node = mysnode.Node(hardware, report_ms=60_000)
    wire = bench.plug()
    await eventually(lambda: hub.registry.devices[GATEWAY].available, 5)
    bench.run_node(node, wire)
    await eventually(lambda: value(bench, f"{NODE}.temperature_2") == 21.5, 5)
    adapter = adapter_of(hub)
    before = dict(hub.registry.states)
    rejected_before = hub.stats.rejected
    garbage = [
        b"garbage\n",
        b"1;1;1;0;2;7\n",  # V_STATUS must be 1 or 0
        b"1;2;1;0;0;hot\n",  # a temperature must be a number
        b"1;1;9;0;2;1\n",  # no command 9
        b"300;1;1;0;2;1\n",  # no node 300
        b"1;1;1;0;2;" + b"1" * 30 + b"\n",  # payload over 25 bytes
        b"1;2;1;0;0;\xff\xfe\n",  # not ASCII
        b"x" * 1000 + b"\n",  # no end in sight
        b"1;9;1;0;3;150\n",  # a percentage over 100 (and no entity is made for it)
        b"255;1;1;0;2;1\n",  # a node without an id may only ask for one
        b"9;1;1;0;2;on\n",  # an unknown node's bad first line leaves no device behind
    ]
    wire.write(b"".join(garbage))
    wire.write(b"1;2;1;0;0;19.5\n")  # a good line after them all still counts
    await eventually(lambda: value(bench, f"{NODE}.temperature_2") == 19.5, 5)
    assert sum(adapter.rejected.values()) == len(garbage)
    assert hub.stats.rejected - rejected_before == len(garbage)
    assert adapter.rejected["wrong_type"] == 5
    assert "mys_9" not in hub.registry.devices
    after = dict(hub.registry.states)
    assert after.keys() == before.keys()  # no entity appeared
    assert after[f"{NODE}.switch_1"] == before[f"{NODE}.switch_1"]
    assert "level_9" not in {e.key for e in hub.registry.entities_of(NODE)}


async def test_other_sensor_types_and_a_dimmer_from_a_real_gateway_log(bench: Bench) -> None:
    hub = await bench.start_hub()
    wire = bench.plug()
    await eventually(lambda: hub.registry.devices["mys_gateway"].available, 5)
    registry = hub.registry
    # A serial gateway's log of a DimmableLED node (forum.mysensors.org/user/dirk_h/posts),
    # then a door, a motion sensor, a power meter and a battery level on node 4.
    lines = [
        b"0;0;3;0;14;Gateway startup complete.",
        b"3;255;0;0;17;1.4.1",
        b"3;255;3;0;6;0",
        b"3;0;0;0;4;1.4.1",
        b"3;255;3;0;11;DimmableLED",
        b"3;255;3;0;12;1.1",
        b"3;0;1;0;3;20",
        b"4;255;0;0;17;2.3.2",
        b"4;1;0;0;0;Front door",
        b"4;2;0;0;1;Hall motion",
        b"4;3;0;0;13;Meter",
        b"4;1;1;0;16;1",
        b"4;2;1;0;16;0",
        b"4;3;1;0;17;1150.5",
        b"4;3;1;0;18;12.34",
        b"4;255;3;0;0;87",
    ]
    wire.write(b"\n".join(lines) + b"\n")
    await eventually(lambda: value(bench, "mys_4.battery") == 87, 5)
    kinds = {e.key: (e.kind, e.unit, e.device_class) for e in registry.entities_of("mys_4")}
    assert kinds == {
        "door_1": (EntityKind.BINARY_SENSOR, None, "door"),
        "motion_2": (EntityKind.BINARY_SENSOR, None, "motion"),
        "power_3": (EntityKind.SENSOR, "W", "power"),
        "energy_3": (EntityKind.ENERGY_METER, "kWh", "energy"),
        "battery": (EntityKind.SENSOR, "%", "battery"),
    }
    assert value(bench, "mys_4.door_1") == "on"
    assert value(bench, "mys_4.motion_2") == "off"
    assert value(bench, "mys_4.power_3") == 1150.5
    assert value(bench, "mys_4.energy_3") == 12.34
    assert registry.devices["mys_3"].model == "DimmableLED"
    assert value(bench, "mys_3.light_0") == "on"
    assert registry.states["mys_3.light_0"].attributes["brightness"] == 51

    # The node asks for its level (a req): the hub answers with the state it holds.
    wire.write(b"3;0;2;0;3;\n")
    await eventually(lambda: "3;0;1;0;3;20" in wire.lines(), 5, "no answer to req")

    # A brightness command becomes V_STATUS and V_PERCENTAGE with acks; the node's report of
    # its new level confirms it.
    command = asyncio.ensure_future(
        hub.commands.execute(Command("mys_3.light_0", "turn_on", CLI, {"brightness": 128}))
    )
    await eventually(lambda: "3;0;1;1;3;50" in wire.lines(), 5, "no dimmer command")
    assert "3;0;1;1;2;1" in wire.lines()
    wire.write(b"3;0;1;1;3;50\n")  # the radio echo alone confirms nothing
    await asyncio.sleep(0.2)
    assert not command.done()
    wire.write(b"3;0;1;0;3;50\n")
    [result] = await command
    assert result.ok, result.reason
    assert registry.states["mys_3.light_0"].attributes["brightness"] == 128


async def test_node_ids_and_entities_survive_a_hub_restart(bench: Bench) -> None:
    hub = await bench.start_hub()
    first = SimHardware()
    node = mysnode.Node(first, report_ms=60_000, id_retry_ms=300)
    wire = bench.plug()
    bench.run_node(node, wire)
    await eventually(lambda: value(bench, f"{NODE}.temperature_2") == 21.5, 5)
    await asyncio.sleep(0.5)  # one storage flush
    await hub.stop()
    wire.close()

    hub = await bench.start_hub()
    registry = hub.registry
    assert {e.key for e in registry.entities_of(NODE)} == {"switch_1", "temperature_2"}
    assert not registry.devices[NODE].available  # until it is heard from on this run
    second = SimHardware()
    newcomer = mysnode.Node(second, report_ms=60_000, id_retry_ms=300)
    wire = bench.plug()
    bench.run_node(node, wire)
    bench.run_node(newcomer, wire)
    await eventually(lambda: registry.devices[NODE].available, 5, "known node not back")
    await eventually(lambda: second.stored_id == 2, 5, "the newcomer got no id")
    await eventually(lambda: "mys_2" in registry.devices, 5)
    assert registry.devices["mys_2"].via == GATEWAY
