"""``echo_confirms``: for sketches that never report their actuators, the library's echo
(ack=1) of a command confirms it, through the pseudo-terminal end to end.

Sources of the lines:
- [API] mysensors.org/download/serial_api_20: a set with ack=1 from the controller comes
  back with ack=1 from the node (PROTOCOL.md beside the reference node: ``1;1;1;1;2;1``).
- [FORUM] forum.mysensors.org/user/dirk_h/posts: a serial gateway's log of a DimmableLED
  node (node 3, child 0, S_DIMMER), as in test_mysensors_node.py.
"""

from __future__ import annotations

import asyncio

from mystest import Bench, SimHardware, eventually, mysnode

from hub.api import Command, Context, Origin

CLI = Context(Origin.CLI, "test")
RELAY = "mys_1.switch_1"


def value(bench: Bench, entity_id: str) -> object:
    """An entity's current value in the newest hub (None without a state)."""
    state = bench.hubs[-1].registry.states.get(entity_id)
    return None if state is None else state.value


async def silent_relay(bench: Bench, extra: str) -> tuple[SimHardware, mysnode.Node]:
    """A hub, and the reference node playing a sketch that never reports its relay."""
    hub = await bench.start_hub(extra)
    wire = bench.plug()
    await eventually(lambda: hub.registry.devices["mys_gateway"].available, 5)
    hardware = SimHardware(node_id=1)
    node = mysnode.Node(hardware, report_ms=600_000, report_on_set=False)
    bench.run_node(node, wire)
    await eventually(lambda: value(bench, RELAY) == "off", 5, "the node did not present")
    return hardware, node


async def test_the_echo_confirms_a_command_when_echo_confirms_is_on(bench: Bench) -> None:
    hardware, _node = await silent_relay(bench, "    echo_confirms: true\n")
    hub = bench.hubs[-1]
    wire = bench.wires[-1]

    [result] = await hub.commands.execute(Command(RELAY, "turn_on", CLI))
    assert result.ok, result.reason
    assert hardware.relay_switches == [True]
    assert "1;1;1;1;2;1" in wire.lines()  # sent with an ack requested [API]
    state = hub.registry.states[RELAY]
    assert state.value == "on"
    # The echo's state carries the command's context: "why is the relay on?" still answers.
    assert state.context.parent is not None
    assert state.context.parent.origin is Origin.CLI

    [result] = await hub.commands.execute(Command(RELAY, "toggle", CLI))
    assert result.ok, result.reason
    assert hardware.relay_switches == [True, False]
    assert value(bench, RELAY) == "off"


async def test_without_echo_confirms_the_echo_alone_confirms_nothing(bench: Bench) -> None:
    hardware, node = await silent_relay(bench, "")
    hub = bench.hubs[-1]

    [result] = await hub.commands.execute(Command(RELAY, "turn_on", CLI), timeout=1.0)
    # The relay did switch and echoed, but the hub never heard a report: the command failed
    # plainly and the hub does not claim a state it was not told.
    assert hardware.relay_on is True
    assert not result.ok
    assert "did not report" in result.reason
    assert value(bench, RELAY) == "off"
    # Its next report is what the hub believes.
    node.report_relay()
    await eventually(lambda: value(bench, RELAY) == "on", 5)


async def test_a_dimmer_is_confirmed_by_the_echoes_of_both_values(bench: Bench) -> None:
    hub = await bench.start_hub("    echo_confirms: true\n")
    wire = bench.plug()
    await eventually(lambda: hub.registry.devices["mys_gateway"].available, 5)
    # [FORUM]: the DimmableLED node presents itself and reports 20 %.
    wire.write(
        b"3;255;0;0;17;1.4.1\n"
        b"3;0;0;0;4;1.4.1\n"
        b"3;255;3;0;11;DimmableLED\n"
        b"3;255;3;0;12;1.1\n"
        b"3;0;1;0;3;20\n"
    )
    await eventually(lambda: value(bench, "mys_3.light_0") == "on", 5)
    command = asyncio.ensure_future(
        hub.commands.execute(Command("mys_3.light_0", "turn_on", CLI, {"brightness": 128}))
    )
    await eventually(lambda: "3;0;1;1;3;50" in wire.lines(), 5, "no dimmer command")
    assert "3;0;1;1;2;1" in wire.lines()
    wire.write(b"3;0;1;1;2;1\n")  # the echo of V_STATUS: on, but not yet at the brightness
    await asyncio.sleep(0.2)
    assert not command.done()
    wire.write(b"3;0;1;1;3;50\n")  # the echo of V_PERCENTAGE
    [result] = await asyncio.wait_for(command, 5)
    assert result.ok, result.reason
    assert hub.registry.states["mys_3.light_0"].attributes["brightness"] == 128
