"""Fixtures shared by every test folder: private MQTT brokers, PostgreSQL databases, MqttProbe.

Broker fixtures are synchronous on purpose. pytest-asyncio gives each test its own event loop,
so an async session fixture would live on a loop the tests do not run on. MosquittoBroker
watches its child with non-blocking polls rather than an asyncio subprocess, so it is tied to
no loop: the fixtures start and stop it with ``start_sync()``/``stop_sync()`` (a private
loop in the main thread), and an async test may still ``await mosquitto.restart()``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hub.broker import AmqttBroker, EmbeddedBroker, MosquittoBroker, mosquitto_binary

# Test modules import helpers as top-level modules (``from mqttprobe import MqttProbe``)
# whether or not tests/ is a package, and whichever import mode pytest runs in.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from hubtest import HubFactory  # noqa: E402
from mqttprobe import MqttProbe, ProbeMessage  # noqa: E402

from hub.config import load_config  # noqa: E402
from hub.core import Hub  # noqa: E402

__all__ = ["MqttProbe", "ProbeMessage"]

T = TypeVar("T")

POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL_TEMPLATE = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def run_private(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a new event loop without touching the thread's current loop.

    Unlike asyncio.run() this does not reset the current loop to None afterwards, which
    pytest-asyncio's loop for the running test may rely on.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def _require_mosquitto() -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (not on PATH nor at /usr/sbin/mosquitto)")


# --- Mosquitto ------------------------------------------------------------------------------

_session_mosquitto: MosquittoBroker | None = None


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A private Mosquitto for the whole session, on a free port of 127.0.0.1.

    Tests may ``await mosquitto.restart()``; one that leaves it stopped or killed gets it
    started again on the same port after the test (see ``_mosquitto_stays_up``).
    """
    global _session_mosquitto  # noqa: PLW0603 - read by the autouse guard below
    _require_mosquitto()
    broker = MosquittoBroker()
    broker.start_sync()
    _session_mosquitto = broker
    try:
        yield broker
    finally:
        _session_mosquitto = None
        broker.stop_sync()


@pytest.fixture(autouse=True)
def _mosquitto_stays_up() -> Iterator[None]:
    """After each test, start the session broker again if the test stopped or killed it."""
    yield
    broker = _session_mosquitto
    if broker is not None and not broker.running:
        broker.start_sync()


@pytest.fixture(scope="session")
def mqtt_url(mosquitto: MosquittoBroker) -> str:
    """The session Mosquitto's URL, ``mqtt://127.0.0.1:PORT``."""
    return mosquitto.url


@pytest.fixture
def fresh_mosquitto() -> Iterator[MosquittoBroker]:
    """A brand-new private Mosquitto for one test, which may restart, kill or stop it."""
    _require_mosquitto()
    broker = MosquittoBroker()
    broker.start_sync()
    try:
        yield broker
    finally:
        broker.stop_sync()


# --- amqtt in a thread of its own -----------------------------------------------------------


class LoopThread:
    """An event loop running in a daemon thread, for in-process servers that sync tests use."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the thread's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop and join the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def amqtt_broker() -> Iterator[AmqttBroker]:
    """An amqtt broker for the session, in this process but on its own loop and thread.

    On its own thread, so that synchronous clients (MqttProbe) in a test do not starve it.
    Do not restart or stop it from a test: it belongs to that thread's loop.
    """
    runner = LoopThread("amqtt-broker")
    broker = AmqttBroker()
    try:
        runner.run(broker.start())
        yield broker
        runner.run(broker.stop())
    finally:
        runner.close()


@pytest.fixture(scope="session")
def amqtt_url(amqtt_broker: AmqttBroker) -> str:
    """The session amqtt broker's URL (MQTT 3.1.1 only)."""
    return amqtt_broker.url


@pytest.fixture(params=["mosquitto", "amqtt"])
def any_broker(request: pytest.FixtureRequest) -> EmbeddedBroker:
    """Each session broker in turn, for suites that must pass on both (check supports_mqtt5)."""
    name: str = request.param
    broker: EmbeddedBroker = request.getfixturevalue(
        "mosquitto" if name == "mosquitto" else "amqtt_broker"
    )
    return broker


# --- PostgreSQL -----------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses ``postgres_url`` as ``postgres``, so -m can select them."""
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


async def _create_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        # FORCE ends connections a test's engine may still hold open.
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _probe_postgres() -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database ``hub_t_<hex>`` for one test, dropped afterwards."""
    import asyncpg

    try:
        run_private(_probe_postgres())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}")
    name = f"hub_t_{uuid.uuid4().hex[:16]}"
    run_private(_create_database(name))
    try:
        yield POSTGRES_URL_TEMPLATE.format(name=name)
    finally:
        run_private(_drop_database(name))


# --- hubs and a probe -------------------------------------------------------------------------


@pytest.fixture
async def hub_factory() -> AsyncIterator[HubFactory]:
    """Start hubs from config files; every hub started is stopped at the end."""
    started: list[Hub] = []

    async def make(
        config_path: Path, *, start_plugins: bool = True, start_rules: bool = True
    ) -> Hub:
        loaded = load_config(config_path)
        hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
        await hub.start(start_plugins=start_plugins, start_rules=start_rules)
        started.append(hub)
        return hub

    yield make
    for running in started:
        if running.started:
            await running.stop()


@pytest.fixture
def probe(mqtt_url: str) -> Iterator[MqttProbe]:
    """A connected MQTT probe (plays devices, watches the hub's topics)."""
    with MqttProbe(mqtt_url) as client:
        yield client
