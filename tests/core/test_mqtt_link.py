"""The hub's MQTT link across a broker restart: what it kept offline and what its hooks send."""

from __future__ import annotations

import asyncio
from typing import Any

from hub.mqtt import MqttLink
from tests.hubtest import eventually
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
