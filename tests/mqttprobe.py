"""A small synchronous MQTT client for tests: paho with its network loop in a thread."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

Payload = str | bytes | dict[str, Any] | list[Any] | int | float | None


@dataclass(frozen=True, slots=True)
class ProbeMessage:
    """One message the probe received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return json.loads(self.payload)


class MqttProbe:
    """Connect to ``url`` (``mqtt://host:port``), subscribe, publish and wait for messages.

    Every probe has a fresh client id: brokers disconnect the older of two clients that
    share one. Subscriptions are re-sent after a reconnect (the session is clean), so a
    probe survives a broker restart; ``wait_connected()`` waits for that.

    paho calls ``_on_*`` from its network thread; everything they touch is guarded by
    ``self._cond``, which the test thread waits on.
    """

    def __init__(
        self,
        url: str,
        *,
        mqtt5: bool = False,
        client_id: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError(f"MqttProbe needs an mqtt://host:port URL, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 1883
        self.timeout = timeout
        self.client_id = client_id or f"probe-{uuid.uuid4().hex[:16]}"
        self.messages: list[ProbeMessage] = []
        self.connect_results: list[ReasonCode] = []
        self._consumed: set[int] = set()
        self._subscriptions: dict[str, int] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._resubscribing: set[int] = set()
        self._connected = False
        self._cond = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # --- paho's network thread ---------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        with self._cond:
            self.connect_results.append(reason)
            self._connected = not reason.is_failure
            if self._connected:
                for topic, qos in self._subscriptions.items():
                    _result, mid = client.subscribe(topic, qos)
                    if mid is not None:
                        self._resubscribing.add(mid)
            self._cond.notify_all()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        with self._cond:
            self._connected = False
            self._resubscribing.clear()
            self._cond.notify_all()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        with self._cond:
            if mid in self._resubscribing:
                self._resubscribing.discard(mid)
            else:
                self._subacks[mid] = codes
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(ProbeMessage(msg.topic, bytes(msg.payload), msg.qos, msg.retain))
            self._cond.notify_all()

    # --- the test's thread --------------------------------------------------------------

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """True while the broker has accepted the connection."""
        with self._cond:
            return self._connected

    def connect(self) -> None:
        """Connect and wait for the broker's CONNACK; AssertionError if it refuses or is silent."""
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self.wait_connected()

    def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the probe is connected (again, after a broker restart) and subscribed."""
        if not self._wait(lambda: self._connected and not self._resubscribing, timeout):
            raise AssertionError(
                f"probe {self.client_id} not connected to {self.host}:{self.port} "
                f"within {timeout or self.timeout} s; CONNACKs: {self.connect_results}"
            )

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK (re-sent automatically after a reconnect)."""
        with self._cond:
            self._subscriptions[topic] = qos
        result, mid = self._client.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise AssertionError(f"cannot subscribe to {topic!r}: {mqtt.error_string(result)}")
        if not self._wait(lambda: mid in self._subacks, None):
            raise AssertionError(f"no SUBACK for {topic!r} within {self.timeout} s")
        with self._cond:
            granted = self._subacks.pop(mid)
        if any(code.is_failure for code in granted):
            raise AssertionError(f"broker refused the subscription to {topic!r}: {granted}")

    def publish(self, topic: str, payload: Payload, qos: int = 0, retain: bool = False) -> None:
        """Publish; dicts and lists become JSON. QoS 1 and 2 wait for the broker's ack."""
        if isinstance(payload, dict | list):
            payload = json.dumps(payload)
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            info.wait_for_publish(self.timeout)
            if not info.is_published():
                raise AssertionError(f"QoS {qos} publish to {topic!r} not acknowledged")

    def wait_for(
        self,
        topic_filter: str,
        predicate: Callable[[bytes], bool] | None = None,
        timeout: float | None = None,
    ) -> tuple[str, bytes]:
        """Return the oldest message not yet returned whose topic matches and payload passes.

        Messages already received count, so subscribe, act, then wait. A message is
        returned once only. AssertionError after ``timeout`` (default 5 s) lists what came.
        """
        found: list[int] = []

        def match() -> bool:
            for i, msg in enumerate(self.messages):
                if i in self._consumed or not mqtt.topic_matches_sub(topic_filter, msg.topic):
                    continue
                if predicate is None or predicate(msg.payload):
                    found.append(i)
                    return True
            return False

        if not self._wait(match, timeout):
            with self._cond:
                seen = [(m.topic, m.payload[:80]) for m in self.messages[-20:]]
            raise AssertionError(
                f"no message on {topic_filter!r} within {timeout or self.timeout} s"
                f"{' matching the predicate' if predicate else ''}; last received: {seen}"
            )
        with self._cond:
            self._consumed.add(found[0])
            msg = self.messages[found[0]]
        return msg.topic, msg.payload

    def clear(self) -> None:
        """Forget every message received so far."""
        with self._cond:
            self.messages.clear()
            self._consumed.clear()

    def _wait(self, check: Callable[[], bool], timeout: float | None) -> bool:
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        with self._cond:
            while not check():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True
