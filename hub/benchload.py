"""The bench's load connection: the simulated devices' reports, sent to the broker in batches.

A paho client with its network thread costs, per publish, a wake-up of that thread, a hand-over
of the GIL and a system call of its own. At 20,000 msgs/s that took about half a core of the
two this machine has, beside the hub being measured; and how much it took differed by scenario
(bigger firmware payloads), which skewed a comparison of the two. This connection is opened by
paho (CONNECT, CONNACK, no keepalive), then used as a plain socket: QoS 0 PUBLISH packets are
built here, collected, and written with one system call per batch, in the order they were added.

Not thread-safe: callers that add or flush from several threads serialise them (BenchHome holds
its lock).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from hub.mqtt import set_nodelay
from hub.paho_speedups import append_publish


class LoadLink:
    """One MQTT connection that only publishes QoS 0 messages, written in batches."""

    def __init__(self, client: Any, *, v5: bool) -> None:
        self._client = client
        self._v5 = v5
        self._pending = bytearray()
        self._sock: socket.socket | None = None

    def connect(self, port: int, timeout: float = 10.0) -> None:
        """Connect to 127.0.0.1:``port`` and wait for the broker's CONNACK."""
        client = self._client
        # No keepalive: nothing reads this connection after CONNACK, so no PINGRESP is awaited.
        client.connect("127.0.0.1", port, keepalive=0)
        deadline = time.monotonic() + timeout
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bench's load connection to 127.0.0.1:{port} failed")
            client.loop(timeout=0.05)
        set_nodelay(client)
        sock = client.socket()
        sock.setblocking(True)  # a full socket buffer holds the sender back: back-pressure
        self._sock = sock

    def add(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Queue a QoS 0 publish; it goes out with the next :meth:`flush`."""
        append_publish(self._pending, topic.encode(), payload, retain=retain, v5=self._v5)

    def flush(self) -> None:
        """Write everything queued, in one system call where the socket takes it all."""
        if not self._pending or self._sock is None:
            return
        self._sock.sendall(self._pending)
        self._pending.clear()

    def close(self) -> None:
        """Send what is queued, then DISCONNECT."""
        if self._sock is None:
            return
        try:
            self.flush()
            self._sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        finally:
            self._sock.close()
            self._sock = None
