"""The shared-table Properties decode MQTT 5 PUBLISH packets exactly like paho's own."""

from __future__ import annotations

import pytest
from paho.mqtt import _packet
from paho.mqtt.client import MQTTv5
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from hub import paho_speedups


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
