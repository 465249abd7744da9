"""Tests for the simulated home: device classes, build_home and the MQTT runner."""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.model import ID_PATTERN, EntityKind, coerce_attributes, coerce_value
from hub.simulator import (
    AREAS,
    BrokerAddress,
    Button,
    ClimateSensor,
    Cover,
    DoorSensor,
    Light,
    Lock,
    MotionSensor,
    Plug,
    SimDevice,
    Simulator,
    SimulatorError,
    Thermostat,
    build_home,
    run_simulator,
)

NOON = 1_750_000_000.0  # a fixed moment, so that day curves do not depend on the test's hour
ALL_CLASSES = (
    Plug,
    Light,
    MotionSensor,
    DoorSensor,
    ClimateSensor,
    Thermostat,
    Cover,
    Lock,
    Button,
)


def make(cls: type[SimDevice], **kwargs: Any) -> SimDevice:
    return cls("test_device", area="kitchen", rng=random.Random(7), **kwargs)


def cmd(entity: str, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    command: dict[str, Any] = {"entity": entity, "action": action, "id": "c1"}
    if params is not None:
        command["params"] = params
    return command


# -- build_home ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [30, 36])
def test_build_home_covers_every_kind_class_and_area(count: int) -> None:
    home = build_home(count)
    assert len(home) == count
    assert {type(d) for d in home} == set(ALL_CLASSES)
    kinds = {e["kind"] for d in home for e in d.config_payload()["entities"].values()}
    # No simulated device has a settable number or select yet (a gap, not a choice).
    assert kinds == {k.value for k in EntityKind} - {"number", "select"}
    assert {d.area for d in home} == set(AREAS)


def test_build_home_ids_and_configs_are_valid() -> None:
    home = build_home(36)
    ids = [d.id for d in home]
    assert len(set(ids)) == len(ids)
    for device in home:
        assert ID_PATTERN.match(device.id), device.id
        config = json.loads(json.dumps(device.config_payload()))
        assert set(config) >= {"name", "area", "manufacturer", "model", "firmware", "via"}
        assert config["area"] in AREAS
        assert config["identities"], device.id
        assert config["entities"], device.id
        for key, entity in config["entities"].items():
            assert ID_PATTERN.match(key), key
            EntityKind(entity["kind"])  # raises for an unknown kind
        json.dumps(device.initial_state())
    expected = {
        "kitchen_plug",
        "kitchen_light",
        "living_room_tv_plug",
        "hallway_motion",
        "front_door",
        "front_door_lock",
        "living_room_thermostat",
        "living_room_blinds",
        "hallway_button",
    }
    assert expected <= set(ids)
    plug = next(d for d in home if d.id == "kitchen_plug").config_payload()["entities"]
    assert plug["power"] == {
        "kind": "sensor",
        "unit": "W",
        "device_class": "power",
        "name": "Power",
    }
    assert plug["energy"]["kind"] == "energy_meter"
    assert plug["energy"]["unit"] == "kWh"


def test_build_home_adds_numbered_extras_spread_over_areas() -> None:
    home = build_home(1000, seed=3)
    assert len(home) == 1000
    ids = [d.id for d in home]
    assert len(set(ids)) == 1000
    extras = ids[36:]
    assert all(re.fullmatch(r"extra_[a-z]+_\d{3}", i) for i in extras)
    assert extras[:2] == ["extra_plug_001", "extra_sensor_002"]
    per_area = {area: sum(d.area == area for d in home) for area in AREAS}
    assert min(per_area.values()) >= 100
    assert {type(d) for d in home[36:]} == set(ALL_CLASSES)
    for key in ("mac", "ip", "ieee"):
        values = [d.identities[key] for d in home if key in d.identities]
        assert len(values) == len(set(values)), f"duplicate {key}"
    assert build_home(5)[0].id == "kitchen_plug"
    assert len(build_home(5)) == 5
    with pytest.raises(ValueError, match="count must be a positive integer"):
        build_home(0)


def test_build_home_is_deterministic_for_a_seed() -> None:
    def snapshot(seed: int) -> list[Any]:
        home = build_home(80, seed=seed)
        rng = random.Random(1)
        return [(d.config_payload(), d.initial_state(), d.next_report(NOON, rng)) for d in home]

    assert snapshot(5) == snapshot(5)
    assert snapshot(5) != snapshot(6)


# -- commands -----------------------------------------------------------------------------


APPLY_CASES: list[tuple[type[SimDevice], dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    (Plug, cmd("switch", "turn_on"), lambda u: u["switch"] == "on" and u["power"] > 1),
    (Plug, cmd("switch", "turn_off"), lambda u: u["switch"] == "off" and u["power"] < 1),
    (
        Light,
        cmd("light", "turn_on", {"brightness": 200, "color_temp": 300}),
        lambda u: u["light"] == {"state": "on", "brightness": 200, "color_temp": 300},
    ),
    (Light, cmd("light", "turn_off", {"transition": 2}), lambda u: u["light"]["state"] == "off"),
    (
        Thermostat,
        cmd("thermostat", "set_temperature", {"temperature": 22.5}),
        lambda u: u["thermostat"]["target_temperature"] == 22.5,
    ),
    (
        Thermostat,
        cmd("thermostat", "set_mode", {"mode": "cool"}),
        lambda u: u["thermostat"]["state"] == "cool",
    ),
    (Thermostat, cmd("thermostat", "turn_off"), lambda u: u["thermostat"]["state"] == "off"),
    (Cover, cmd("cover", "open"), lambda u: u["cover"]["state"] in ("opening", "open")),
    (Cover, cmd("cover", "close"), lambda u: u["cover"]["state"] in ("closing", "closed")),
    (
        Cover,
        cmd("cover", "set_position", {"position": 40}),
        lambda u: u["cover"]["state"] in ("opening", "closing"),
    ),
    (Lock, cmd("lock", "unlock"), lambda u: u["lock"]["state"] == "unlocked"),
    (Lock, cmd("lock", "lock"), lambda u: u["lock"]["state"] == "locked"),
    (Button, cmd("button", "press"), lambda u: u == {"button": "single"}),
    (Button, cmd("button", "press", {"press": "double"}), lambda u: u == {"button": "double"}),
]


@pytest.mark.parametrize(
    ("cls", "command", "check"),
    APPLY_CASES,
    ids=[f"{c[0].__name__}-{c[1]['action']}" for c in APPLY_CASES],
)
def test_device_applies_command(
    cls: type[SimDevice], command: dict[str, Any], check: Callable[[dict[str, Any]], bool]
) -> None:
    device = make(cls)
    update = device.apply_command(command, now=NOON)
    assert update is not None
    assert check(update), update
    assert set(update) <= set(device.entities())


@pytest.mark.parametrize(("cls", "key"), [(Plug, "switch"), (Light, "light")])
def test_toggle_flips_the_state(cls: type[SimDevice], key: str) -> None:
    device = make(cls)

    def value(state: dict[str, Any]) -> str:
        item = state[key]
        return str(item["state"] if isinstance(item, dict) else item)

    before = value(device.initial_state())
    first = device.apply_command(cmd(key, "toggle"), now=NOON)
    second = device.apply_command(cmd(key, "toggle"), now=NOON + 1)
    assert first is not None
    assert second is not None
    assert value(first) == ("off" if before == "on" else "on")
    assert value(second) == before


def test_cover_travels_stops_and_reports_arrival() -> None:
    cover = make(Cover)
    rng = random.Random(1)
    cover.apply_command(cmd("cover", "close"), now=NOON)
    assert cover.next_report(NOON + 20, rng) == {"cover": {"state": "closed", "position": 0}}
    start = cover.apply_command(cmd("cover", "open"), now=NOON + 20)
    assert start == {"cover": {"state": "opening", "position": 0}}
    stopped = cover.apply_command(cmd("cover", "stop"), now=NOON + 23)
    assert stopped == {"cover": {"state": "stopped", "position": 20}}
    assert cover.next_wakeup() is None
    cover.apply_command(cmd("cover", "set_position", {"position": 50}), now=NOON + 23)
    wake = cover.next_wakeup()
    assert wake is not None
    assert wake == pytest.approx(NOON + 23 + 30 * Cover.TRAVEL_SECONDS / 100)
    assert cover.next_report(wake - 1, rng)["cover"]["state"] == "opening"
    assert cover.next_report(wake, rng) == {"cover": {"state": "open", "position": 50}}
    assert cover.next_wakeup() is None


INVALID_CASES: list[tuple[type[SimDevice], Any]] = [
    (Plug, cmd("switch", "open")),
    (Plug, cmd("switch", "turn_on", {"brightness": 3})),
    (Plug, cmd("power", "turn_on")),
    (Light, cmd("light", "turn_on", {"brightness": "high"})),
    (Light, cmd("light", "turn_on", {"brightness": True})),
    (Light, cmd("light", "turn_on", {"color_temp": 100})),
    (Light, cmd("light", "lock")),
    (Thermostat, cmd("thermostat", "set_temperature", {"temperature": 45})),
    (Thermostat, cmd("thermostat", "set_temperature")),
    (Thermostat, cmd("thermostat", "set_mode", {"mode": "party"})),
    (Cover, cmd("cover", "set_position", {"position": 150})),
    (Cover, cmd("cover", "turn_on")),
    (Lock, cmd("lock", "unlock", {"code": 1234})),
    (Lock, cmd("lock", "open")),
    (Button, cmd("button", "press", {"press": "triple"})),
    (Button, cmd("battery", "press")),
    (MotionSensor, cmd("motion", "turn_on")),
    (DoorSensor, cmd("contact", "turn_off")),
    (ClimateSensor, cmd("temperature", "set_temperature", {"temperature": 20})),
    (Light, ["light", "turn_on"]),
    (Light, {"action": "turn_on"}),
    (Light, cmd("lamp", "turn_on")),
    (Light, {"entity": "light", "action": 3}),
    (Light, {"entity": "light", "action": "turn_on", "params": [1]}),
]


@pytest.mark.parametrize(("cls", "command"), INVALID_CASES)
def test_device_rejects_invalid_command(
    cls: type[SimDevice], command: Any, caplog: pytest.LogCaptureFixture
) -> None:
    device = make(cls)
    before = device.initial_state()
    with caplog.at_level(logging.WARNING, logger="hub.simulator"):
        assert device.apply_command(command, now=NOON) is None
    assert device.initial_state() == before
    assert "test_device: ignored command" in caplog.text


# -- reports ------------------------------------------------------------------------------


def test_energy_integrates_monotonically_and_standby_when_off() -> None:
    plug = Plug("p1", area="kitchen", appliance="tv", rng=random.Random(1))
    rng = random.Random(2)
    plug.apply_command(cmd("switch", "turn_on"), now=NOON)
    start = plug.energy_kwh
    energies = []
    watts = []
    for step in range(1, 121):
        report = plug.next_report(NOON + step * 30, rng)
        energies.append(report["energy"])
        watts.append(report["power"])
    assert energies == sorted(energies)
    assert all(70 < w < 120 for w in watts)  # a TV, not a kettle
    # One hour at ~95 W is ~0.095 kWh.
    assert plug.energy_kwh - start == pytest.approx(0.095, rel=0.2)
    answer = plug.apply_command(cmd("switch", "turn_off"), now=NOON + 3630)
    assert answer is not None
    assert answer["switch"] == "off"
    assert answer["energy"] >= energies[-1]
    off = [plug.next_report(NOON + 3630 + step * 60, rng) for step in range(1, 61)]
    assert all(0.2 <= r["power"] <= 0.4 for r in off)
    # An hour of ~0.3 W standby is ~0.0003 kWh.
    assert 0.0001 < off[-1]["energy"] - answer["energy"] < 0.0006
    # A clock that goes back must not make the meter run backwards.
    before = plug.energy_kwh
    plug.next_report(NOON, rng)
    assert plug.energy_kwh >= before


def test_appliance_programs_follow_time() -> None:
    washer = Plug("w1", area="garage", appliance="washer", rng=random.Random(1))
    rng = random.Random(1)
    washer.apply_command(cmd("switch", "turn_on"), now=NOON)
    heating = washer.next_report(NOON + 60, rng)["power"]
    washing = washer.next_report(NOON + 1200, rng)["power"]
    done = washer.next_report(NOON + 5 * 3600, rng)["power"]
    assert heating > 1500
    assert 100 < washing < 400
    assert done < 5


def _check_value(kind: EntityKind, item: Any) -> None:
    if isinstance(item, dict):
        assert "state" in item
        coerce_value(kind, item["state"])
        coerce_attributes({k: v for k, v in item.items() if k != "state"})
        return
    coerce_value(kind, item)
    if kind in (EntityKind.SENSOR, EntityKind.ENERGY_METER):
        assert isinstance(item, int | float)
        assert not isinstance(item, bool)


def test_reports_are_partial_updates_with_valid_values() -> None:
    home = build_home(120, seed=9)
    rng = random.Random(4)
    seen: dict[str, set[str]] = {d.id: set() for d in home}
    for device in home:
        entities = device.config_payload()["entities"]
        reports = [device.initial_state()]
        reports += [device.next_report(NOON + step * 20, rng) for step in range(300)]
        for report in reports:
            assert report, device.id
            assert set(report) <= set(entities), (device.id, report)
            for key, item in report.items():
                _check_value(EntityKind(entities[key]["kind"]), item)
                seen[device.id].add(key)
                if entities[key]["kind"] in ("switch", "light", "binary_sensor"):
                    value = item["state"] if isinstance(item, dict) else item
                    assert value in ("on", "off")
    # Over a few hours every entity shows up in some report.
    for device in home:
        assert seen[device.id] == set(device.entities()), device.id


def test_thermostat_heats_toward_target_and_cools_when_off() -> None:
    thermostat = make(Thermostat)
    rng = random.Random(1)
    thermostat.apply_command(cmd("thermostat", "set_mode", {"mode": "heat"}), now=NOON)
    thermostat.apply_command(cmd("thermostat", "set_temperature", {"temperature": 24}), now=NOON)
    temps = [
        thermostat.next_report(NOON + step * 60, rng)["thermostat"]["current_temperature"]
        for step in range(1, 121)
    ]
    assert temps[0] < 22
    reached = next(i for i, t in enumerate(temps) if t >= 24)
    assert temps[: reached + 1] == sorted(temps[: reached + 1])
    # Then it holds the target within its hysteresis band.
    assert all(23.6 <= t <= 24.1 for t in temps[reached:])
    thermostat.apply_command(cmd("thermostat", "set_mode", {"mode": "off"}), now=NOON + 7200)
    later = thermostat.next_report(NOON + 7200 + 3600, rng)["thermostat"]
    assert later["current_temperature"] < temps[-1]
    assert later["hvac_action"] == "idle"


def test_motion_bursts_end_on_their_wakeup() -> None:
    sensor = make(MotionSensor)
    rng = random.Random(5)
    now = NOON
    while sensor.next_report(now, rng)["motion"]["state"] == "off":
        now += 10
        assert now < NOON + 10_000, "no motion in almost three hours of day time"
    wake = sensor.next_wakeup()
    assert wake is not None
    assert wake > now
    end = sensor.next_report(wake, random.Random(0))
    while end["motion"]["state"] == "on":  # the burst may have been extended
        wake = sensor.next_wakeup()
        assert wake is not None
        end = sensor.next_report(wake, random.Random(0))
    assert sensor.next_wakeup() is None
    assert isinstance(end["motion"]["battery"], int)


def test_broker_url_parsing() -> None:
    assert BrokerAddress.parse("mqtt://localhost:1884") == BrokerAddress("localhost", 1884)
    assert BrokerAddress.parse("127.0.0.1") == BrokerAddress("127.0.0.1", 1883)
    assert BrokerAddress.parse("mqtts://u%40x:p@h") == BrokerAddress("h", 8883, True, "u@x", "p")
    for bad in ("http://h", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(ValueError, match="invalid broker URL"):
            BrokerAddress.parse(bad)


def test_simulator_rejects_bad_arguments() -> None:
    home = build_home(3)
    with pytest.raises(ValueError, match="invalid topic prefix"):
        Simulator("mqtt://h", home, prefix="home/#")
    with pytest.raises(ValueError, match="used twice"):
        Simulator("mqtt://h", [*home, home[0]])
    with pytest.raises(ValueError, match="rate"):
        Simulator("mqtt://h", home, rate=-1)
    with pytest.raises(ValueError, match="protocol"):
        Simulator("mqtt://h", home, protocol="4")


# -- against a real broker ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on {port} within {timeout} s")


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n")
    process = subprocess.Popen(
        ["/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process, 5)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        _stop_process(process)


class Probe:
    """A plain paho client that records what arrives on some topics."""

    def __init__(self, url: str, *topics: str) -> None:
        address = BrokerAddress.parse(url)
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}"
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        self.client.subscribe([(topic, 1) for topic in topics])
        assert self._subscribed.wait(5)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[tuple[str, bytes, bool]]], bool], timeout: float = 5
    ) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout)

    def count(self, payload: bytes | None = None) -> int:
        """Return how many messages arrived (with exactly ``payload``, if given)."""
        with self._cond:
            if payload is None:
                return len(self.messages)
            return sum(p == payload for _, p, _ in self.messages)

    def wait_for_count(self, payload: bytes, count: int, timeout: float = 5) -> bool:
        return self.wait_for(lambda m: sum(p == payload for _, p, _ in m) >= count, timeout)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client._reset_sockets()  # paho closes its socket pair only in __del__ (#627)


@pytest.fixture
def probes() -> Iterator[Callable[..., Probe]]:
    made: list[Probe] = []

    def factory(url: str, *topics: str) -> Probe:
        probe = Probe(url, *topics)
        made.append(probe)
        return probe

    yield factory
    for probe in made:
        probe.close()


def _latest(messages: list[tuple[str, bytes, bool]], suffix: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for topic, payload, _ in messages:
        if topic.endswith(suffix):
            out[topic.split("/")[-2]] = payload
    return out


def test_start_announces_retained_devices_and_stop_marks_them_offline(
    mosquitto: str, probes: Callable[..., Probe]
) -> None:
    home = build_home(36)
    sim = Simulator(mosquitto, home, rate=5, prefix="announce")
    sim.start()
    try:
        assert sim.protocol == "5"
        probe = probes(mosquitto, "announce/+/config", "announce/+/availability")
        assert probe.wait_for(lambda m: sum(t.endswith("/availability") for t, _, _ in m) >= 36)
        configs = _latest(probe.messages, "/config")
        assert set(configs) == {d.id for d in home}
        for device in home:
            assert json.loads(configs[device.id]) == device.config_payload()
        assert set(_latest(probe.messages, "/availability").values()) == {b"online"}
        assert all(retain for _, _, retain in probe.messages)
    finally:
        sim.stop()
    after = probes(mosquitto, "announce/+/availability")
    assert after.wait_for(lambda m: len(m) >= 36)
    offline = _latest(after.messages, "/availability")
    assert offline == {d.id: b"offline" for d in home}


def test_set_command_is_answered_with_state(mosquitto: str, probes: Callable[..., Probe]) -> None:
    with Simulator(mosquitto, build_home(36), rate=0, prefix="cmd") as sim:
        probe = probes(mosquitto, "cmd/kitchen_light/state", "cmd/living_room_blinds/state")
        command = cmd("light", "turn_on", {"brightness": 99})
        probe.publish("cmd/kitchen_light/set", json.dumps(command).encode())
        assert probe.wait_for(lambda m: len(m) >= 1)
        topic, payload, _ = probe.messages[0]
        assert topic == "cmd/kitchen_light/state"
        assert json.loads(payload)["light"]["state"] == "on"
        assert json.loads(payload)["light"]["brightness"] == 99

        # Invalid commands are counted and get no answer; the next valid one still works.
        probe.publish("cmd/kitchen_light/set", b"not json")
        probe.publish("cmd/kitchen_light/set", json.dumps(cmd("light", "explode")).encode())
        probe.publish("cmd/living_room_blinds/set", json.dumps(cmd("cover", "close")).encode())
        assert probe.wait_for(lambda m: len(m) >= 2)
        topic, payload, _ = probe.messages[1]
        assert topic == "cmd/living_room_blinds/state"
        assert json.loads(payload)["cover"]["state"] in ("closing", "closed")
        assert sim.stats == {
            "reports_sent": 0,
            "commands_received": 4,
            "commands_applied": 2,
            "commands_invalid": 2,
        }


def test_report_rate_is_exact_on_average(mosquitto: str, probes: Callable[..., Probe]) -> None:
    probe = probes(mosquitto, "rate/+/state")
    with Simulator(mosquitto, build_home(200), rate=1000, prefix="rate") as sim:
        time.sleep(0.5)
        count0, sent0, t0 = probe.count(), sim.stats["reports_sent"], time.monotonic()
        time.sleep(2.0)
        count1, sent1, t1 = probe.count(), sim.stats["reports_sent"], time.monotonic()
    received = (count1 - count0) / (t1 - t0)
    sent = (sent1 - sent0) / (t1 - t0)
    assert received == pytest.approx(1000, rel=0.1)
    assert sent == pytest.approx(1000, rel=0.1)
    states = [json.loads(p) for t, p, _ in probe.messages[-500:]]
    assert all(isinstance(s, dict) and s for s in states)


def test_commands_are_answered_promptly_under_load(
    mosquitto: str, probes: Callable[..., Probe]
) -> None:
    answer = b'{"button":"long"}'
    probe = probes(mosquitto, "load/hallway_button/state")
    latencies = []
    with Simulator(mosquitto, build_home(300), rate=2000, prefix="load"):
        time.sleep(0.3)
        for _ in range(15):
            seen = probe.count(answer)
            start = time.perf_counter()
            probe.publish(
                "load/hallway_button/set",
                json.dumps(cmd("button", "press", {"press": "long"})).encode(),
            )
            assert probe.wait_for_count(answer, seen + 1)
            latencies.append(time.perf_counter() - start)
    # Well under the ~40 ms a delayed ACK costs when Nagle's algorithm holds the answer back.
    assert sorted(latencies)[len(latencies) // 2] < 0.02


def test_unreachable_broker_raises_simulator_error() -> None:
    sim = Simulator(f"mqtt://127.0.0.1:{_free_port()}", build_home(3))
    with pytest.raises(SimulatorError, match="cannot connect to MQTT broker"):
        sim.start()
    sim.stop()  # harmless after a failed start


def test_run_simulator_reports_progress_until_stopped(
    mosquitto: str, probes: Callable[..., Probe]
) -> None:
    stop = threading.Event()
    lines: list[str] = []
    runner = threading.Thread(
        target=run_simulator,
        args=(mosquitto,),
        kwargs={
            "devices": 40,
            "rate": 200,
            "prefix": "run",
            "seed": 2,
            "stop_event": stop,
            "progress": lines.append,
            "progress_interval": 0.3,
        },
    )
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while len(lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert lines[0].startswith("simulating 40 devices under run/")
    rates = [float(m.group(1)) for line in lines if (m := re.match(r"([\d.]+) reports/s", line))]
    assert rates
    assert rates[-1] == pytest.approx(200, rel=0.2)
    assert "stopped" in lines[-1]
    probe = probes(mosquitto, "run/+/availability")
    assert probe.wait_for(lambda m: len(m) >= 40)
    assert set(_latest(probe.messages, "/availability").values()) == {b"offline"}


def test_falls_back_to_mqtt_311_on_the_embedded_broker(tmp_path: Path) -> None:
    port = _free_port()
    conf = tmp_path / "amqtt.yaml"
    conf.write_text(
        "listeners:\n"
        "  default:\n"
        "    type: tcp\n"
        f"    bind: 127.0.0.1:{port}\n"
        "plugins:\n"
        "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
        "    allow_anonymous: true\n"
    )
    amqtt = Path(sys.executable).parent / "amqtt"
    process = subprocess.Popen(
        [str(amqtt), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_port(port, process, 15)
        url = f"mqtt://127.0.0.1:{port}"
        with pytest.raises(SimulatorError, match="MQTT 5"):
            Simulator(url, build_home(3), protocol="5").start()
        with Simulator(url, build_home(10), rate=50, prefix="emb") as sim:
            assert sim.protocol == "3.1.1"
            probe = Probe(url, "emb/front_door_lock/state")
            try:
                command = json.dumps(cmd("lock", "unlock")).encode()
                probe.publish("emb/front_door_lock/set", command)
                assert probe.wait_for(lambda m: any(b'"unlocked"' in p for _, p, _ in m))
            finally:
                probe.close()
            assert sim.stats["commands_applied"] == 1
    finally:
        _stop_process(process)
