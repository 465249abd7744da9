"""The hub's MQTT link across a broker restart: what it kept offline and what its hooks send."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from hub.mqtt import MqttLink
from tests.hubtest import eventually
from tests.mqttpackets import publish
from tests.mqttprobe import MqttProbe


async def test_reconnect_hooks_send_after_the_messages_kept_while_offline(
    fresh_mosquitto: Any,
) -> None:
    # The command router re-sends each entity's newest command from an on-connect hook. paho
    # replays what it kept offline only after its CONNACK callback: a hook that sent first
    # would have the device end at an older command (a light back at a stale brightness).
    url = fresh_mosquitto.url
    topic = "link-order/light/set"
    link = MqttLink(url, client_id="link-order-test")
    await link.start()
    try:
        link.on_connect(lambda: link.publish(topic, b"newest", qos=1))
        await asyncio.to_thread(fresh_mosquitto.stop_sync)
        await eventually(lambda: not link.connected, 5, "the link saw the broker go")
        for i in range(5):
            link.publish(topic, f"old-{i}".encode(), qos=1)
        # Let the link's first quick retry fail: the next comes 2 s later, time enough for the
        # probe to subscribe on the restarted broker before the link is back.
        await asyncio.sleep(0.5)
        await asyncio.to_thread(fresh_mosquitto.start_sync)
        with MqttProbe(url) as probe:
            await asyncio.to_thread(probe.subscribe, topic)
            await eventually(lambda: link.connected, 15, "the link reconnected")
            received = [
                (await asyncio.to_thread(probe.wait_for, topic, None, 10))[1] for _ in range(6)
            ]
        assert received == [b"old-0", b"old-1", b"old-2", b"old-3", b"old-4", b"newest"]
    finally:
        await link.stop()


async def test_large_bursts_and_big_payloads_arrive_whole_and_in_order(mqtt_url: str) -> None:
    # The link reads the socket in large chunks and writes many packets at once: messages that
    # span chunks, and bursts larger than one read, must still arrive whole and in order.
    topic = "link-burst/data"
    received: list[bytes] = []
    link = MqttLink(mqtt_url, client_id="link-burst-test")
    await link.start()
    try:
        link.subscribe(topic, lambda t, payload, at: received.append(bytes(payload)), owner="test")
        with MqttProbe(mqtt_url) as probe:
            await asyncio.to_thread(probe.subscribe, f"{topic}/back")
            payloads = [f"m{i:05d}".encode() * (1 + i % 7) for i in range(3000)]
            payloads.insert(1500, bytes(range(256)) * 600)  # 150 KB: spans many reads
            for payload in payloads:
                await asyncio.to_thread(probe.publish, topic, payload, 0)
            await eventually(lambda: len(received) == len(payloads), 20, "not all received")
            assert received == payloads
            # And the other way: a burst published in one loop turn reaches the broker whole.
            for i in range(2000):
                link.publish(f"{topic}/back", f"back-{i}".encode())
            link.publish(f"{topic}/back", bytes(range(256)) * 600)
            got = [
                (await asyncio.to_thread(probe.wait_for, f"{topic}/back", None, 10))[1]
                for _ in range(2001)
            ]
        assert got[:2000] == [f"back-{i}".encode() for i in range(2000)]
        assert got[2000] == bytes(range(256)) * 600
    finally:
        await link.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_published_messages_keep_their_order_when_the_send_buffer_fills(
    mqtt_url: str, protocol: str
) -> None:
    # The link writes QoS 0 publishes itself and hands the rest to paho. Once its send buffer
    # is full, paho holds packets back; what is published after that must not overtake them.
    topic = f"link-order-{protocol}/data"
    received: list[tuple[str, bytes]] = []
    reader = MqttLink(mqtt_url, client_id=f"link-order-reader-{protocol}", protocol=protocol)
    writer = MqttLink(mqtt_url, client_id=f"link-order-writer-{protocol}", protocol=protocol)
    await reader.start()
    await writer.start()
    try:
        reader.subscribe(
            f"{topic}/#", lambda t, p, at: received.append((t, bytes(p))), owner="test", qos=1
        )
        await asyncio.sleep(0.2)  # the subscription reaches the broker first
        expected = []
        for i in range(200):
            qos = 1 if i % 7 == 3 else 0
            payload = f"{i:04d}".encode() * (50_000 if i % 3 == 0 else 1)  # 200 kB or 4 bytes
            writer.publish(f"{topic}/q{qos}", payload, qos=qos)
            expected.append((f"{topic}/q{qos}", payload))
            if i % 50 == 49:
                await asyncio.sleep(0)  # the socket takes part of 3 MB between turns
        await eventually(lambda: len(received) >= len(expected), 20, "not all received")
        assert [(t, p[:4]) for t, p in received] == [(t, p[:4]) for t, p in expected]
        assert received == expected
        with pytest.raises(ValueError, match="wildcard"):
            writer.publish(f"{topic}/+", b"a wildcard is no topic name")
    finally:
        await writer.stop()
        await reader.stop()


async def test_stop_says_goodbye_so_the_broker_keeps_the_last_will(mqtt_url: str) -> None:
    # Writes are batched; the DISCONNECT must still reach the broker before the socket closes,
    # or the broker would announce the hub as gone (its last will) on every clean stop.
    will_topic = "link-will/status"
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.subscribe, will_topic)
        link = MqttLink(mqtt_url, client_id="link-will-test", will=(will_topic, b"offline"))
        await link.start()
        link.publish(will_topic, b"online", qos=1, retain=False)
        await asyncio.to_thread(probe.wait_for, will_topic, lambda p: p == b"online", 5)
        await link.stop()
        await asyncio.sleep(1.0)
        with pytest.raises(AssertionError):
            await asyncio.to_thread(probe.wait_for, will_topic, lambda p: p == b"offline", 1)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_mixed_qos_and_retained_messages_arrive_in_order_through_both_paths(
    mqtt_url: str, protocol: str
) -> None:
    # QoS 0 PUBLISHes skip paho's decoding (hub.paho_speedups); QoS 1 and 2 and everything
    # else go through paho. Interleaved, they keep their order, QoS 1 and 2 are acknowledged
    # (the broker would resend them otherwise), nothing is lost or doubled.
    topic = f"link-mixed-{protocol}/data"
    received: list[tuple[str, bytes]] = []
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.publish, f"{topic}/kept", b"retained", 1, True)
        link = MqttLink(mqtt_url, client_id=f"link-mixed-{protocol}", protocol=protocol)
        await link.start()
        try:
            link.subscribe(
                f"{topic}/#",
                lambda t, payload, at: received.append((t, bytes(payload))),
                owner="test",
                qos=2,
            )
            await eventually(lambda: received == [(f"{topic}/kept", b"retained")], 5)
            expected = [(f"{topic}/kept", b"retained")]
            for i in range(600):
                qos = (0, 0, 0, 1, 0, 2)[i % 6]
                sub = f"{topic}/q{qos}"
                payload = f"{i}:".encode() + b"x" * (i % 50) * (200 if i % 97 == 0 else 1)
                await asyncio.to_thread(probe.publish, sub, payload, qos)
                expected.append((sub, payload))
            await eventually(lambda: len(received) >= len(expected), 20, "not all received")
            await asyncio.sleep(0.3)  # nothing more (no duplicate from an unacknowledged one)
            # QoS 2 is delivered on the broker's PUBREL, a round trip after its PUBLISH, so
            # with paho alone too the messages after it may overtake it: order holds for the
            # rest, and every QoS 2 message arrives exactly once.
            q2 = f"{topic}/q2"
            ordered = [m for m in received if m[0] != q2]
            assert ordered == [m for m in expected if m[0] != q2]
            assert sorted(m for m in received if m[0] == q2) == sorted(
                m for m in expected if m[0] == q2
            )
            assert link.stats.received == len(expected)
        finally:
            await link.stop()


_PROJECT = Path(__file__).resolve().parents[2]

# Floods a topic with QoS 0 messages from a process of its own (a thread would compete with
# the loop under test for the GIL) until its stdin closes.
_FLOOD = """
import sys, threading, uuid
import paho.mqtt.client as paho
from hub.benchload import LoadLink
port, topic = int(sys.argv[1]), sys.argv[2]
client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"flood-{uuid.uuid4().hex[:8]}")
link = LoadLink(client, v5=False)
link.connect(port)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
number = 0
while not stop.is_set():
    for _ in range(500):
        link.add(topic, b"reading %d" % number)
        number += 1
    link.flush()
link.close()
"""


async def test_timers_keep_running_while_a_flood_keeps_the_link_busy(mqtt_url: str) -> None:
    # A link that cannot keep up reads in bursts and comes back for bytes already read after
    # the loop's other callbacks. Timers (the storage flush, rule delays, the stats) must still
    # get every turn: the link once added one more read-back to each turn, so under sustained
    # load turns grew to seconds and everything else waited that long.
    topic = "link-flood/data"
    handled = 0

    def slow_handler(topic: str, payload: bytes, at: float) -> None:
        nonlocal handled
        handled += 1
        busy_until = time.perf_counter() + 0.00003
        while time.perf_counter() < busy_until:
            pass

    link = MqttLink(mqtt_url, client_id="link-flood-test")
    await link.start()
    link.subscribe(topic, slow_handler, owner="test")
    await asyncio.sleep(0.2)  # the subscription reaches the broker
    flood = subprocess.Popen(  # noqa: ASYNC220 - starting it does not wait for it
        [sys.executable, "-c", _FLOOD, str(urlsplit(mqtt_url).port), topic],
        stdin=subprocess.PIPE,
        cwd=_PROJECT,
    )
    try:
        await eventually(lambda: handled > 2000, 15, "the flood did not arrive")
        loop = asyncio.get_running_loop()
        handled_before, gaps = handled, []
        last = loop.time()
        deadline = last + 3.0
        while last < deadline:
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now
        # The link was busy all along (10,000 messages take it a second at least) ...
        assert handled - handled_before > 10_000
        # ... and a 5 ms timer still fired every other turn of two bursts of 256 messages
        # (about 70 ms here; with the old link, turns kept growing, past 600 ms in 3 s).
        assert max(gaps) < 0.3, f"a timer waited {max(gaps) * 1000:.0f} ms"
    finally:
        assert flood.stdin is not None
        flood.stdin.close()
        await asyncio.to_thread(flood.wait, 10)
        await link.stop()


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return header, await reader.readexactly(length)


def _plain_publish(topic: str, payload: bytes, *, qos: int = 0, packet_id: int = 0) -> bytes:
    """An MQTT 3.1.1 PUBLISH packet."""
    return publish(topic.encode(), payload, v5=False, qos=qos, packet_id=packet_id)


class _StandInBroker:
    """Just enough of an MQTT 3.1.1 broker on loopback for one link, so that a test decides
    exactly which bytes the link reads when; it acknowledges nothing the link publishes."""

    def __init__(self) -> None:
        self.subscribed = asyncio.Event()
        self.acked: list[int] = []  # packet ids of the PUBACKs the link sent
        self.writer: asyncio.StreamWriter | None = None
        self.port = 0
        self._server: asyncio.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _StandInBroker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if self.writer is not None:
            self.writer.close()
        if self._serving is not None:
            await asyncio.wait_for(self._serving, 5)
        await self._server.wait_closed()

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._serving = asyncio.current_task()  # type: ignore[assignment]
        try:
            while True:
                header, body = await _read_packet(reader)
                kind = header >> 4
                if kind == 1:  # CONNECT
                    writer.write(b"\x20\x02\x00\x00")
                elif kind == 8:  # SUBSCRIBE: granted at QoS 1
                    writer.write(b"\x90\x03" + body[:2] + b"\x01")
                    self.subscribed.set()
                elif kind == 4:  # PUBACK
                    self.acked.append(int.from_bytes(body[:2], "big"))
                elif kind == 12:  # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return


@contextlib.asynccontextmanager
async def _stand_in_link(
    topic: str, received: list[bytes]
) -> AsyncIterator[tuple[_StandInBroker, MqttLink]]:
    """A stand-in broker and a link to it, subscribed to ``topic`` (payloads to ``received``)."""
    async with _StandInBroker() as broker:
        link = MqttLink(
            f"mqtt://127.0.0.1:{broker.port}", client_id="link-stand-in", protocol="3.1.1"
        )
        await link.start()
        try:
            link.subscribe(
                topic, lambda t, payload, at: received.append(bytes(payload)), owner="test"
            )
            await asyncio.wait_for(broker.subscribed.wait(), 5)
            yield broker, link
        finally:
            await link.stop()


def _count_paho_deliveries(link: MqttLink) -> list[int]:
    """A one-item list counting the messages paho's own decoding delivers from now on."""
    client = link._client
    assert client is not None
    count = [0]
    deliver = client.on_message

    def counted(*args: Any) -> None:
        count[0] += 1
        deliver(*args)

    client.on_message = counted
    return count


async def test_a_publish_cut_in_two_waits_for_its_rest_without_spinning() -> None:
    # Under load a socket read often ends inside a packet whose rest is still on its way. The
    # link keeps the start and waits for the socket instead of handing the packet to paho's
    # slow byte-by-byte decoding (and must not spin on the bytes it holds meanwhile).
    topic = "cut/reading"
    received: list[bytes] = []
    async with _stand_in_link(topic, received) as (broker, link):
        via_paho = _count_paho_deliveries(link)
        payload = b'{"power": 1234.5, "voltage": 231.4}' * 4
        packet = _plain_publish(topic, payload)
        await broker.send(packet + packet[:9])  # one whole, then one cut in its topic
        await eventually(lambda: len(received) == 1, 5, "the whole packet did not arrive")
        cpu_before = time.process_time()
        await asyncio.sleep(0.5)  # the rest is on its way
        waiting_cpu = time.process_time() - cpu_before
        await broker.send(packet[9:])
        await eventually(lambda: len(received) == 2, 5, "the cut packet did not arrive")
        assert received == [payload, payload]
        assert waiting_cpu < 0.2, f"the link spun for {waiting_cpu:.2f} s of CPU waiting"
        assert via_paho[0] == 0, "the cut packet went through paho's own decoding"


async def test_a_qos1_message_takes_only_itself_off_the_fast_path() -> None:
    # paho's own read takes as many packets as the client has messages in flight; under load
    # the hub has thousands queued, and one QoS 1 command took the plain readings behind it
    # through paho's slow decoding too. It must take the QoS 1 packet alone, and acknowledge it.
    topic = "mixed/reading"
    received: list[bytes] = []
    async with _stand_in_link(topic, received) as (broker, link):
        for number in range(300):  # never acknowledged: all stay in flight
            link.publish("mixed/out", b"%d" % number, qos=1)
        assert link._client is not None
        await eventually(lambda: len(link._client._out_messages) >= 300, 5, "not queued")
        via_paho = _count_paho_deliveries(link)
        burst = _plain_publish(topic, b"command", qos=1, packet_id=7) + b"".join(
            _plain_publish(topic, b"reading %d" % number) for number in range(100)
        )
        await broker.send(burst)
        await eventually(lambda: len(received) == 101, 5, "the burst did not arrive")
        assert received == [b"command"] + [b"reading %d" % number for number in range(100)]
        await eventually(lambda: 7 in broker.acked, 5, "the QoS 1 message was not acked")
        assert via_paho[0] == 1, f"{via_paho[0]} messages went through paho's decoding"
