"""The bench's load connection: its packets are what paho decodes, and a real broker delivers
them whole, in order, retained where asked, for MQTT 3.1.1 and 5."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion

from hub.benchload import LoadLink
from hub.paho_speedups import append_publish
from tests.mqttprobe import MqttProbe


def _split(packet: bytes) -> tuple[int, int, bytes]:
    """(first byte, remaining length, the rest) of one MQTT packet, read by the spec."""
    length = shift = 0
    position = 1
    while True:
        byte = packet[position]
        position += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return packet[0], length, packet[position:]


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize("size", [0, 100, 200, 20_000, 2_100_000])
@pytest.mark.parametrize("retain", [False, True])
def test_packets_decode_in_paho_to_what_was_published(v5: bool, size: int, retain: bool) -> None:
    topic = "home/kitchen_plug/tele/SENSOR/ü"
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    packet = bytearray()
    append_publish(packet, topic.encode(), payload, retain=retain, v5=v5)
    first, length, rest = _split(bytes(packet))
    assert first == (0x31 if retain else 0x30)
    assert length == len(rest)  # the remaining length covers exactly the rest
    decoded = _packet.decode_publish(first, rest, paho.MQTTv5 if v5 else paho.MQTTv311)
    assert decoded.topic == topic.encode()
    assert decoded.payload == payload
    assert decoded.qos == 0
    assert decoded.retain == retain


def _load_link(url: str, v5: bool) -> LoadLink:
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"load-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
    )
    link = LoadLink(client, v5=v5)
    link.connect(urlsplit(url).port or 1883)
    return link


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_a_batch_arrives_whole_and_in_order_and_retained_where_asked(
    mqtt_url: str, v5: bool
) -> None:
    base = f"benchload/{uuid.uuid4().hex[:8]}"
    with MqttProbe(mqtt_url) as watcher:
        watcher.subscribe(f"{base}/#", qos=0)
        link = _load_link(mqtt_url, v5)
        try:
            for n in range(500):
                link.add(f"{base}/seq", str(n).encode())
            link.add(f"{base}/big", b"B" * 300_000)
            link.add(f"{base}/kept", b"last known", retain=True)
            assert not watcher.messages  # queued, not sent before the flush
            link.flush()
            watcher.wait_for(f"{base}/kept")
            seq = [int(m.payload) for m in watcher.messages if m.topic == f"{base}/seq"]
            assert seq == list(range(500))
            assert [len(m.payload) for m in watcher.messages if m.topic == f"{base}/big"] == [
                300_000
            ]
            # Still connected after a quiet spell (no keepalive to miss), and still in order.
            time.sleep(0.5)
            link.add(f"{base}/seq", b"500")
            link.flush()
            watcher.wait_for(f"{base}/seq", lambda p: p == b"500")
        finally:
            link.close()
    # The retained message is kept by the broker for a later subscriber.
    with MqttProbe(mqtt_url) as late:
        late.subscribe(f"{base}/kept", qos=0)
        late.wait_for(f"{base}/kept", lambda p: p == b"last known")
        assert late.messages[0].retain
        late.publish(f"{base}/kept", b"", retain=True)  # leave the broker clean
