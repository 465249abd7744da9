"""The MySensors serial protocol (2.x): parse and encode lines, with no I/O.

A line is ``node-id;child-sensor-id;command;ack;type;payload\\n`` (mysensors.org/download/
serial_api_20). Ids are 0-255 (node 0 is the gateway, 255 a node without an id yet or the
node itself as child); ``command`` is presentation (0), set (1), req (2), internal (3) or
stream (4); ``ack`` is 0 or 1; ``type`` is an ``S_`` (presentation), ``V_`` (set/req), ``I_``
(internal) or ``ST_`` (stream) number. The payload is everything after the fifth ``;`` (a GPS
position itself holds semicolons) and at most 25 bytes: the radio frame is 32 bytes with a
7-byte header. Log and debug text the gateway prints about itself may be longer, up to the
line limit. The tables below are MyMessage.h's (MySensors 2.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

#: The radio frame's payload limit (32-byte frame, 7-byte header).
MAX_PAYLOAD = 25
#: A whole line, terminator excluded: generous for the gateway's own debug text.
MAX_LINE = 256
#: The node id of the gateway, and the id of "no id yet" / "the node itself".
GATEWAY_NODE = 0
NO_ID = 255
NODE_CHILD = 255

_NUMBER = re.compile(r"[0-9]{1,3}")


class Command(IntEnum):
    """The command (message type) field."""

    PRESENTATION = 0
    SET = 1
    REQ = 2
    INTERNAL = 3
    STREAM = 4


class Sensor(IntEnum):
    """``S_`` types: what a presented child is."""

    S_DOOR = 0
    S_MOTION = 1
    S_SMOKE = 2
    S_BINARY = 3
    S_DIMMER = 4
    S_COVER = 5
    S_TEMP = 6
    S_HUM = 7
    S_BARO = 8
    S_WIND = 9
    S_RAIN = 10
    S_UV = 11
    S_WEIGHT = 12
    S_POWER = 13
    S_HEATER = 14
    S_DISTANCE = 15
    S_LIGHT_LEVEL = 16
    S_ARDUINO_NODE = 17
    S_ARDUINO_REPEATER_NODE = 18
    S_LOCK = 19
    S_IR = 20
    S_WATER = 21
    S_AIR_QUALITY = 22
    S_CUSTOM = 23
    S_DUST = 24
    S_SCENE_CONTROLLER = 25
    S_RGB_LIGHT = 26
    S_RGBW_LIGHT = 27
    S_COLOR_SENSOR = 28
    S_HVAC = 29
    S_MULTIMETER = 30
    S_SPRINKLER = 31
    S_WATER_LEAK = 32
    S_SOUND = 33
    S_VIBRATION = 34
    S_MOISTURE = 35
    S_INFO = 36
    S_GAS = 37
    S_GPS = 38
    S_WATER_QUALITY = 39


class Value(IntEnum):
    """``V_`` types: the values of set and req messages."""

    V_TEMP = 0
    V_HUM = 1
    V_STATUS = 2
    V_PERCENTAGE = 3
    V_PRESSURE = 4
    V_FORECAST = 5
    V_RAIN = 6
    V_RAINRATE = 7
    V_WIND = 8
    V_GUST = 9
    V_DIRECTION = 10
    V_UV = 11
    V_WEIGHT = 12
    V_DISTANCE = 13
    V_IMPEDANCE = 14
    V_ARMED = 15
    V_TRIPPED = 16
    V_WATT = 17
    V_KWH = 18
    V_SCENE_ON = 19
    V_SCENE_OFF = 20
    V_HVAC_FLOW_STATE = 21
    V_HVAC_SPEED = 22
    V_LIGHT_LEVEL = 23
    V_VAR1 = 24
    V_VAR2 = 25
    V_VAR3 = 26
    V_VAR4 = 27
    V_VAR5 = 28
    V_UP = 29
    V_DOWN = 30
    V_STOP = 31
    V_IR_SEND = 32
    V_IR_RECEIVE = 33
    V_FLOW = 34
    V_VOLUME = 35
    V_LOCK_STATUS = 36
    V_LEVEL = 37
    V_VOLTAGE = 38
    V_CURRENT = 39
    V_RGB = 40
    V_RGBW = 41
    V_ID = 42
    V_UNIT_PREFIX = 43
    V_HVAC_SETPOINT_COOL = 44
    V_HVAC_SETPOINT_HEAT = 45
    V_HVAC_FLOW_MODE = 46
    V_TEXT = 47
    V_CUSTOM = 48
    V_POSITION = 49
    V_IR_RECORD = 50
    V_PH = 51
    V_ORP = 52
    V_EC = 53
    V_VAR = 54
    V_VA = 55
    V_POWER_FACTOR = 56


class Internal(IntEnum):
    """``I_`` types: internal messages."""

    I_BATTERY_LEVEL = 0
    I_TIME = 1
    I_VERSION = 2
    I_ID_REQUEST = 3
    I_ID_RESPONSE = 4
    I_INCLUSION_MODE = 5
    I_CONFIG = 6
    I_FIND_PARENT_REQUEST = 7
    I_FIND_PARENT_RESPONSE = 8
    I_LOG_MESSAGE = 9
    I_CHILDREN = 10
    I_SKETCH_NAME = 11
    I_SKETCH_VERSION = 12
    I_REBOOT = 13
    I_GATEWAY_READY = 14
    I_SIGNING_PRESENTATION = 15
    I_NONCE_REQUEST = 16
    I_NONCE_RESPONSE = 17
    I_HEARTBEAT_REQUEST = 18
    I_PRESENTATION = 19
    I_DISCOVER_REQUEST = 20
    I_DISCOVER_RESPONSE = 21
    I_HEARTBEAT_RESPONSE = 22
    I_LOCKED = 23
    I_PING = 24
    I_PONG = 25
    I_REGISTRATION_REQUEST = 26
    I_REGISTRATION_RESPONSE = 27
    I_DEBUG = 28
    I_SIGNAL_REPORT_REQUEST = 29
    I_SIGNAL_REPORT_REVERSE = 30
    I_SIGNAL_REPORT_RESPONSE = 31
    I_PRE_SLEEP_NOTIFICATION = 32
    I_POST_SLEEP_NOTIFICATION = 33


class Stream(IntEnum):
    """``ST_`` types: stream (firmware update) messages."""

    ST_FIRMWARE_CONFIG_REQUEST = 0
    ST_FIRMWARE_CONFIG_RESPONSE = 1
    ST_FIRMWARE_REQUEST = 2
    ST_FIRMWARE_RESPONSE = 3
    ST_SOUND = 4
    ST_IMAGE = 5
    ST_FIRMWARE_CONFIRM = 6
    ST_FIRMWARE_RESPONSE_RLE = 7


SubType = Sensor | Value | Internal | Stream
_TYPES: dict[Command, type[IntEnum]] = {
    Command.PRESENTATION: Sensor,
    Command.SET: Value,
    Command.REQ: Value,
    Command.INTERNAL: Internal,
    Command.STREAM: Stream,
}
# Free text the gateway prints about itself (debug output) is not bound by the radio frame.
_LONG_TEXT = frozenset({Internal.I_LOG_MESSAGE, Internal.I_DEBUG})


class ProtocolError(ValueError):
    """A line is not a valid MySensors message; the text says which field and why."""


@dataclass(frozen=True, slots=True)
class Message:
    """One MySensors message; constructing it validates every field."""

    node_id: int
    child_id: int
    command: Command
    ack: bool
    type: SubType
    payload: str = ""

    def __post_init__(self) -> None:
        for name in ("node_id", "child_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
                raise ProtocolError(f"{name.replace('_', '-')} must be 0-255, got {value!r}")
        expected = _TYPES[Command(self.command)]
        if not isinstance(self.type, expected):
            raise ProtocolError(
                f"type {self.type!r} is not a {expected.__name__} type, as "
                f"{Command(self.command).name.lower()} needs"
            )
        check_payload(self.payload, long_text=self.type in _LONG_TEXT)

    def encode(self) -> bytes:
        """The line for this message, newline included."""
        return (
            f"{self.node_id};{self.child_id};{int(self.command)};{int(self.ack)};"
            f"{int(self.type)};{self.payload}\n"
        ).encode("ascii")

    def describe(self) -> str:
        """A readable form for logs, e.g. ``node 12 child 6 set V_TEMP=36.5``."""
        ack = " (ack)" if self.ack else ""
        return (
            f"node {self.node_id} child {self.child_id} {self.command.name.lower()} "
            f"{self.type.name}={self.payload!r}{ack}"
        )


def check_payload(payload: str, *, long_text: bool = False) -> str:
    """Return ``payload`` if it fits a message; raise ProtocolError saying why not."""
    if not isinstance(payload, str):
        raise ProtocolError(f"payload must be text, got {type(payload).__name__}")
    if any(not " " <= ch <= "~" for ch in payload):
        bad = next(ch for ch in payload if not " " <= ch <= "~")
        raise ProtocolError(f"payload holds {bad!r}: only printable ASCII is allowed")
    limit = MAX_LINE if long_text else MAX_PAYLOAD
    if len(payload) > limit:
        raise ProtocolError(f"payload is {len(payload)} bytes, over the {limit}-byte limit")
    return payload


def _field(text: str, name: str, high: int) -> int:
    if not _NUMBER.fullmatch(text):
        raise ProtocolError(f"{name} must be a number 0-{high}, got {text[:20]!r}")
    value = int(text)
    if value > high:
        raise ProtocolError(f"{name} must be 0-{high}, got {value}")
    return value


def parse_line(line: bytes | str) -> Message:
    """Parse one line (with or without its ``\\n`` / ``\\r\\n``); raise ProtocolError if bad."""
    if isinstance(line, bytes):
        if len(line) > MAX_LINE + 2:
            raise ProtocolError(f"line is {len(line)} bytes, over the {MAX_LINE}-byte limit")
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"line is not ASCII (byte {exc.start})") from None
    else:
        text = line
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    if len(text) > MAX_LINE:
        raise ProtocolError(f"line is {len(text)} bytes, over the {MAX_LINE}-byte limit")
    if not text:
        raise ProtocolError("empty line")
    parts = text.split(";", 5)
    if len(parts) < 6:
        raise ProtocolError(
            f"expected 6 fields node;child;command;ack;type;payload, got {len(parts)}"
        )
    node, child, command, ack, sub, payload = parts
    node_id = _field(node, "node-id", 255)
    child_id = _field(child, "child-sensor-id", 255)
    command_no = _field(command, "command", 255)
    try:
        cmd = Command(command_no)
    except ValueError:
        raise ProtocolError(
            f"unknown command {command_no} (0 presentation, 1 set, 2 req, 3 internal, 4 stream)"
        ) from None
    if ack not in ("0", "1"):
        raise ProtocolError(f"ack must be 0 or 1, got {ack[:20]!r}")
    type_no = _field(sub, "type", 255)
    table = _TYPES[cmd]
    try:
        sub_type: SubType = table(type_no)  # type: ignore[assignment]
    except ValueError:
        raise ProtocolError(f"unknown {cmd.name.lower()} type {type_no}") from None
    return Message(node_id, child_id, cmd, ack == "1", sub_type, payload)


def message(
    node_id: int,
    child_id: int,
    command: Command,
    sub_type: SubType,
    payload: str | int | float = "",
    *,
    ack: bool = False,
) -> Message:
    """Build a validated message; numbers become their shortest text (``21.5``, ``1``)."""
    if isinstance(payload, bool):
        text = "1" if payload else "0"
    elif isinstance(payload, int):
        text = str(payload)
    elif isinstance(payload, float):
        text = format_number(payload)
    else:
        text = payload
    return Message(node_id, child_id, command, ack, sub_type, text)


def format_number(value: float) -> str:
    """A number as MySensors nodes print it: no exponent, no trailing ``.0``."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")
