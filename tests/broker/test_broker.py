"""The embedded brokers (a private Mosquitto child, amqtt in-process) and the broker fixtures."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest
from mqttprobe import MqttProbe
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

import hub.broker as broker_mod
from hub.broker import (
    AmqttBroker,
    BrokerError,
    EmbeddedBroker,
    MosquittoBroker,
    free_port,
    make_embedded_broker,
    mosquitto_binary,
)

HUB_ROOT = Path(broker_mod.__file__).resolve().parents[1]  # where this run imports hub from
OTHER_LOOPBACK = "127.0.0.2"  # local to this machine, but not the address the broker binds

needs_mosquitto = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed")


def topic() -> str:
    """A topic no other test uses, so retained messages never leak between tests."""
    return f"test/{uuid.uuid4().hex[:12]}"


def listen_addresses(pid: int, port: int) -> set[str]:
    """The addresses process ``pid`` listens on at ``port``."""
    return {
        c.laddr.ip
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    }


def connects(host: str, port: int) -> bool:
    """True if a TCP connection to host:port is accepted, False if it is refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect((host, port))
        except ConnectionRefusedError:
            return False
        return True


@pytest.fixture(scope="module")
def other_loopback_reachable() -> None:
    """Prove that OTHER_LOOPBACK accepts connections when something listens there.

    Otherwise "refused on 127.0.0.2" would hold for any broker, bound anywhere.
    """
    with socket.socket() as sock:
        try:
            sock.bind((OTHER_LOOPBACK, 0))
        except OSError as exc:
            pytest.skip(f"{OTHER_LOOPBACK} is not a local address here: {exc}")
        sock.listen()
        assert connects(OTHER_LOOPBACK, sock.getsockname()[1])


def assert_loopback_only(pid: int, port: int) -> None:
    """The broker listens on 127.0.0.1 only and cannot be reached on other local addresses."""
    assert listen_addresses(pid, port) == {"127.0.0.1"}
    assert not connects(OTHER_LOOPBACK, port)
    try:
        reachable_on_ipv6 = connects("::1", port)
    except OSError:  # no IPv6 loopback here, so nothing can listen there either
        reachable_on_ipv6 = False
    assert not reachable_on_ipv6


def round_trip(url: str) -> None:
    """QoS 0 and 1 and a retained message through the broker at ``url``, with MQTT 3.1.1."""
    live, kept = topic(), topic()
    with MqttProbe(url) as publisher:
        publisher.publish(kept, b"kept", qos=1, retain=True)
        with MqttProbe(url) as subscriber:
            subscriber.subscribe(f"{kept}/#")
            subscriber.subscribe(kept)
            subscriber.subscribe(f"{live}/#", qos=1)
            assert subscriber.wait_for(kept) == (kept, b"kept")
            assert subscriber.messages[0].retain
            publisher.publish(f"{live}/one", b"q1", qos=1)
            publisher.publish(f"{live}/zero", {"n": 0}, qos=0)
            assert subscriber.wait_for(f"{live}/one") == (f"{live}/one", b"q1")
            _, payload = subscriber.wait_for(f"{live}/+", lambda p: p.startswith(b"{"))
            assert payload == b'{"n": 0}'
            q1 = next(m for m in subscriber.messages if m.topic == f"{live}/one")
            assert (q1.qos, q1.retain) == (1, False)


# --- Mosquitto ------------------------------------------------------------------------------


@needs_mosquitto
@pytest.mark.usefixtures("other_loopback_reachable")
def test_mosquitto_listens_on_a_free_port_of_127_0_0_1_only(mosquitto: MosquittoBroker) -> None:
    assert mosquitto.kind == "mosquitto"
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    assert mosquitto.port != 1883
    assert mosquitto.pid is not None
    assert_loopback_only(mosquitto.pid, mosquitto.port)
    assert connects("127.0.0.1", mosquitto.port)
    assert mosquitto.supports_mqtt5
    assert re.fullmatch(
        r"Mosquitto \d+\.\d+\.\d+ on mqtt://127\.0\.0\.1:\d+ \(private, started by the hub\)",
        mosquitto.describe(),
    )


@needs_mosquitto
def test_mosquitto_config_is_private_and_low_latency(mosquitto: MosquittoBroker) -> None:
    assert mosquitto.workdir is not None
    conf = (mosquitto.workdir / "mosquitto.conf").read_text().splitlines()
    assert f"listener {mosquitto.port} 127.0.0.1" in conf
    assert "set_tcp_nodelay true" in conf
    assert "persistence false" in conf
    assert not any(line.startswith("pid_file") for line in conf)


@needs_mosquitto
def test_mosquitto_round_trips_qos0_qos1_and_retained(mqtt_url: str) -> None:
    round_trip(mqtt_url)


@needs_mosquitto
def test_mosquitto_speaks_mqtt5(mqtt_url: str) -> None:
    t = topic()
    with MqttProbe(mqtt_url, mqtt5=True) as probe:
        probe.subscribe(t)
        probe.publish(t, b"five", qos=1)
        assert probe.wait_for(t) == (t, b"five")


async def test_restart_keeps_the_port_and_clients_reconnect(
    fresh_mosquitto: MosquittoBroker,
) -> None:
    broker = fresh_mosquitto
    port, old_pid = broker.port, broker.pid
    t = topic()
    with MqttProbe(broker.url) as listener, MqttProbe(broker.url) as talker:
        listener.subscribe(f"{t}/#")
        await broker.restart()
        assert broker.port == port
        assert broker.pid not in (None, old_pid)
        assert old_pid is not None
        assert not psutil.pid_exists(old_pid)
        for probe in (listener, talker):
            await asyncio.to_thread(probe.wait_connected, 10)
        talker.publish(f"{t}/after-restart", b"1", qos=1)
        assert listener.wait_for(f"{t}/after-restart")[1] == b"1"

        # A crash (SIGKILL) then start() brings it back on the same port too.
        killed_pid = broker.pid
        assert killed_pid is not None
        await broker.kill()
        assert not broker.running
        assert not psutil.pid_exists(killed_pid)
        await broker.start()
        assert broker.port == port
        for probe in (listener, talker):
            await asyncio.to_thread(probe.wait_connected, 10)
        talker.publish(f"{t}/after-kill", b"2", qos=1)
        assert listener.wait_for(f"{t}/after-kill")[1] == b"2"


@needs_mosquitto
async def test_persistence_keeps_retained_messages_across_a_restart(tmp_path: Path) -> None:
    t = topic()
    async with MosquittoBroker(persistence=True, data_dir=tmp_path / "db") as broker:
        with MqttProbe(broker.url) as probe:
            probe.publish(t, b"survives", qos=1, retain=True)
        await broker.restart()
        assert (tmp_path / "db" / "mosquitto.db").exists()
        with MqttProbe(broker.url) as probe:
            probe.subscribe(t)
            assert probe.wait_for(t) == (t, b"survives")


async def test_without_persistence_a_restart_forgets_retained_messages(
    fresh_mosquitto: MosquittoBroker,
) -> None:
    t = topic()
    with MqttProbe(fresh_mosquitto.url) as probe:
        probe.publish(t, b"gone", qos=1, retain=True)
    await fresh_mosquitto.restart()
    with MqttProbe(fresh_mosquitto.url) as probe:
        probe.subscribe(t)  # a retained message would be sent before this SUBACK returns
        probe.subscribe(f"{t}/marker")
        probe.publish(f"{t}/marker", b"m", qos=1)
        probe.wait_for(f"{t}/marker")
        assert [m.topic for m in probe.messages] == [f"{t}/marker"]


@needs_mosquitto
async def test_stop_is_idempotent_and_leaves_no_process() -> None:
    broker = MosquittoBroker()
    await broker.start()
    pid, workdir = broker.pid, broker.workdir
    assert pid is not None
    assert workdir is not None
    assert workdir.is_dir()
    await broker.stop()
    await broker.stop()
    assert not broker.running
    assert not psutil.pid_exists(pid)  # exited and reaped: not even a zombie
    assert not workdir.exists()
    assert not connects("127.0.0.1", broker.port)


@needs_mosquitto
async def test_a_taken_port_raises_broker_error_with_mosquittos_log_line() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        broker = MosquittoBroker(squatter.getsockname()[1])
        children_before = {p.pid for p in psutil.Process().children()}
        with pytest.raises(BrokerError, match="Error: Address already in use") as info:
            await broker.start()
        assert "exited with code 1" in str(info.value)
        assert not broker.running
        assert {p.pid for p in psutil.Process().children()} <= children_before
        await broker.stop()


async def test_a_broker_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    stuck = tmp_path / "stuck-mosquitto"
    stuck.write_text('#!/bin/sh\necho "stuck broker: listening never"\nexec sleep 30\n')
    stuck.chmod(0o755)
    broker = MosquittoBroker(binary=str(stuck))
    broker.start_timeout = 0.5
    children_before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(BrokerError, match=r"within 0.5 s(.|\n)*stuck broker: listening never"):
        await broker.start()
    assert not broker.running
    assert {p.pid for p in psutil.Process().children()} <= children_before
    await broker.stop()


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="does not exist or is not executable"):
        MosquittoBroker(binary=str(tmp_path / "no-mosquitto"))
    with pytest.raises(ValueError, match="out of range"):
        MosquittoBroker(port=70000)


def _script_result(body: str) -> tuple[int, Path]:
    """Run a Python script that starts mosquitto and exits; return its pid and directory."""
    script = textwrap.dedent(
        """
        import os, sys
        from hub.broker import MosquittoBroker
        broker = MosquittoBroker()
        broker.start_sync()
        print(broker.pid, broker.workdir, flush=True)
        """
    ) + textwrap.dedent(body)
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=HUB_ROOT,
        env={"PYTHONPATH": str(HUB_ROOT), "PATH": "/usr/bin:/bin:/usr/sbin"},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert out.stdout.strip(), out.stderr.decode()
    pid, workdir = out.stdout.split()
    return int(pid), Path(workdir.decode())


def _gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` has exited (a zombie counts: reaping orphans is init's business)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@needs_mosquitto
@pytest.mark.parametrize(
    ("ending", "leaves_workdir"),
    [
        # PR_SET_PDEATHSIG ends the child; its directory is left behind.
        pytest.param("os._exit(0)\n", True, id="parent-crashes"),
        # The atexit hook ends the child and removes its directory.
        pytest.param("sys.exit(0)\n", False, id="parent-exits-without-stop"),
    ],
)
def test_mosquitto_does_not_survive_the_hub(ending: str, leaves_workdir: bool) -> None:
    pid, workdir = _script_result(ending)
    try:
        assert _gone(pid), f"mosquitto pid {pid} outlived its parent"
        assert workdir.exists() == leaves_workdir
    finally:
        if not _gone(pid, 0):
            psutil.Process(pid).kill()
        shutil.rmtree(workdir, ignore_errors=True)


# --- amqtt ----------------------------------------------------------------------------------


def _mqtt5_attempt(url_port: int) -> tuple[list[ReasonCode], list[ReasonCode]]:
    """Connect with MQTT 5 once; return the CONNACK and disconnect reason codes seen."""
    connacks: list[ReasonCode] = []
    disconnects: list[ReasonCode] = []
    done = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"v5-{uuid.uuid4().hex}", protocol=mqtt.MQTTv5
    )

    def on_connect(c: mqtt.Client, u: object, f: object, rc: ReasonCode, p: object) -> None:
        connacks.append(rc)

    def on_disconnect(c: mqtt.Client, u: object, f: object, rc: ReasonCode, p: object) -> None:
        disconnects.append(rc)
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect("127.0.0.1", url_port)
    client.loop_start()
    try:
        assert done.wait(5), "the broker neither refused nor dropped the MQTT 5 connection"
    finally:
        client.disconnect()
        client.loop_stop()
    return connacks, disconnects


@pytest.mark.usefixtures("other_loopback_reachable")
async def test_amqtt_runs_in_process_on_127_0_0_1_only_and_speaks_3_1_1() -> None:
    broker = AmqttBroker()
    assert not broker.running
    await broker.start()
    try:
        assert broker.kind == "amqtt"
        assert not broker.supports_mqtt5
        assert "MQTT 3.1.1 only" in broker.describe()
        assert broker.url in broker.describe()
        # No bare TCP connect to amqtt: it leaks the socket of a client that sends no CONNECT
        # (ResourceWarning); the round trip below proves it accepts on 127.0.0.1.
        assert_loopback_only(psutil.Process().pid, broker.port)  # this very process
        # The broker runs on this loop: the blocking paho probes must run in a thread.
        await asyncio.to_thread(round_trip, broker.url)
    finally:
        await broker.stop()
        await broker.stop()
    assert not connects("127.0.0.1", broker.port)


async def test_amqtt_refuses_mqtt5_with_unsupported_protocol_version() -> None:
    async with AmqttBroker() as broker:
        connacks, disconnects = await asyncio.to_thread(_mqtt5_attempt, broker.port)
        # amqtt answers CONNACK return code 1 ("unacceptable protocol version"), which paho
        # reports as MQTT 5 reason 0x84, then closes the connection.
        assert [(rc.value, rc.is_failure) for rc in connacks] == [(0x84, True)]
        assert str(connacks[0]) == "Unsupported protocol version"
        assert disconnects
        # The same broker still serves 3.1.1 clients.
        await asyncio.to_thread(round_trip, broker.url)


async def test_amqtt_on_a_taken_port_raises_broker_error() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        broker = AmqttBroker(squatter.getsockname()[1])
        with pytest.raises(BrokerError, match="address already in use"):
            await broker.start()
        assert not broker.running


# --- choosing a broker ----------------------------------------------------------------------


@needs_mosquitto
def test_make_embedded_broker_picks_mosquitto_when_installed() -> None:
    broker = make_embedded_broker()
    assert isinstance(broker, MosquittoBroker)
    assert broker.binary == mosquitto_binary()
    assert not broker.running
    assert isinstance(make_embedded_broker("mosquitto", port=free_port()), MosquittoBroker)


def test_make_embedded_broker_falls_back_to_amqtt(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_embedded_broker("amqtt"), AmqttBroker)
    port = free_port()
    assert make_embedded_broker("amqtt", port=port).port == port
    # Without a mosquitto binary (PATH emptied, fallback path hidden): amqtt.
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(broker_mod, "_MOSQUITTO_FALLBACK", "/nonexistent/mosquitto")
    assert mosquitto_binary() is None
    assert isinstance(make_embedded_broker(), AmqttBroker)
    with pytest.raises(BrokerError, match="mosquitto is not installed"):
        make_embedded_broker("mosquitto")
    with pytest.raises(ValueError, match="unknown embedded broker 'rabbit'"):
        make_embedded_broker("rabbit")


# --- the shared fixtures --------------------------------------------------------------------


@needs_mosquitto
def test_every_session_broker_round_trips(any_broker: EmbeddedBroker) -> None:
    assert any_broker.running
    round_trip(any_broker.url)


@needs_mosquitto
def test_session_mosquitto_is_brought_back_after_a_test_kills_it(
    mosquitto: MosquittoBroker,
) -> None:
    # The autouse guard in conftest must start it again before the next test (file order).
    mosquitto.stop_sync()
    assert not mosquitto.running


@needs_mosquitto
def test_session_mosquitto_is_running_again(mosquitto: MosquittoBroker, mqtt_url: str) -> None:
    assert mosquitto.running
    assert mqtt_url == mosquitto.url
    round_trip(mqtt_url)


async def test_postgres_url_is_a_fresh_database(postgres_url: str) -> None:
    import asyncpg

    db_name = postgres_url.rsplit("/", 1)[1]
    assert postgres_url.startswith("postgresql+asyncpg://postgres@127.0.0.1:5432/hub_t_")
    conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        assert await conn.fetchval("select current_database()") == db_name
        tables = await conn.fetchval(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        )
        assert tables == 0
    finally:
        await conn.close()
