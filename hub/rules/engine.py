"""The rule engine: compiled trigger dispatch, modes, durable timers, traces.

Dispatch is compiled, not scanned: ``load`` builds indexes from entity id, group id, device
id, MQTT filter, event type, command and webhook name to the *watches* that care, so an event
reaches only the rules whose triggers name it. Waits inside a run use the same watches,
registered for as long as the wait lasts.

Everything time-related goes through a ``Clock`` (real in the hub, simulated in rule tests
and replays). Pending ``for:`` timers, delays, waits and the next run of each schedule are
written to storage, so they survive a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
import math
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from hub.events import (
    CustomEvent,
    DeviceAvailability,
    GroupStateChanged,
    Notification,
    StateChanged,
)
from hub.model import Context, Origin, State, new_context_id
from hub.rules.model import (
    CalendarTrigger,
    CommandTrigger,
    CronTrigger,
    DeviceTrigger,
    EventTrigger,
    FireEventAction,
    HubStartTrigger,
    IntervalTrigger,
    Mode,
    MqttTrigger,
    NotifyAction,
    NumericTrigger,
    Rule,
    RuleSet,
    StateTrigger,
    SunTrigger,
    TimeTrigger,
    Trigger,
    WaitAction,
    WebhookCallAction,
    WebhookTrigger,
    group_of,
)
from hub.rules.runner import Path, RuleRun, StepFailed, StopRun, _jsonable, values_equal
from hub.topics import TopicRouter

if TYPE_CHECKING:
    from hub.commands import Command, CommandResult
    from hub.core import Hub
    from hub.rules.clock import Clock, TimerHandle
    from hub.rules.expr import Expression, Template
    from hub.rules.schedule import Location

_LOGGER = logging.getLogger(__name__)

Sink = Callable[[dict[str, Any], Context | None], None]
# Durable timers whose due time passed while the hub was down by more than this are "missed".
_MISSED_AFTER = 1.0
# At shutdown, how long runs that are mid-step (not in a delay or wait) may take to finish.
_STOP_GRACE_S = 1.0


class CommandSink(Protocol):
    """Where a rule's commands go: the hub's router, virtual devices in tests, a recorder."""

    def issue(self, command: Command) -> list[asyncio.Future[CommandResult]]:
        """Send the command; one future result per entity (raise CommandError if it cannot)."""


class RuleStore(Protocol):
    """What the engine needs of storage (``hub.storage.rules``)."""

    def queue_timer(self, timer: Any) -> None: ...
    def queue_timer_removal(self, timer_id: str) -> None: ...
    async def load_timers(self) -> list[Any]: ...
    def queue_trace(self, trace: Any) -> None: ...
    def queue_history(self, record: Any) -> None: ...
    def record_history(self, ts: float, kind: str, key: str, data: dict[str, Any]) -> None: ...


def fingerprint(rule: Rule) -> str:
    """A hash of what a rule does, ignoring where it is written (positions)."""

    def strip(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                f.name: strip(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if f.name not in ("pos", "tests", "description")
            }
        if isinstance(value, Mapping):
            return {str(k): strip(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [strip(v) for v in value]
        return value

    raw = orjson.dumps(strip(rule), default=str, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]


# ----- watches: one armed trigger, for a rule or for a wait --------------------------------


class Watch:
    """One trigger, armed: it calls ``sink(trigger_data, parent_context)`` when it fires."""

    durable = False

    def __init__(self, engine: RuleEngine, trigger: Trigger, index: int, owner: str, sink: Sink):
        self.engine = engine
        self.trigger = trigger
        self.index = index
        self.owner = owner
        self.sink = sink
        self._undo: list[Callable[[], None]] = []

    def data(self, platform: str, **extra: Any) -> dict[str, Any]:
        """The trigger data a run sees as ``trigger``."""
        return {"id": self.trigger.id, "index": self.index, "platform": platform, **extra}

    def arm(self) -> None:
        """Start listening."""

    def disarm(self) -> None:
        """Stop listening (and cancel pending timers)."""
        while self._undo:
            self._undo.pop()()

    def fire(self, data: dict[str, Any], parent: Context | None) -> None:
        """Hand a firing to the rule (or wait)."""
        self.sink(data, parent)


def _index_subject(engine: RuleEngine, subject: str, watch: Watch) -> Callable[[], None]:
    """Index a watch under an entity id, or under a group id for ``group:<id>``/bare ids."""
    group = group_of(subject)
    if group is None:
        return _index(engine.state_index, subject, watch)
    return _index(engine.group_index, group, watch)


def _group_data(event: GroupStateChanged) -> dict[str, Any]:
    """What a trigger on a group adds to its data: the group and its member counts."""
    return {
        "group_id": event.group_id,
        "aggregate": event.aggregate,
        "members": event.members,
        "on": event.on,
        "known": event.known,
    }


def _index(bucket: dict[str, list[Watch]], key: str, watch: Watch) -> Callable[[], None]:
    bucket[key].append(watch)

    def remove() -> None:
        if watch in bucket[key]:
            bucket[key].remove(watch)

    return remove


class _HeldWatch(Watch):
    """A watch whose firing may wait for ``for:`` (per entity or device), durably for rules."""

    def __init__(self, *args: Any, for_: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.for_ = for_
        self.pending: dict[str, TimerHandle] = {}

    def timer_id(self, key: str) -> str:
        """The durable id of the ``for:`` timer for one entity or device."""
        return f"for:{self.owner}:{self.index}:{key}"

    def hit(self, key: str, data: dict[str, Any], parent: Context | None) -> None:
        """The condition just became true for ``key``: fire now or after ``for``."""
        if not self.for_:
            self.fire(data, parent)
            return
        self.cancel(key)
        due = self.engine.clock.time() + self.for_
        self.schedule(key, due, data, parent)

    def schedule(self, key: str, due: float, data: dict[str, Any], parent: Context | None) -> None:
        """Arm the ``for:`` timer (and persist it when this watch belongs to a rule)."""
        data = {**data, "for": self.for_}

        def elapsed() -> None:
            self.pending.pop(key, None)
            if self.durable:
                self.engine.forget_timer(self.timer_id(key))
            self.fire(data, parent)

        self.pending[key] = self.engine.clock.call_at(due, elapsed)
        if self.durable:
            self.engine.persist_timer(
                self.timer_id(key),
                self.owner,
                "for",
                due,
                {
                    "trigger_index": self.index,
                    "key": key,
                    "data": data,
                    "context": parent.to_dict() if parent else None,
                },
            )

    def cancel(self, key: str) -> None:
        """The condition stopped holding for ``key``: drop its pending timer."""
        handle = self.pending.pop(key, None)
        if handle is not None:
            handle.cancel()
            if self.durable:
                self.engine.forget_timer(self.timer_id(key))

    def disarm(self) -> None:
        for handle in self.pending.values():
            handle.cancel()  # durable records stay: they are restored after a restart
        self.pending.clear()
        super().disarm()


class StateWatch(_HeldWatch):
    """``state:`` triggers."""

    trigger: StateTrigger

    def arm(self) -> None:
        for subject in self.trigger.entity_ids:
            self._undo.append(_index_subject(self.engine, subject, self))

    def on_state(self, event: StateChanged) -> None:
        t = self.trigger
        old_v = _value(event.old, t.attribute)
        new_v = _value(event.new, t.attribute)
        if (
            event.old is not None
            and old_v == new_v
            and (t.attribute is not None or event.new.last_changed == event.old.last_changed)
        ):
            return  # a repeated report: nothing changed for this trigger (a button press is)
        self._changed(event.entity_id, event.old is not None, old_v, new_v, event.new.context, {})

    def on_group(self, event: GroupStateChanged) -> None:
        """A watched group's aggregated value changed (the subject as the rule wrote it)."""
        for subject in self.trigger.entity_ids:
            if group_of(subject) == event.group_id:
                self._changed(
                    subject, event.old is not None, event.old, event.new, event.context,
                    _group_data(event),
                )  # fmt: skip

    def _changed(
        self,
        key: str,
        had_old: bool,
        old_v: Any,
        new_v: Any,
        parent: Context | None,
        extra: dict[str, Any],
    ) -> None:
        t = self.trigger
        from_ok = t.from_ is None or (had_old and any(values_equal(v, old_v) for v in t.from_))
        to_ok = t.to is None or any(values_equal(v, new_v) for v in t.to)
        if from_ok and to_ok:
            data = self.data(
                "state",
                entity_id=key,
                attribute=t.attribute,
                **{"from": _jsonable(old_v), "to": _jsonable(new_v)},
                **extra,
            )
            self.hit(key, data, parent)
        elif key in self.pending:
            self.cancel(key)

    def still_holds(self, key: str) -> bool:
        """For restored timers: is the entity still in a ``to`` state?"""
        value = self.engine.entity_value(key, self.trigger.attribute)
        return self.trigger.to is None or any(values_equal(v, value) for v in self.trigger.to)


class NumericWatch(_HeldWatch):
    """``numeric:`` triggers: fire when a value crosses into the range."""

    trigger: NumericTrigger

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inside: dict[str, bool] = {}

    def arm(self) -> None:
        t = self.trigger
        for entity_id in t.entity_ids:
            self._undo.append(_index_subject(self.engine, entity_id, self))
            self.inside[entity_id] = self._in_range(entity_id)
        for threshold in (t.above, t.below):
            if isinstance(threshold, str):
                self._undo.append(_index(self.engine.state_index, threshold, self))

    def _in_range(self, entity_id: str) -> bool:
        number = _number(self.engine.entity_value(entity_id, self.trigger.attribute))
        return number is not None and self.engine.in_range(
            number, self.trigger.above, self.trigger.below
        )

    def on_state(self, event: StateChanged) -> None:
        t = self.trigger
        watched = t.entity_ids if event.entity_id not in t.entity_ids else (event.entity_id,)
        for entity_id in watched:
            parent = event.new.context if entity_id == event.entity_id else None
            self._check(entity_id, parent, {})

    def on_group(self, event: GroupStateChanged) -> None:
        """A watched group's aggregated value changed: did it cross into the range?"""
        for subject in self.trigger.entity_ids:
            if group_of(subject) == event.group_id:
                self._check(subject, event.context, _group_data(event))

    def _check(self, entity_id: str, parent: Context | None, extra: dict[str, Any]) -> None:
        t = self.trigger
        was = self.inside.get(entity_id, False)
        now = self._in_range(entity_id)
        self.inside[entity_id] = now
        if now and not was:
            value = self.engine.entity_value(entity_id, t.attribute)
            data = self.data(
                "numeric",
                entity_id=entity_id,
                attribute=t.attribute,
                value=_jsonable(value),
                above=t.above,
                below=t.below,
                **extra,
            )
            self.hit(entity_id, data, parent)
        elif not now:
            self.cancel(entity_id)

    def still_holds(self, key: str) -> bool:
        """For restored timers: still in range?"""
        return self._in_range(key)


class DeviceWatch(_HeldWatch):
    """``device:`` triggers (online/offline)."""

    trigger: DeviceTrigger

    def arm(self) -> None:
        for device_id in self.trigger.device_ids:
            self._undo.append(_index(self.engine.device_index, device_id, self))

    def on_availability(self, event: DeviceAvailability) -> None:
        want_online = self.trigger.event == "online"
        if event.available == want_online:
            data = self.data("device", device_id=event.device_id, to=self.trigger.event)
            self.hit(event.device_id, data, None)
        else:
            self.cancel(event.device_id)

    def still_holds(self, key: str) -> bool:
        """For restored timers: still in that availability?"""
        device = self.engine.hub.registry.devices.get(key)
        return device is not None and device.available == (self.trigger.event == "online")


class KeyedWatch(Watch):
    """Triggers looked up by a name: events, named commands, webhooks, calendars, MQTT."""

    def arm(self) -> None:
        t = self.trigger
        engine = self.engine
        if isinstance(t, EventTrigger):
            self._undo.append(_index(engine.event_index, t.event_type, self))
        elif isinstance(t, CommandTrigger):
            self._undo.append(_index(engine.command_index, t.name, self))
        elif isinstance(t, WebhookTrigger):
            self._undo.append(_index(engine.webhook_index, t.name, self))
        elif isinstance(t, CalendarTrigger):
            self._undo.append(_index(engine.calendar_index, t.calendar, self))
        elif isinstance(t, MqttTrigger):
            self._undo.append(engine.mqtt_watch(t.topic, self))
        elif isinstance(t, HubStartTrigger):
            self._undo.append(_index(engine.start_index, "start", self))

    def offer(self, data: dict[str, Any], parent: Context | None) -> None:
        """An event with this watch's key happened: check its details and fire."""
        t = self.trigger
        if isinstance(t, EventTrigger):
            got = data.get("data") or {}
            if any(not values_equal(v, got.get(k)) for k, v in t.data.items()):
                return
        elif isinstance(t, MqttTrigger):
            if t.payload is not None and data.get("payload") != t.payload:
                return
            if t.json_field is not None:
                found = _dig(data.get("json"), t.json_field)
                if found is _MISSING or (
                    t.json_value is not None and not values_equal(t.json_value, found)
                ):
                    return
        elif isinstance(t, CalendarTrigger):
            if data.get("event") != t.event:
                return
            if t.match and t.match.lower() not in str(data.get("summary", "")).lower():
                return
        self.fire({**self.data(data.pop("platform", "event")), **data}, parent)


class ScheduleWatch(Watch):
    """Time of day, cron, sunrise/sunset and interval triggers."""

    durable = False

    def arm(self) -> None:
        self._arm_next()

    def next_due(self, after: float) -> float | None:
        """The next firing strictly after ``after`` (epoch seconds)."""
        from datetime import datetime

        from hub.rules import schedule

        t = self.trigger
        clock = self.engine.clock
        local = datetime.fromtimestamp(after, clock.tz)
        if isinstance(t, TimeTrigger):
            return min(
                schedule.next_time_of_day(local, schedule.parse_time_of_day(at)).timestamp()
                for at in t.at
            )
        if isinstance(t, CronTrigger):
            return schedule.next_cron(local, t.expression).timestamp()
        if isinstance(t, SunTrigger):
            location = self.engine.location
            if location is None:
                _LOGGER.error("rule %s: a sun trigger needs hub.location in hub.yaml", self.owner)
                return None
            return schedule.next_sun(local, t.event.value, t.offset, location).timestamp()
        if isinstance(t, IntervalTrigger):
            return schedule.next_interval(self.engine.started_at, t.every, after)
        return None

    def _arm_next(self) -> None:
        due = self.next_due(self.engine.clock.time())
        if due is None:
            return
        handle = self.engine.clock.call_at(due, lambda: self._elapsed(due))
        self._undo = [handle.cancel]
        if self.durable:
            self.engine.persist_timer(
                f"schedule:{self.owner}:{self.index}",
                self.owner,
                "schedule",
                due,
                {"trigger_index": self.index},
            )

    def _elapsed(self, due: float) -> None:
        self._arm_next()
        self.fire(self.data(_platform(self.trigger), scheduled=due), None)


def _platform(trigger: Trigger) -> str:
    return {
        TimeTrigger: "time",
        CronTrigger: "cron",
        SunTrigger: "sun",
        IntervalTrigger: "every",
    }.get(type(trigger), "schedule")


def make_watch(
    engine: RuleEngine, trigger: Trigger, index: int, owner: str, sink: Sink, *, durable: bool
) -> Watch:
    """Build the right watch for a trigger."""
    watch: Watch
    if isinstance(trigger, StateTrigger):
        watch = StateWatch(engine, trigger, index, owner, sink, for_=trigger.for_)
    elif isinstance(trigger, NumericTrigger):
        watch = NumericWatch(engine, trigger, index, owner, sink, for_=trigger.for_)
    elif isinstance(trigger, DeviceTrigger):
        watch = DeviceWatch(engine, trigger, index, owner, sink, for_=trigger.for_)
    elif isinstance(trigger, TimeTrigger | CronTrigger | SunTrigger | IntervalTrigger):
        watch = ScheduleWatch(engine, trigger, index, owner, sink)
    else:
        watch = KeyedWatch(engine, trigger, index, owner, sink)
    watch.durable = durable
    return watch


# ----- compiled rules ----------------------------------------------------------------------


@dataclass
class CompiledRule:
    """A loaded rule with its watches, runs and queue."""

    rule: Rule
    fingerprint: str
    enabled: bool
    watches: list[Watch] = field(default_factory=list)
    runs: list[RuleRun] = field(default_factory=list)
    queue: deque[tuple[dict[str, Any], Context | None]] = field(default_factory=deque)
    last_run: float | None = None


class RuleEngine:
    """Runs a rule set against a hub."""

    def __init__(
        self,
        hub: Hub,
        clock: Clock,
        *,
        location: Location | None = None,
        store: RuleStore | None = None,
        commands: CommandSink | None = None,
        record_history: bool = False,
    ) -> None:
        self.hub = hub
        self.clock = clock
        self.location = location
        self.store = store
        self.commands: CommandSink = commands if commands is not None else hub.commands
        self.record_history = record_history
        self.rules: dict[str, CompiledRule] = {}
        self.state_index: dict[str, list[Watch]] = defaultdict(list)
        self.group_index: dict[str, list[Watch]] = defaultdict(list)
        self.device_index: dict[str, list[Watch]] = defaultdict(list)
        self.event_index: dict[str, list[Watch]] = defaultdict(list)
        self.command_index: dict[str, list[Watch]] = defaultdict(list)
        self.webhook_index: dict[str, list[Watch]] = defaultdict(list)
        self.calendar_index: dict[str, list[Watch]] = defaultdict(list)
        self.start_index: dict[str, list[Watch]] = defaultdict(list)
        self._mqtt_router: TopicRouter[Watch] = TopicRouter()
        self._mqtt_subscriptions: dict[str, Callable[[], None]] = {}
        self._expressions: dict[str, Expression] = {}
        self._templates: dict[str, Template] = {}
        self._undo: list[Callable[[], None]] = []
        self._stopping = False
        self._run_counter = itertools.count(1)
        self.started_at = 0.0
        self.running = False
        # Observers for rule tests and replays: (kind, payload) for commands and notifications.
        # Off in a running hub, where nothing would ever read or clear them.
        self.record_effects = False
        self.effects: list[tuple[str, dict[str, Any]]] = []
        self.on_effect: Callable[[str, dict[str, Any]], None] | None = None
        self.traces_finished: list[dict[str, Any]] = []
        self.keep_traces_in_memory = False

    # ----- loading -----------------------------------------------------------------------

    def load(self, ruleset: RuleSet) -> None:
        """Compile a rule set (replacing the current one, if any, once stopped)."""
        for rule in ruleset.rules.values():
            self.rules[rule.id] = CompiledRule(rule, fingerprint(rule), rule.enabled)
        for compiled in self.rules.values():
            for condition_text in _expressions_of(compiled.rule):
                self.expression(condition_text)

    def _arm_rule(self, compiled: CompiledRule) -> None:
        rule = compiled.rule
        for index, trigger in enumerate(rule.triggers):

            def sink(
                data: dict[str, Any], parent: Context | None, compiled: CompiledRule = compiled
            ) -> None:
                self.trigger_rule(compiled, data, parent)

            watch = make_watch(self, trigger, index, rule.id, sink, durable=self.store is not None)
            watch.arm()
            compiled.watches.append(watch)

    def _disarm_rule(self, compiled: CompiledRule) -> None:
        for watch in compiled.watches:
            watch.disarm()
        compiled.watches.clear()

    # ----- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen to the hub, restore durable timers, arm schedules, fire hub-start triggers."""
        self._stopping = False
        self.started_at = self.clock.time()
        bus = self.hub.bus
        self._undo += [
            bus.subscribe(StateChanged, self._on_state, owner="rules"),
            bus.subscribe(GroupStateChanged, self._on_group, owner="rules"),
            bus.subscribe(DeviceAvailability, self._on_availability, owner="rules"),
            bus.subscribe(CustomEvent, self._on_custom_event, owner="rules"),
        ]
        for compiled in self.rules.values():
            if compiled.enabled:
                self._arm_rule(compiled)
        if self.store is not None:
            await self._restore()
        self.running = True
        for watch in list(self.start_index.get("start", ())):
            assert isinstance(watch, KeyedWatch)
            watch.offer({"platform": "hub"}, None)

    async def stop(self) -> None:
        """Stop listening; running runs are cancelled, their durable timers kept."""
        self._stopping = True
        self.running = False
        for compiled in self.rules.values():
            self._disarm_rule(compiled)
            compiled.queue.clear()
        # Runs that are only finishing a step (not sleeping in a delay or wait) get a moment
        # to end normally; the others are suspended and resume after the restart.
        busy = [
            run.task
            for c in self.rules.values()
            for run in c.runs
            if run.task and not run.task.done() and not run.parked
        ]
        if busy:
            await asyncio.wait(busy, timeout=_STOP_GRACE_S)
        tasks = [run.task for c in self.rules.values() for run in c.runs if run.task]
        for c in self.rules.values():
            for run in c.runs:
                run.outcome = "suspended" if run.durable_ids else "aborted"
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for undo in self._undo:
            undo()
        self._undo.clear()
        for unsubscribe in self._mqtt_subscriptions.values():
            unsubscribe()
        self._mqtt_subscriptions.clear()

    async def reload(self, ruleset: RuleSet) -> None:
        """Swap in a new rule set: unchanged rules keep their runs and timers."""
        for rule_id in list(self.rules):
            compiled = self.rules[rule_id]
            new = ruleset.rules.get(rule_id)
            if new is not None and fingerprint(new) == compiled.fingerprint:
                compiled.rule = new  # positions may have moved
                continue
            self._disarm_rule(compiled)
            for run in list(compiled.runs):
                run.outcome = "aborted"
                if run.task:
                    run.task.cancel()
                for timer_id in run.durable_ids:
                    self.forget_timer(timer_id)
            del self.rules[rule_id]
        for rule_id, rule in ruleset.rules.items():
            if rule_id not in self.rules:
                compiled = CompiledRule(rule, fingerprint(rule), rule.enabled)
                self.rules[rule_id] = compiled
                if compiled.enabled and self.running:
                    self._arm_rule(compiled)
                    for watch in compiled.watches:
                        if isinstance(watch.trigger, HubStartTrigger):
                            assert isinstance(watch, KeyedWatch)
                            watch.offer({"platform": "hub"}, None)

    def set_enabled(self, rule_id: str, enabled: bool) -> None:
        """Enable or disable a rule at run time (a disabled rule keeps no watches)."""
        compiled = self.rules[rule_id]
        if compiled.enabled == enabled:
            return
        compiled.enabled = enabled
        if enabled and self.running:
            self._arm_rule(compiled)
        elif not enabled:
            self._disarm_rule(compiled)

    # ----- dispatch ----------------------------------------------------------------------

    def _on_state(self, event: StateChanged) -> None:
        if self.record_history and self.store is not None:
            old = event.old
            if (
                old is None
                or old.value != event.new.value
                or old.attributes != event.new.attributes
                or old.last_changed != event.new.last_changed  # a button pressed again
            ):
                self._history(
                    "state",
                    event.entity_id,
                    {
                        "value": event.new.value,
                        "attributes": dict(event.new.attributes),
                        "old": old.value if old else None,
                    },
                )
        watches = self.state_index.get(event.entity_id)
        if not watches:
            return
        for watch in tuple(watches):
            try:
                watch.on_state(event)  # type: ignore[attr-defined]
            except Exception:
                _LOGGER.exception("rule %s: trigger %d failed", watch.owner, watch.index)

    def _on_group(self, event: GroupStateChanged) -> None:
        # A group's first state is where it starts, not a change; counts alone change nothing.
        if event.first or not event.value_changed:
            return
        watches = self.group_index.get(event.group_id)
        if not watches:
            return
        for watch in tuple(watches):
            try:
                watch.on_group(event)  # type: ignore[attr-defined]
            except Exception:
                _LOGGER.exception("rule %s: trigger %d failed", watch.owner, watch.index)

    def _on_availability(self, event: DeviceAvailability) -> None:
        if self.record_history and self.store is not None:
            self._history("device", event.device_id, {"available": event.available})
        for watch in tuple(self.device_index.get(event.device_id, ())):
            assert isinstance(watch, DeviceWatch)
            watch.on_availability(event)

    def _on_custom_event(self, event: CustomEvent) -> None:
        if self.record_history and self.store is not None:
            self._history("event", event.event_type, {"data": event.data})
        self._offer(
            self.event_index,
            event.event_type,
            {"platform": "event", "event_type": event.event_type, "data": event.data},
            event.context,
        )

    def _offer(
        self, index: dict[str, list[Watch]], key: str, data: dict[str, Any], parent: Context | None
    ) -> int:
        watches = tuple(index.get(key, ()))
        for watch in watches:
            assert isinstance(watch, KeyedWatch)
            watch.offer(dict(data), parent)
        return len(watches)

    def mqtt_watch(self, topic_filter: str, watch: Watch) -> Callable[[], None]:
        """Route messages on ``topic_filter`` to ``watch`` (one broker subscription per filter)."""
        remove = self._mqtt_router.add(topic_filter, watch)
        mqtt = self.hub.mqtt
        if topic_filter not in self._mqtt_subscriptions and mqtt is not None:
            self._mqtt_subscriptions[topic_filter] = mqtt.subscribe(
                topic_filter, self.handle_mqtt, owner="rules", qos=1
            )
        return remove

    def handle_mqtt(self, topic: str, payload: bytes, received: float = 0.0) -> None:
        """An MQTT message arrived (from the broker, or fed by a test or replay)."""
        watches = self._mqtt_router.match(topic)
        if not watches:
            return
        text = payload.decode("utf-8", "replace")
        try:
            parsed: Any = orjson.loads(payload) if payload[:1] in (b"{", b"[") else None
        except orjson.JSONDecodeError:
            parsed = None
        if self.record_history and self.store is not None:
            self._history("mqtt", topic, {"payload": text[:4096]})
        data = {"platform": "mqtt", "topic": topic, "payload": text, "json": parsed}
        for watch in watches:
            assert isinstance(watch, KeyedWatch)
            watch.offer(dict(data), Context(Origin.MQTT, topic))

    def fire_command(self, name: str, context: Context | None = None, **data: Any) -> int:
        """A front-end's named command; returns how many rules listen to it."""
        if self.record_history and self.store is not None:
            self._history("command", name, {"data": _jsonable(data)})
        return self._offer(
            self.command_index, name, {"platform": "command", "name": name, **data}, context
        )

    def fire_webhook(self, name: str, payload: Any = None, context: Context | None = None) -> int:
        """A call to a named webhook; returns how many rules listen to it."""
        if self.record_history and self.store is not None:
            self._history("webhook", name, {"payload": _jsonable(payload)})
        return self._offer(
            self.webhook_index,
            name,
            {"platform": "webhook", "name": name, "json": payload},
            context,
        )

    def fire_calendar(self, calendar: str, event: str, summary: str, **data: Any) -> int:
        """A calendar event started or ended (called by the calendar plug-in)."""
        return self._offer(
            self.calendar_index,
            calendar,
            {
                "platform": "calendar",
                "calendar": calendar,
                "event": event,
                "summary": summary,
                **data,
            },
            None,
        )

    def listens_to_command(self, name: str) -> bool:
        """True if some rule has a ``command: name`` trigger (front-ends offer these)."""
        return bool(self.command_index.get(name))

    # ----- runs --------------------------------------------------------------------------

    def trigger_rule(
        self, compiled: CompiledRule, data: dict[str, Any], parent: Context | None
    ) -> None:
        """A trigger of a rule fired: start a run according to the rule's mode."""
        if not compiled.enabled or self._stopping:
            return
        rule = compiled.rule
        active = [run for run in compiled.runs if run.task is not None and not run.task.done()]
        if active:
            if rule.mode is Mode.SINGLE:
                self._record_skip(
                    compiled, data, parent, "skipped", "already running (mode single)"
                )
                return
            if rule.mode is Mode.RESTART:
                for run in active:
                    run.outcome = "restarted"
                    if run.task is not None:
                        run.task.cancel()
            elif rule.mode is Mode.QUEUED:
                if len(compiled.queue) >= rule.max:
                    self._record_skip(
                        compiled, data, parent, "dropped", f"queue full (max {rule.max})"
                    )
                else:
                    compiled.queue.append((data, parent))
                return
            elif rule.mode is Mode.PARALLEL and len(active) >= rule.max:
                self._record_skip(
                    compiled, data, parent, "dropped", f"{rule.max} runs already going"
                )
                return
        self.start_run(compiled, data, parent)

    def start_run(
        self,
        compiled: CompiledRule,
        data: dict[str, Any],
        parent: Context | None,
        *,
        run_id: str | None = None,
        variables: dict[str, Any] | None = None,
        resume: Path | None = None,
        resume_deadline: float | None = None,
    ) -> RuleRun:
        """Create and schedule a run (or resume one restored from storage)."""
        rule = compiled.rule
        run_id = run_id or f"{rule.id}-{new_context_id()}"
        context = Context(Origin.RULE, rule.id, parent=parent, id=run_id)
        base_vars: dict[str, Any] = {}
        if variables is None:
            scope_vars: dict[str, Any] = {"trigger": data}
            for name, value in rule.variables.items():
                base_vars[name] = self.render(
                    value, _StaticScope(self, {**scope_vars, **base_vars})
                )
            base_vars["trigger"] = data
        else:
            base_vars = variables
        run = RuleRun(self, rule, run_id, data, context, base_vars, resume_deadline=resume_deadline)
        compiled.runs.append(run)
        compiled.last_run = self.clock.time()
        run.task = asyncio.get_running_loop().create_task(
            run.execute(resume=resume), name=f"rule {rule.id} run {run_id}"
        )
        return run

    def run_finished(self, run: RuleRun) -> None:
        """Called once per run when it ends: store the trace, start the next queued run."""
        compiled = self.rules.get(run.rule.id)
        if compiled is not None and run in compiled.runs:
            compiled.runs.remove(run)
        if run.outcome != "suspended":
            for timer_id in run.durable_ids:
                self.forget_timer(timer_id)
        self._save_trace(run.trace)
        if (
            compiled is not None
            and compiled.queue
            and not self._stopping
            and run.outcome != "restarted"
        ):
            data, parent = compiled.queue.popleft()
            self.start_run(compiled, data, parent)

    def _record_skip(
        self,
        compiled: CompiledRule,
        data: dict[str, Any],
        parent: Context | None,
        outcome: str,
        reason: str,
    ) -> None:
        now = self.clock.time()
        self._save_trace(
            {
                "run_id": f"{compiled.rule.id}-{new_context_id()}",
                "rule_id": compiled.rule.id,
                "trigger": data,
                "started": now,
                "finished": now,
                "outcome": outcome,
                "error": reason,
                "conditions": [],
                "steps": [],
                "context": parent.to_dict() if parent else None,
            }
        )

    def _save_trace(self, trace: dict[str, Any]) -> None:
        if self.keep_traces_in_memory:
            self.traces_finished.append(trace)
        if self.store is None:
            return
        from hub.storage.rules import TraceRecord

        self.store.queue_trace(
            TraceRecord(
                rule_id=trace["rule_id"],
                run_id=trace["run_id"],
                started=trace["started"],
                finished=trace.get("finished"),
                outcome=trace["outcome"],
                trace=_jsonable(trace),
            )
        )

    # ----- helpers the runs use ------------------------------------------------------------

    def entity_value(self, entity_id: str, attribute: str | None = None) -> Any:
        """An entity's state value (or one attribute), None when unknown; for a group
        (``group:<id>`` or a bare id) its aggregated value."""
        state = self.hub.registry.states.get(entity_id)
        if state is None and not attribute:
            group = group_of(entity_id)
            if group is not None:
                return self.hub.groups.value(group)
        return _value(state, attribute)

    def subject_state(self, subject: str) -> State | None:
        """The state an expression reads for ``subject``: an entity's, or for a group
        (``group:<id>`` or a bare id, as in triggers) its aggregated state."""
        state = self.hub.registry.states.get(subject)
        if state is None:
            group = group_of(subject)
            if group is not None:
                return self.hub.groups.state(group, subject)
        return state

    def last_changed(self, entity_id: str) -> float | None:
        """When an entity's (or a group's) value last changed; None when unknown."""
        state = self.hub.registry.states.get(entity_id)
        if state is not None:
            return state.last_changed
        group = group_of(entity_id)
        snapshot = None if group is None else self.hub.groups.snapshot(group)
        return None if snapshot is None else snapshot.last_changed

    def in_range(self, number: float, above: float | str | None, below: float | str | None) -> bool:
        """Is ``number`` above ``above`` and below ``below`` (either may be an entity id)?"""
        if above is not None:
            limit = _number(self.entity_value(above)) if isinstance(above, str) else above
            if limit is None or not number > limit:
                return False
        if below is not None:
            limit = _number(self.entity_value(below)) if isinstance(below, str) else below
            if limit is None or not number < limit:
                return False
        return True

    def expression(self, text: str) -> Expression:
        """A compiled expression (cached by source text)."""
        found = self._expressions.get(text)
        if found is None:
            from hub.rules.expr import compile_expression

            found = self._expressions[text] = compile_expression(text)
        return found

    def render(self, value: Any, scope: Any) -> Any:
        """Render templates inside a value (strings, lists, mappings)."""
        from hub.rules.expr import ExpressionError, render_value

        try:
            return render_value(value, scope)
        except ExpressionError as exc:
            raise StepFailed(str(exc)) from exc

    def render_text(self, text: str, scope: Any) -> str:
        """Render a template to text."""
        rendered = self.render(text, scope)
        return "" if rendered is None else str(rendered)

    def duration(self, value: Any, scope: Any) -> float:
        """A duration written as seconds, a duration text, or a template giving either."""
        from hub.durations import parse_duration

        rendered = self.render(value, scope)
        try:
            seconds = parse_duration(rendered)
        except (TypeError, ValueError) as exc:
            raise StepFailed(f"not a duration: {rendered!r} ({exc})") from exc
        if not math.isfinite(seconds) or seconds < 0:
            raise StepFailed(f"not a duration: {rendered!r}")
        return seconds

    def notify(self, action: NotifyAction, run: RuleRun) -> dict[str, Any]:
        """Publish a notification on the bus (front-ends deliver it; the stream records it)."""
        message = self.render_text(action.message, run.scope)
        title = self.render_text(action.title, run.scope) if action.title else ""
        data = self.render(action.data, run.scope)
        note = Notification(
            message=message,
            title=title,
            targets=tuple(action.targets),
            data=dict(data) if isinstance(data, Mapping) else {},
            context=run.context,
        )
        self.hub.bus.publish(note)
        effect = {"message": message, "title": title, "targets": list(action.targets)}
        self._effect("notification", effect)
        return effect

    def command_issued(
        self, run: RuleRun, target: str, action: str, params: dict[str, Any]
    ) -> None:
        """Record a command a run issued (for rule tests and replays)."""
        self._effect(
            "command",
            {
                "target": target,
                "action": action,
                "params": _jsonable(params),
                "rule": run.rule.id,
                "at": self.clock.time(),
            },
        )

    def _effect(self, kind: str, payload: dict[str, Any]) -> None:
        if self.record_effects:
            self.effects.append((kind, payload))
        if self.on_effect is not None:
            self.on_effect(kind, payload)

    def fire_event_action(self, action: FireEventAction, run: RuleRun) -> dict[str, Any]:
        """Put a custom event on the bus."""
        data = self.render(action.data, run.scope)
        event = CustomEvent(
            action.event_type, dict(data) if isinstance(data, Mapping) else {}, run.context
        )
        self.hub.bus.publish(event)
        return {"event_type": action.event_type, "data": _jsonable(event.data)}

    async def apply_scene(self, name: str, run: RuleRun) -> dict[str, Any]:
        """Apply a scene through the hub's scene service."""
        service = getattr(self.hub, "scenes", None)
        if service is None:
            raise StepFailed(f"cannot apply scene {name!r}: no scene service is running")
        result = await service.apply(name, context=run.context)
        self._effect("scene", {"scene": name, "rule": run.rule.id})
        return {"scene": name, "result": _jsonable(result)}

    async def call_webhook(self, action: WebhookCallAction, run: RuleRun) -> dict[str, Any]:
        """Call an HTTP endpoint (in a worker thread; the stdlib client keeps deps small)."""
        import urllib.error
        import urllib.request

        url = self.render_text(action.url, run.scope)
        if not url.startswith(("http://", "https://")):
            raise StepFailed(f"webhook URL must start with http:// or https://, got {url!r}")
        body = self.render(action.json, run.scope)
        headers = {k: self.render_text(v, run.scope) for k, v in action.headers.items()}
        data = None
        if body is not None:
            data = orjson.dumps(body, default=str)
            headers.setdefault("Content-Type", "application/json")
        self._effect("webhook", {"url": url, "method": action.method, "rule": run.rule.id})
        request = urllib.request.Request(url, data=data, headers=headers, method=action.method)  # noqa: S310 - scheme checked above

        def call() -> tuple[int, str]:
            with urllib.request.urlopen(request, timeout=action.timeout) as response:  # noqa: S310
                return int(response.status), response.read(2048).decode("utf-8", "replace")

        try:
            status, text = await asyncio.to_thread(call)
        except urllib.error.HTTPError as exc:
            raise StepFailed(f"{action.method} {url} answered {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise StepFailed(f"{action.method} {url} failed: {exc}") from exc
        return {"status": status, "body": text[:500]}

    # ----- durable delays and waits ----------------------------------------------------------

    def persist_timer(
        self, timer_id: str, rule_id: str, kind: str, due: float, data: dict[str, Any]
    ) -> None:
        """Write (or replace) a durable timer."""
        if self.store is None:
            return
        from hub.storage.rules import TimerRecord

        self.store.queue_timer(
            TimerRecord(
                id=timer_id,
                rule_id=rule_id,
                kind=kind,
                due=due,
                data=_jsonable(data),
                created=self.clock.time(),
            )
        )

    def forget_timer(self, timer_id: str) -> None:
        """Delete a durable timer."""
        if self.store is not None:
            self.store.queue_timer_removal(timer_id)

    def _run_snapshot(self, run: RuleRun, path: Path, kind: str) -> dict[str, Any]:
        compiled = self.rules.get(run.rule.id)
        return {
            "run_id": run.run_id,
            "path": list(path),
            "variables": _jsonable(run.variables),
            "trigger": _jsonable(run.trigger),
            "context": run.context.parent.to_dict() if run.context.parent else None,
            "fingerprint": compiled.fingerprint if compiled else None,
            "kind": kind,
            "started": run.started,
        }

    async def durable_delay(self, run: RuleRun, path: Path, seconds: float) -> None:
        """Sleep on the clock; persisted so that a restart resumes after the delay."""
        due = self.clock.time() + seconds
        timer_id = f"run:{run.run_id}"
        if self.store is not None:
            self.persist_timer(
                timer_id, run.rule.id, "delay", due, self._run_snapshot(run, path, "delay")
            )
            run.durable_ids.add(timer_id)
        run.parked = True
        try:
            await self.clock.sleep_until(due)
        finally:
            run.parked = False
        if self.store is not None:
            run.durable_ids.discard(timer_id)
            self.forget_timer(timer_id)

    async def wait(
        self, run: RuleRun, action: WaitAction, path: Path, *, resumed: bool
    ) -> dict[str, Any]:
        """Wait for a trigger or an expression, with a timeout (durable, like delays)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        timeout = action.timeout
        deadline = run.resume_deadline if resumed else None
        if deadline is None and timeout is not None:
            deadline = self.clock.time() + timeout
        watches: list[Watch] = []

        def resolve(data: dict[str, Any] | None, parent: Context | None = None) -> None:
            if not done.done():
                done.set_result(data)

        undo_expr: list[Callable[[], None]] = []
        if action.expression is not None:
            expression = self.expression(action.expression)

            def check(_: StateChanged | GroupStateChanged | None = None) -> None:
                try:
                    if expression.evaluate(run.scope):
                        resolve({"platform": "expression", "expression": action.expression})
                except Exception as exc:
                    _LOGGER.warning("rule %s: wait expression failed: %s", run.rule.id, exc)

            check()
            # Group values move on their own events (and a rule test's pinned group only so).
            owner = f"rules/{run.rule.id}/wait"
            undo_expr.append(self.hub.bus.subscribe(StateChanged, check, owner=owner))
            undo_expr.append(self.hub.bus.subscribe(GroupStateChanged, check, owner=owner))
        for index, trigger in enumerate(action.triggers):
            watch = make_watch(self, trigger, index, f"{run.rule.id}/wait", resolve, durable=False)
            watch.arm()
            watches.append(watch)
        timer_id = f"run:{run.run_id}"
        if self.store is not None:
            self.persist_timer(
                timer_id,
                run.rule.id,
                "wait",
                deadline if deadline is not None else 0.0,
                self._run_snapshot(run, path, "wait"),
            )
            run.durable_ids.add(timer_id)
        handle = None
        if deadline is not None:
            handle = self.clock.call_at(deadline, lambda: resolve(None))
        run.parked = True
        try:
            data = await done
        finally:
            run.parked = False
            if handle is not None:
                handle.cancel()
            for watch in watches:
                watch.disarm()
            for undo in undo_expr:
                undo()
            if self.store is not None and not self._stopping:
                run.durable_ids.discard(timer_id)
                self.forget_timer(timer_id)
        timed_out = data is None
        run.variables["wait"] = {"trigger": data, "timed_out": timed_out}
        if timed_out and not action.continue_on_timeout:
            raise StopRun("the wait timed out", error=False)
        return {"timed_out": timed_out, "trigger": data}

    async def _restore(self) -> None:
        """Bring back durable timers: ``for:`` timers, schedules, delayed and waiting runs."""
        assert self.store is not None
        now = self.clock.time()
        for record in await self.store.load_timers():
            compiled = self.rules.get(record.rule_id)
            try:
                self._restore_one(record, compiled, now)
            except Exception:
                _LOGGER.exception("could not restore timer %s; dropping it", record.id)
                self.forget_timer(record.id)

    def _restore_one(self, record: Any, compiled: CompiledRule | None, now: float) -> None:
        data = record.data
        if compiled is None or not compiled.enabled:
            self.forget_timer(record.id)
            return
        missed = record.due and record.due < now - _MISSED_AFTER
        if missed and not compiled.rule.catch_up:
            _LOGGER.info(
                "rule %s: %s timer due while the hub was down; skipped",
                compiled.rule.id,
                record.kind,
            )
            self.forget_timer(record.id)
            self._record_skip(
                compiled,
                {"restored": record.kind},
                None,
                "skipped",
                f"{record.kind} timer was due while the hub was down (catch_up: false)",
            )
            return
        if record.kind == "for":
            watch = (
                compiled.watches[data["trigger_index"]]
                if data["trigger_index"] < len(compiled.watches)
                else None
            )
            if not isinstance(watch, _HeldWatch) or not watch.still_holds(data["key"]):  # type: ignore[attr-defined]
                self.forget_timer(record.id)
                return
            parent = Context.from_dict(data["context"]) if data.get("context") else None
            watch.schedule(data["key"], max(record.due, now), data["data"], parent)
            return
        if record.kind == "schedule":
            if missed:
                index = data["trigger_index"]
                trigger = compiled.rule.triggers[index]
                self.trigger_rule(
                    compiled,
                    {
                        "id": trigger.id,
                        "index": index,
                        "platform": _platform(trigger),
                        "scheduled": record.due,
                        "missed": True,
                    },
                    None,
                )
            return
        if record.kind in ("delay", "wait"):
            if data.get("fingerprint") != compiled.fingerprint:
                _LOGGER.warning(
                    "rule %s changed since run %s was saved; not resuming it",
                    compiled.rule.id,
                    data.get("run_id"),
                )
                self.forget_timer(record.id)
                return
            parent = Context.from_dict(data["context"]) if data.get("context") else None
            path = tuple(data["path"])
            resume = (*path[1:], "@")
            variables = dict(data.get("variables") or {})
            trigger = data.get("trigger") or {}
            if record.kind == "delay":

                def resume_run() -> None:
                    self.start_run(
                        compiled,
                        trigger,
                        parent,
                        run_id=data["run_id"],
                        variables=variables,
                        resume=resume,
                    )

                self.clock.call_at(max(record.due, now), resume_run)
            else:
                deadline = record.due if record.due else None
                self.start_run(
                    compiled,
                    trigger,
                    parent,
                    run_id=data["run_id"],
                    variables=variables,
                    resume=resume,
                    resume_deadline=deadline,
                )

    def _history(self, kind: str, key: str, data: dict[str, Any]) -> None:
        assert self.store is not None
        self.store.record_history(self.clock.time(), kind, key, data)

    # ----- introspection -----------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Every rule with whether it is enabled, running, and when it last ran."""
        return [
            {
                "id": rule_id,
                "enabled": c.enabled,
                "running": sum(1 for r in c.runs if r.task and not r.task.done()),
                "queued": len(c.queue),
                "last_run": c.last_run,
                "mode": c.rule.mode.value,
            }
            for rule_id, c in sorted(self.rules.items())
        ]


class _StaticScope:
    """A scope for rendering a rule's initial variables."""

    def __init__(self, engine: RuleEngine, variables: dict[str, Any]) -> None:
        self._engine = engine
        self.variables = variables

    def state(self, entity_id: str) -> State | None:
        return self._engine.subject_state(entity_id)

    def now(self) -> Any:
        return self._engine.clock.local_now()


_MISSING = object()


def _dig(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _value(state: State | None, attribute: str | None) -> Any:
    if state is None:
        return None
    if attribute:
        return state.attributes.get(attribute)
    return state.value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _expressions_of(rule: Rule) -> Iterable[str]:
    from hub.rules.model import ExpressionCondition

    def walk(value: Any) -> Iterable[str]:
        if isinstance(value, ExpressionCondition):
            yield value.expression
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                if f.name != "tests":
                    yield from walk(getattr(value, f.name))
        elif isinstance(value, list | tuple):
            for item in value:
                yield from walk(item)

    yield from walk(rule.conditions)
    yield from walk(rule.actions)
