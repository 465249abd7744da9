"""The protocol logic of a DIY MySensors node with a relay and a temperature sensor.

Runs unchanged on MicroPython and CPython: it needs no module (``typing`` only for type
checkers, when present), and everything that touches
hardware (the relay, the thermometer, the clock, the UART, where the node id is kept) comes
in through a ``hardware`` object. ``main.py`` gives it the board's pins; the hub's tests give
it a simulated relay and thermometer on one end of a pseudo-terminal.

The hardware object has these methods:

``write(data)``            send bytes on the serial line
``ticks_ms()``             a millisecond clock (any origin; may wrap like MicroPython's)
``set_relay(on)``          switch the relay
``relay()``                the relay's state (True: on)
``temperature()``          degrees Celsius, or None when there is no reading
``load_id()``              the stored node id, or None
``save_id(node_id)``       keep the node id across reboots
``reboot()``               restart the board (optional)

What the node does (see PROTOCOL.md beside this file): without an id it asks for one every
few seconds (I_ID_REQUEST) until the controller answers (I_ID_RESPONSE); then it presents
itself and its two children, asks for the time and the unit system, reports the relay and
the temperature; it reports the temperature every ``report_ms`` and a heartbeat every
``heartbeat_ms``; it obeys ``set`` of V_STATUS on the relay child (echoing the message when
an ack is requested, then reporting the new state), answers ``req`` and heartbeat requests,
and presents itself again when asked.

Annotations are built-in types or quoted names (CPython evaluates them, MicroPython ignores
them) and there are no f-strings: MicroPython builds differ in what they accept.
"""

try:
    from typing import TYPE_CHECKING
except ImportError:  # MicroPython has no typing module
    TYPE_CHECKING = False  # type: ignore[misc]  # a plain flag there

if TYPE_CHECKING:
    from typing import Protocol

    class Hardware(Protocol):
        """What the node needs of the board (see the module documentation)."""

        def write(self, data: bytes) -> None: ...
        def ticks_ms(self) -> int: ...
        def set_relay(self, on: bool) -> None: ...
        def relay(self) -> bool: ...
        def temperature(self) -> float | None: ...
        def load_id(self) -> int | None: ...
        def save_id(self, node_id: int) -> None: ...


LIBRARY_VERSION = "2.3.2"
RELAY_CHILD = 1
TEMP_CHILD = 2
NO_ID = 255
NODE_CHILD = 255
MAX_LINE = 256

# Command numbers and the types this node speaks (MyMessage.h).
C_PRESENTATION = 0
C_SET = 1
C_REQ = 2
C_INTERNAL = 3
S_BINARY = 3
S_TEMP = 6
S_ARDUINO_NODE = 17
V_TEMP = 0
V_STATUS = 2
I_TIME = 1
I_ID_REQUEST = 3
I_ID_RESPONSE = 4
I_CONFIG = 6
I_SKETCH_NAME = 11
I_SKETCH_VERSION = 12
I_REBOOT = 13
I_HEARTBEAT_REQUEST = 18
I_PRESENTATION = 19
I_HEARTBEAT_RESPONSE = 22


def _elapsed(now: int, then: int) -> int:
    """Milliseconds from ``then`` to ``now`` on a clock that may wrap (MicroPython ticks)."""
    diff = now - then
    if diff < 0:
        diff += 1 << 30  # MicroPython's ticks_ms wraps at 2**30
    return diff


def format_temperature(celsius: float) -> str:
    """One decimal, as MySensors sketches send it: ``21.5``."""
    return "%.1f" % celsius  # noqa: UP031 - some MicroPython builds lack f-strings


def parse(line: bytes) -> "tuple[int, int, int, int, int, str] | None":
    """A line as (node, child, command, ack, type, payload), or None if it is malformed."""
    try:
        text = line.decode("ascii")
    except (UnicodeError, ValueError):
        return None
    text = text.rstrip("\r")
    parts = text.split(";", 5)
    if len(parts) != 6:
        return None
    numbers = []
    for part in parts[:5]:
        if not part or len(part) > 3 or not part.isdigit():
            return None
        value = int(part)
        if value > 255:
            return None
        numbers.append(value)
    if numbers[2] > 4 or numbers[3] > 1:
        return None
    return numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], parts[5]


def encode(node: int, child: int, command: int, ack: int, kind: int, payload: str = "") -> bytes:
    """One line, newline included."""
    fields = (node, child, command, ack, kind, payload)
    return (";".join(str(f) for f in fields) + "\n").encode("ascii")


class Node:
    """One node: feed it the bytes the serial line brings, call ``tick()`` often."""

    def __init__(
        self,
        hardware: "Hardware",
        sketch_name: str = "RelayTemp",
        sketch_version: str = "1.0",
        report_ms: int = 60000,
        heartbeat_ms: int = 300000,
        id_retry_ms: int = 5000,
        report_on_set: bool = True,
    ) -> None:
        self.hw = hardware
        self.sketch_name = sketch_name
        self.sketch_version = sketch_version
        self.report_ms = report_ms
        self.heartbeat_ms = heartbeat_ms
        self.id_retry_ms = id_retry_ms
        # False plays the many sketches that switch the relay and never say so: only the
        # library's echo of the command tells the controller it arrived.
        self.report_on_set = report_on_set
        stored = hardware.load_id()
        self.node_id = stored if stored is not None and 0 < stored < NO_ID else None
        self.metric = True
        self.clock_offset = None  # type: int | None  # controller time minus ticks (s)
        self.presented = False
        self.malformed = 0
        self.heartbeats = 0
        self._buffer = b""
        self._discarding = False
        now = hardware.ticks_ms()
        self._last_id_request = None  # type: int | None
        self._last_report = now
        self._last_heartbeat = now

    # ----- sending -------------------------------------------------------------------------

    def send(self, child: int, command: int, kind: int, payload: str = "", ack: int = 0) -> None:
        """Send one message from this node."""
        node = self.node_id if self.node_id is not None else NO_ID
        self.hw.write(encode(node, child, command, ack, kind, payload))

    def present(self) -> None:
        """Present the node and its children, then report the current states."""
        self.send(NODE_CHILD, C_PRESENTATION, S_ARDUINO_NODE, LIBRARY_VERSION)
        self.send(NODE_CHILD, C_INTERNAL, I_SKETCH_NAME, self.sketch_name)
        self.send(NODE_CHILD, C_INTERNAL, I_SKETCH_VERSION, self.sketch_version)
        self.send(RELAY_CHILD, C_PRESENTATION, S_BINARY, "Relay")
        self.send(TEMP_CHILD, C_PRESENTATION, S_TEMP, "Temperature")
        self.send(NODE_CHILD, C_INTERNAL, I_CONFIG, "0")
        self.send(NODE_CHILD, C_INTERNAL, I_TIME, "")
        self.presented = True
        self.report_relay()
        self.report_temperature()

    def report_relay(self) -> None:
        """Report the relay's state."""
        self.send(RELAY_CHILD, C_SET, V_STATUS, "1" if self.hw.relay() else "0")

    def report_temperature(self) -> None:
        """Report the temperature, if there is a reading."""
        celsius = self.hw.temperature()
        if celsius is None:
            return
        value = celsius if self.metric else celsius * 9 / 5 + 32
        self.send(TEMP_CHILD, C_SET, V_TEMP, format_temperature(value))

    def heartbeat(self) -> None:
        """Tell the controller this node is alive."""
        self.heartbeats += 1
        self.send(NODE_CHILD, C_INTERNAL, I_HEARTBEAT_RESPONSE, str(self.heartbeats))

    # ----- time ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Do what is due: ask for an id, present, report, beat."""
        now = self.hw.ticks_ms()
        if self.node_id is None:
            last = self._last_id_request
            if last is None or _elapsed(now, last) >= self.id_retry_ms:
                self._last_id_request = now
                self.send(NODE_CHILD, C_INTERNAL, I_ID_REQUEST, "")
            return
        if not self.presented:
            self.present()
            self._last_report = self._last_heartbeat = now
            return
        if _elapsed(now, self._last_report) >= self.report_ms:
            self._last_report = now
            self.report_temperature()
        if _elapsed(now, self._last_heartbeat) >= self.heartbeat_ms:
            self._last_heartbeat = now
            self.heartbeat()

    # ----- receiving -----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take bytes from the serial line; handle every complete line."""
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = self._buffer[:end]
            self._buffer = self._buffer[end + 1 :]
            if self._discarding:
                self._discarding = False
                continue
            self.handle(line)
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
            self._discarding = True
            self.malformed += 1

    def handle(self, line: bytes) -> None:
        """Act on one line."""
        message = parse(line)
        if message is None:
            if line.strip():
                self.malformed += 1
            return
        node, child, command, ack, kind, payload = message
        if self.node_id is None:
            if node == NO_ID and command == C_INTERNAL and kind == I_ID_RESPONSE:
                self._take_id(payload)
            return
        if node != self.node_id:
            return  # another node's message
        if command == C_SET:
            self._on_set(child, ack, kind, payload)
        elif command == C_REQ:
            self._on_req(child, kind)
        elif command == C_INTERNAL:
            self._on_internal(kind, payload)

    def _take_id(self, payload: str) -> None:
        if not payload.isdigit() or not 0 < int(payload) < NO_ID:
            self.malformed += 1
            return
        self.node_id = int(payload)
        self.hw.save_id(self.node_id)
        self.presented = False  # presented on the next tick

    def _on_set(self, child: int, ack: int, kind: int, payload: str) -> None:
        if child != RELAY_CHILD or kind != V_STATUS or payload not in ("0", "1"):
            return
        if ack:
            # What the MySensors library does: echo the message back, marked as the ack.
            self.send(child, C_SET, kind, payload, ack=1)
        self.hw.set_relay(payload == "1")
        if self.report_on_set:
            self.report_relay()

    def _on_req(self, child: int, kind: int) -> None:
        if child == RELAY_CHILD and kind == V_STATUS:
            self.report_relay()
        elif child == TEMP_CHILD and kind == V_TEMP:
            self.report_temperature()

    def _on_internal(self, kind: int, payload: str) -> None:
        if kind == I_HEARTBEAT_REQUEST:
            self.heartbeat()
        elif kind == I_PRESENTATION:
            self.present()
        elif kind == I_CONFIG:
            self.metric = payload != "I"
        elif kind == I_TIME and payload.isdigit():
            self.clock_offset = int(payload) - self.hw.ticks_ms() // 1000
        elif kind == I_REBOOT:
            reboot = getattr(self.hw, "reboot", None)
            if reboot is not None:
                reboot()
