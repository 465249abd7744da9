"""MQTT packets built by hand for tests, independently of the code under test."""

from __future__ import annotations

from paho.mqtt.properties import Properties


def varint(value: int) -> bytes:
    """MQTT's variable byte integer."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def publish(
    topic: bytes,
    payload: bytes,
    *,
    v5: bool,
    qos: int = 0,
    retain: bool = False,
    props: Properties | None = None,
    packet_id: int = 7,
) -> bytes:
    """A whole PUBLISH packet (MQTT 5 or 3.1.1)."""
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += packet_id.to_bytes(2, "big")
    if v5:
        body += props.pack() if props is not None else b"\x00"
    body += payload
    header = 0x30 | (qos << 1) | int(retain)
    return bytes([header]) + varint(len(body)) + body
