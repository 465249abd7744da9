"""The hub's MQTT link: paho-mqtt 2.x on its own network thread, handed to asyncio in batches.

Why this shape: measured on the target machine, paho's threaded loop round-trips ~20,000
small messages/s, about four times what a future-per-message asyncio wrapper manages. So paho
keeps its thread; each received message is appended to a deque and the event loop is woken at
most once per batch, so a burst of messages costs one cross-thread wake-up, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from hub.topics import Topic, TopicRouter

_LOGGER = logging.getLogger(__name__)

# One received message as handed from paho's thread to the loop: topic, payload, receive time.
Message = tuple[str, bytes, float]
MessageHandler = Callable[[str, bytes, float], None]
Unsubscribe = Callable[[], None]

# Largest batch handled in one loop callback before yielding to timers and other tasks.
_BATCH = 512


def set_nodelay(client: Any) -> None:
    """Turn off Nagle's algorithm on a connected paho client's socket.

    paho leaves it on; a busy client's small publishes then wait for the peer's delayed ACK,
    which shows up as latency plateaus around 40 ms. Call it from ``on_connect`` (every
    reconnect makes a new socket).
    """
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttError(Exception):
    """The broker could not be reached or refused the hub."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to log in, parsed from ``mqtt://user:pass@host:port``."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse a broker URL; raise MqttError saying what is wrong with it."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise MqttError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise MqttError(f"broker URL {url!r} has no host")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise MqttError(f"broker URL {url!r}: {exc}") from exc
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def display(self) -> str:
        """Return the address without credentials, for logs."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(slots=True)
class LinkStats:
    """Counters for health reports and `hub bench`."""

    received: int = 0
    published: int = 0
    connects: int = 0
    disconnects: int = 0
    handler_errors: int = 0


class MqttLink:
    """One MQTT connection for the whole hub, with reconnect, resubscribe and resync hooks."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str = "hub",
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        protocol: str = "auto",
        session_expiry: float = 3600.0,
        will: tuple[str, bytes] | None = None,
        tls_ca: str | None = None,
    ) -> None:
        self.address = BrokerAddress.parse(url)
        self._client_id = client_id
        self._username = username if username is not None else self.address.username
        self._password = password if password is not None else self.address.password
        self._keepalive = keepalive
        self._protocol_choice = protocol
        self._session_expiry = session_expiry
        self._will = will
        self._tls_ca = tls_ca
        self.protocol_version = "5" if protocol in ("auto", "5") else "3.1.1"
        self.stats = LinkStats()
        self._router: TopicRouter[tuple[MessageHandler, str]] = TopicRouter()
        self._subscribed: dict[str, int] = {}  # filter -> qos, to resubscribe after reconnect
        self._on_connect_hooks: list[Callable[[], None]] = []
        self._on_disconnect_hooks: list[Callable[[str], None]] = []
        self._inbox: deque[Message] = deque()
        self._wakeup_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._connected = threading.Event()
        self._first_result: asyncio.Future[str] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        # Read by paho's thread: only forward PUBACKs while someone waits for one, so QoS 0
        # traffic never pays for a cross-thread call.
        self._ack_waiters = 0
        self._stopping = False

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected.is_set()

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and return once connected; raise MqttError if the broker cannot be reached.

        With protocol ``auto`` an MQTT 5 connection is tried first and 3.1.1 used when the
        broker refuses or drops it (the in-process amqtt broker speaks only 3.1.1).
        """
        self._loop = asyncio.get_running_loop()
        versions = {"auto": ["5", "3.1.1"], "5": ["5"], "3.1.1": ["3.1.1"]}[self._protocol_choice]
        last_reason = ""
        for version in versions:
            self.protocol_version = version
            self._first_result = self._loop.create_future()
            self._build_client(version)
            try:
                self._client.connect_async(
                    self.address.host, self.address.port, keepalive=self._keepalive,
                    **self._connect_kwargs(),
                )
                self._client.loop_start()
                last_reason = await asyncio.wait_for(
                    asyncio.shield(self._first_result), timeout
                )
            except TimeoutError:
                last_reason = f"no answer from {self.address.display()} within {timeout:g} s"
            if last_reason == "":
                _LOGGER.info(
                    "connected to %s with MQTT %s", self.address.display(), self.protocol_version
                )
                return
            await self._shutdown_client()
        raise MqttError(f"cannot connect to {self.address.display()}: {last_reason}")

    async def stop(self) -> None:
        """Disconnect cleanly (the broker then does not send the last will)."""
        self._stopping = True
        await self._shutdown_client(clean=True)
        for future in self._acks.values():
            if not future.done():
                future.cancel()
        self._acks.clear()

    async def _shutdown_client(self, clean: bool = False) -> None:
        client = self._client
        if client is None:
            return
        self._client = None
        if clean and self._connected.is_set():
            # Give queued QoS 1 messages a moment to leave before the goodbye.
            deadline = time.monotonic() + 2.0
            while client.want_write() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        client.disconnect()
        # loop_stop joins paho's thread; run it off the loop so the loop never blocks.
        await asyncio.to_thread(client.loop_stop)
        self._connected.clear()

    def _build_client(self, version: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        proto = paho.MQTTv5 if version == "5" else paho.MQTTv311
        kwargs: dict[str, Any] = {"client_id": self._client_id, "protocol": proto}
        if version != "5":
            kwargs["clean_session"] = False  # persistent session on 3.1.1
        client = paho.Client(CallbackAPIVersion.VERSION2, **kwargs)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)  # unlimited: a command queued offline is never dropped
        if self._username:
            client.username_pw_set(self._username, self._password)
        if self.address.tls:
            client.tls_set(ca_certs=self._tls_ca)
        if self._will is not None:
            client.will_set(self._will[0], self._will[1], qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        self._client = client

    def _connect_kwargs(self) -> dict[str, Any]:
        if self.protocol_version != "5":
            return {}
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self._session_expiry)
        return {"clean_start": False, "properties": props}

    # ----- hooks -----------------------------------------------------------------------------

    def on_connect(self, hook: Callable[[], None]) -> Unsubscribe:
        """Run ``hook`` in the loop after every (re)connect, once subscriptions are renewed."""
        self._on_connect_hooks.append(hook)
        return lambda: self._on_connect_hooks.remove(hook)

    def on_disconnect(self, hook: Callable[[str], None]) -> Unsubscribe:
        """Run ``hook(reason)`` in the loop when the connection drops."""
        self._on_disconnect_hooks.append(hook)
        return lambda: self._on_disconnect_hooks.remove(hook)

    # ----- paho callbacks: these run on paho's network thread ---------------------------------

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        failed = bool(getattr(reason_code, "is_failure", False))
        loop = self._loop
        if loop is None:
            return
        if failed:
            reason = f"broker refused the connection: {reason_code}"
            loop.call_soon_threadsafe(self._set_first_result, reason)
            return
        set_nodelay(client)
        self._connected.set()
        self.stats.connects += 1
        # Resubscribe from this thread so it is on the wire before any hook publishes.
        for topic_filter, qos in list(self._subscribed.items()):
            client.subscribe(topic_filter, qos=qos)
        loop.call_soon_threadsafe(self._after_connect)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(
                self._set_first_result, "connection refused or broker unreachable"
            )

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._loop is None:
            return
        reason = str(reason_code)
        if not was_connected:
            # Dropped before CONNACK: typically a broker that does not speak this version.
            self._loop.call_soon_threadsafe(
                self._set_first_result, f"connection closed before it was accepted ({reason})"
            )
            return
        self.stats.disconnects += 1
        self._loop.call_soon_threadsafe(self._after_disconnect, reason)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._inbox.append((message.topic, message.payload, time.time()))
        if not self._wakeup_pending:
            self._wakeup_pending = True
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._drain)

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        if self._ack_waiters and self._loop is not None:
            self._loop.call_soon_threadsafe(self._resolve_ack, mid)

    # ----- loop side -------------------------------------------------------------------------

    def _set_first_result(self, reason: str) -> None:
        future = self._first_result
        if future is not None and not future.done():
            future.set_result(reason)

    def _after_connect(self) -> None:
        self._set_first_result("")
        for hook in tuple(self._on_connect_hooks):
            try:
                hook()
            except Exception:
                _LOGGER.exception("on-connect hook %r failed", hook)

    def _after_disconnect(self, reason: str) -> None:
        if self._stopping:
            return
        _LOGGER.warning("lost the broker at %s (%s); reconnecting", self.address.display(), reason)
        for hook in tuple(self._on_disconnect_hooks):
            try:
                hook(reason)
            except Exception:
                _LOGGER.exception("on-disconnect hook %r failed", hook)

    def _resolve_ack(self, mid: int) -> None:
        future = self._acks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _drain(self) -> None:
        # Clear the flag before reading, so a message appended meanwhile schedules a new drain.
        self._wakeup_pending = False
        inbox = self._inbox
        match = self._router.match
        stats = self.stats
        for _ in range(_BATCH):
            if not inbox:
                return
            topic, payload, received = inbox.popleft()
            stats.received += 1
            for handler, owner in match(topic):
                try:
                    handler(topic, payload, received)
                except Exception:
                    stats.handler_errors += 1
                    _LOGGER.exception("MQTT handler %s failed on %s", owner, topic)
        if inbox and not self._wakeup_pending:
            # More than one batch waiting: let timers and tasks run, then continue.
            self._wakeup_pending = True
            asyncio.get_running_loop().call_soon(self._drain)

    def pending_inbound(self) -> int:
        """Messages received but not yet handled (a growing number means overload)."""
        return len(self._inbox)

    # ----- public API ------------------------------------------------------------------------

    def subscribe(
        self, topic_filter: str, handler: MessageHandler, *, owner: str, qos: int = 0
    ) -> Unsubscribe:
        """Call ``handler(topic, payload, received_at)`` in the loop for matching messages.

        Returns the function that removes this handler (and unsubscribes when it was the last).
        """
        entry = (handler, owner)
        remove = self._router.add(topic_filter, entry)
        previous = self._subscribed.get(topic_filter)
        if previous is None or previous < qos:
            self._subscribed[topic_filter] = qos
            if self._client is not None and self.connected:
                self._client.subscribe(topic_filter, qos=qos)

        def unsubscribe() -> None:
            remove()
            if topic_filter not in set(self._router.filters()):
                self._subscribed.pop(topic_filter, None)
                if self._client is not None and self.connected:
                    self._client.unsubscribe(topic_filter)

        return unsubscribe

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False
    ) -> int:
        """Queue a message for the broker (never blocks); return its message id.

        QoS 1 messages published while the broker is away are kept by paho and sent on
        reconnect, so a command is never dropped by a broker restart.
        """
        client = self._client
        if client is None:
            raise MqttError("the MQTT link is not started")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        self.stats.published += 1
        return int(info.mid)

    async def publish_acked(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Publish and wait until the broker acknowledged it (PUBACK)."""
        if self._loop is None:
            raise MqttError("the MQTT link is not started")
        client = self._client
        if client is None:
            raise MqttError("the MQTT link is not started")
        future: asyncio.Future[None] = self._loop.create_future()
        self._ack_waiters += 1
        mid = -1
        try:
            info = client.publish(topic, payload, qos=qos, retain=retain)
            mid = int(info.mid)
            # The ack is resolved by a loop callback, which cannot run before this line.
            self._acks[mid] = future
            self.stats.published += 1
            await asyncio.wait_for(future, timeout)
        finally:
            self._ack_waiters -= 1
            self._acks.pop(mid, None)

    def validate_publish_topic(self, topic: str) -> str:
        """Return ``topic`` if it is publishable; raise InvalidTopic otherwise."""
        return Topic(topic).value
