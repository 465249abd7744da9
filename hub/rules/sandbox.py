"""Rule tests and replays: the real engine on a simulated clock, with no broker and no device.

A sandbox is a hub that is never started: its registry, bus, command router and group
states work, but nothing reaches MQTT or storage. In rule tests, virtual devices answer
commands as a real device would (the state becomes what the command asked for); in replays,
commands are only recorded, so the recorded history plays out untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.commands import (
    Command,
    CommandError,
    CommandResult,
    commanded_state,
    expectation_for,
)
from hub.config import HubConfig
from hub.core import Hub
from hub.events import CustomEvent
from hub.model import (
    Context,
    Device,
    Entity,
    EntityKind,
    Group,
    InvalidValue,
    Origin,
    Registry,
)
from hub.rules.clock import SimulatedClock
from hub.rules.engine import RuleEngine
from hub.rules.model import Rule, RuleSet, RuleTest, RuleTestEvent, group_of
from hub.rules.schedule import Location

VIRTUAL = "virtual"
DEFAULT_TEST_CLOCK = "2026-01-05T12:00:00"  # a Monday, noon

_KIND_BY_KEY = {
    "light": EntityKind.LIGHT,
    "switch": EntityKind.SWITCH,
    "plug": EntityKind.SWITCH,
    "relay": EntityKind.SWITCH,
    "cover": EntityKind.COVER,
    "blinds": EntityKind.COVER,
    "lock": EntityKind.LOCK,
    "thermostat": EntityKind.CLIMATE,
    "climate": EntityKind.CLIMATE,
    "button": EntityKind.BUTTON,
    "energy": EntityKind.ENERGY_METER,
    "motion": EntityKind.BINARY_SENSOR,
    "contact": EntityKind.BINARY_SENSOR,
    "door": EntityKind.BINARY_SENSOR,
    "window": EntityKind.BINARY_SENSOR,
    "occupancy": EntityKind.BINARY_SENSOR,
}


def guess_kind(entity_id: str, value: Any) -> EntityKind:
    """The kind of an entity a test names but no registry knows: from its key, then its value."""
    key = entity_id.split(".", 1)[-1]
    for word, kind in _KIND_BY_KEY.items():
        if word in key:
            return kind
    if isinstance(value, str) and value in ("on", "off"):
        return EntityKind.SWITCH
    return EntityKind.SENSOR


class VirtualDevices:
    """A dialect whose devices obey at once, by reporting the state the command asked for."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def send_command(
        self,
        device: Device,
        entity: Entity,
        action: str,
        params: Mapping[str, Any],
        command_id: str,
    ) -> None:
        """Report the commanded state on the next loop turn, like a device answering."""
        state = self._hub.registry.states.get(entity.id)
        target = commanded_state(entity, action, params, state.value if state else None)
        if target is None:
            return
        value, attrs = target

        def report() -> None:
            with contextlib.suppress(InvalidValue, KeyError):
                self._hub.report_state(entity.id, value, attrs)

        asyncio.get_running_loop().call_soon(report)


class RecordingSink:
    """For replays: commands are recorded and reported successful; nothing is touched."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def issue(self, command: Command) -> list[asyncio.Future[CommandResult]]:
        """Resolve the target, check the action, and succeed without sending anything."""
        loop = asyncio.get_running_loop()
        try:
            entities = self._registry.resolve(command.target)
        except LookupError:
            entities = []
        futures: list[asyncio.Future[CommandResult]] = []
        accepted: list[str] = []
        for entity in entities:
            try:
                expectation_for(entity, command.action, command.params, None)
            except CommandError:
                if len(entities) == 1:
                    raise
                continue
            accepted.append(entity.id)
        # A target the stored registry does not know is still recorded: history may be older.
        for entity_id in accepted or [command.target]:
            future: asyncio.Future[CommandResult] = loop.create_future()
            future.set_result(CommandResult(command.request_id, entity_id, ok=True, latency_s=0.0))
            futures.append(future)
        return futures


def sandbox_hub(registry: Registry | None = None) -> Hub:
    """A hub that is never started, optionally seeded with a stored registry's devices."""
    hub = Hub(HubConfig())
    if registry is not None:
        for device in registry.devices.values():
            entities = [registry.entities[e] for e in device.entity_ids if e in registry.entities]
            hub.register_device(Device(device.id, device.name, device.owner, device.area), entities)
        hub.registry.areas.update(registry.areas)
        hub.registry.groups.update(registry.groups)
        hub.registry.invalidate_groups()  # the group states follow the new groups
    return hub


def ensure_entity(hub: Hub, entity_id: str, value: Any = None) -> Entity:
    """The entity, created on a virtual device when the registry does not have it."""
    entity = hub.registry.entities.get(entity_id)
    if entity is not None:
        return entity
    device_id, _, key = entity_id.partition(".")
    kind = guess_kind(entity_id, value)
    entity = Entity(entity_id, device_id, key, kind, entity_id)
    device = hub.registry.devices.get(device_id)
    if device is None:
        device = Device(device_id, device_id, VIRTUAL)
        hub.register_device(device, [entity])
    else:
        hub.register_device(
            Device(device.id, device.name, device.owner, device.area),
            [*hub.registry.entities_of(device_id), entity],
        )
    hub.registry.devices[device_id].available = True
    return entity


def _split(body: Any) -> tuple[Any, dict[str, Any]]:
    if isinstance(body, Mapping):
        return body.get("state"), {k: v for k, v in body.items() if k != "state"}
    return body, {}


def set_state(
    hub: Hub,
    entity_id: str,
    body: Any,
    context: Context | None = None,
    *,
    now: float | None = None,
) -> None:
    """Put an entity into a state (creating it on a virtual device if needed); a group
    (``group:<id>`` or a bare id) is given that aggregated value, whatever its members say.

    ``now``: the (simulated) time of the change, so that ``for:`` conditions measure on the
    test's clock."""
    value, attrs = _split(body)
    group = group_of(entity_id)
    if group is not None:
        if group not in hub.registry.groups:
            # A group the test names but hub.yaml does not have: an empty one, like the
            # virtual devices of unknown entities.
            hub.registry.groups[group] = Group(group, group)
            hub.registry.invalidate_groups()
        hub.groups.pin(group, value, context or Context(Origin.PERSON, "test"), now=now)
        return
    entity = ensure_entity(hub, entity_id, value)
    value, attrs = hub.validate_report(entity, value, attrs)
    hub.apply_state(
        entity,
        value,
        attrs,
        context=context or Context(Origin.DEVICE, entity.device_id),
        now=now,
    )


# ----- rule tests ---------------------------------------------------------------------------


@dataclass
class TestOutcome:
    """The result of one rule test."""

    rule_id: str
    name: str
    passed: bool
    pos: str
    problems: list[str] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rule": self.rule_id,
            "test": self.name,
            "passed": self.passed,
            "pos": self.pos,
            "problems": self.problems,
            "commands": self.commands,
            "notifications": self.notifications,
            "error": self.error,
        }


def _local_start(text: str | None, tz: str) -> float:
    from zoneinfo import ZoneInfo

    moment = datetime.fromisoformat(text or DEFAULT_TEST_CLOCK)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return moment.timestamp()


async def _feed(hub: Hub, engine: RuleEngine, clock: SimulatedClock, event: RuleTestEvent) -> None:
    data = event.data
    kind = event.kind
    if kind == "state":
        body: Any = data.get("to")
        attributes = data.get("attributes")
        if attributes:
            body = {"state": body, **attributes}
        entity_ids = data["state"] if isinstance(data["state"], list | tuple) else [data["state"]]
        for entity_id in entity_ids:
            set_state(hub, entity_id, body, now=clock.time())
    elif kind == "mqtt":
        payload = data.get("payload", "")
        raw = payload if isinstance(payload, str) else __import__("orjson").dumps(payload).decode()
        engine.handle_mqtt(str(data["mqtt"]), raw.encode(), clock.time())
    elif kind == "command":
        engine.fire_command(str(data["command"]), Context(Origin.PERSON, "test"))
    elif kind == "webhook":
        engine.fire_webhook(str(data["webhook"]), data.get("json"))
    elif kind == "event":
        hub.bus.publish(CustomEvent(str(data["event"]), dict(data.get("data") or {})))
    elif kind == "device":
        device_ids = (
            data["device"] if isinstance(data["device"], list | tuple) else [data["device"]]
        )
        for device_id in device_ids:
            if device_id not in hub.registry.devices:
                hub.register_device(Device(device_id, device_id, VIRTUAL), [])
            hub.set_available(device_id, data.get("to") == "online")
    elif kind == "advance":
        from hub.durations import parse_duration

        await clock.advance(parse_duration(data["advance"]))
    elif kind == "at":
        from hub.rules.schedule import next_time_of_day, parse_time_of_day

        target = next_time_of_day(clock.local_now(), parse_time_of_day(str(data["at"])))
        await clock.advance_to(target.timestamp())
    else:
        raise ValueError(f"unknown test event {kind!r}")
    await clock.run_until_idle()


def _matches(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> bool:
    from hub.rules.runner import values_equal

    for key, want in expected.items():
        if key == "params":
            got = actual.get("params") or {}
            if any(k not in got or not values_equal(v, got[k]) for k, v in dict(want).items()):
                return False
        elif key == "message_contains":
            if str(want) not in str(actual.get("message", "")):
                return False
        elif key == "targets":
            if list(want) != list(actual.get("targets", [])):
                return False
        elif not values_equal(want, actual.get(key)):
            return False
    return True


def _compare(
    label: str, expected: Sequence[Mapping[str, Any]], actual: list[dict[str, Any]]
) -> list[str]:
    problems = []
    for index, want in enumerate(expected):
        if index >= len(actual):
            problems.append(f"expected {label} #{index + 1} {dict(want)}, but there was none")
        elif not _matches(want, actual[index]):
            problems.append(
                f"{label} #{index + 1}: expected {dict(want)}, got {_short(actual[index])}"
            )
    for index in range(len(expected), len(actual)):
        problems.append(f"unexpected {label} #{index + 1}: {_short(actual[index])}")
    return problems


def _short(effect: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in effect.items() if k not in ("rule", "at")}


async def run_rule_test(
    rule: Rule,
    test: RuleTest,
    *,
    registry: Registry | None = None,
    tz: str = "UTC",
    location: Location | None = None,
) -> TestOutcome:
    """Run one test case of one rule (``registry``: devices, areas and groups to start
    from, e.g. hub.yaml's groups)."""
    outcome = TestOutcome(rule.id, test.name, passed=False, pos=str(test.pos))
    hub = sandbox_hub(registry)
    hub.commands.register_dialect(VIRTUAL, VirtualDevices(hub))
    for device in hub.registry.devices.values():
        device.owner = VIRTUAL  # stored devices are played by virtual ones
        device.available = True
    clock = SimulatedClock(_local_start(test.clock, tz), tz=tz)
    for entity_id, body in test.states.items():
        set_state(hub, entity_id, body, now=clock.time())
    engine = RuleEngine(hub, clock, location=location)
    engine.record_effects = True
    engine.load(RuleSet({rule.id: rule}))
    try:
        await engine.start()
        await clock.run_until_idle()
        for event in test.events:
            await _feed(hub, engine, clock, event)
        await clock.run_until_idle()
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        await engine.stop()
    outcome.commands = [e for kind, e in engine.effects if kind == "command"]
    outcome.notifications = [e for kind, e in engine.effects if kind == "notification"]
    problems: list[str] = []
    if outcome.error:
        problems.append(f"the test could not run: {outcome.error}")
    if test.expect_none and (outcome.commands or outcome.notifications):
        problems += [f"expected nothing, got command {_short(c)}" for c in outcome.commands]
        problems += [
            f"expected nothing, got notification {_short(n)}" for n in outcome.notifications
        ]
    if test.expect_commands is not None:
        problems += _compare("command", test.expect_commands, outcome.commands)
    if test.expect_notifications is not None:
        problems += _compare("notification", test.expect_notifications, outcome.notifications)
    outcome.problems = problems
    outcome.passed = not problems
    return outcome


async def run_rule_tests(
    ruleset: RuleSet,
    *,
    registry: Registry | None = None,
    tz: str = "UTC",
    location: Location | None = None,
    only: Iterable[str] = (),
) -> list[TestOutcome]:
    """Run every test of every rule (or of the rules named in ``only``)."""
    wanted = set(only)
    results = []
    for rule in ruleset.rules.values():
        if wanted and rule.id not in wanted:
            continue
        for test in rule.tests:
            results.append(
                await run_rule_test(rule, test, registry=registry, tz=tz, location=location)
            )
    return results


# ----- replay -----------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What a rule set would have done over a stretch of recorded history."""

    since: float
    until: float
    events: int
    effects: list[dict[str, Any]]
    traces: list[dict[str, Any]]


async def replay(
    ruleset: RuleSet,
    history: Sequence[Any],
    *,
    since: float,
    until: float | None = None,
    registry: Registry | None = None,
    tz: str = "UTC",
    location: Location | None = None,
) -> ReplayResult:
    """Play recorded history through ``ruleset`` on a simulated clock, touching nothing."""
    until = until if until is not None else time.time()
    hub = sandbox_hub(registry)
    for device in hub.registry.devices.values():
        device.available = True
    # Start from the state each entity was in when the window opened: the "old" value of its
    # first recorded change, else the stored last state.
    first_seen: set[str] = set()
    for record in history:
        if record.kind == "state" and record.key not in first_seen:
            first_seen.add(record.key)
            old = record.data.get("old")
            if old is not None:
                with contextlib.suppress(InvalidValue, KeyError, ValueError):
                    set_state(hub, record.key, old)
    if registry is not None:
        for entity_id, state in registry.states.items():
            if entity_id not in first_seen and entity_id in hub.registry.entities:
                with contextlib.suppress(InvalidValue, KeyError):
                    hub.apply_state(
                        hub.registry.entities[entity_id], state.value, dict(state.attributes)
                    )
    clock = SimulatedClock(since, tz=tz)
    engine = RuleEngine(hub, clock, location=location, commands=RecordingSink(hub.registry))
    engine.keep_traces_in_memory = True
    engine.load(ruleset)
    effects: list[dict[str, Any]] = []
    engine.on_effect = lambda kind, payload: effects.append({"kind": kind, **payload})
    await engine.start()
    count = 0
    try:
        for record in history:
            if record.ts < since or record.ts > until:
                continue
            await clock.advance_to(max(record.ts, clock.time()))
            count += 1
            with contextlib.suppress(InvalidValue, KeyError, ValueError):
                if record.kind == "state":
                    body = {
                        "state": record.data.get("value"),
                        **(record.data.get("attributes") or {}),
                    }
                    set_state(hub, record.key, body, now=record.ts)
                elif record.kind == "mqtt":
                    engine.handle_mqtt(
                        record.key, str(record.data.get("payload", "")).encode(), record.ts
                    )
                elif record.kind == "device":
                    if record.key in hub.registry.devices:
                        hub.set_available(record.key, bool(record.data.get("available")))
                elif record.kind == "command":
                    engine.fire_command(record.key, None, **(record.data.get("data") or {}))
                elif record.kind == "webhook":
                    engine.fire_webhook(record.key, record.data.get("payload"))
                elif record.kind == "event":
                    hub.bus.publish(CustomEvent(record.key, dict(record.data.get("data") or {})))
            await clock.run_until_idle()
        await clock.advance_to(max(until, clock.time()))
    finally:
        await engine.stop()
    return ReplayResult(since, until, count, effects, engine.traces_finished)
