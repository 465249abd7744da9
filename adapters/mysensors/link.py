"""The serial port of a gateway: a reader thread and an ordered writer, handing off to the loop.

Why a thread: pyserial reads block, and a device path, ``socket://`` and ``rfc2217://`` all
look the same from a thread, so one code path serves every port pyserial opens. Serial
traffic is a few lines a second, so the hand-off costs nothing that matters. Everything the
adapter sees happens in the event loop's thread: the reader thread never touches the
adapter's state, it only schedules callbacks with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import serial

_LOGGER = logging.getLogger(__name__)

#: How long one blocking read waits before it looks at the stop flag again.
READ_TIMEOUT = 0.5
#: A write that the port does not take within this long is dropped (the gateway is not
#: reading); the command router sends an unconfirmed command again anyway.
WRITE_TIMEOUT = 2.0


class LinkError(Exception):
    """The port cannot be opened or written; the text says which port and why."""


class SerialLink:
    """One open port. ``on_data`` gets bytes and ``on_lost`` the reason, in the loop thread."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        loop: asyncio.AbstractEventLoop,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self._loop = loop
        self._on_data = on_data
        self._on_lost = on_lost
        self._serial: Any = None
        self._thread: threading.Thread | None = None
        # Set from the loop thread, read by the reader thread: a plain Event is thread-safe.
        self._stopping = threading.Event()
        self._writes: asyncio.Queue[bytes] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.lost = False  # only touched in the loop thread

    @property
    def is_open(self) -> bool:
        """True while the port is open and has not been lost."""
        return self._serial is not None and not self.lost

    async def open(self) -> None:
        """Open the port (in a worker thread: opening may block) and start reading."""
        try:
            self._serial = await asyncio.to_thread(self._open_blocking)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.port}: {exc}") from exc
        self._thread = threading.Thread(
            target=self._read_forever, name=f"mysensors {self.port}", daemon=True
        )
        self._thread.start()
        self._writer = self._loop.create_task(self._write_forever(), name=f"write {self.port}")

    def _open_blocking(self) -> Any:
        # serial_for_url takes plain device paths too; do_not_open lets us set every option
        # before the port is touched (some USB gateways reset when DTR toggles).
        port = serial.serial_for_url(self.port, do_not_open=True)
        port.baudrate = self.baudrate
        port.timeout = READ_TIMEOUT
        port.write_timeout = WRITE_TIMEOUT
        # What waits in the port's buffer is kept: complete lines are real reports, and half a
        # line is rejected like any other malformed line.
        port.open()
        return port

    # ----- the reader thread ------------------------------------------------------------------

    def _read_forever(self) -> None:
        """Runs in the reader thread: block in read, hand every chunk to the loop."""
        port = self._serial
        try:
            while not self._stopping.is_set():
                # read(1) returns as soon as one byte is there (or after READ_TIMEOUT with
                # nothing); whatever else has arrived meanwhile comes in the same hand-off.
                data = port.read(1)
                if not data:
                    continue
                waiting = port.in_waiting
                if waiting:
                    data += port.read(waiting)
                # The hand-off: the callback runs later in the loop thread, with this chunk
                # as its own immutable bytes object, so nothing here is shared with the loop.
                self._loop.call_soon_threadsafe(self._on_data, data)
        except Exception as exc:  # pyserial raises SerialException, OSError, TypeError...
            if self._stopping.is_set():
                return  # our own close() interrupted the read: not a loss
            reason = f"{type(exc).__name__}: {exc}"
            # The loop may be closing (hub stopping) while this thread notices the loss.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._lost_in_loop, reason)

    def _lost_in_loop(self, reason: str) -> None:
        """In the loop thread: mark the link lost once and tell the adapter."""
        if self.lost or self._stopping.is_set():
            return
        self.lost = True
        self._on_lost(reason)

    # ----- writing ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue a line to be written in order (raise LinkError if the port is not open)."""
        if not self.is_open:
            raise LinkError(f"{self.port} is not open")
        self._writes.put_nowait(data)

    async def _write_forever(self) -> None:
        # Writes go through one task, one at a time, so lines keep their order; each runs in a
        # worker thread because a port whose buffer is full blocks until WRITE_TIMEOUT.
        while True:
            data = await self._writes.get()
            port = self._serial
            if port is None or self.lost:
                continue
            try:
                await asyncio.to_thread(port.write, data)
            except serial.SerialTimeoutException:
                _LOGGER.warning("%s did not take %r within %g s", self.port, data, WRITE_TIMEOUT)
            except Exception as exc:
                self._lost_in_loop(f"write failed: {type(exc).__name__}: {exc}")

    # ----- closing ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the reader and writer and close the port (safe to call more than once)."""
        self._stopping.set()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        port, self._serial = self._serial, None
        if port is not None:
            # cancel_read wakes a blocked read at once where pyserial supports it (POSIX
            # device paths); elsewhere the read returns within READ_TIMEOUT.
            with contextlib.suppress(Exception):
                port.cancel_read()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, READ_TIMEOUT * 4)
        if port is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(port.close)
