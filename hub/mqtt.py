"""The hub's MQTT link: paho-mqtt 2.x driven by the asyncio event loop itself.

Why this shape: paho's own network thread costs two cross-thread wake-ups per message (its
socketpair on publish, the loop's self-pipe on receive) plus GIL hand-offs; measured here
that tripled the hub's CPU per message at 2,000 msgs/s. So paho's socket is watched by the
loop (``add_reader``), paho parses packets in the loop thread, and handlers run right where
the message was read. Only the blocking TCP connect runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from hub.topics import Topic, TopicRouter

if TYPE_CHECKING:
    from hub.paho_speedups import BufferedReceive, BufferedSend

_LOGGER = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes, float], None]
Unsubscribe = Callable[[], None]

# Packets read per readable event before yielding to timers and other tasks.
_READ_BURST = 256
_MIN_BACKOFF, _MAX_BACKOFF = 1.0, 30.0
# protocol "auto": how long an MQTT 5 CONNECT may go unanswered before 3.1.1 is tried.
_PROBE_V5_S = 3.0


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


class InvalidBrokerURL(MqttError, ValueError):
    """A broker URL that cannot be used."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to log in, parsed from ``mqtt://user:pass@host:port``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse ``mqtt://[user[:password]@]host[:port]`` (or mqtts://; a bare host means mqtt).

        Raises InvalidBrokerURL saying what is wrong with it.
        """
        text = url.strip()
        if "://" not in text:
            text = "mqtt://" + text
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise InvalidBrokerURL(f"invalid broker URL {url!r}: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise InvalidBrokerURL(f"invalid broker URL {url!r}: use mqtt://host:port or mqtts://")
        if not parts.hostname:
            raise InvalidBrokerURL(f"invalid broker URL {url!r}: no host")
        tls = scheme in ("mqtts", "ssl")
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
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
    """One MQTT connection for the whole hub, with reconnect, resubscribe and resync hooks.

    Everything runs in the event-loop thread; none of the public methods block.
    """

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._sock_fd: int | None = None
        self._writer_registered = False
        self._receive: BufferedReceive | None = None  # once the client is built
        self._paho_clock: Callable[[], float] = time.monotonic
        self._send: BufferedSend | None = None
        # paho's queue of packets it holds back; None (a paho we do not know): paho sends all.
        self._paho_held: Any = None
        self._read_packet: Callable[[Any], int] | None = None  # paho's read, one packet
        self._drain_scheduled = False
        self._connected = False
        self._connecting = False
        self._held: list[tuple[str, bytes | str, int, bool]] = []
        self._connack: asyncio.Future[str] | None = None
        self._lost = asyncio.Event()
        self._maintainer: asyncio.Task[None] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._ack_waiters = 0
        self._stopping = False

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and return once connected; raise MqttError if the broker cannot be reached.

        With protocol ``auto`` an MQTT 5 connection is tried first and 3.1.1 used when the
        broker refuses it (the in-process amqtt broker speaks only 3.1.1).
        """
        self._loop = asyncio.get_running_loop()
        versions = {"auto": ["5", "3.1.1"], "5": ["5"], "3.1.1": ["3.1.1"]}[self._protocol_choice]
        reason = ""
        for version in versions:
            self.protocol_version = version
            self._build_client(version)
            # Some 3.1.1-only brokers (amqtt) neither answer nor refuse an MQTT 5 CONNECT with
            # properties; waiting the full time-out before falling back would stall start-up.
            wait = min(timeout, _PROBE_V5_S) if len(versions) > 1 and version == "5" else timeout
            reason = await self._connect_once(wait, first=True)
            if not reason:
                _LOGGER.info(
                    "connected to %s with MQTT %s", self.address.display(), self.protocol_version
                )
                self._maintainer = self._loop.create_task(self._maintain(), name="mqtt link")
                return
            self._drop_socket()
        raise MqttError(f"cannot connect to {self.address.display()}: {reason}")

    async def stop(self) -> None:
        """Disconnect cleanly (the broker then does not send the last will)."""
        self._stopping = True
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        client = self._client
        if client is not None and self._connected:
            deadline = time.monotonic() + 2.0
            # Let queued QoS 1 messages leave before the goodbye.
            while self._wants_write() and time.monotonic() < deadline:
                client.loop_write()
                self._flush_sends()
                await asyncio.sleep(0.01)
            client.disconnect()
        self._drop_socket()
        self._connected = False
        for future in self._acks.values():
            if not future.done():
                future.cancel()
        self._acks.clear()

    def _build_client(self, version: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        proto = paho.MQTTv5 if version == "5" else paho.MQTTv311
        if version == "5":
            from hub import paho_speedups

            paho_speedups.install()
        kwargs: dict[str, Any] = {"client_id": self._client_id, "protocol": proto}
        if version != "5":
            kwargs["clean_session"] = False  # persistent session on 3.1.1
        client = paho.Client(CallbackAPIVersion.VERSION2, **kwargs)
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
        # on_publish is set only while publish_acked waits: paho builds a ReasonCode and a
        # Properties for every QoS 0 message it hands to on_publish (the mirror's states).
        client.on_socket_close = self._on_socket_close
        from hub import paho_speedups

        self._receive = paho_speedups.BufferedReceive(client)
        self._paho_clock = paho.time_func  # the clock paho's keepalive reads
        self._send = paho_speedups.BufferedSend(client)
        self._paho_held = getattr(client, "_out_packet", None)
        self._read_packet = paho_speedups.read_one_packet
        self._client = client

    def _connect_kwargs(self) -> dict[str, Any]:
        if self.protocol_version != "5":
            return {}
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = int(self._session_expiry)
        return {"clean_start": False, "properties": props}

    async def _connect_once(self, timeout: float, *, first: bool = False) -> str:
        """Open the socket and wait for CONNACK; return "" on success, else the reason."""
        assert self._loop is not None
        client = self._client
        self._connack = self._loop.create_future()
        self._connecting = True
        try:
            # The TCP connect blocks, so it runs in a worker thread; publishes are held back
            # meanwhile so nothing can reach the socket before CONNECT does.
            if first:
                await asyncio.to_thread(
                    client.connect,
                    self.address.host,
                    self.address.port,
                    self._keepalive,
                    **self._connect_kwargs(),
                )
            else:
                await asyncio.to_thread(client.reconnect)
        except (OSError, ValueError) as exc:
            return str(exc) or type(exc).__name__
        finally:
            self._connecting = False
        sock = client.socket()
        if sock is None:
            return "the connection closed at once"
        set_nodelay(client)
        self._sock_fd = sock.fileno()
        self._loop.add_reader(self._sock_fd, self._on_readable)
        for topic, payload, qos, retain in self._held:
            client.publish(topic, payload, qos=qos, retain=retain)
        self._held.clear()
        self._ensure_writer()
        try:
            return await asyncio.wait_for(asyncio.shield(self._connack), timeout)
        except TimeoutError:
            return f"no CONNACK from {self.address.display()} within {timeout:g} s"

    def _drop_socket(self) -> None:
        client = self._client
        if client is not None and client.socket() is not None:
            client._sock_close()  # paho has no public "close without DISCONNECT"
        self._unwatch()
        if self._receive is not None:
            self._receive.reset()
        if self._send is not None:
            self._send.reset()

    def _unwatch(self) -> None:
        if self._sock_fd is not None and self._loop is not None:
            self._loop.remove_reader(self._sock_fd)
            self._loop.remove_writer(self._sock_fd)
        self._sock_fd = None
        self._writer_registered = False

    async def _maintain(self) -> None:
        """Keepalive pings while connected; reconnect with exponential back-off when not."""
        failures = 0
        while not self._stopping:
            if self._connected:
                self._lost.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), timeout=1.0)
                if self._connected and self._client is not None:
                    self._client.loop_misc()  # PINGREQ when due; drops a dead connection
                    self._ensure_writer()
                continue
            delay = min(_MIN_BACKOFF * 2**failures, _MAX_BACKOFF) if failures else 0.2
            await asyncio.sleep(delay)
            self._drop_socket()
            reason = await self._connect_once(10.0)
            if reason:
                failures += 1
                _LOGGER.warning(
                    "reconnect to %s failed (%s); next try in %.0f s",
                    self.address.display(),
                    reason,
                    min(_MIN_BACKOFF * 2**failures, _MAX_BACKOFF),
                )
                self._drop_socket()
            else:
                failures = 0
                _LOGGER.info("reconnected to %s", self.address.display())

    # ----- hooks -----------------------------------------------------------------------------

    def on_connect(self, hook: Callable[[], None]) -> Unsubscribe:
        """Run ``hook`` after every (re)connect, once subscriptions are renewed and the messages
        kept while the broker was away have been handed back to the broker."""
        self._on_connect_hooks.append(hook)
        return lambda: self._on_connect_hooks.remove(hook)

    def on_disconnect(self, hook: Callable[[str], None]) -> Unsubscribe:
        """Run ``hook(reason)`` when the connection drops."""
        self._on_disconnect_hooks.append(hook)
        return lambda: self._on_disconnect_hooks.remove(hook)

    # ----- paho callbacks (loop thread, called from inside loop_read/loop_write/loop_misc) ----

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            self._resolve_connack(f"broker refused the connection: {reason_code}")
            return
        self._connected = True
        self.stats.connects += 1
        for topic_filter, qos in list(self._subscribed.items()):
            client.subscribe(topic_filter, qos=qos)
        self._resolve_connack("")
        # paho re-sends the messages it kept while the broker was away only after this callback
        # returns; hooks (the command router's resend of each entity's newest command) must come
        # after that backlog, or the backlog's older commands would overwrite what they send.
        if self._loop is not None:
            self._loop.call_soon(self._run_connect_hooks)
        else:
            self._run_connect_hooks()

    def _run_connect_hooks(self) -> None:
        if not self._connected:
            return
        for hook in tuple(self._on_connect_hooks):
            try:
                hook()
            except Exception:
                _LOGGER.exception("on-connect hook %r failed", hook)
        self._ensure_writer()

    def _resolve_connack(self, reason: str) -> None:
        future = self._connack
        if future is not None and not future.done():
            future.set_result(reason)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was_connected = self._connected
        self._connected = False
        self._unwatch()
        reason = str(reason_code)
        if not was_connected:
            # Dropped before CONNACK: typically a broker that does not speak this version.
            self._resolve_connack(f"connection closed before it was accepted ({reason})")
            return
        self.stats.disconnects += 1
        self._lost.set()
        if self._stopping:
            return
        _LOGGER.warning("lost the broker at %s (%s); reconnecting", self.address.display(), reason)
        for hook in tuple(self._on_disconnect_hooks):
            try:
                hook(reason)
            except Exception:
                _LOGGER.exception("on-disconnect hook %r failed", hook)

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        self._unwatch()
        if self._receive is not None:
            self._receive.reset()
        if self._send is not None:
            self._send.reset()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._dispatch(message.topic, message.payload)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        received = time.time()
        self.stats.received += 1
        for handler, owner in self._router.match(topic):
            try:
                handler(topic, payload, received)
            except Exception:
                self.stats.handler_errors += 1
                _LOGGER.exception("MQTT handler %s failed on %s", owner, topic)

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        if self._ack_waiters:
            future = self._acks.pop(mid, None)
            if future is not None and not future.done():
                future.set_result(None)

    # ----- socket readiness ------------------------------------------------------------------

    def _on_drain(self) -> None:
        self._drain_scheduled = False
        self._on_readable()

    def _on_readable(self) -> None:
        client = self._client
        stats = self.stats
        receive, read_packet = self._receive, self._read_packet
        assert receive is not None
        assert read_packet is not None
        # paho's state between packets; without it (a paho we do not know) paho reads all.
        idle = getattr(client, "_in_packet", None)
        v5 = self.protocol_version == "5"
        budget = stats.received + _READ_BURST
        # A cut packet's rest is still on its way: the selector says when it comes.
        awaiting_rest = False
        for _ in range(_READ_BURST):
            if idle is not None and client._in_packet["command"] == 0:
                # QoS 0 PUBLISHes straight to the handlers; paho takes whatever else comes.
                ready = receive.pending() or receive.fill()
                if ready is False:
                    break  # the socket is drained
                if ready and receive.take_publishes(self._dispatch, v5, budget - stats.received):
                    client._last_bytes_received = self._paho_clock()  # for paho's keepalive
                    if stats.received >= budget:
                        break
                    if not receive.pending():
                        continue
                if ready:
                    topped = receive.top_up()
                    if topped:
                        continue  # the packet the last read cut in two: taken whole next
                    if topped is None:
                        awaiting_rest = True
                        break
            before = stats.received
            if read_packet(client) != 0 or self._sock_fd is None:
                break  # disconnected: _on_disconnect has run
            if stats.received >= budget:
                break
            if (
                stats.received == before
                and not receive.pending()
                and (idle is None or client._in_packet["command"] != 0)
            ):
                break  # drained, or paho waits for the rest of a packet
        # What handlers published (commands, PUBACKs) goes out in one write when the socket
        # is writable, after this turn's other callbacks (the mirror) have added theirs.
        self._ensure_writer()
        if (
            self._sock_fd is not None
            and receive.pending()
            and not awaiting_rest
            and not self._drain_scheduled
        ):
            # Bytes already read do not wake the selector: come back after other callbacks.
            # Only the drain itself clears the flag: when the selector's call cleared it too,
            # every turn under sustained load added one more drain to the next, until turns
            # took a second and timers, the storage flush and the mirror waited that long.
            assert self._loop is not None
            self._drain_scheduled = True
            self._loop.call_soon(self._on_drain)

    def _wants_write(self) -> bool:
        client = self._client
        return client is not None and (
            client.want_write() or (self._send is not None and self._send.pending())
        )

    def _flush_sends(self) -> None:
        if self._send is None:
            return
        try:
            self._send.flush()
        except OSError as exc:
            # A broken connection: reading finds out and runs the disconnect handling.
            _LOGGER.debug("sending to the broker failed: %s", exc)
            if self._loop is not None and self._sock_fd is not None:
                self._loop.call_soon(self._on_readable)

    def _ensure_writer(self) -> None:
        client = self._client
        if client is None or self._sock_fd is None or self._loop is None:
            return
        wants = self._wants_write()
        if wants and not self._writer_registered:
            self._loop.add_writer(self._sock_fd, self._on_writable)
            self._writer_registered = True
        elif not wants and self._writer_registered:
            self._loop.remove_writer(self._sock_fd)
            self._writer_registered = False

    def _on_writable(self) -> None:
        if self._client is not None:
            self._flush_sends()  # older bytes first
            self._client.loop_write()  # packets paho held back (buffer full, or offline)
            self._flush_sends()
        self._ensure_writer()

    def pending_inbound(self) -> int:
        """Messages received but not yet handled (always 0: handling is inline)."""
        return 0

    # ----- public API ------------------------------------------------------------------------

    def subscribe(
        self, topic_filter: str, handler: MessageHandler, *, owner: str, qos: int = 0
    ) -> Unsubscribe:
        """Call ``handler(topic, payload, received_at)`` for matching messages.

        Returns the function that removes this handler (and unsubscribes when it was the last).
        """
        entry = (handler, owner)
        remove = self._router.add(topic_filter, entry)
        previous = self._subscribed.get(topic_filter)
        if previous is None or previous < qos:
            self._subscribed[topic_filter] = qos
            if self._client is not None and self._connected:
                self._client.subscribe(topic_filter, qos=qos)
                self._ensure_writer()

        def unsubscribe() -> None:
            remove()
            if topic_filter not in set(self._router.filters()):
                self._subscribed.pop(topic_filter, None)
                if self._client is not None and self._connected:
                    self._client.unsubscribe(topic_filter)
                    self._ensure_writer()

        return unsubscribe

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False
    ) -> int:
        """Queue a message for the broker (never blocks); return its message id (0 if held,
        or QoS 0 written without paho).

        QoS 1 messages published while the broker is away are kept by paho and sent on
        reconnect, so a command is never dropped by a broker restart.
        """
        client = self._client
        if client is None:
            raise MqttError("the MQTT link is not started")
        self.stats.published += 1
        if self._connecting:
            self._held.append((topic, payload, qos, retain))
            return 0
        send, held = self._send, self._paho_held
        if (
            qos == 0
            and self._connected
            and send is not None
            and held is not None
            and not held  # what paho holds back goes out first
            and send.add_publish(topic, payload, retain, self.protocol_version == "5")
        ):
            if not self._writer_registered:
                self._ensure_writer()
            return 0
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if not self._writer_registered:
            self._ensure_writer()
        return int(info.mid)

    async def publish_acked(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Publish and wait until the broker acknowledged it (PUBACK)."""
        client = self._client
        if client is None or self._loop is None:
            raise MqttError("the MQTT link is not started")
        future: asyncio.Future[None] = self._loop.create_future()
        self._ack_waiters += 1
        client.on_publish = self._on_publish
        mid = -1
        try:
            info = client.publish(topic, payload, qos=qos, retain=retain)
            mid = int(info.mid)
            # on_publish runs in this thread, inside loop_read: it cannot precede this line.
            self._acks[mid] = future
            self.stats.published += 1
            self._ensure_writer()
            await asyncio.wait_for(future, timeout)
        finally:
            self._ack_waiters -= 1
            self._acks.pop(mid, None)
            if not self._ack_waiters:
                client.on_publish = None

    def validate_publish_topic(self, topic: str) -> str:
        """Return ``topic`` if it is publishable; raise InvalidTopic otherwise."""
        return Topic(topic).value
