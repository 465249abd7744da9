"""Speed-ups for paho-mqtt on the hub's hot paths: decoding, reading and writing.

- MQTT 5 PUBLISH decoding: paho builds a new ``Properties`` object for every received
  PUBLISH, and its constructor rebuilds three lookup tables (a list and two dicts of ~30
  entries) that never change, then ``unpack`` calls ``clear``, which walks all ~30 names with
  string replaces. Measured on the target machine that was ~16 µs of CPU per message: a
  quarter of the hub's whole budget. :class:`SharedTableProperties` shares those tables and
  clears only what is set. It behaves identically (same class hierarchy, same attributes, same
  errors); the test suite decodes packets with and without it and compares. It is installed
  only into paho's packet decoder module, and only when that module still uses the stock class.
- Reading: :class:`BufferedReceive` serves paho's three small ``recv`` calls per packet from
  one large read, and hands the QoS 0 PUBLISH packets it holds straight to the hub
  (:meth:`BufferedReceive.take_publishes`): paho spends ~15 µs on each (a PublishPacket, an
  MQTTMessage with its MQTTMessageInfo and Condition, a Properties, callback matching under
  two locks) where the hub needs only the topic and the payload. Everything else (CONNACK,
  SUBACK, PUBACK, QoS 1 and 2, anything unusual) still goes through paho, in order, one
  packet at a time (:func:`read_one_packet`).
- Writing: :class:`BufferedSend` sends what paho writes in one ``send`` per event-loop turn
  instead of one per packet, and takes the hub's QoS 0 publishes (the mirror's states) built
  here (:meth:`BufferedSend.add_publish`): paho's ``publish`` spends ~10 µs on each (an
  MQTTMessageInfo with its Condition, a mid under a lock, a debug-log call, a queue entry and
  a write attempt) for a packet that needs no acknowledgement and no retry.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from paho.mqtt import _packet
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

_TEMPLATE = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_COMPRESSED_NAMES = frozenset(name.replace(" ", "") for name in _TEMPLATE.names)


class SharedTableProperties(Properties):
    """``Properties`` with its constant lookup tables shared instead of rebuilt per packet."""

    def __init__(self, packetType: int) -> None:  # noqa: N803 - paho's parameter name
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", _TEMPLATE.types)
        object.__setattr__(self, "names", _TEMPLATE.names)
        object.__setattr__(self, "properties", _TEMPLATE.properties)

    def clear(self) -> None:
        """Remove every property value that is set (and only those)."""
        for name in [key for key in self.__dict__ if key in _COMPRESSED_NAMES]:
            delattr(self, name)


def install() -> bool:
    """Use the shared-table class in paho's packet decoder; return True if it is in place."""
    current: Any = getattr(_packet, "Properties", None)
    if current is SharedTableProperties:
        return True
    if current is not Properties:
        return False  # a paho we do not know: leave it alone
    setattr(_packet, "Properties", SharedTableProperties)  # noqa: B010 - paho does not export it
    return True


class BufferedReceive:
    """Serve paho's small reads from one large socket read.

    paho reads every packet with at least three ``recv`` calls (the command byte, each length
    byte, then the body): three system calls per message, about a tenth of the hub's CPU at
    high rates. Installed on a client, this reads up to ``size`` bytes at once and hands paho
    the pieces it asks for. The owner must call :meth:`reset` whenever the socket closes (the
    bytes left belong to the old connection) and keep reading while :meth:`pending` is true:
    buffered bytes do not make the socket readable.
    """

    def __init__(self, client: Any, size: int = 65536) -> None:
        self._recv = client._sock_recv  # paho's own, which maps TLS's "want read" and so on
        self._size = size
        self._buffer = b""
        self._position = 0
        client._sock_recv = self

    def __call__(self, bufsize: int) -> bytes:
        buffer, position = self._buffer, self._position
        if position >= len(buffer):
            buffer = bytes(self._recv(self._size))  # BlockingIOError when nothing is waiting
            if not buffer:
                return buffer  # the broker closed the connection
            self._buffer, position = buffer, 0
        chunk = buffer[position : position + bufsize]
        self._position = position + len(chunk)
        return chunk

    def pending(self) -> bool:
        """True while bytes already read from the socket wait to be handed to paho."""
        return self._position < len(self._buffer)

    def fill(self) -> bool | None:
        """Read from the socket into the empty buffer: True when bytes came, False when none
        are waiting, None when the read failed or the broker closed (paho's next read then
        meets the same condition and handles it)."""
        try:
            data = bytes(self._recv(self._size))
        except BlockingIOError:
            return False
        except Exception:  # paho's own read meets it again and reports it
            return None
        if not data:
            return None
        self._buffer, self._position = data, 0
        return True

    def top_up(self) -> bool | None:
        """When the bytes left are the start of a QoS 0 PUBLISH that a read cut in two, read
        what the socket has behind them, so :meth:`take_publishes` can take it whole: True
        when bytes came, None when none are waiting yet (keep the start and wait until the
        socket is readable), False when the bytes left are anything else (paho's to read).
        Only between packets, like :meth:`take_publishes`.

        Without it the cut packet went through paho's own decoding: under load the socket
        holds 5 to 15 kB per read, so one message in 60 to 100, and more with larger payloads
        when the hub keeps up (the rest of the packet is often still on its way). Packets
        larger than one read are still left to paho (stitching them would copy them over and
        over).
        """
        buffer, position = self._buffer, self._position
        end = len(buffer)
        if position >= end or buffer[position] & 0xF6 != 0x30:
            return False
        length, start = _varint(buffer, position + 1, end)
        if length < 0:
            if end - position > 4:
                return False  # a malformed length: paho reports it
        elif start + length <= end or start + length - position > self._size:
            return False  # complete (not what stopped the taking), or too big to stitch
        try:
            data = bytes(self._recv(self._size))
        except BlockingIOError:
            return None  # the rest is still on its way
        except Exception:  # a failed read: paho's next read meets it again and reports it
            return False
        if not data:
            return False  # the broker closed: paho's next read finds out
        self._buffer, self._position = buffer[position:] + data, 0
        return True

    def take_publishes(self, deliver: Callable[[str, bytes], None], v5: bool, limit: int) -> int:
        """Deliver up to ``limit`` complete QoS 0 PUBLISH packets from the head of the buffer
        as ``deliver(topic, payload)``; return how many. Stops at the first packet that is
        anything else, incomplete or unusual (a topic alias, a bad length), leaving it to paho.

        Only call this between packets: when paho has no packet half read.
        """
        buffer, position = self._buffer, self._position
        end = len(buffer)
        taken = 0
        while position < end and taken < limit:
            # Fixed header: type 3 (PUBLISH), QoS 0 and so DUP 0; the RETAIN bit may be either.
            if buffer[position] & 0xF6 != 0x30:
                break
            length, start = _varint(buffer, position + 1, end)
            if length < 0 or start + length > end:
                break  # not all here yet (or malformed): paho reads it
            stop = start + length
            if length < 2:
                break
            topic_end = start + 2 + ((buffer[start] << 8) | buffer[start + 1])
            if topic_end == start + 2 or topic_end > stop:
                break  # an empty topic (an alias) or a bad length
            body = topic_end
            if v5:
                properties, body = _varint(buffer, topic_end, stop)
                if properties < 0 or body + properties > stop:
                    break
                body += properties  # the hub reads no PUBLISH property
            try:
                topic = buffer[start + 2 : topic_end].decode("utf-8")
            except UnicodeDecodeError:
                break  # paho's path reports it
            self._position = position = stop
            taken += 1
            deliver(topic, buffer[body:stop])
            if self._buffer is not buffer:
                break  # a handler's work closed the connection: the rest belonged to it
        return taken

    def reset(self) -> None:
        """Forget buffered bytes (the connection they came from is gone)."""
        self._buffer = b""
        self._position = 0


def read_one_packet(client: Any) -> int:
    """paho's ``loop_read`` for one packet; paho's own result code.

    ``loop_read`` reads as many packets as the client has messages in flight (queued QoS 0
    publishes count too), each through paho's slow decoding. Under load the hub has thousands
    queued, so the one QoS 1 command or PUBACK that needs paho took thousands of plain
    readings behind it off the fast path: a fifth of a saturated hub's messages, measured.
    A paho without the internals this needs is read its own way.
    """
    packet_read = getattr(client, "_packet_read", None)
    handle = getattr(client, "_loop_rc_handle", None)
    if packet_read is None or handle is None:
        return int(client.loop_read())
    if client._sock is None:
        return int(MQTTErrorCode.MQTT_ERR_NO_CONN)
    code = packet_read()
    if code > 0:
        return int(handle(code))
    return int(MQTTErrorCode.MQTT_ERR_SUCCESS)  # a packet, or nothing waiting (as loop_read)


def _varint(buffer: bytes, position: int, end: int) -> tuple[int, int]:
    """MQTT's variable byte integer at ``position``: (value, position after it), or (-1, _)
    when it runs past ``end`` or is longer than four bytes."""
    value = 0
    shift = 0
    while position < end and shift < 28:
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    return -1, position


_DISCONNECT = 0xE0
# MQTT's limit on a packet's remaining length (a four-byte variable byte integer).
_MAX_REMAINING = 268_435_455


def append_publish(
    buffer: bytearray, topic: bytes, payload: bytes, *, retain: bool = False, v5: bool = False
) -> None:
    """Append a QoS 0 PUBLISH packet (MQTT 3.1.1, or 5 with no properties) to ``buffer``.

    The caller has checked ``topic`` (a valid topic name, at most 65,535 bytes) and that the
    packet fits MQTT's size limit.
    """
    remaining = 2 + len(topic) + (1 if v5 else 0) + len(payload)
    buffer.append(0x31 if retain else 0x30)
    while remaining > 0x7F:
        buffer.append((remaining & 0x7F) | 0x80)
        remaining >>= 7
    buffer.append(remaining)
    buffer += len(topic).to_bytes(2, "big")
    buffer += topic
    if v5:
        buffer.append(0)  # no properties
    buffer += payload


class BufferedSend:
    """Collect paho's writes and send them with one system call per batch.

    paho sends every packet with its own ``send`` as soon as it is queued: one system call per
    message the hub publishes (each mirrored state, each command). Installed on a client, this
    takes what paho writes into a buffer (paho then counts it as sent) and :meth:`flush` sends
    the buffer at once; the owner flushes once per event-loop turn, when the socket is writable,
    and treats :meth:`pending` as "wants to write". Past ``limit`` bytes it refuses more, so paho
    keeps further packets queued itself. A DISCONNECT is sent at once with what precedes it,
    because paho closes the socket right after writing one.
    """

    def __init__(self, client: Any, limit: int = 1 << 20) -> None:
        self._send = client._sock_send  # paho's own, which maps TLS's "want write" and so on
        self._limit = limit
        self._pending = bytearray()
        client._sock_send = self

    def __call__(self, data: bytes | bytearray) -> int:
        if len(self._pending) >= self._limit:
            raise BlockingIOError  # paho keeps the packet and asks to write later
        self._pending += data
        if data and data[0] == _DISCONNECT:
            self._flush_before_close()
        return len(data)

    def pending(self) -> bool:
        """True while bytes wait to be sent."""
        return bool(self._pending)

    def add_publish(self, topic: str, payload: bytes | str, retain: bool, v5: bool) -> bool:
        """Queue a QoS 0 PUBLISH behind what paho wrote; False when paho should take it: the
        buffer is full (paho then holds it, in order), or the topic or payload is too long
        (paho raises its own error). Raises ValueError for a topic with a wildcard, as paho.

        Only while paho holds no packets back: those must go out first.
        """
        pending = self._pending
        if len(pending) >= self._limit:
            return False
        name = topic.encode()
        if b"+" in name or b"#" in name:
            raise ValueError("Publish topic cannot contain wildcards.")
        if isinstance(payload, str):
            payload = payload.encode()
        if not name or len(name) > 0xFFFF or len(name) + len(payload) > _MAX_REMAINING - 8:
            return False  # paho raises its error for these
        append_publish(pending, name, payload, retain=retain, v5=v5)
        return True

    def flush(self) -> bool:
        """Send what the socket takes now; True when nothing is left. Raises OSError when the
        connection is broken (the buffer is then dropped: it belonged to that connection)."""
        pending = self._pending
        try:
            while pending:
                sent = self._send(pending)
                if sent <= 0:
                    return False
                del pending[:sent]
        except BlockingIOError:
            return False
        except OSError:
            pending.clear()
            raise
        return True

    def reset(self) -> None:
        """Forget unsent bytes (the connection they were for is gone)."""
        self._pending.clear()

    def _flush_before_close(self) -> None:
        deadline = time.monotonic() + 1.0
        with contextlib.suppress(OSError):
            while not self.flush() and time.monotonic() < deadline:
                time.sleep(0.001)
        self._pending.clear()
