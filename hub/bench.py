"""`hub bench`: a private broker, the hub in its own process, and a measured load.

The hub runs as a separate process (as in production) so that its CPU time and memory are its
own. This process plays the devices (paced publishes written in batches on a connection of
their own, :mod:`hub.benchload`; a paho client takes the hub's commands), answers the hub's
commands like a device would, and observes the hub's mirror topics:

* state latency: a device's publish time to the ``last_updated`` the hub stamped on the state
  (both ``time.time()`` on one machine), matched per entity by value, on one device in four of
  each dialect (:func:`watched_devices`);
* command latency: a command's publish on ``<base>/devices/<id>/set`` to the hub's
  ``command_confirmed`` event time;
* loss: messages published to the hub minus messages the hub counted (its ``<base>/stats``);
* floor: a bare paho publish-to-receive through the same broker at the same time.

The ``rules`` scenario adds N generated rules (``<workdir>/rules/bench.yaml``, history on) over
the simulated devices and times them: the bench drives a few motion sensors on and off at a
steady rate, each paired with a light by a measured rule, and takes the time from the sensor's
publish to the rule's ``turn_on`` arriving at the light (both ``time.time()`` on one machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from hub.benchload import LoadLink

if TYPE_CHECKING:
    from hub.simulator import MotionSensor, SimDevice

SCENARIOS = ("core", "rules", "firmware")
# Halvings of the bracket around the limit that --max makes after its coarse steps: four
# leave a limit within about 1.5 % (three left 3 %, as wide as the firmware-to-core target's
# margin: both limits of a 79.9 % ratio could sit anywhere from 77.9 to 82.1 %).
BISECT_STEPS = 4
# Seconds of quiet after a failed step, before the next one.
SETTLE_SECONDS = 5.0
MAX_STEP_SECONDS = 5.0
# --max stops stepping up past this rate (the bench's load generator is one Python thread).
MAX_SEARCH_RATE = 250_000.0
# The observer reads the mirrored state of one device in this many (see watched_devices).
WATCH_EVERY = 4
# --max: a step counts as sustained only if publish-to-state p99 stays within this.
KEEP_UP_P99_MS = 50.0
_PREFIX = "home"
_BASE = "hub"
HOME_SEED = 7
# The rules scenario: how many rules by default, how many motion sensors are measured (each
# paired with a light), and how many motion reports per second drive them (on and off).
DEFAULT_RULES = 100
MEASURED_PAIRS = 5
RULE_EVENTS_PER_S = 50.0
_WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def percentiles(samples: list[float]) -> dict[str, float | int | None]:
    """p50/p95/p99 (and the sample count) of latencies in milliseconds."""
    if not samples:
        return {"p50": None, "p95": None, "p99": None, "samples": 0}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "samples": len(ordered)}


def _client(client_id: str, protocol: str) -> Any:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    proto = paho.MQTTv5 if protocol == "5" else paho.MQTTv311
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    return client


def _connect(client: Any, port: int, timeout: float = 10.0) -> None:
    from hub.mqtt import set_nodelay

    connected = threading.Event()

    def on_connect(*args: Any) -> None:
        set_nodelay(client)
        connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    if not connected.wait(timeout):
        raise RuntimeError(f"bench client could not connect to 127.0.0.1:{port}")


def _carried(body: Any) -> Any:
    """What a report said of an entity, comparable with ``!=``: its state and attributes."""
    return tuple(body.items()) if isinstance(body, dict) else body


def _scalar(body: Any) -> Any:
    value = body.get("state") if isinstance(body, dict) else body
    if isinstance(value, bool):
        return None
    return float(value) if isinstance(value, int | float) else value


# ----- the rules scenario: generated rules and the probe that times them --------------------


@dataclass(frozen=True)
class RulePlan:
    """The generated rule file: its text, how many rules of each kind, the measured pairs."""

    text: str
    count: int
    pairs: tuple[tuple[str, str], ...]  # (motion entity id, light entity id), measured
    kinds: dict[str, int]


def _roles(devices: Sequence[SimDevice]) -> dict[str, list[str]]:
    """Entity ids by the part they can play in a rule, read from the config payloads."""
    roles: dict[str, list[str]] = defaultdict(list)
    for device in devices:
        for key, spec in device.config_payload()["entities"].items():
            kind, device_class = spec["kind"], spec.get("device_class")
            entity = f"{device.id}.{key}"
            if kind == "binary_sensor":
                roles["motion" if device_class == "motion" else "contact"].append(entity)
            elif kind == "light":
                roles["light"].append(entity)
            elif kind == "sensor" and device_class in ("power", "temperature", "humidity"):
                roles[device_class].append(entity)
            elif kind in ("switch", "lock", "cover"):
                roles["actuator"].append(entity)
    return roles


def _measured_rule(number: int, motion: str, light: str) -> dict[str, Any]:
    # Parallel, not restart: an "off" that arrives before the "on" run has sent its command
    # must not cancel it, or a measured event would go missing under load.
    return {
        "id": f"bench_measured_{number:03d}",
        "description": "Measured: motion turns the light on; no motion turns it off.",
        "mode": "parallel",
        "max": 20,
        "triggers": [
            {"state": motion, "to": "on", "id": "motion_on"},
            {"state": motion, "to": "off", "id": "motion_off"},
        ],
        "actions": [
            {
                "if": [{"trigger": "motion_on"}],
                "then": [{"command": light, "action": "turn_on"}],
                "else": [{"command": light, "action": "turn_off"}],
            }
        ],
    }


def plan_rules(
    devices: Sequence[SimDevice], count: int, *, measured: int = MEASURED_PAIRS
) -> RulePlan:
    """Generate ``count`` distinct, armed rules over ``devices``: first the measured
    motion-to-light pairs, then thresholds, ``for:`` durations, unmeasured motion lights,
    conditions on other entities and state changes, in turn."""
    if count < 1:
        raise ValueError(f"the number of rules must be at least 1, got {count}")
    roles = _roles(devices)
    motions, lights = roles["motion"], roles["light"]
    n_pairs = min(measured, len(motions), len(lights), count)
    if n_pairs == 0:
        raise ValueError(
            "the rules scenario needs a motion sensor and a light among the simulated devices"
            " (use --devices 3 or more)"
        )
    pairs = tuple(zip(motions[:n_pairs], lights[:n_pairs], strict=True))
    # Unmeasured rules never command a measured light: every measured "on" gets one command.
    free_motions, free_lights = motions[n_pairs:], lights[n_pairs:]
    power, contact = roles["power"], roles["contact"]
    temperature, humidity, actuator = roles["temperature"], roles["humidity"], roles["actuator"]

    def threshold(k: int) -> dict[str, Any]:
        entity, above = power[k % len(power)], 0.5 + (k * 13) % 400
        return {
            "triggers": [{"numeric": entity, "above": above}],
            "actions": [{"notify": f"{{{{ trigger.entity_id }}}} draws more than {above} W"}],
        }

    def held(k: int) -> dict[str, Any]:
        # Armed on every opening, cancelled on closing, rarely firing.
        entity = contact[k % len(contact)]
        return {
            "triggers": [{"state": entity, "to": "on", "for": f"{300 + k}s"}],
            "actions": [{"notify": "{{ trigger.entity_id }} open for {{ trigger.for }} s"}],
        }

    def motion_light(k: int) -> dict[str, Any]:
        motion = free_motions[k % len(free_motions)]
        light = free_lights[k % len(free_lights)]
        return {
            "mode": "restart",
            "triggers": [{"state": motion, "to": "on"}],
            "conditions": [{"time": {"weekdays": list(_WEEK)}}],  # always true
            "actions": [
                {
                    "command": light,
                    "action": "turn_on",
                    "params": {"brightness": 1 + (k * 7) % 255},
                }
            ],
        }

    def conditions(k: int) -> dict[str, Any]:
        # Conditions on other entities, each flavour true whenever those entities are known.
        other = [
            {"state": lights[k % len(lights)], "is": ["on", "off"]},
            {"numeric": humidity[k % len(humidity)], "above": 0},
            {"time": {"after": "00:00", "weekdays": list(_WEEK)}},
            {"expr": f"float(states('{power[k % len(power)]}'), 0) >= 0"},
        ][k % 4]
        entity, above = temperature[k % len(temperature)], round(12 + (k % 150) * 0.1, 1)
        return {
            "triggers": [{"numeric": entity, "above": above}],
            "conditions": [other],
            "actions": [{"notify": f"{{{{ trigger.entity_id }}}} above {above} °C"}],
        }

    def state_change(k: int) -> dict[str, Any]:
        entity = actuator[k % len(actuator)]
        watched = (motions + contact)[k % len(motions + contact)]
        return {
            "mode": "queued",
            "triggers": [{"state": entity}],
            "conditions": [
                {"or": [{"state": watched, "is": "on"}, {"not": [{"state": watched, "is": "on"}]}]},
                {"expr": f"trigger.entity_id == '{entity}' and {k} >= 0"},
            ],
            "actions": [{"notify": "{{ trigger.entity_id }} is now {{ trigger.to }}"}],
        }

    makers: dict[str, tuple[Callable[[int], dict[str, Any]], bool]] = {
        "threshold": (threshold, bool(power)),
        "held": (held, bool(contact)),
        "motion_light": (motion_light, bool(free_motions and free_lights)),
        "conditions": (conditions, bool(temperature and humidity and power)),
        "state_change": (state_change, bool(actuator)),
    }
    available = [(kind, make) for kind, (make, ok) in makers.items() if ok]
    rules = [_measured_rule(n + 1, motion, light) for n, (motion, light) in enumerate(pairs)]
    kinds = {"motion_light_measured": len(rules)} | {kind: 0 for kind, _ in available}
    if len(rules) < count and not available:
        raise ValueError("the simulated devices offer no entity for the unmeasured rules")
    index = 0
    while len(rules) < count:
        kind, make = available[index % len(available)]
        index += 1
        number = kinds[kind]
        kinds[kind] += 1
        rules.append({"id": f"bench_{kind}_{number + 1:04d}", **make(number)})
    bodies = {orjson.dumps({k: v for k, v in r.items() if k != "id"}) for r in rules}
    if len(bodies) != len(rules):
        raise ValueError("the rule generator made two identical rules")  # a bug here, not input
    # YAML 1.2 reads JSON, one flow mapping per rule: one line each, easy to find by id.
    lines = [
        f"# {count} rules generated by `hub bench --scenario rules` over {len(devices)}"
        " simulated devices.",
        *(f"- {orjson.dumps(rule).decode()}" for rule in rules),
    ]
    return RulePlan("\n".join(lines) + "\n", count, pairs, kinds)


class RuleProbe:
    """Drives the measured motion sensors on and off and times the commands their rules send.

    ``drive`` runs in the load loop (the main thread); ``on_command`` in the home client's
    network thread. A motion "on" is recorded (``time.time()``) before it is published, so its
    command can never arrive first; the lock covers the per-sensor queues both threads touch.
    """

    def __init__(self, home: BenchHome, plan: RulePlan, events_per_s: float) -> None:
        from hub.simulator import MotionSensor

        self.home = home
        self.events_per_s = events_per_s
        self.sensors: list[MotionSensor] = []
        for motion, _ in plan.pairs:
            sensor = home.by_id[motion.split(".")[0]]
            assert isinstance(sensor, MotionSensor)
            self.sensors.append(sensor)
        # light device id -> motion device id
        self.motion_of = {light.split(".")[0]: motion.split(".")[0] for motion, light in plan.pairs}
        self.pending: dict[str, deque[float]] = {s.id: deque() for s in self.sensors}
        self.samples: list[float] = []
        self.unexpected = 0
        self.events = 0
        self._seen: set[str] = set()
        self._next_due: float | None = None
        self._turn = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget the previous step's figures."""
        with self._lock:
            self.samples = []
            self.unexpected = 0
            self.events = 0
            for queue in self.pending.values():
                queue.clear()
        self._next_due = None

    def drive(self, now: float) -> int:
        """Publish the motion reports due by ``now`` (monotonic); return how many were sent."""
        if self._next_due is None:
            self._next_due = now
        sent = 0
        home = self.home
        while self._next_due <= now:
            self._next_due += 1 / self.events_per_s
            sensor = self.sensors[self._turn % len(self.sensors)]
            self._turn += 1
            with home.lock:
                sensor.motion = not sensor.motion
                report = sensor.initial_state()
            value = report["motion"]["state"]
            published = time.time()
            if value == "on":
                with self._lock:
                    self.pending[sensor.id].append(published)
            home.changes.record([((sensor.id, "motion"), value, value)], published)
            home.client.publish(f"{_PREFIX}/{sensor.id}/state", orjson.dumps(report))
            sent += 1
        self.events += sent
        return sent

    def on_command(self, device_id: str, command: Any, received: float) -> None:
        """A command reached a device: if it is a measured light's turn_on, time it."""
        motion = self.motion_of.get(device_id)
        if motion is None or not isinstance(command, dict) or command.get("action") != "turn_on":
            return
        command_id = str(command.get("id"))
        with self._lock:
            if command_id in self._seen:
                return  # the hub sent it again (no confirmation yet): already counted
            self._seen.add(command_id)
            queue = self.pending[motion]
            if queue:
                self.samples.append((received - queue.popleft()) * 1000)
            else:
                self.unexpected += 1

    def misses(self) -> int:
        """Motion "on" reports still waiting for their light's command."""
        with self._lock:
            return sum(len(queue) for queue in self.pending.values())


class PublishedChanges:
    """Per watched entity, the values its reports changed to, each with the publish time of
    the first report that carried it: what the observer matches the hub's mirrored states to.

    The hub stamps ``last_updated`` when a value changes; a report repeating the value moves
    nothing. So a mirrored (value, last_updated) belongs to the newest change to that value
    published before the stamp. Keeping only each entity's latest report, as the bench did,
    matched a state only while the hub was current: behind by a few reports, the entity's
    latest value was already another, and the sample was lost. Quickly changing readings
    (most of the core scenario's) then dropped out of the latency figures exactly while the
    hub was backlogged, and only slow ones (button presses, most of them Zigbee2MQTT's in the
    firmware scenario) showed the backlog: the two scenarios' tails were not measured alike.

    A change already matched, a device's announced state, an entity's first report when
    nothing was announced for it, and a command's reply stay as its known value with no time,
    so a report repeating them is no change, and a stamp without a change (a confirmation, an
    attribute) matches nothing. Thread-safe: the load loop records, the observer matches.
    """

    # Changes kept per entity: more than a device reports while the hub is seconds behind.
    KEEP = 512

    def __init__(self, events: set[tuple[str, str]] | None = None) -> None:
        # ident -> [(value, publish time, what the report carried)], oldest first
        self._changes: dict[tuple[str, str], list[tuple[Any, float, Any]]] = {}
        # Entities whose every report is a change, the same value included (a button press).
        self._events = events or set()
        self._lock = threading.Lock()

    def record(self, reports: Sequence[tuple[tuple[str, str], Any, Any]], published: float) -> None:
        """Note reports of (entity, value, carried) published at ``published``: ``carried`` is
        what the report said of the entity, attributes included (the hub stamps an attribute
        change too: a thermostat's current temperature), ``value`` its state."""
        changes, events = self._changes, self._events
        with self._lock:
            for ident, value, carried in reports:
                history = changes.get(ident)
                if history is None:
                    changes[ident] = [(value, math.inf, carried)]
                elif not history or history[-1][2] != carried or ident in events:
                    history.append((value, published, carried))
                    if len(history) > self.KEEP:
                        del history[: self.KEEP // 2]

    def known(self, ident: tuple[str, str], body: Any) -> None:
        """The entity is now as ``body`` (its state as a report carries it) says, by other
        means than a report (an announce, a command's reply): what follows counts from it;
        nothing before it is matched."""
        value = _scalar(body)
        with self._lock:
            if value is None:
                self._changes.pop(ident, None)
            else:
                self._changes[ident] = [(value, math.inf, _carried(body))]

    def match(self, ident: tuple[str, str], value: Any, updated: float) -> float | None:
        """The publish time of the change the hub stamped ``updated`` with ``value``, or None.
        Each change is matched once; older ones are dropped."""
        with self._lock:
            history = self._changes.get(ident)
            if not history:
                return None
            for at in range(len(history) - 1, -1, -1):
                published_value, published, carried = history[at]
                if published <= updated and published_value == value:
                    history[: at + 1] = [(published_value, math.inf, carried)]
                    return published
            return None


@dataclass
class Observed:
    """What the observer saw of the hub."""

    state_ms: list[float] = field(default_factory=list)
    command_ms: list[float] = field(default_factory=list)
    command_ms_by_dialect: defaultdict[str, list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    state_ms_by_dialect: defaultdict[str, list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    commands_failed: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    status: str = ""
    status_at: float = 0.0
    failures: list[str] = field(default_factory=list)
    # The rules scenario: notifications rules sent while measuring, and the retained status.
    notifications: int = 0
    rules_status: dict[str, Any] | None = None


class BenchHome:
    """The simulated devices' side: announces, publishes paced load, obeys commands.

    Each device speaks its dialect (``hub.simfirmware``): the hub's own convention, or with
    ``mixed`` (the firmware scenario) Tasmota, Shelly Gen2, Zigbee2MQTT and discovery as well.
    ``changes`` is keyed by the ids the hub's adapters give, so the observer can match states.
    """

    def __init__(
        self, port: int, protocol: str, devices: int, seed: int = HOME_SEED, *, mixed: bool = False
    ) -> None:
        from hub.simfirmware import make_dialects
        from hub.simulator import build_home

        self.devices = build_home(devices, seed=seed, mixed=mixed)
        self.by_id = {d.id: d for d in self.devices}
        self.dialects = make_dialects(_PREFIX)
        for device in self.devices:
            self.dialects[device.dialect].add(device)
        self.dialect_of = {d.id: self.dialects[d.dialect] for d in self.devices}
        # (simulated device id, its entity key) -> (hub device id, hub entity key)
        self.hub_ids: dict[tuple[str, str], tuple[str, str]] = {}
        # hub device id -> the dialect its simulated device speaks (in device order)
        self.dialect_by_hub_id: dict[str, str] = {}
        for device in self.devices:
            dialect = self.dialect_of[device.id]
            self.dialect_by_hub_id[dialect.hub_device_id(device)] = device.dialect
            for key in device.entities():
                hub_key = dialect.hub_key(device, key)
                if hub_key is not None:
                    self.hub_ids[(device.id, key)] = (dialect.hub_device_id(device), hub_key)
        # The devices the paced load reports for (all but the ones a RuleProbe drives).
        self.load_devices = list(self.devices)
        self.probe: RuleProbe | None = None
        self.rng = random.Random(seed)
        self.client = _client(f"bench-home-{uuid.uuid4().hex[:8]}", protocol)
        self.client.on_message = self._on_command
        # Reports and command replies go out on their own connection, in batches (see
        # hub.benchload); ``client`` announces the devices and receives the commands.
        self.load = LoadLink(
            _client(f"bench-load-{uuid.uuid4().hex[:8]}", protocol), v5=protocol == "5"
        )
        self.port = port
        # What the reports of the devices the observer watches (all when ``watched`` is None)
        # changed, by (hub device id, entity key).
        self.changes = PublishedChanges(
            {
                ident
                for (device_id, key), ident in self.hub_ids.items()
                if self.by_id[device_id].entities()[key].get("kind") == "button"
            }
        )
        self.watched: set[str] | None = None
        self.sent = 0
        self.replies = 0
        # Commands the hub publishes where it listens itself (Zigbee2MQTT's <base>/<name>/set):
        # the hub counts them as received too.
        self.echoes = 0
        self.lock = threading.Lock()

    def attach_probe(self, probe: RuleProbe) -> None:
        """Let ``probe`` drive its motion sensors (the paced load leaves them alone) and see
        every command."""
        self.probe = probe
        driven = {sensor.id for sensor in probe.sensors}
        self.load_devices = [d for d in self.devices if d.id not in driven]

    def connect(self) -> None:
        """Connect, subscribe to commands and announce every device."""
        self.load.connect(self.port)
        _connect(self.client, self.port)
        filters = [f for d in self.dialects.values() for f in d.filters()]
        self.client.subscribe([(f, 1) for f in filters])
        for dialect in self.dialects.values():
            for msg in dialect.hello():
                self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        for device in self.devices:
            for msg in self.dialect_of[device.id].announce(device):
                self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
            # The announced state is what the hub holds: a first report repeating it is no change.
            for key, body in device.initial_state().items():
                ident = self.hub_ids.get((device.id, key))
                if ident is not None:
                    self.changes.known(ident, body)

    def _on_command(self, client: Any, userdata: Any, message: Any) -> None:
        from hub.simfirmware import HaDiscovery

        received = time.time()
        topic: str = message.topic
        payload: bytes = message.payload
        for dialect in self.dialects.values():
            if isinstance(dialect, HaDiscovery) and dialect.birth(topic, payload):
                with self.lock:
                    for device in dialect.devices.values():
                        for msg in dialect.announce(device):
                            client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
                return
            request = dialect.request(topic, payload)
            if request is not None:
                if dialect.echoes(topic):
                    self.echoes += 1
                break
        else:
            return
        device = request.device
        if self.probe is not None and request.commands:
            self.probe.on_command(device.id, request.commands[0], received)
        if request.invalid:
            return
        with self.lock:
            update: dict[str, Any] | None = {}
            for command in request.commands:
                applied = device.apply_command(command)
                if applied is None:
                    update = None
                    break
                assert update is not None
                update.update(applied)
            msgs = request.reply(update)
        if update:
            # A state a command changed must not be matched to the device's last heartbeat
            # (the hub's mirror publishes changes only, so that heartbeat may be long past),
            # or a command's round trip would count as ingest latency.
            for key in update:
                ident = self.hub_ids.get((device.id, key))
                if ident is not None:
                    self.changes.known(ident, update[key])
        with self.lock:
            # On the load connection, after the reports already queued: in the order a
            # device would send them.
            for msg in msgs:
                self.load.add(msg.topic, msg.payload, retain=msg.retain)
            self.load.flush()
        self.replies += len(msgs)

    def run_load(
        self,
        rate: float,
        duration: float,
        on_tick: Callable[[], None] | None = None,
        drive: Callable[[float], int] | None = None,
    ) -> float:
        """Publish ``rate`` reports/s for ``duration`` s, paced on a monotonic schedule;
        ``drive(now)`` publishes extra messages of its own and says how many (counted as sent)."""
        load = self.load
        lock = self.lock
        devices = self.load_devices
        count = len(devices)
        # Per device: its dialect's report() and its hub ids by entity key.
        watched = self.watched
        plans = [
            (
                device,
                self.dialect_of[device.id].report,
                {
                    key: ident
                    for key in device.entities()
                    if (ident := self.hub_ids.get((device.id, key))) is not None
                    and (watched is None or ident[0] in watched)
                },
            )
            for device in devices
        ]
        changes = self.changes
        driven = 0
        start = time.monotonic()
        end = start + duration
        sent = 0
        last_tick = start
        carried_values: list[tuple[tuple[str, str], Any, Any]] = []
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - start) * rate)
            while sent < due:
                device, report_of, idents = plans[sent % count]
                with lock:
                    msg, carried = report_of(device, device.next_report(time.time(), self.rng))
                    load.add(msg.topic, msg.payload, retain=msg.retain)
                # Only the watched devices' entities (most devices have none): what they carried.
                for key, ident in idents.items():
                    body = carried.get(key)
                    if body is not None and (value := _scalar(body)) is not None:
                        carried_values.append((ident, value, _carried(body)))
                sent += 1
            # The batch's publish time: stamped before it is written, so the hub cannot have
            # stamped a state from it earlier.
            if carried_values:
                changes.record(carried_values, time.time())
                carried_values.clear()
            with lock:
                load.flush()
            if drive is not None:
                driven += drive(now)
            if on_tick is not None and now - last_tick >= 0.05:
                on_tick()
                last_tick = now
            time.sleep(min(0.001, max(0.0, end - time.monotonic())))
        self.sent += sent + driven
        return (sent + driven) / (time.monotonic() - start)

    def close(self) -> None:
        """Disconnect."""
        self.load.close()
        self.client.disconnect()
        self.client.loop_stop()


def watched_devices(home: BenchHome) -> set[str]:
    """The hub ids of the devices whose mirrored state the observer reads for state latency:
    one in ``WATCH_EVERY`` of each dialect's devices (at least one each).

    Reading every device's retained state body costs the shared machine about as much as
    the hub's own ingest (a firmware plug's body holds a dozen entities), and the hub treats
    every device of a dialect alike: a sample measures the same latency with less disturbance.
    The hub still mirrors every device; the broker just forwards fewer of them.
    """
    by_dialect: dict[str, list[str]] = defaultdict(list)
    for hub_id, dialect in home.dialect_by_hub_id.items():
        by_dialect[dialect].append(hub_id)
    return {ids[i] for ids in by_dialect.values() for i in range(0, len(ids), WATCH_EVERY)}


class Observer:
    """Watches the hub's mirror: states (of the watched devices), command results, stats and
    status."""

    def __init__(self, port: int, protocol: str, home: BenchHome, *, rules: bool = False) -> None:
        self.seen = Observed()
        self.home = home
        self.rules = rules
        self.measuring = False
        self.client = _client(f"bench-observer-{uuid.uuid4().hex[:8]}", protocol)
        self.client.on_message = self._on_message
        self.port = port
        self.issued: dict[str, float] = {}
        self.issued_dialect: dict[str, str] = {}
        self._last_updated: dict[tuple[str, str], float] = {}
        self.watched = watched_devices(home)

    def connect(self) -> None:
        """Subscribe to the hub's topics: the mirrored state of the watched devices only."""
        _connect(self.client, self.port)
        for device_id in sorted(self.watched):
            self.client.subscribe(f"{_BASE}/devices/{device_id}/state", qos=0)
        for topic in (
            "events/command_confirmed",
            "events/command_failed",
            "stats",
            "status",
        ):
            self.client.subscribe(f"{_BASE}/{topic}", qos=0)
        if self.rules:
            self.client.subscribe(f"{_BASE}/rules/status", qos=0)
            self.client.subscribe(f"{_BASE}/events/notification", qos=0)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        topic: str = message.topic
        if topic.endswith("/state"):
            self._on_state(topic.split("/")[2], message.payload)
        elif topic.endswith("command_confirmed"):
            body = orjson.loads(message.payload)
            request_id = body.get("request_id", "")
            issued = self.issued.pop(request_id, None)
            dialect = self.issued_dialect.pop(request_id, "native")
            if issued is not None and self.measuring:
                latency = (body["confirmed_at"] - issued) * 1000
                self.seen.command_ms.append(latency)
                self.seen.command_ms_by_dialect[dialect].append(latency)
        elif topic.endswith("command_failed"):
            body = orjson.loads(message.payload)
            self.issued_dialect.pop(body.get("request_id", ""), None)
            if self.issued.pop(body.get("request_id", ""), None) is not None:
                self.seen.commands_failed += 1
                self.seen.failures.append(body.get("reason", ""))
        elif topic.endswith("/stats"):
            self.seen.stats = orjson.loads(message.payload)
        elif topic == f"{_BASE}/rules/status":
            self.seen.rules_status = orjson.loads(message.payload) if message.payload else None
        elif topic.endswith("/notification"):
            if self.measuring:
                self.seen.notifications += 1
        elif topic.endswith("/status"):
            self.seen.status = message.payload.decode()
            self.seen.status_at = time.time()

    def _on_state(self, device_id: str, payload: bytes) -> None:
        if not payload:
            return
        body = orjson.loads(payload)
        if not self.measuring:
            return
        changes = self.home.changes
        for key, entity in body.get("entities", {}).items():
            updated = entity.get("last_updated", 0.0)
            ident = (device_id, key)
            if updated <= self._last_updated.get(ident, 0.0):
                continue
            self._last_updated[ident] = updated
            value = entity.get("state")
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = float(value)
            published = changes.match(ident, value, updated)
            if published is not None:
                latency = (updated - published) * 1000
                self.seen.state_ms.append(latency)
                dialect = self.home.dialect_by_hub_id.get(device_id, "?")
                self.seen.state_ms_by_dialect[dialect].append(latency)

    def issue_command(self, device_id: str, key: str, dialect: str = "native") -> None:
        """Toggle an entity through the hub's command topic (the device speaks ``dialect``)."""
        request_id = f"bench-{uuid.uuid4().hex[:12]}"
        self.issued_dialect[request_id] = dialect
        self.issued[request_id] = time.time()
        body = {"entity": key, "action": "toggle", "id": request_id}
        self.client.publish(f"{_BASE}/devices/{device_id}/set", orjson.dumps(body), qos=1)

    def wait_for(self, predicate: Callable[[Observed], bool], timeout: float) -> bool:
        """Poll until ``predicate`` holds or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.seen):
                return True
            time.sleep(0.01)
        return predicate(self.seen)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


class FloorProbe:
    """A bare paho publish-to-receive through the broker: the latency floor."""

    def __init__(self, port: int, protocol: str) -> None:
        self.samples: list[float] = []
        self.port = port
        self.sender = _client(f"bench-floor-tx-{uuid.uuid4().hex[:8]}", protocol)
        self.receiver = _client(f"bench-floor-rx-{uuid.uuid4().hex[:8]}", protocol)
        self.receiver.on_message = self._on_message
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        sent = float(message.payload)
        self.samples.append((time.time() - sent) * 1000)

    def start(self, rate: float = 100.0) -> None:
        """Start sending probes in a thread."""
        _connect(self.receiver, self.port)
        subscribed = threading.Event()
        self.receiver.on_subscribe = lambda *args: subscribed.set()
        self.receiver.subscribe("bench/floor", qos=0)
        subscribed.wait(5)
        _connect(self.sender, self.port)

        def loop() -> None:
            while not self._stop.wait(1 / rate):
                self.sender.publish("bench/floor", repr(time.time()).encode())

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for client in (self.sender, self.receiver):
            client.disconnect()
            client.loop_stop()


class HubProcess:
    """The hub under test, in its own process."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        """Spawn ``python -m hub run``."""
        self.started_at = time.time()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds used so far."""
        import psutil

        assert self.proc is not None
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory (VmHWM)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def stop(self) -> None:
        """SIGTERM and wait (the hub flushes storage and says goodbye)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the hub logged (for error reports)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Step:
    """One load step's figures."""

    rate: float
    duration: float
    sent: int
    sent_rate: float
    hub_received: int
    lost: int
    cpu_s: float
    state_ms: list[float]
    command_ms: list[float]
    commands_failed: int
    floor_ms: list[float]
    command_ms_by_dialect: dict[str, list[float]] = field(default_factory=dict)
    state_ms_by_dialect: dict[str, list[float]] = field(default_factory=dict)
    # The rules scenario (empty or zero otherwise).
    rule_ms: list[float] = field(default_factory=list)
    rule_misses: int = 0
    rule_unexpected: int = 0
    rule_events: int = 0
    notifications: int = 0


class Bench:
    """Runs the whole benchmark and returns its report."""

    def __init__(
        self,
        devices: int,
        progress: Callable[[str], None],
        *,
        rules: int | None = None,
        mixed: bool = False,
    ) -> None:
        self.devices = devices
        self.progress = progress
        self.rules = rules
        # The firmware scenario: devices speak the firmware dialects through the adapters.
        self.mixed = mixed
        # Rules are measured as users run them: with the event history recorded.
        self.history = True
        self.plan: RulePlan | None = None
        self.mix: dict[str, Any] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="hub-bench-"))

    def _write_rules(self, home: BenchHome, count: int) -> RulePlan:
        """Generate the rules into ``<workdir>/rules/bench.yaml`` and load them as the hub will."""
        from hub.rules.loader import load_rules
        from hub.yamlsource import ConfigError

        try:
            plan = plan_rules(home.devices, count)
        except ValueError as exc:
            raise RuntimeError(str(exc)) from exc
        folder = self.workdir / "rules"
        folder.mkdir(exist_ok=True)
        (folder / "bench.yaml").write_text(plan.text)
        try:
            loaded = load_rules([folder])
        except ConfigError as exc:
            raise RuntimeError(f"the generated rules do not load:\n{exc}") from exc
        if len(loaded.rules) != count:
            raise RuntimeError(f"generated {count} rules but the loader found {len(loaded.rules)}")
        return plan

    def _check_rules_running(self, observer: Observer, hub: HubProcess) -> None:
        """Wait for the hub's retained rule status and check that it runs every rule."""
        if self.plan is None:
            return
        if not observer.wait_for(lambda s: s.rules_status is not None, 30):
            raise RuntimeError(f"the hub published no rule status:\n{hub.log_tail()}")
        status = observer.seen.rules_status or {}
        running = len(status.get("rules", []))
        if status.get("error") or running != self.plan.count:
            raise RuntimeError(
                f"the hub runs {running} of {self.plan.count} rules:"
                f" {status.get('error') or hub.log_tail()}"
            )

    @contextlib.contextmanager
    def environment(self) -> Iterator[tuple[Any, HubProcess, BenchHome, Observer, float]]:
        """Broker, warm database, hub process, devices and observer, torn down afterwards."""
        import asyncio

        from hub.broker import make_embedded_broker

        loop = asyncio.new_event_loop()
        broker = make_embedded_broker()
        loop.run_until_complete(broker.start())
        # amqtt runs inside this process's event loop; keep it turning in a thread.
        loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
        loop_thread.start()
        protocol = "5" if broker.supports_mqtt5 else "3.1.1"
        self.progress(f"broker: {broker.describe()}")
        home = BenchHome(broker.port, protocol, self.devices, mixed=self.mixed)
        config = self.workdir / "hub.yaml"
        hub = HubProcess(config, self.workdir / "hub.log")
        observer = Observer(broker.port, protocol, home, rules=self.rules is not None)
        home.watched = observer.watched
        try:
            text = (
                f"hub:\n  base_topic: {_BASE}\n  device_topic: {_PREFIX}\n"
                f"mqtt:\n  url: {broker.url}\n  client_id: hub-bench-{uuid.uuid4().hex[:6]}\n"
                f"database:\n  url: sqlite+aiosqlite:///{self.workdir / 'bench.db'}\n"
                "logging:\n  level: warning\n"
            )
            if self.mixed:
                text += adapters_config(home)
                self.mix = firmware_mix(home)
                self.progress(
                    "firmware mix (devices, share of messages): "
                    + ", ".join(f"{name} {n}" for name, n in self.mix["devices"].items())
                )
            if self.rules is not None:
                self.plan = self._write_rules(home, self.rules)
                home.attach_probe(RuleProbe(home, self.plan, RULE_EVENTS_PER_S))
                text += f"rules:\n  paths: [rules]\n  history: {str(self.history).lower()}\n"
                self.progress(
                    f"rules: {self.plan.count} ("
                    + ", ".join(f"{n} {kind}" for kind, n in self.plan.kinds.items() if n)
                    + f"), history {'on' if self.history else 'off'}"
                )
            config.write_text(text)
            observer.connect()
            # First run: devices announce themselves and land in the database.
            hub.start()
            if not observer.wait_for(lambda s: s.status == "online", 30):
                raise RuntimeError(f"the hub did not come online:\n{hub.log_tail()}")
            self._check_rules_running(observer, hub)
            home.connect()
            self.progress(f"registering {self.devices} devices ...")
            if not observer.wait_for(lambda s: s.stats.get("devices", 0) >= self.devices, 60):
                registered = observer.seen.stats.get("devices")
                raise RuntimeError(f"the hub registered {registered} of {self.devices} devices")
            time.sleep(1.5)  # let the storage flush land
            hub.stop()
            # Second run: start-up time with a warm database of N devices.
            observer.seen.status = ""
            observer.seen.rules_status = None
            hub.start()
            if not observer.wait_for(lambda s: s.status == "online", 30):
                raise RuntimeError(f"the hub did not come back online:\n{hub.log_tail()}")
            startup = observer.seen.status_at - hub.started_at
            self._check_rules_running(observer, hub)
            self.progress(
                f"hub started in {startup:.2f} s with {self.devices} devices in its database"
            )
            yield broker, hub, home, observer, startup
        finally:
            hub.stop()
            observer.close()
            with contextlib.suppress(Exception):
                home.close()
            fut = asyncio.run_coroutine_threadsafe(broker.stop(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=15)
            loop.call_soon_threadsafe(loop.stop)
            loop_thread.join(timeout=5)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def step(
        self,
        hub: HubProcess,
        home: BenchHome,
        observer: Observer,
        port: int,
        protocol: str,
        rate: float,
        duration: float,
    ) -> Step:
        """Drive one load level and return its figures."""
        self._settle(observer)
        base_received = observer.seen.stats.get("received", 0)
        base_sent, base_replies, base_echoes = home.sent, home.replies, home.echoes
        observer.seen.state_ms, observer.seen.command_ms = [], []
        observer.seen.command_ms_by_dialect = defaultdict(list)
        observer.seen.state_ms_by_dialect = defaultdict(list)
        observer.seen.commands_failed = 0
        observer.seen.notifications = 0
        probe = home.probe
        if probe is not None:
            probe.reset()
        floor = FloorProbe(port, protocol)
        floor.start()
        commandable = [
            (*home.hub_ids[(d.id, key)], d.dialect)
            for d in home.devices
            for key, spec in d.config_payload()["entities"].items()
            if spec["kind"] in ("switch", "light") and (d.id, key) in home.hub_ids
        ]
        rng = random.Random(3)
        command_rate = max(5.0, min(50.0, rate / 100))
        next_command = [time.monotonic()]
        # Commands take turns over the dialects, so each one's latency has samples.
        by_dialect: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for entry in commandable:
            by_dialect[entry[2]].append(entry)
        turns = [by_dialect[name] for name in sorted(by_dialect)]
        turn = [0]

        def tick() -> None:
            now = time.monotonic()
            while next_command[0] <= now and turns:
                observer.issue_command(*rng.choice(turns[turn[0] % len(turns)]))
                turn[0] += 1
                next_command[0] += 1 / command_rate

        observer.measuring = True
        cpu_before = hub.cpu_seconds()
        sent_rate = home.run_load(
            rate, duration, on_tick=tick, drive=probe.drive if probe is not None else None
        )
        # Wait for the hub to catch up and publish stats that include everything sent.
        self._settle(observer, deadline=max(10.0, duration))
        cpu = hub.cpu_seconds() - cpu_before
        observer.measuring = False
        floor.stop()
        sent = home.sent - base_sent
        replies = home.replies - base_replies
        echoes = home.echoes - base_echoes
        commands = len(observer.seen.command_ms) + observer.seen.commands_failed
        expected = sent + replies + commands + echoes
        received = observer.seen.stats.get("received", 0) - base_received
        return Step(
            rate=rate,
            duration=duration,
            sent=sent,
            sent_rate=sent_rate,
            hub_received=received,
            lost=max(0, expected - received),
            cpu_s=cpu,
            state_ms=list(observer.seen.state_ms),
            command_ms=list(observer.seen.command_ms),
            command_ms_by_dialect={
                k: list(v) for k, v in observer.seen.command_ms_by_dialect.items()
            },
            state_ms_by_dialect={k: list(v) for k, v in observer.seen.state_ms_by_dialect.items()},
            commands_failed=observer.seen.commands_failed,
            floor_ms=list(floor.samples),
            rule_ms=list(probe.samples) if probe is not None else [],
            rule_misses=probe.misses() if probe is not None else 0,
            rule_unexpected=probe.unexpected if probe is not None else 0,
            rule_events=probe.events if probe is not None else 0,
            notifications=observer.seen.notifications,
        )

    def _settle(self, observer: Observer, deadline: float = 10.0) -> None:
        """Wait until two stats reports in a row show the same count and nothing queued."""
        end = time.monotonic() + deadline
        previous = -1
        while time.monotonic() < end:
            stats = observer.seen.stats
            received = stats.get("received", 0)
            if (
                received == previous
                and stats.get("pending_inbound", 1) == 0
                and not observer.issued
            ):
                return
            previous = received
            time.sleep(2.1)


def adapters_config(home: BenchHome) -> str:
    """The ``adapters:`` section for the firmware scenario's home (YAML 1.2 reads JSON)."""
    listed = {
        name: [d.id for d in home.devices if d.dialect == name] for name in ("tasmota", "shelly")
    }
    section = {
        "zigbee2mqtt": {"base_topic": "zigbee2mqtt"},
        "ha_discovery": {"prefix": "homeassistant"},
        "firmware": {
            "profiles": ["tasmota", "shelly-gen2"],
            "tasmota": {"devices": [{"topic": i, "id": i} for i in listed["tasmota"]]},
            "shelly-gen2": {"devices": [{"prefix": i} for i in listed["shelly"]]},
        },
    }
    return f"adapters: {json.dumps(section)}\n"


def firmware_mix(home: BenchHome) -> dict[str, Any]:
    """How many devices speak each dialect (the load reports round-robin over devices, so the
    message shares are the device shares)."""
    counts: dict[str, int] = defaultdict(int)
    for device in home.load_devices:
        counts[device.dialect] += 1
    total = max(1, sum(counts.values()))
    return {
        "devices": dict(sorted(counts.items())),
        "message_share": {k: round(v / total, 3) for k, v in sorted(counts.items())},
    }


def _report(
    step: Step,
    *,
    scenario: str,
    devices: int,
    startup: float,
    peak_rss: float,
    broker: str,
    bench: Bench | None = None,
) -> dict[str, Any]:
    ingested = step.hub_received
    rules: dict[str, Any] = {}
    if bench is not None and bench.plan is not None:
        rules = {
            "rules": bench.plan.count,
            "rule_kinds": bench.plan.kinds,
            "history": bench.history,
            # From the measured motion sensor's publish to the light's command at the light.
            "rule_latency_ms": percentiles(step.rule_ms),
            "rule_misses": step.rule_misses,
            "rule_unexpected_commands": step.rule_unexpected,
            "rule_events": step.rule_events,
            "rule_notifications": step.notifications,
        }
    return {
        "scenario": scenario,
        "devices": devices,
        "rate": step.rate,
        "duration_s": step.duration,
        "sent": step.sent,
        "sent_msgs_per_s": round(step.sent_rate, 1),
        "ingest_msgs_per_s": round(ingested / step.duration, 1),
        "lost": step.lost,
        "state_latency_ms": percentiles(step.state_ms),
        "command_latency_ms": {**percentiles(step.command_ms), "failed": step.commands_failed},
        **(
            {
                "command_latency_by_dialect_ms": {
                    name: percentiles(samples)
                    for name, samples in sorted(step.command_ms_by_dialect.items())
                },
                "state_latency_by_dialect_ms": {
                    name: percentiles(samples)
                    for name, samples in sorted(step.state_ms_by_dialect.items())
                },
                "firmware_mix": bench.mix,
            }
            if bench is not None and bench.mixed
            else {}
        ),
        **rules,
        "cpu_s_per_1k_msgs": round(step.cpu_s / max(1, ingested) * 1000, 4),
        "peak_rss_mb": peak_rss,
        "startup_s": round(startup, 3),
        "floor_rtt_ms": {
            k: v for k, v in percentiles(step.floor_ms).items() if k in ("p50", "p99")
        },
        "broker": broker,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class LimitSearch:
    """The ``--max`` search for one scenario's limit: coarse steps up until one fails, then
    halving the bracket. It only chooses levels; whoever runs the steps reports back, so two
    scenarios' searches can take turns (``--against``).

    A step that lost nothing but fell behind (p99 over the bound) is run once more before it
    counts as failed: on a shared machine one 5 s step can fail on a single stall of the host,
    and the search would then stop short of what the hub sustains. A lost message is never
    retried.
    """

    def __init__(self) -> None:
        self.level: float | None = 2000.0
        self.best: Step | None = None
        self.failed_at: float | None = None
        self.bisected = 0
        self.steps: list[dict[str, Any]] = []
        self._confirming: float | None = None  # a level that fell behind once, to run again

    def next_level(self) -> float | None:
        """The next rate to try, or None when the limit is found."""
        if self._confirming is not None:
            return self._confirming
        if self.level is not None:
            return self.level
        # The coarse steps only bracket the limit (up to a quarter apart): halve the bracket
        # a few times so that two scenarios can be compared to within a few per cent.
        best, failed_at = self.best, self.failed_at
        if (
            self.bisected >= BISECT_STEPS
            or best is None
            or failed_at is None
            or failed_at - best.rate <= 500
        ):
            return None
        return float(round((best.rate + failed_at) / 2 / 125) * 125)

    @property
    def settle_first(self) -> bool:
        """True when the step before may have left the hub behind (it failed, or the coarse
        steps are over): let it catch up before the next one."""
        return self.level is None or self._confirming is not None

    def record(self, level: float, step: Step) -> bool:
        """Take the result of the step at ``level``; True when it was sustained."""
        p99 = percentiles(step.state_ms)["p99"]
        # Sustained means keeping pace, not only losing nothing: past its limit the hub
        # still loses nothing (the broker buffers) but falls seconds behind.
        kept_up = p99 is not None and p99 <= KEEP_UP_P99_MS
        ok = step.lost == 0 and kept_up and step.sent_rate >= 0.95 * level
        confirming = self._confirming == level
        self.steps.append(
            {
                "rate": level,
                "sent_rate": round(step.sent_rate),
                "lost": step.lost,
                "state_p99_ms": p99,
                "kept_up": kept_up,
                "again": confirming,
            }
        )
        self._confirming = None
        if not ok and not confirming and step.lost == 0:
            self._confirming = level
            return ok
        if self.level is None:
            self.bisected += 1
            if ok:
                self.best = step
            else:
                self.failed_at = level
        elif ok:
            self.best = step
            # Coarse steps of a quarter above 10,000 msgs/s: the bisection then narrows the
            # bracket to about 1.5 %.
            grown = level * 1.5 if level < 10000 else level * 1.25
            self.level = float(round(grown / 125) * 125)
            if self.level > MAX_SEARCH_RATE:
                self.level = None
        else:
            self.failed_at = level
            self.level = None
        return ok

    def line(self, step: Step, ok: bool, label: str = "") -> str:
        """The progress line for a step just recorded."""
        row = self.steps[-1]
        return (
            f"  {label}{row['rate']:>7.0f} msgs/s: sent {step.sent_rate:>8.0f}/s,"
            f" lost {step.lost}, p99 {row['state_p99_ms']} ms"
            f"{'' if ok else '  <- again' if self._confirming is not None else '  <- limit'}"
        )


def run_bench(
    *,
    devices: int,
    rate: float,
    duration: float,
    scenario: str,
    find_max: bool,
    progress: Callable[[str], None],
    rules: int | None = None,
    against: str | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """Run the benchmark (with ``rules`` generated rules, for the rules scenario) and return
    the JSON report. With ``find_max`` and ``against``, both scenarios' limits are searched
    taking turns step by step, so that a host whose speed drifts weighs on both alike. With
    ``rounds`` over 1 the searches run that many times and the median round is reported
    (each round's limits and ratio too): on a small shared host one search's limit moves by
    a fifth with a few stalls near it."""
    scenarios = [scenario] if against is None else [scenario, against]
    benches = [
        Bench(devices, progress, rules=rules, mixed=name == "firmware") for name in scenarios
    ]
    with contextlib.ExitStack() as stack:
        environments = [stack.enter_context(bench.environment()) for bench in benches]
        broker, hub, home, observer, startup = environments[0]
        protocol = "5" if broker.supports_mqtt5 else "3.1.1"
        if not find_max:
            progress(f"load: {rate:g} msgs/s for {duration:g} s")
            step = benches[0].step(hub, home, observer, broker.port, protocol, rate, duration)
            return _report(
                step,
                scenario=scenario,
                devices=devices,
                startup=startup,
                peak_rss=hub.peak_rss_mb(),
                broker=broker.describe(),
                bench=benches[0],
            )
        rounds_run = [
            _search_round(scenarios, benches, environments, duration, progress, number, rounds)
            for number in range(1, rounds + 1)
        ]
        searches = _median_round(rounds_run)
        for name, search in zip(scenarios, searches, strict=True):
            if search.best is None:
                raise RuntimeError(f"{name}: even the lowest step lost messages")
        best = searches[0].best
        assert best is not None
        report = _report(
            best,
            scenario=scenario,
            devices=devices,
            startup=startup,
            peak_rss=hub.peak_rss_mb(),
            broker=broker.describe(),
            bench=benches[0],
        )
        report["max_zero_loss_rate"] = best.rate
        report["steps"] = searches[0].steps
        if against is not None:
            other = searches[1].best
            assert other is not None
            report["against"] = {
                "scenario": against,
                "max_zero_loss_rate": other.rate,
                "cpu_s_per_1k_msgs": round(other.cpu_s / max(1, other.hub_received) * 1000, 4),
                "steps": searches[1].steps,
            }
            report["ratio_to_against"] = round(best.rate / other.rate, 3)
        if rounds > 1:
            report["rounds"] = [_round_summary(run) for run in rounds_run]
        return report


def _search_round(
    scenarios: Sequence[str],
    benches: Sequence[Bench],
    environments: Sequence[tuple[Any, HubProcess, BenchHome, Observer, float]],
    duration: float,
    progress: Callable[[str], None],
    number: int,
    rounds: int,
) -> list[LimitSearch]:
    """One ``--max`` search per scenario, the scenarios taking turns step by step."""
    if rounds > 1:
        progress(f"round {number} of {rounds}")
        if number > 1:
            time.sleep(SETTLE_SECONDS)  # the last round ended past the limits
    labelled = len(scenarios) > 1
    searches = [LimitSearch() for _ in scenarios]
    while True:
        ran = False
        for name, bench, search, env in zip(
            scenarios, benches, searches, environments, strict=True
        ):
            level = search.next_level()
            if level is None:
                continue
            if search.settle_first:
                # The step that failed left the hub behind; let it catch up so that its
                # backlog is not counted against the next step.
                time.sleep(SETTLE_SECONDS)
            e_broker, e_hub, e_home, e_observer, _ = env
            step = bench.step(
                e_hub,
                e_home,
                e_observer,
                e_broker.port,
                "5" if e_broker.supports_mqtt5 else "3.1.1",
                level,
                min(duration, MAX_STEP_SECONDS),
            )
            ok = search.record(level, step)
            progress(search.line(step, ok, f"{name}: " if labelled else ""))
            ran = True
        if not ran:
            return searches


def _limits(searches: Sequence[LimitSearch]) -> list[float | None]:
    """Each search's limit, None where it found none."""
    return [search.best.rate if search.best is not None else None for search in searches]


def _round_key(searches: Sequence[LimitSearch]) -> float:
    """What orders rounds: the ratio of the first scenario's limit to the second's, or the
    one scenario's limit (0 when a search found none)."""
    limits = [limit or 0.0 for limit in _limits(searches)]
    if len(limits) == 1:
        return limits[0]
    return limits[0] / limits[1] if limits[1] else 0.0


def _median_round(rounds: Sequence[list[LimitSearch]]) -> list[LimitSearch]:
    """The round whose ratio (or limit) is the median; of an even number, the lower of the
    middle two: a figure that one lucky round cannot carry."""
    ordered = sorted(rounds, key=_round_key)
    return ordered[(len(ordered) - 1) // 2]


def _round_summary(searches: Sequence[LimitSearch]) -> dict[str, Any]:
    limits = _limits(searches)
    summary: dict[str, Any] = {"max_zero_loss_rate": limits[0]}
    if len(limits) > 1:
        summary["against_max_zero_loss_rate"] = limits[1]
        summary["ratio"] = round(_round_key(searches), 3)
    return summary


def format_table(report: dict[str, Any]) -> str:
    """Render the report as a small table."""

    def lat(name: str) -> str:
        return lat_of(report[name])

    def lat_of(d: dict[str, Any]) -> str:
        if d.get("p50") is None:
            return "n/a"
        # The floor probe reports no p95: say nothing rather than a made-up 0.
        p95 = f"  p95 {d['p95']:.2f}" if d.get("p95") is not None else ""
        return f"p50 {d['p50']:.2f}{p95}  p99 {d['p99']:.2f} ms"

    rows = [
        ("scenario", report["scenario"]),
        ("devices", report["devices"]),
        ("target rate", f"{report['rate']:g} msgs/s for {report['duration_s']:g} s"),
        ("sent", f"{report['sent']} ({report['sent_msgs_per_s']:g}/s)"),
        ("ingested", f"{report['ingest_msgs_per_s']:g} msgs/s"),
        ("lost", report["lost"]),
        ("publish -> state", lat("state_latency_ms")),
        *(
            [
                (f"  via {name}", lat_of(report["state_latency_by_dialect_ms"][name]))
                for name in report["state_latency_by_dialect_ms"]
            ]
            if "state_latency_by_dialect_ms" in report
            else []
        ),
        (
            "command -> confirmed",
            lat("command_latency_ms") + f"  ({report['command_latency_ms']['failed']} failed)",
        ),
        *(
            [
                (f"  via {name}", lat_of(report["command_latency_by_dialect_ms"][name]))
                for name in report["command_latency_by_dialect_ms"]
            ]
            if "command_latency_by_dialect_ms" in report
            else []
        ),
        ("floor (bare paho)", lat("floor_rtt_ms")),
        *(
            [
                (
                    "sensor -> rule command",
                    lat("rule_latency_ms")
                    + f"  ({report['rules']} rules, {report['rule_misses']} missed,"
                    f" history {'on' if report['history'] else 'off'})",
                )
            ]
            if "rules" in report
            else []
        ),
        ("CPU per 1k msgs", f"{report['cpu_s_per_1k_msgs']:.4f} s"),
        ("peak RSS", f"{report['peak_rss_mb']:g} MB"),
        ("start-up", f"{report['startup_s']:.3f} s"),
        ("broker", report["broker"]),
    ]
    if "max_zero_loss_rate" in report:
        rows.insert(3, ("max zero-loss rate", f"{report['max_zero_loss_rate']:g} msgs/s"))
    if "against" in report:
        other = report["against"]
        rows.insert(
            4,
            (
                f"  against {other['scenario']}",
                f"{other['max_zero_loss_rate']:g} msgs/s (steps taken in turns):"
                f" ratio {100 * report['ratio_to_against']:.0f} %",
            ),
        )
    if "rounds" in report:

        def limit(rate: float | None) -> str:
            return "none" if rate is None else f"{rate:g}"

        rounds = [
            limit(r["max_zero_loss_rate"])
            + (
                f"/{limit(r['against_max_zero_loss_rate'])} ({100 * r['ratio']:.0f} %)"
                if "ratio" in r
                else ""
            )
            for r in report["rounds"]
        ]
        rows.insert(
            5 if "against" in report else 4,
            (f"  {len(rounds)} rounds (median shown)", ", ".join(rounds)),
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run_bench_command(args: argparse.Namespace) -> int:
    """The body of ``hub bench``."""
    if args.scenario not in SCENARIOS:
        print(
            f"hub bench: unknown scenario {args.scenario!r}; choose from {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    if args.devices < 1 or args.rate <= 0 or args.duration <= 0:
        print("hub bench: --devices, --rate and --duration must be positive", file=sys.stderr)
        return 2
    rules: int | None = getattr(args, "rules", None)
    if args.scenario != "rules" and rules is not None:
        print(
            f"hub bench: --rules applies only to --scenario rules (not {args.scenario!r})",
            file=sys.stderr,
        )
        return 2
    if args.scenario == "rules":
        rules = DEFAULT_RULES if rules is None else rules
        try:
            from hub.simulator import build_home

            plan_rules(build_home(args.devices, seed=HOME_SEED), rules)
        except ValueError as exc:
            print(f"hub bench: --rules {rules}: {exc}", file=sys.stderr)
            return 2

    against: str | None = getattr(args, "against", None)
    compared = ("core", "firmware")
    if against is not None and (
        against not in compared
        or args.scenario not in compared
        or against == args.scenario
        or not args.max
    ):
        print(
            "hub bench: --against takes another scenario (core or firmware) and needs --max,"
            f" got --against {against!r} for --scenario {args.scenario!r}"
            f"{'' if args.max else ' without --max'}",
            file=sys.stderr,
        )
        return 2

    rounds: int = getattr(args, "rounds", 1)
    if rounds < 1 or (rounds > 1 and not args.max):
        print(
            f"hub bench: --rounds takes a positive count and needs --max, got --rounds {rounds}"
            f"{'' if args.max else ' without --max'}",
            file=sys.stderr,
        )
        return 2

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if getattr(args, "replay", False):
        return _run_replay_command(args, progress)
    report = _run_and_print(
        lambda: run_bench(
            devices=args.devices,
            rate=args.rate,
            duration=args.duration,
            scenario=args.scenario,
            find_max=args.max,
            progress=progress,
            rules=rules,
            against=against,
            rounds=rounds,
        ),
        format_table,
        as_json=args.json,
    )
    if report is None:
        return 1
    # A measured rule event without its command is a failure, like a lost message.
    return 0 if report["lost"] == 0 and not report.get("rule_misses") else 1


def _run_and_print(
    run: Callable[[], dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
    *,
    as_json: bool,
) -> dict[str, Any] | None:
    """Run a measurement and print its report (JSON or table); None, said on stderr, when it
    could not run."""
    try:
        report = run()
    except RuntimeError as exc:
        print(f"hub bench: {exc}", file=sys.stderr)
        return None
    print(json.dumps(report, indent=2) if as_json else table(report))
    return report


def _run_replay_command(args: argparse.Namespace, progress: Callable[[str], None]) -> int:
    from hub.benchreplay import format_replay, run_replay

    if args.scenario == "rules" or args.max:
        print(
            "hub bench: --replay takes --scenario core or firmware, without --max", file=sys.stderr
        )
        return 2
    if args.messages < 1:
        print("hub bench: --messages must be positive", file=sys.stderr)
        return 2
    report = _run_and_print(
        lambda: run_replay(
            scenario=args.scenario,
            devices=args.devices,
            messages=args.messages,
            rate=args.rate,
            progress=progress,
        ),
        format_replay,
        as_json=args.json,
    )
    return 0 if report is not None else 1
