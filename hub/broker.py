"""Embedded MQTT brokers for a hub with no broker configured: Mosquitto as a child, or amqtt."""

from __future__ import annotations

import abc
import asyncio
import atexit
import contextlib
import ctypes
import importlib.metadata
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import psutil

__all__ = [
    "AmqttBroker",
    "BrokerError",
    "EmbeddedBroker",
    "MosquittoBroker",
    "free_port",
    "make_embedded_broker",
    "mosquitto_binary",
]

_LOGGER = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_POLL_INTERVAL = 0.02
_PROBE_TIMEOUT = 0.5
_LOG_TAIL_LINES = 12
_MOSQUITTO_FALLBACK = "/usr/sbin/mosquitto"
_VERSION_LINE = re.compile(rb"mosquitto version (\S+) (?:starting|running)")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


class BrokerError(Exception):
    """An embedded broker could not be found, started or stopped."""


def mosquitto_binary() -> str | None:
    """Return the path of the installed mosquitto binary, or None when there is none."""
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.path.isfile(_MOSQUITTO_FALLBACK) and os.access(_MOSQUITTO_FALLBACK, os.X_OK):
        return _MOSQUITTO_FALLBACK
    return None


async def _mqtt_ready(host: str, port: int) -> bool:
    """True when ``host:port`` answers an MQTT 3.1.1 CONNECT with an accepting CONNACK."""
    client_id = f"hub-probe-{uuid.uuid4().hex[:12]}".encode()
    # Variable header: protocol name "MQTT", level 4 (3.1.1), flags: clean session, keepalive 5 s.
    body = b"\x00\x04MQTT\x04\x02\x00\x05" + len(client_id).to_bytes(2, "big") + client_id
    connect = bytes([0x10, len(body)]) + body
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(connect)
            await writer.drain()
            connack = await reader.readexactly(4)
            if connack[0] != 0x20 or connack[3] != 0:
                return False
            writer.write(b"\xe0\x00")  # DISCONNECT, so the broker logs a clean goodbye
            await writer.drain()
            return True
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class EmbeddedBroker(abc.ABC):
    """A private broker on 127.0.0.1 that the hub starts when none is configured."""

    kind: ClassVar[str]
    start_timeout: float = START_TIMEOUT

    def __init__(self, port: int | None = None) -> None:
        if port is not None and not 0 < port < 65536:
            raise ValueError(
                f"broker port {port} is out of range: use 1-65535 or None for a free one"
            )
        self.host = LOCALHOST
        self.port = port if port is not None else free_port()

    @property
    def url(self) -> str:
        """The URL clients connect to, e.g. ``mqtt://127.0.0.1:40123``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    @abc.abstractmethod
    def supports_mqtt5(self) -> bool:
        """True when clients may connect with MQTT 5."""

    @property
    @abc.abstractmethod
    def running(self) -> bool:
        """True while the broker is started and has not stopped or died."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the broker; return once it accepts MQTT connections, else raise BrokerError."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the broker and release what it holds; calling it again does nothing."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Say which broker this is and where, for the hub's start-up log."""

    async def restart(self) -> None:
        """Stop the broker and start it again on the same port."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} running={self.running}>"


# Children still running, with their private directories; the atexit hook ends them and
# removes the directories if the hub exits without stop(). Holding them here also keeps
# Popen.__del__ from warning about a still-running child.
_LIVE_CHILDREN: dict[subprocess.Popen[bytes], Path] = {}


@atexit.register
def _end_live_children() -> None:
    for proc, workdir in list(_LIVE_CHILDREN.items()):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        _LIVE_CHILDREN.pop(proc, None)


async def _wait_exit(proc: subprocess.Popen[bytes], within: float | None) -> bool:
    """Poll until ``proc`` exits (reaping it) or ``within`` seconds pass; True if it exited."""
    deadline = None if within is None else time.monotonic() + within
    while True:
        if proc.poll() is not None:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_INTERVAL)


def _parent_death_hook() -> Callable[[], None] | None:
    """Return a preexec_fn that makes the child get SIGTERM when its parent dies (Linux only).

    The kernel sends the signal when the *thread* that forked the child exits, so brokers
    must be started from a long-lived thread (the event loop's thread is).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


_T = TypeVar("_T")


def _run_private_loop(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion on a new event loop, leaving the thread's current loop alone."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class MosquittoBroker(EmbeddedBroker):
    """A private Mosquitto child process, configured by the hub, bound to 127.0.0.1 only.

    The child is a plain ``subprocess.Popen`` watched by non-blocking polls rather than an
    asyncio subprocess: an asyncio process object belongs to the loop that made it, and tests
    start the broker on one loop and restart it from another.
    """

    kind = "mosquitto"

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        data_dir: Path | None = None,
        persistence: bool = False,
    ) -> None:
        super().__init__(port)
        found = binary or mosquitto_binary()
        if found is None:
            raise BrokerError(
                "mosquitto is not installed (not on PATH nor at /usr/sbin/mosquitto): "
                "install it or use the in-process amqtt broker"
            )
        if not (os.path.isfile(found) and os.access(found, os.X_OK)):
            raise BrokerError(f"mosquitto binary {found!r} does not exist or is not executable")
        if data_dir is not None and "\n" in str(data_dir):
            raise ValueError(f"mosquitto data_dir {str(data_dir)!r} must not contain a newline")
        self.binary = found
        self.data_dir = data_dir
        self.persistence = persistence
        self.version: str | None = None
        self._workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_mark = 0
        self._out_mark = 0

    @property
    def supports_mqtt5(self) -> bool:
        """Mosquitto 2 speaks MQTT 5, 3.1.1 and 3.1."""
        return True

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def workdir(self) -> Path | None:
        """The private directory with the generated config and logs (None when stopped)."""
        return self._workdir

    @property
    def log_path(self) -> Path | None:
        """Mosquitto's own log file."""
        return None if self._workdir is None else self._workdir / "mosquitto.log"

    def describe(self) -> str:
        """E.g. ``Mosquitto 2.0.11 on mqtt://127.0.0.1:40123 (private, started by the hub)``."""
        name = f"Mosquitto {self.version}" if self.version else "Mosquitto"
        return f"{name} on {self.url} (private, started by the hub)"

    def config_text(self) -> str:
        """The mosquitto.conf this broker runs with."""
        assert self._workdir is not None
        lines = [
            "# Written by the hub for its private broker; rewritten on every start.",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            # Without TCP_NODELAY, Nagle's algorithm holds small messages back: latency
            # plateaus at about 40 ms.
            "set_tcp_nodelay true",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",  # 0 = no limit (mosquitto.conf(5), 2.0)
            f"persistence {'true' if self.persistence else 'false'}",
        ]
        if self.persistence:
            location = self.data_dir if self.data_dir is not None else self._workdir
            lines.append(f"persistence_location {location}/")
        lines += [
            f"log_dest file {self._workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            # information adds the version and the start/stop lines, which describe() uses.
            "log_type information",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root, mosquitto drops to the 'mosquitto' user, which cannot write the hub's
            # private directory: keep the hub's own user instead.
            lines.append("user root")
        return "\n".join(lines) + "\n"

    def _prepare(self) -> Path:
        # A few hundred bytes on local disk: cheap enough to write from the loop.
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="hub-mosquitto-"))
        if self.persistence and self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self._workdir / "mosquitto.conf"
        conf.write_text(self.config_text(), encoding="utf-8")
        self._log_mark = self._size(self._workdir / "mosquitto.log")
        self._out_mark = self._size(self._workdir / "mosquitto.out")
        return conf

    @staticmethod
    def _size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    def _spawn(self, conf: Path) -> subprocess.Popen[bytes]:
        assert self._workdir is not None
        # Same session and process group as the hub, so a terminal's Ctrl-C reaches it too.
        with (self._workdir / "mosquitto.out").open("ab") as out:
            proc = subprocess.Popen(
                [self.binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C in the terminal signals the whole foreground
                # group, and the hub must still be able to say goodbye through the broker.
                # The parent-death signal still stops it if the hub dies.
                start_new_session=True,
                preexec_fn=_parent_death_hook(),  # noqa: PLW1509 - only calls prctl
            )
        _LIVE_CHILDREN[proc] = self._workdir
        return proc

    def _listening(self, proc: subprocess.Popen[bytes]) -> bool:
        # Proves the port is the child's own: a foreign listener on it would also answer.
        try:
            conns = psutil.Process(proc.pid).net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False
        except psutil.AccessDenied:  # some platforms hide sockets: rely on the MQTT probe
            return True
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port for c in conns
        )

    def _tail(self) -> str:
        """The last lines mosquitto wrote since this start, from its log and its stdout."""
        if self._workdir is None:
            return ""
        chunks: list[bytes] = []
        for name, mark in (("mosquitto.log", self._log_mark), ("mosquitto.out", self._out_mark)):
            try:
                with (self._workdir / name).open("rb") as fh:
                    fh.seek(mark)
                    chunks.append(fh.read())
            except FileNotFoundError:
                continue
        lines = b"".join(chunks).decode("utf-8", "replace").splitlines()
        return "\n".join(line for line in lines[-_LOG_TAIL_LINES:] if line.strip())

    def _read_version(self) -> None:
        log = self.log_path
        if log is None:
            return
        with contextlib.suppress(OSError):
            found = _VERSION_LINE.findall(log.read_bytes())
            if found:
                self.version = found[-1].decode()

    async def start(self) -> None:
        """Start mosquitto; return once it answers MQTT on its port, else raise BrokerError."""
        if self.running:
            return
        conf = self._prepare()
        try:
            proc = self._spawn(conf)
        except OSError as exc:
            raise BrokerError(f"cannot run {self.binary}: {exc}") from exc
        self._proc = proc
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = proc.poll()
            if code is not None:
                _LIVE_CHILDREN.pop(proc, None)
                self._proc = None
                raise BrokerError(
                    f"mosquitto exited with code {code} while starting on {self.url}; "
                    f"its last lines:\n{self._tail()}"
                )
            if self._listening(proc) and await _mqtt_ready(self.host, self.port):
                break
            if time.monotonic() > deadline:
                await self._end(proc, signal.SIGTERM)
                self._proc = None
                raise BrokerError(
                    f"mosquitto did not accept MQTT connections on {self.url} within "
                    f"{self.start_timeout:g} s; its last lines:\n{self._tail()}"
                )
            await asyncio.sleep(_POLL_INTERVAL)
        self._read_version()
        _LOGGER.info("started %s (pid %d)", self.describe(), proc.pid)

    async def _end(self, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        """Signal the child, wait for it without blocking the loop, SIGKILL after 5 s."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            if not await _wait_exit(proc, STOP_TIMEOUT):
                _LOGGER.warning("mosquitto pid %d ignored SIGTERM for 5 s: killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await _wait_exit(proc, None)
        _LIVE_CHILDREN.pop(proc, None)

    async def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            await self._end(proc, signal.SIGTERM)

    async def stop(self) -> None:
        """Stop mosquitto (SIGTERM, SIGKILL after 5 s) and remove its private directory."""
        await self._stop_process()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    async def restart(self) -> None:
        """Stop mosquitto and start it again on the same port, keeping its directory."""
        await self._stop_process()
        await self.start()

    async def kill(self) -> None:
        """Kill mosquitto with SIGKILL, as a crash would; start() or restart() brings it back."""
        proc, self._proc = self._proc, None
        if proc is not None:
            await self._end(proc, signal.SIGKILL)

    def start_sync(self) -> None:
        """Run start() on a private event loop; for synchronous callers such as pytest fixtures."""
        _run_private_loop(self.start())

    def stop_sync(self) -> None:
        """Run stop() on a private event loop; for synchronous callers such as pytest fixtures."""
        _run_private_loop(self.stop())


_AMQTT_LOGGERS = ("amqtt", "transitions")


class AmqttBroker(EmbeddedBroker):
    """amqtt running in the hub's own event loop, bound to 127.0.0.1 only; MQTT 3.1.1 only.

    An MQTT 5 CONNECT gets a CONNACK refusing the protocol version (paho reports
    "Unsupported protocol version") and the connection is closed, so clients must use 3.1.1.
    """

    kind = "amqtt"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self._broker: Any = None
        self.version = importlib.metadata.version("amqtt")

    @property
    def supports_mqtt5(self) -> bool:
        """amqtt speaks MQTT 3.1.1 only."""
        return False

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._broker is not None

    def describe(self) -> str:
        """E.g. ``amqtt 0.12.1 on mqtt://127.0.0.1:40123 (in-process, MQTT 3.1.1 only, ...)``."""
        return (
            f"amqtt {self.version} on {self.url} "
            "(in-process, MQTT 3.1.1 only, private, started by the hub)"
        )

    def config(self) -> dict[str, Any]:
        """The amqtt broker configuration: one TCP listener on 127.0.0.1, anonymous access."""
        return {
            # amqtt's default listener binds 0.0.0.0; the embedded broker is private.
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only anonymous auth: the default set adds $SYS and per-packet logging plug-ins.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    async def start(self) -> None:
        """Start amqtt in this event loop; return once it listens, else raise BrokerError."""
        if self._broker is not None:
            return
        for name in _AMQTT_LOGGERS:
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET:  # an explicit level set by the user wins
                logger.setLevel(logging.WARNING)
        from amqtt.broker import Broker
        from amqtt.errors import BrokerError as AmqttError
        from amqtt.errors import PluginError

        try:
            broker = Broker(self.config())
            await broker.start()
        except (AmqttError, PluginError, OSError) as exc:
            cause = exc.__cause__ or exc
            raise BrokerError(f"amqtt could not start on {self.url}: {cause}") from exc
        self._broker = broker
        _LOGGER.info("started %s", self.describe())

    async def stop(self) -> None:
        """Shut amqtt down, closing its clients' connections; calling it again does nothing."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        from amqtt.errors import BrokerError as AmqttError

        try:
            await broker.shutdown()
        except AmqttError as exc:
            raise BrokerError(f"amqtt did not shut down cleanly: {exc}") from exc


def make_embedded_broker(prefer: str = "auto", port: int | None = None) -> EmbeddedBroker:
    """Return an unstarted private broker: Mosquitto when installed ("auto"), else amqtt."""
    if prefer == "auto":
        return MosquittoBroker(port) if mosquitto_binary() else AmqttBroker(port)
    if prefer == "mosquitto":
        return MosquittoBroker(port)
    if prefer == "amqtt":
        return AmqttBroker(port)
    raise ValueError(f"unknown embedded broker {prefer!r}: use 'auto', 'mosquitto' or 'amqtt'")
