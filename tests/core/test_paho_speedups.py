"""The shared-table Properties decode MQTT 5 PUBLISH packets exactly like paho's own."""

from __future__ import annotations

import pytest
from paho.mqtt import _packet
from paho.mqtt.client import MQTTv5
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from hub import paho_speedups
from tests.mqttpackets import publish as _publish


def _publish_packet(props: Properties | None) -> bytes:
    topic = b"home/plug/state"
    packed_props = props.pack() if props is not None else b"\x00"
    return len(topic).to_bytes(2, "big") + topic + packed_props + b'{"power": 1.5}'


def _decode(packet: bytes, cls: type[Properties]) -> _packet.PublishPacket:
    original = _packet.Properties
    _packet.Properties = cls
    try:
        return _packet.decode_publish(0x30, packet, MQTTv5)
    finally:
        _packet.Properties = original


def _with_properties() -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("source", "sensor"), ("seq", "7")]
    props.ContentType = "application/json"
    props.MessageExpiryInterval = 30
    return props


@pytest.mark.parametrize("props", [None, _with_properties()], ids=["none", "several"])
def test_decoding_is_identical(props: Properties | None) -> None:
    packet = _publish_packet(props)
    stock = _decode(packet, Properties)
    fast = _decode(packet, paho_speedups.SharedTableProperties)
    assert fast.topic == stock.topic
    assert fast.payload == stock.payload == b'{"power": 1.5}'
    assert isinstance(fast.properties, Properties)
    assert fast.properties.json() == stock.properties.json()  # type: ignore[union-attr]


def test_instances_do_not_share_values() -> None:
    first = paho_speedups.SharedTableProperties(PacketTypes.PUBLISH)
    first.ContentType = "text/plain"
    second = paho_speedups.SharedTableProperties(PacketTypes.PUBLISH)
    assert not hasattr(second, "ContentType")
    first.clear()
    assert not hasattr(first, "ContentType")


def test_invalid_properties_are_still_refused() -> None:
    props = paho_speedups.SharedTableProperties(PacketTypes.PUBLISH)
    with pytest.raises(MQTTException):
        props.ReceiveMaximum = 5  # not a PUBLISH property


def test_install_is_idempotent() -> None:
    assert paho_speedups.install()
    assert paho_speedups.install()
    assert _packet.Properties is paho_speedups.SharedTableProperties


# ----- QoS 0 PUBLISH packets handed straight to the hub ------------------------------------------


class _Socket:
    """What paho's ``_sock_recv`` would return: the given bytes, then nothing waiting."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __call__(self, size: int) -> bytes:
        if not self.data:
            raise BlockingIOError
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


def _receiver(data: bytes, size: int = 65536) -> paho_speedups.BufferedReceive:
    client = type("Client", (), {})()
    client._sock_recv = _Socket(data)  # type: ignore[attr-defined]
    return paho_speedups.BufferedReceive(client, size)


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_qos0_publishes_are_taken_exactly_as_paho_decodes_them(v5: bool) -> None:
    protocol = MQTTv5 if v5 else 4
    packets = [
        _publish(b"home/plug/state", b'{"power": 1.5}', v5=v5),
        _publish(b"retained/topic", b"kept", v5=v5, retain=True),
        _publish("caf\u00e9/\u00fcml".encode(), b"", v5=v5),  # UTF-8 topic, empty payload
        _publish(b"big", bytes(range(256)) * 80, v5=v5),  # a three-byte remaining length
    ]
    if v5:
        packets.append(_publish(b"with/props", b"x", v5=True, props=_with_properties()))
    taken: list[tuple[str, bytes]] = []
    receive = _receiver(b"".join(packets))
    assert receive.fill() is True
    assert receive.take_publishes(lambda t, p: taken.append((t, p)), v5, 100) == len(packets)
    assert not receive.pending()
    for packet, (topic, payload) in zip(packets, taken, strict=True):
        # paho's decoder gets the bytes after the fixed header and the remaining length.
        length_end = 2 if packet[1] < 0x80 else (3 if packet[2] < 0x80 else 4)
        stock = _packet.decode_publish(packet[0], packet[length_end:], protocol)
        assert topic == stock.topic.decode()
        assert payload == stock.payload


def test_anything_but_a_complete_plain_qos0_publish_is_left_to_paho() -> None:
    first = _publish(b"a", b"1", v5=True)
    for other in (
        _publish(b"q1", b"2", v5=True, qos=1),  # needs a PUBACK: paho's
        bytes([0x40, 0x02, 0x00, 0x07]),  # a PUBACK
        _publish(b"", b"alias", v5=True),  # a topic alias: paho resolves it
        _publish(b"\xff\xfe", b"bad", v5=True),  # not UTF-8
        _publish(b"cut", b"short", v5=True)[:-2],  # not all here yet (the last bytes read)
    ):
        taken: list[str] = []
        complete = other[1] == len(other) - 2
        receive = _receiver(first + other + (first if complete else b""))
        receive.fill()
        assert receive.take_publishes(lambda t, p, seen=taken: seen.append(t), True, 100) == 1
        assert taken == ["a"]
        # What is left starts at the other packet, for paho to read byte by byte.
        assert receive(1) == other[:1]


def test_taking_stops_at_the_limit_and_when_the_connection_goes() -> None:
    packets = b"".join(_publish(f"t/{i}".encode(), b"p", v5=False) for i in range(10))
    receive = _receiver(packets)
    receive.fill()
    taken: list[str] = []
    assert receive.take_publishes(lambda t, p: taken.append(t), False, 4) == 4
    assert receive.take_publishes(lambda t, p: taken.append(t), False, 100) == 6
    assert taken == [f"t/{i}" for i in range(10)]
    assert receive.fill() is False  # nothing more waiting

    receive = _receiver(packets)
    receive.fill()
    seen: list[str] = []

    def closing(topic: str, payload: bytes) -> None:
        seen.append(topic)
        receive.reset()  # a handler's work closed the connection

    assert receive.take_publishes(closing, False, 100) == 1
    assert seen == ["t/0"]
    assert not receive.pending()


def test_a_publish_cut_between_two_reads_is_made_whole_for_the_fast_path() -> None:
    packets = [_publish(f"t/{i}".encode(), b"payload %d" % i, v5=False) for i in range(5)]
    data = b"".join(packets)
    cut = len(packets[0]) + len(packets[1]) + 3  # inside the third packet
    receive = _receiver(data, size=cut)  # each read returns at most ``cut`` bytes
    taken: list[str] = []
    assert receive.fill() is True
    assert receive.take_publishes(lambda t, p: taken.append(t), False, 100) == 2
    # Each read cuts a packet: the rest is read behind it, and the taking goes on.
    while receive.top_up():
        receive.take_publishes(lambda t, p: taken.append(t), False, 100)
    assert taken == [f"t/{i}" for i in range(5)]
    assert not receive.pending()


def test_top_up_leaves_everything_else_to_paho() -> None:
    big = _publish(b"big", bytes(300), v5=False)
    for left, behind in (
        (_publish(b"q1", b"x", v5=False, qos=1)[:-1], b"x"),  # a QoS 1 publish: paho's
        (big[:10], big[10:]),  # larger than one read (size 64 below): paho reads it
        (bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), b""),  # a malformed length
        (_publish(b"whole", b"y", v5=False), b""),  # complete: nothing to top up
    ):
        receive = _receiver(left, size=64)
        receive.fill()
        receive._recv = _Socket(behind)  # type: ignore[assignment]
        assert receive.top_up() is False
        assert receive(1) == left[:1]  # still there, from the same byte


def test_a_cut_publish_waits_for_its_rest_instead_of_going_to_paho() -> None:
    packet = _publish(b"cut", b"z" * 40, v5=False)
    receive = _receiver(packet[:7])
    receive.fill()
    taken: list[tuple[str, bytes]] = []
    assert receive.take_publishes(lambda t, p: taken.append((t, p)), False, 100) == 0
    # Nothing more waiting yet: the start stays buffered until the socket is readable again.
    assert receive.top_up() is None
    assert receive.pending()
    receive._recv = _Socket(packet[7:])  # type: ignore[assignment]  # the rest arrives
    assert receive.top_up() is True
    assert receive.take_publishes(lambda t, p: taken.append((t, p)), False, 100) == 1
    assert taken == [("cut", b"z" * 40)]
    assert not receive.pending()
