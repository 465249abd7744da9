"""Helpers for the MySensors suites: a pseudo-terminal wire, simulated hardware, a hub bench."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import tty
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hubtest import eventually

from adapters.mysensors import MySensors
from adapters.mysensors.adapter import OWNER
from hub.config import load_config
from hub.core import Hub

FIRMWARE = Path(__file__).resolve().parents[3] / "firmware-bridges" / "mysensors-node"
if str(FIRMWARE) not in sys.path:
    sys.path.insert(0, str(FIRMWARE))

import mysnode  # noqa: E402 - the reference firmware's protocol logic, run under CPython


class Wire:
    """One pseudo-terminal: the adapter opens ``path`` (a symlink, as udev's by-id names are),
    the test holds the other end. ``close()`` is an unplug; a new Wire on the same path is the
    device plugged in again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master, self.slave = os.openpty()
        # Raw, so the line discipline neither echoes nor rewrites what either side sends
        # before the adapter has configured its end.
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.symlink_to(os.ttyname(self.slave))
        self.received = bytearray()  # everything the adapter wrote
        self.listeners: list[Callable[[bytes], None]] = []  # every node on this line
        self.closed = False
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        self.received += data
        for listener in self.listeners:
            listener(data)

    def write(self, data: bytes) -> None:
        """Send bytes to the adapter (dropped once unplugged, as on a real wire)."""
        if not self.closed:
            os.write(self.master, data)

    def lines(self) -> list[str]:
        """The lines the adapter wrote so far."""
        return self.received.decode("ascii", "replace").splitlines()

    def close(self) -> None:
        """Unplug: both ends go, and the device path with them."""
        if self.closed:
            return
        self.closed = True
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class SimHardware:
    """A relay and a thermometer for the reference node, on a Wire."""

    def __init__(self, wire: Wire | None = None, node_id: int | None = None) -> None:
        self.wire = wire
        self.relay_on = False
        self.celsius: float | None = 21.5
        self.stored_id = node_id
        self.relay_switches: list[bool] = []

    def write(self, data: bytes) -> None:
        if self.wire is not None:
            self.wire.write(data)

    def ticks_ms(self) -> int:
        return int(time.monotonic() * 1000)

    def set_relay(self, on: bool) -> None:
        self.relay_on = on
        self.relay_switches.append(on)

    def relay(self) -> bool:
        return self.relay_on

    def temperature(self) -> float | None:
        return self.celsius

    def load_id(self) -> int | None:
        return self.stored_id

    def save_id(self, node_id: int) -> None:
        self.stored_id = node_id


class Bench:
    """A hub running the adapter on ``port``, and what the test plugs into it."""

    def __init__(self, tmp_path: Path, mqtt_url: str) -> None:
        self.tmp_path = tmp_path
        self.mqtt_url = mqtt_url
        self.port = tmp_path / "ttyMySensors"
        suffix = uuid.uuid4().hex[:8]
        self.base = f"t{suffix}/hub"
        self.suffix = suffix
        self.hubs: list[Hub] = []
        self.wires: list[Wire] = []
        self._tickers: list[asyncio.Task[None]] = []

    def config(self, extra: str = "") -> Path:
        path = self.tmp_path / "hub.yaml"
        path.write_text(
            "hub:\n"
            f"  base_topic: {self.base}\n"
            f"  device_topic: t{self.suffix}/home\n"
            "  command_timeout: 3s\n"
            "mqtt:\n"
            f"  url: {self.mqtt_url}\n"
            f"  client_id: hub-test-{self.suffix}\n"
            "database:\n"
            f"  url: sqlite+aiosqlite:///{self.tmp_path / 'hub.db'}\n"
            "  flush_interval: 0.2s\n"
            "adapters:\n"
            "  mysensors:\n"
            f"    port: {self.port}\n"
            "    gateway_id: mys\n"
            "    reopen_min: 0.2s\n"
            "    reopen_max: 0.5s\n"
            f"{extra}"
        )
        return path

    async def start_hub(self, extra: str = "") -> Hub:
        loaded = load_config(self.config(extra))
        hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
        await hub.start()
        self.hubs.append(hub)
        await eventually(lambda: OWNER in hub.commands._dialects, 5, "the adapter did not start")
        return hub

    def plug(self) -> Wire:
        wire = Wire(self.port)
        self.wires.append(wire)
        return wire

    def run_node(self, node: Any, wire: Wire) -> None:
        """Connect the reference node to a wire and tick it like its main loop does."""
        wire.listeners.append(node.feed)
        node.hw.wire = wire

        async def ticking() -> None:
            while not wire.closed:
                node.tick()
                await asyncio.sleep(0.02)

        self._tickers.append(asyncio.get_running_loop().create_task(ticking()))

    async def close(self) -> None:
        for task in self._tickers:
            task.cancel()
        for hub in self.hubs:
            if hub.started:
                await hub.stop()
        for wire in self.wires:
            wire.close()


def adapter_of(hub: Hub) -> MySensors:
    """The running adapter instance (the dialect registered for its owner)."""
    dialect = hub.commands._dialects[OWNER]
    assert isinstance(dialect, MySensors)
    return dialect


__all__ = ["Bench", "SimHardware", "Wire", "adapter_of", "eventually", "mysnode"]
