"""The MySensors line protocol on real lines from the documentation and on malformed ones.

Sources of the real lines:
- [API] mysensors.org/download/serial_api_20: the format and the 25-byte payload limit.
- [GW] the ``node-mysensor`` npm package's README, a serial gateway's first line.
- [FORUM] forum.mysensors.org/user/dirk_h/posts: a serial gateway's log of a DimmableLED node.
- [FORUM2] forum.mysensors.org/post/22223: a light level from a sensor wired to the gateway.
- [NPM] the ``sensors`` npm package's README (a parser of the serial API): its example line.
- [HDR] MySensors' core/MyMessage.h: V_POSITION's example payload holds semicolons.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from adapters.mysensors.protocol import (
    MAX_PAYLOAD,
    Command,
    Internal,
    Message,
    ProtocolError,
    Sensor,
    Value,
    message,
    parse_line,
)

FIRMWARE = Path(__file__).resolve().parents[3] / "firmware-bridges" / "mysensors-node"
if str(FIRMWARE) not in sys.path:
    sys.path.insert(0, str(FIRMWARE))

import mysnode  # noqa: E402 - the reference node's own parser, checked against ours

SPEC_LINES: list[tuple[bytes, tuple[int, int, Command, bool, object, str]]] = [
    # [GW]
    (
        b"0;255;3;0;14;Gateway startup complete.\n",
        (0, 255, Command.INTERNAL, False, Internal.I_GATEWAY_READY, "Gateway startup complete."),
    ),
    # [FORUM]: the node presents itself, asks for its config, presents a dimmer, names itself
    (
        b"3;255;0;0;17;1.4.1\n",
        (3, 255, Command.PRESENTATION, False, Sensor.S_ARDUINO_NODE, "1.4.1"),
    ),
    (b"3;255;3;0;6;0\n", (3, 255, Command.INTERNAL, False, Internal.I_CONFIG, "0")),
    (b"3;0;0;0;4;1.4.1\n", (3, 0, Command.PRESENTATION, False, Sensor.S_DIMMER, "1.4.1")),
    (
        b"3;255;3;0;11;DimmableLED\n",
        (3, 255, Command.INTERNAL, False, Internal.I_SKETCH_NAME, "DimmableLED"),
    ),
    (b"3;255;3;0;12;1.1\n", (3, 255, Command.INTERNAL, False, Internal.I_SKETCH_VERSION, "1.1")),
    (b"3;0;2;0;3;\n", (3, 0, Command.REQ, False, Value.V_PERCENTAGE, "")),
    (b"3;0;1;0;3;50\n", (3, 0, Command.SET, False, Value.V_PERCENTAGE, "50")),
    # [FORUM2]
    (b"0;0;1;0;23;455\n", (0, 0, Command.SET, False, Value.V_LIGHT_LEVEL, "455")),
    # [NPM]
    (b"12;6;0;0;3;1.4\n", (12, 6, Command.PRESENTATION, False, Sensor.S_BINARY, "1.4")),
    # [HDR]: the payload is everything after the fifth semicolon
    (
        b"5;1;1;0;49;55.722526;13.017972;18\r\n",
        (5, 1, Command.SET, False, Value.V_POSITION, "55.722526;13.017972;18"),
    ),
]


@pytest.mark.parametrize(("line", "expected"), SPEC_LINES)
def test_spec_lines_parse_and_encode_back(line: bytes, expected: tuple[object, ...]) -> None:
    msg = parse_line(line)
    assert (msg.node_id, msg.child_id, msg.command, msg.ack, msg.type, msg.payload) == expected
    assert msg.encode() == line.replace(b"\r\n", b"\n")
    # The reference node's parser reads the same fields.
    fields = mysnode.parse(line.rstrip(b"\n"))
    assert fields is not None
    assert fields[:5] == (msg.node_id, msg.child_id, msg.command, int(msg.ack), msg.type)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "empty line"),
        (b"garbage", "expected 6 fields"),
        (b"1;2;3;4;5", "expected 6 fields"),
        (b"256;1;1;0;2;1", "node-id must be 0-255, got 256"),
        (b"-1;1;1;0;2;1", "node-id must be a number 0-255"),
        (b"1;1000;1;0;2;1", "child-sensor-id must be a number 0-255"),
        (b"1; 1;1;0;2;1", "child-sensor-id must be a number"),
        (b"1;1;5;0;2;1", "unknown command 5"),
        (b"1;1;1;2;2;1", "ack must be 0 or 1, got '2'"),
        (b"1;1;1;0;57;1", "unknown set type 57"),
        (b"1;1;0;0;40;x", "unknown presentation type 40"),
        (b"1;255;3;0;34;", "unknown internal type 34"),
        (b"1;1;1;0;47;" + b"x" * (MAX_PAYLOAD + 1), "payload is 26 bytes, over the 25-byte limit"),
        (b"1;1;1;0;47;caf\xc3\xa9", "line is not ASCII"),
        (b"1;1;1;0;47;a\tb", "payload holds '\\t'"),
        (b"1;1;1;0;47;" + b"x" * 300, "over the 256-byte limit"),
    ],
)
def test_malformed_lines_say_what_is_wrong(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_line(line)
    assert reason in str(caught.value)


def test_payload_limit_is_exactly_25_bytes_but_gateway_logs_may_be_longer() -> None:
    assert parse_line(b"1;1;1;0;47;" + b"x" * MAX_PAYLOAD).payload == "x" * MAX_PAYLOAD
    debug = b"0;255;3;0;9;TSF:MSG:READ,3-3-0,s=255,c=3,t=11,pt=0,l=11,sg=0:DimmableLED"
    assert parse_line(debug).type is Internal.I_LOG_MESSAGE


def test_building_messages_validates_and_formats_numbers() -> None:
    assert message(1, 2, Command.SET, Value.V_TEMP, 21.5).encode() == b"1;2;1;0;0;21.5\n"
    assert message(1, 2, Command.SET, Value.V_TEMP, 21.0).encode() == b"1;2;1;0;0;21\n"
    assert message(7, 1, Command.SET, Value.V_STATUS, True, ack=True).encode() == b"7;1;1;1;2;1\n"
    with pytest.raises(ProtocolError, match="node-id must be 0-255"):
        message(256, 1, Command.SET, Value.V_STATUS, 1)
    with pytest.raises(ProtocolError, match="not a Value type"):
        Message(1, 1, Command.SET, False, Internal.I_TIME, "")
    with pytest.raises(ProtocolError, match="over the 25-byte limit"):
        message(1, 1, Command.SET, Value.V_TEXT, "y" * 26)
