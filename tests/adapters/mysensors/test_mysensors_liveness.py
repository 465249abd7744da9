"""A node that goes silent while the port stays open: heartbeat requests, node_timeout, sleep.

Sources of the lines:
- [API] mysensors.org/download/serial_api_20: I_HEARTBEAT_REQUEST (18) and
  I_HEARTBEAT_RESPONSE (22), as PROTOCOL.md beside the reference node shows them.
- [CORE] MySensors' core/MySensorsCore.cpp: an awake node answers I_HEARTBEAT_REQUEST in the
  library (``_processInternalCoreMessage``); smartSleep sends I_PRE_SLEEP_NOTIFICATION (32)
  with the time it still listens and, on waking, I_POST_SLEEP_NOTIFICATION (33) with the
  sleep time in ms.
- [LOG] github.com/tmandel123/MySensors, BinaryLEDSwitch.ino: the debug log of a node
  (id 110) in smartSleep, ``s=255,c=3,t=33,...:13333`` and ``s=255,c=3,t=32,...:555``,
  here as serial lines.
"""

from __future__ import annotations

import asyncio

import pytest
from mystest import Bench, SimHardware, adapter_of, eventually, mysnode
from pydantic import ValidationError

from adapters.mysensors.settings import DEFAULT_NODE_TIMEOUT, Settings

GATEWAY = "mys_gateway"


def available(bench: Bench, device_id: str) -> bool:
    """Whether the newest hub has the device and holds it online."""
    device = bench.hubs[-1].registry.devices.get(device_id)
    return device is not None and device.available


async def test_a_silent_node_goes_offline_an_awake_one_answers_the_probe(bench: Bench) -> None:
    hub = await bench.start_hub("    node_timeout: 0.8s\n")
    wire = bench.plug()
    await eventually(lambda: available(bench, GATEWAY), 5)
    # The reference node never reports within the test, but answers heartbeat requests as
    # the MySensors library does [CORE].
    hardware = SimHardware(node_id=1)
    node = mysnode.Node(hardware, report_ms=600_000, heartbeat_ms=600_000)
    bench.run_node(node, wire)
    await eventually(lambda: available(bench, "mys_1"), 5, "the reference node is not up")

    # Node 4 says it is alive once [API], then dies.
    wire.write(b"4;255;3;0;22;1\n")
    await eventually(lambda: available(bench, "mys_4"), 5, "node 4 is not up")
    await asyncio.sleep(0.3)
    assert available(bench, "mys_4")  # well within its 0.8 s
    await eventually(lambda: not available(bench, "mys_4"), 5, "silent node 4 stays online")
    assert "4;255;3;0;18;" in wire.lines()  # it was asked first, and did not answer
    # The gateway's port is open and the awake node answered every request: both online.
    assert available(bench, GATEWAY)
    await asyncio.sleep(1.0)  # past the limit again: the reference node is asked once more
    assert "1;255;3;0;18;" in wire.lines()
    assert node.heartbeats >= 1
    assert available(bench, "mys_1")
    assert not available(bench, "mys_4")

    # Any line from it brings it back.
    wire.write(b"4;255;3;0;22;2\n")
    await eventually(lambda: available(bench, "mys_4"), 5, "node 4 did not come back")
    assert hub.registry.devices["mys_4"].via == GATEWAY


async def test_timeout_zero_and_smart_sleep_keep_sleepers_online(bench: Bench) -> None:
    hub = await bench.start_hub(
        "    node_timeout: 0.6s\n    nodes:\n      '5': {name: Attic battery, timeout: 0}\n"
    )
    wire = bench.plug()
    await eventually(lambda: available(bench, GATEWAY), 5)
    # Node 110 woke from a 13.333 s smartSleep, then goes to sleep again [LOG]; node 5 has
    # no limit; node 6 is the control: the watch does run in this hub.
    wire.write(b"110;255;3;0;33;13333\n110;255;3;0;32;555\n5;255;3;0;22;1\n6;255;3;0;22;1\n")
    for device_id in ("mys_110", "mys_5", "mys_6"):
        await eventually(lambda d=device_id: available(bench, d), 5, f"{device_id} not up")
    adapter = adapter_of(hub)
    assert adapter.silence_limit(adapter._nodes[110]) == pytest.approx(2 * 13.333)
    await eventually(lambda: not available(bench, "mys_6"), 5, "the control stays online")
    await asyncio.sleep(0.6)  # past 0.6 s twice for the others
    assert available(bench, "mys_110")
    assert available(bench, "mys_5")
    lines = wire.lines()
    assert "6;255;3;0;18;" in lines
    assert "110;255;3;0;18;" not in lines  # asleep: it could not hear the request
    assert "5;255;3;0;18;" not in lines  # not watched at all

    # A bad sleep time is rejected like any other bad line, and changes nothing.
    wire.write(b"110;255;3;0;33;soon\n")
    await eventually(lambda: adapter.rejected.get("wrong_type", 0) == 1, 5)
    assert adapter.silence_limit(adapter._nodes[110]) == pytest.approx(2 * 13.333)


def test_durations_are_the_hubs_and_ids_the_cores() -> None:
    """The settings use hub.api's Duration and check_id: what was accepted still is."""
    base = {"port": "/dev/ttyUSB0"}
    for text, seconds in [
        (2, 2.0),
        (0.5, 0.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("5min", 300.0),
        ("1h", 3600.0),
        (" 2 S ", 2.0),
    ]:
        assert Settings.model_validate({**base, "reopen_min": text}).reopen_min == seconds
    # ... and what the rest of hub.yaml accepts, too.
    assert Settings.model_validate({**base, "reopen_max": "1h30m"}).reopen_max == 5400.0
    assert Settings.model_validate(base).node_timeout == DEFAULT_NODE_TIMEOUT == 1800.0
    assert Settings.model_validate({**base, "node_timeout": 0}).node_timeout == 0.0
    for bad in [0, "0s", -1, "-2s", True, "soon", float("inf")]:
        with pytest.raises(ValidationError):
            Settings.model_validate({**base, "reopen_min": bad})
    for bad_timeout in [-1, "8d", "soon"]:
        with pytest.raises(ValidationError):
            Settings.model_validate({**base, "node_timeout": bad_timeout})
    with pytest.raises(ValidationError, match="invalid area id"):
        Settings.model_validate({**base, "area": "hall\n"})
    with pytest.raises(ValidationError, match="invalid area id"):
        Settings.model_validate({**base, "nodes": {7: {"area": "Garage"}}})
    with pytest.raises(ValidationError, match="invalid gateway_id"):
        Settings.model_validate({**base, "gateway_id": "my gw"})
    nodes = Settings.model_validate({**base, "nodes": {7: {"timeout": "2h"}}}).nodes
    assert nodes[7].timeout == 7200.0
