"""Commands: resolve a target, send each entity's part through its device's dialect, confirm.

A command is confirmed when the device reports a state that satisfies it, and failed after a
timeout with the reason. Unconfirmed commands are sent again when their device comes back
online or the broker link reconnects, so a broker restart loses no command.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.bus import EventBus
from hub.events import CommandConfirmed, CommandFailed, CommandIssued
from hub.model import (
    CLIMATE_MODES,
    Context,
    Device,
    Entity,
    EntityKind,
    Registry,
    State,
    UnknownTarget,
    new_context_id,
)

_LOGGER = logging.getLogger(__name__)


class CommandError(Exception):
    """A command cannot be carried out; the message says why, in plain words."""


class Dialect(Protocol):
    """How one device family is told what to do (the built-in convention, or an adapter).

    A command to a group, area or tag calls ``send_command`` once per member entity, all in
    the same event-loop turn. A dialect that can reach several devices with one message (a
    Zigbee group) may queue the sends and merge them at the end of the turn (see the
    zigbee2mqtt adapter); the router still tracks and confirms every entity on its own.
    """

    def send_command(
        self,
        device: Device,
        entity: Entity,
        action: str,
        params: Mapping[str, Any],
        command_id: str,
    ) -> None:
        """Publish the native message for this command; raise CommandError if unsupported."""


Expectation = Callable[[Any, Mapping[str, Any]], bool]

_SWITCH_ACTIONS = ("turn_on", "turn_off", "toggle")
ACTIONS: dict[EntityKind, tuple[str, ...]] = {
    EntityKind.SWITCH: _SWITCH_ACTIONS,
    EntityKind.LIGHT: _SWITCH_ACTIONS,
    EntityKind.COVER: ("open", "close", "stop", "set_position"),
    EntityKind.CLIMATE: ("set_temperature", "set_mode", "turn_on", "turn_off"),
    EntityKind.LOCK: ("lock", "unlock"),
    EntityKind.BUTTON: ("press",),
    EntityKind.NUMBER: ("set_value",),
    EntityKind.SELECT: ("set_value",),
    EntityKind.SENSOR: (),
    EntityKind.BINARY_SENSOR: (),
    EntityKind.ENERGY_METER: (),
}


def _number_param(params: Mapping[str, Any], name: str, low: float, high: float) -> float:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f"parameter {name!r} must be a number, got {value!r}")
    if not low <= value <= high:
        raise CommandError(f"parameter {name!r} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _close(a: Any, b: float, tolerance: float) -> bool:
    return isinstance(a, int | float) and abs(float(a) - b) <= tolerance


def expectation_for(
    entity: Entity, action: str, params: Mapping[str, Any], current: State | None
) -> Expectation | None:
    """Check the command's action and parameters; return what confirms it (None: nothing will).

    Raises CommandError naming the problem for an action the entity does not have or a bad
    parameter, before anything is sent.
    """
    allowed = ACTIONS.get(entity.kind, ())
    if action not in allowed:
        offer = f"; it accepts {', '.join(allowed)}" if allowed else "; it accepts no commands"
        raise CommandError(f"{entity.id} is a {entity.kind.value} and cannot {action}{offer}")
    known = {
        "brightness",
        "color_temp",
        "transition",
        "position",
        "temperature",
        "mode",
        "color",
        "value",
    }
    unknown = set(params) - known
    if unknown:
        raise CommandError(f"unknown parameter(s) {', '.join(sorted(unknown))} for {action}")
    checks: list[tuple[str, float, float]] = []  # attribute, expected value, tolerance
    if "brightness" in params:
        checks.append(("brightness", _number_param(params, "brightness", 0, 255), 1.0))
    if "color_temp" in params:
        checks.append(("color_temp", _number_param(params, "color_temp", 50, 1000), 1.0))
    if "transition" in params:
        _number_param(params, "transition", 0, 3600)

    def with_attrs(value_ok: Callable[[Any], bool]) -> Expectation:
        def expect(value: Any, attrs: Mapping[str, Any]) -> bool:
            return value_ok(value) and all(_close(attrs.get(a), v, t) for a, v, t in checks)

        return expect

    if action == "turn_on":
        if entity.kind is EntityKind.CLIMATE:
            return lambda value, attrs: value != "off"
        return with_attrs(lambda value: value == "on")
    if action == "turn_off":
        return lambda value, attrs: value == "off"
    if action == "toggle":
        want = "off" if current is not None and current.value == "on" else "on"
        return with_attrs(lambda value: value == want)
    if action == "open":
        return lambda value, attrs: value in ("open", "opening")
    if action == "close":
        return lambda value, attrs: value in ("closed", "closing")
    if action == "stop":
        return lambda value, attrs: True
    if action == "set_position":
        position = _number_param(params, "position", 0, 100)
        return lambda value, attrs: _close(attrs.get("position"), position, 1.0)
    if action == "set_temperature":
        target = _number_param(params, "temperature", 4, 40)
        return lambda value, attrs: _close(attrs.get("target_temperature"), target, 0.05)
    if action == "set_mode":
        mode = params.get("mode")
        if mode not in CLIMATE_MODES:
            raise CommandError(
                f"parameter 'mode' must be one of {', '.join(sorted(CLIMATE_MODES))}, got {mode!r}"
            )
        return lambda value, attrs: value == mode
    if action == "set_value":
        return _set_value(entity, params)
    if action == "lock":
        return lambda value, attrs: value == "locked"
    if action == "unlock":
        return lambda value, attrs: value == "unlocked"
    return None  # press: a button has no state to confirm


def _set_value(entity: Entity, params: Mapping[str, Any]) -> Expectation:
    """Check ``value`` against a number's min/max/step or a select's options."""
    value = params.get("value")
    if entity.kind is EntityKind.SELECT:
        choices = entity.options.get("options")
        if not isinstance(value, str):
            raise CommandError(f"parameter 'value' must be one of the options, got {value!r}")
        if isinstance(choices, list) and value not in choices:
            offer = ", ".join(map(str, choices))
            raise CommandError(f"{entity.id} has no option {value!r}; its options are {offer}")
        return lambda reported, attrs: reported == value
    options = entity.options
    low = options.get("min")
    high = options.get("max")
    low = float(low) if isinstance(low, int | float) else -math.inf
    high = float(high) if isinstance(high, int | float) else math.inf
    target = _number_param(params, "value", low, high)
    step = options.get("step")
    if isinstance(step, int | float) and step > 0 and math.isfinite(low):
        steps = (target - low) / step
        if abs(steps - round(steps)) > 1e-6:
            raise CommandError(
                f"parameter 'value' must be {low:g} plus a multiple of {step:g}, got {target:g}"
            )
    # A device may round to its own resolution: half a step (or a millionth) is close enough.
    tolerance = step / 2 if isinstance(step, int | float) and step > 0 else 1e-6
    return lambda reported, attrs: _close(reported, target, tolerance)


def commanded_state(
    entity: Entity, action: str, params: Mapping[str, Any], current: Any
) -> tuple[Any, dict[str, Any]] | None:
    """The state a well-behaved device reports after this command (None: nothing to report).

    The counterpart of :func:`expectation_for`: virtual devices in rule tests answer with it.
    """
    attrs: dict[str, Any] = {}
    for name in ("brightness", "color_temp"):
        if name in params:
            attrs[name] = params[name]
    if action == "turn_on":
        return ("heat" if entity.kind is EntityKind.CLIMATE else "on"), attrs
    if action == "turn_off":
        return "off", {}
    if action == "toggle":
        return ("off" if current == "on" else "on"), attrs
    if action in ("open", "close"):
        return ("open" if action == "open" else "closed"), {
            "position": 100 if action == "open" else 0
        }
    if action == "set_position":
        position = float(params.get("position", 0))
        return ("closed" if position == 0 else "open"), {"position": position}
    if action == "set_temperature":
        return (current or "heat"), {"target_temperature": float(params["temperature"])}
    if action == "set_mode":
        return params.get("mode"), {}
    if action in ("lock", "unlock"):
        return ("locked" if action == "lock" else "unlocked"), {}
    if action == "set_value":
        return params.get("value"), {}
    return None


@dataclass(frozen=True, slots=True)
class Command:
    """What someone asked for: a target (entity, device, group or area), an action, a context."""

    target: str
    action: str
    context: Context
    params: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = field(default_factory=new_context_id)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome for one entity."""

    command_id: str
    entity_id: str
    ok: bool
    reason: str = ""
    latency_s: float | None = None
    superseded_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        return {
            "command_id": self.command_id,
            "entity_id": self.entity_id,
            "ok": self.ok,
            "reason": self.reason,
            "latency_ms": None if self.latency_s is None else round(self.latency_s * 1000, 3),
            "superseded_by": self.superseded_by,
        }


@dataclass(slots=True)
class _Pending:
    command_id: str
    request_id: str
    entity: Entity
    action: str
    params: Mapping[str, Any]
    context: Context
    expect: Expectation
    issued_at: float
    future: asyncio.Future[CommandResult]
    timer: asyncio.TimerHandle | None = None
    sends: int = 1


class CommandRouter:
    """Routes commands to dialects and tracks each until it is confirmed or times out."""

    def __init__(self, registry: Registry, bus: EventBus, *, timeout: float = 5.0) -> None:
        self._registry = registry
        self._bus = bus
        self.timeout = timeout
        self._dialects: dict[str, Dialect] = {}
        self._pending: dict[str, list[_Pending]] = {}  # entity id -> pending, oldest first
        self._counter = 0

    def register_dialect(self, owner: str, dialect: Dialect) -> Callable[[], None]:
        """Route commands for devices owned by ``owner`` to ``dialect``; return the undo."""
        if owner in self._dialects:
            raise ValueError(f"a dialect for {owner!r} is already registered")
        self._dialects[owner] = dialect

        def undo() -> None:
            self._dialects.pop(owner, None)

        return undo

    @property
    def awaiting(self) -> Container[str]:
        """The ids of the entities a command awaits a confirmation from (checked on every
        report): the same live object for the router's life, so the ingest path keeps it and
        asks ``entity_id in``."""
        return self._pending

    @property
    def pending_count(self) -> int:
        """Commands sent and not yet confirmed or failed."""
        return sum(len(items) for items in self._pending.values())

    def issue(
        self, command: Command, *, timeout: float | None = None
    ) -> list[asyncio.Future[CommandResult]]:
        """Send ``command`` to every entity it targets; return one future result per entity.

        Raises CommandError before anything is sent if the target is unknown, or if no
        targeted entity accepts the action. Entities of a mixed group that do not accept it
        are skipped.
        """
        try:
            entities = self._registry.resolve(command.target)
        except UnknownTarget as exc:
            raise CommandError(str(exc)) from exc
        if not entities:
            raise CommandError(f"{command.target!r} has no entities to command")
        direct = len(entities) == 1
        if not direct:
            entities = [e for e in entities if command.action in ACTIONS.get(e.kind, ())]
            if not entities:
                raise CommandError(f"nothing in {command.target!r} accepts {command.action}")
        prepared: list[tuple[Entity, Expectation | None]] = []
        for entity in entities:
            current = self._registry.states.get(entity.id)
            prepared.append(
                (entity, expectation_for(entity, command.action, command.params, current))
            )
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[CommandResult]] = []
        wait = self.timeout if timeout is None else timeout
        for index, (entity, expect) in enumerate(prepared):
            command_id = command.request_id if direct else f"{command.request_id}.{index + 1}"
            futures.append(self._send_one(loop, command, command_id, entity, expect, wait))
        return futures

    async def execute(
        self, command: Command, *, timeout: float | None = None
    ) -> list[CommandResult]:
        """Issue ``command`` and wait for every entity's result."""
        return list(await asyncio.gather(*self.issue(command, timeout=timeout)))

    def _send_one(
        self,
        loop: asyncio.AbstractEventLoop,
        command: Command,
        command_id: str,
        entity: Entity,
        expect: Expectation | None,
        timeout: float,
    ) -> asyncio.Future[CommandResult]:
        future: asyncio.Future[CommandResult] = loop.create_future()
        now = time.time()
        self._bus.publish(
            CommandIssued(
                command_id=command_id,
                request_id=command.request_id,
                entity_id=entity.id,
                action=command.action,
                params=dict(command.params),
                context=command.context,
            )
        )
        device = self._registry.devices.get(entity.device_id)
        dialect = self._dialects.get(device.owner) if device else None
        if device is None or dialect is None:
            owner = device.owner if device else "?"
            return self._fail_now(
                future,
                command,
                command_id,
                entity,
                f"no dialect is loaded for {entity.device_id} (owner {owner!r})",
            )
        try:
            dialect.send_command(device, entity, command.action, command.params, command_id)
        except CommandError as exc:
            return self._fail_now(future, command, command_id, entity, str(exc))
        except Exception as exc:
            _LOGGER.exception("dialect %s failed to send %s", device.owner, command_id)
            return self._fail_now(future, command, command_id, entity, f"dialect error: {exc}")
        if expect is None:
            result = CommandResult(command_id, entity.id, ok=True, latency_s=0.0)
            self._bus.publish(
                CommandConfirmed(
                    command_id, command.request_id, entity.id, now, now, command.context
                )
            )
            future.set_result(result)
            return future
        pending = _Pending(
            command_id,
            command.request_id,
            entity,
            command.action,
            command.params,
            command.context,
            expect,
            now,
            future,
        )
        pending.timer = loop.call_later(timeout / 2, self._retry, pending, timeout / 2)
        self._pending.setdefault(entity.id, []).append(pending)
        return future

    def _retry(self, pending: _Pending, remaining: float) -> None:
        # Half the timeout without a confirmation: send once more (states are idempotent), for
        # a device that reconnected and resubscribed without re-announcing itself.
        if pending.future.done():
            return
        items = self._pending.get(pending.entity.id)
        if items and items[-1] is pending:
            self._resend_one(pending)
        pending.timer = asyncio.get_running_loop().call_later(remaining, self._expire, pending)

    def _fail_now(
        self,
        future: asyncio.Future[CommandResult],
        command: Command,
        command_id: str,
        entity: Entity,
        reason: str,
    ) -> asyncio.Future[CommandResult]:
        self._bus.publish(
            CommandFailed(command_id, command.request_id, entity.id, reason, command.context)
        )
        future.set_result(CommandResult(command_id, entity.id, ok=False, reason=reason))
        return future

    def on_report(
        self, entity_id: str, value: Any, attributes: Mapping[str, Any]
    ) -> Context | None:
        """Confirm pending commands this report satisfies; return the context it inherits.

        Called for every state report of an entity with pending commands, before the state is
        stored, so the new state carries the command's context ("why is this light on?").
        """
        items = self._pending.get(entity_id)
        if not items:
            return None
        confirmed = [p for p in items if p.expect(value, attributes)]
        if not confirmed:
            return None
        # Last command wins: commands issued before a confirmed one are settled by it.
        newest = confirmed[-1]
        superseded = [p for p in items if p not in confirmed and p.issued_at <= newest.issued_at]
        remaining = [p for p in items if p not in confirmed and p not in superseded]
        if remaining:
            self._pending[entity_id] = remaining
        else:
            del self._pending[entity_id]
        now = time.time()
        for pending in confirmed + superseded:
            if pending.timer is not None:
                pending.timer.cancel()
            self._bus.publish(
                CommandConfirmed(
                    pending.command_id,
                    pending.request_id,
                    entity_id,
                    pending.issued_at,
                    now,
                    pending.context,
                )
            )
            if not pending.future.done():
                pending.future.set_result(
                    CommandResult(
                        pending.command_id,
                        entity_id,
                        ok=True,
                        latency_s=now - pending.issued_at,
                        superseded_by=None if pending in confirmed else newest.command_id,
                    )
                )
        return confirmed[-1].context

    def _expire(self, pending: _Pending) -> None:
        items = self._pending.get(pending.entity.id)
        if items is None or pending not in items:
            return
        items.remove(pending)
        if not items:
            del self._pending[pending.entity.id]
        device = self._registry.devices.get(pending.entity.device_id)
        waited = time.time() - pending.issued_at
        if device is not None and not device.available:
            reason = f"{device.id} is offline; no state report within {waited:.1f} s"
        else:
            reason = (
                f"{pending.entity.id} did not report the expected state within {waited:.1f} s "
                f"(sent {pending.sends} time{'s' if pending.sends > 1 else ''})"
            )
        self._bus.publish(
            CommandFailed(
                pending.command_id, pending.request_id, pending.entity.id, reason, pending.context
            )
        )
        if not pending.future.done():
            pending.future.set_result(
                CommandResult(pending.command_id, pending.entity.id, ok=False, reason=reason)
            )

    def resend(self, device_id: str | None = None) -> int:
        """Send unconfirmed commands again (all, or one device's); return how many.

        Device commands are idempotent states ("on", 21.5 °C), so a repeat is safe; toggles
        were turned into a target state when they were first issued.
        """
        count = 0
        for items in list(self._pending.values()):
            # Only the newest command per entity: re-sending older ones after it would
            # reorder them and leave the device at a stale state.
            newest = items[-1]
            if device_id is None or newest.entity.device_id == device_id:
                count += self._resend_one(newest)
        return count

    def _resend_one(self, pending: _Pending) -> int:
        entity = pending.entity
        device = self._registry.devices.get(entity.device_id)
        dialect = self._dialects.get(device.owner) if device else None
        if device is None or dialect is None:
            return 0
        action, params = pending.action, pending.params
        if action == "toggle":
            # Re-sending a toggle could undo it; send the state it was meant to reach.
            action = "turn_on" if pending.expect("on", {}) else "turn_off"
        try:
            dialect.send_command(device, entity, action, params, pending.command_id)
        except Exception:
            _LOGGER.exception("re-sending %s failed", pending.command_id)
            return 0
        pending.sends += 1
        return 1

    def cancel_all(self, reason: str) -> None:
        """Fail every pending command (used at shutdown)."""
        for items in list(self._pending.values()):
            for pending in list(items):
                if pending.timer is not None:
                    pending.timer.cancel()
                self._bus.publish(
                    CommandFailed(
                        pending.command_id,
                        pending.request_id,
                        pending.entity.id,
                        reason,
                        pending.context,
                        cancelled=True,
                    )
                )
                if not pending.future.done():
                    pending.future.set_result(
                        CommandResult(
                            pending.command_id, pending.entity.id, ok=False, reason=reason
                        )
                    )
        self._pending.clear()
