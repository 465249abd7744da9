"""The rule model: what a rule file compiles to. Every part knows where it was written.

The loader (``hub.rules.loader``) builds these from YAML; the engine, the static checks, the
rule tests and the replay all read them. Durations are seconds; templates and expressions are
kept as source text here and compiled by ``hub.rules.expr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Pos:
    """Where a part of a rule was written (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NOWHERE = Pos("<none>", 0, 0)

# A value in a rule that may be a literal or a template ("{{ ... }}" text) or, for numeric
# thresholds, an entity id whose state is the value.
Value = Any


GROUP_PREFIX = "group:"


def group_of(subject: str) -> str | None:
    """The group id a ``state``/``numeric`` subject names, or None for an entity id.

    A subject is an entity id (``<device>.<key>``, always with a dot), ``group:<id>``, or a
    bare group id (no dot, so it cannot be an entity).
    """
    if subject.startswith(GROUP_PREFIX):
        return subject[len(GROUP_PREFIX) :]
    return None if "." in subject else subject


# ----- triggers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger:
    """Base of all triggers. ``id`` names it for conditions (``trigger: [id, ...]``)."""

    id: str | None = None
    pos: Pos = NOWHERE


@dataclass(frozen=True, slots=True, kw_only=True)
class StateTrigger(Trigger):
    """An entity's state (or attribute) changes, optionally from/to values, held ``for``.

    ``entity_ids`` may name groups (``group:<id>`` or a bare id; see ``group_of``): their
    aggregated state is the value.
    """

    entity_ids: tuple[str, ...]
    from_: tuple[Value, ...] | None = None  # None: any
    to: tuple[Value, ...] | None = None
    attribute: str | None = None
    for_: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NumericTrigger(Trigger):
    """A numeric state crosses a threshold: becomes above and/or below (thresholds may be
    entity ids); fires on the crossing, not on every report while beyond it."""

    entity_ids: tuple[str, ...]
    above: float | str | None = None
    below: float | str | None = None
    attribute: str | None = None
    for_: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttTrigger(Trigger):
    """A message on a topic filter, optionally with an exact payload or a JSON field value."""

    topic: str
    payload: str | None = None
    json_field: str | None = None  # dotted path into a JSON payload
    json_value: Value = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeTrigger(Trigger):
    """Every day at these local times ("HH:MM" or "HH:MM:SS")."""

    at: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CronTrigger(Trigger):
    """A cron expression (5 fields, local time)."""

    expression: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IntervalTrigger(Trigger):
    """Every ``every`` seconds, counted from hub start."""

    every: float


class SunEvent(StrEnum):
    """The sun events a trigger or condition can use."""

    SUNRISE = "sunrise"
    SUNSET = "sunset"


@dataclass(frozen=True, slots=True, kw_only=True)
class SunTrigger(Trigger):
    """Sunrise or sunset plus an offset (negative: before), at ``hub.location``."""

    event: SunEvent
    offset: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HubStartTrigger(Trigger):
    """The hub (or the rule engine, after a reload) has started."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceTrigger(Trigger):
    """Devices go online or offline (held ``for``)."""

    device_ids: tuple[str, ...]
    event: str  # "online" or "offline"
    for_: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandTrigger(Trigger):
    """A named command from a front-end ("movie night")."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookTrigger(Trigger):
    """A call to the named webhook endpoint."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CalendarTrigger(Trigger):
    """A calendar event starts or ends (plus offset); the calendar source is a plug-in."""

    calendar: str
    event: str  # "start" or "end"
    offset: float = 0.0
    match: str | None = None  # substring of the event's summary


@dataclass(frozen=True, slots=True, kw_only=True)
class EventTrigger(Trigger):
    """An event fired by a rule's ``event`` action (or a plug-in), optionally with data."""

    event_type: str
    data: dict[str, Value] = field(default_factory=dict)


# ----- conditions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """Base of all conditions."""

    pos: Pos = NOWHERE


@dataclass(frozen=True, slots=True, kw_only=True)
class StateCondition(Condition):
    """Every listed entity is in one of the states (optionally for at least ``for``)."""

    entity_ids: tuple[str, ...]
    state: tuple[Value, ...]
    attribute: str | None = None
    for_: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NumericCondition(Condition):
    """Every listed entity's number is above and/or below (thresholds may be entity ids)."""

    entity_ids: tuple[str, ...]
    above: float | str | None = None
    below: float | str | None = None
    attribute: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeCondition(Condition):
    """Local time within [after, before) (wrapping past midnight) and/or on these weekdays."""

    after: str | None = None
    before: str | None = None
    weekdays: tuple[str, ...] | None = None  # "mon" ... "sun"


@dataclass(frozen=True, slots=True, kw_only=True)
class SunCondition(Condition):
    """Relative to today's sunrise/sunset: after one and/or before the other (with offsets)."""

    after: SunEvent | None = None
    after_offset: float = 0.0
    before: SunEvent | None = None
    before_offset: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerCondition(Condition):
    """The run was started by one of these trigger ids."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AndCondition(Condition):
    """All hold."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OrCondition(Condition):
    """At least one holds."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class NotCondition(Condition):
    """None holds."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpressionCondition(Condition):
    """A safe expression over states, trigger data and variables is true."""

    expression: str


# ----- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """Base of all actions. ``alias`` names the step in traces."""

    alias: str | None = None
    pos: Pos = NOWHERE
    continue_on_error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandAction(Action):
    """A command to an entity, device, group or area (``target`` and params may be templates)."""

    target: str
    action: str
    params: dict[str, Value] = field(default_factory=dict)
    wait: bool = True  # wait for confirmation (a failure then fails the step)


@dataclass(frozen=True, slots=True, kw_only=True)
class SceneAction(Action):
    """Apply a scene."""

    scene: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyAction(Action):
    """A message for people or channels (message and title are templates)."""

    message: str
    title: str | None = None
    targets: tuple[str, ...] = ()
    data: dict[str, Value] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class DelayAction(Action):
    """Wait a fixed time (a number of seconds, a duration or a template)."""

    duration: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitAction(Action):
    """Wait for one of these triggers, or for an expression to become true; with a timeout."""

    triggers: tuple[Trigger, ...] = ()
    expression: str | None = None
    timeout: float | None = None
    continue_on_timeout: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """One branch of a ``choose``: when all conditions hold, run the actions."""

    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    pos: Pos = NOWHERE


@dataclass(frozen=True, slots=True, kw_only=True)
class ChooseAction(Action):
    """The first choice whose conditions hold runs; else the default (``if``/``then``/``else``
    is the one-choice form)."""

    choices: tuple[Choice, ...]
    default: tuple[Action, ...] = ()


class RepeatKind(StrEnum):
    """The forms of ``repeat``."""

    COUNT = "count"
    WHILE = "while"
    UNTIL = "until"
    FOR_EACH = "for_each"


@dataclass(frozen=True, slots=True, kw_only=True)
class RepeatAction(Action):
    """Repeat the actions: a count, while/until conditions hold, or for each item.

    ``repeat.index`` (1-based) and ``repeat.item`` are variables inside the loop.
    """

    kind: RepeatKind
    actions: tuple[Action, ...]
    count: Value = None
    conditions: tuple[Condition, ...] = ()
    items: Value = None  # a list, or a template/expression giving one
    max_iterations: int = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class ParallelAction(Action):
    """Run branches at the same time; the step ends when all have ended."""

    branches: tuple[tuple[Action, ...], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class VariablesAction(Action):
    """Set variables (values may be templates) for the rest of the run."""

    variables: dict[str, Value]


@dataclass(frozen=True, slots=True, kw_only=True)
class StopAction(Action):
    """End the run here, as a success or (``error``) a failure, with a reason."""

    reason: str = ""
    error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookCallAction(Action):
    """Call a URL (method, JSON body and headers may be templates); signed if a secret is set."""

    url: str
    method: str = "POST"
    json: Value = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FireEventAction(Action):
    """Put an event on the bus (``event`` triggers and plug-ins can react)."""

    event_type: str
    data: dict[str, Value] = field(default_factory=dict)


# ----- rules --------------------------------------------------------------------------------


class Mode(StrEnum):
    """What happens when a rule triggers while a run of it is still going."""

    SINGLE = "single"  # ignore the new trigger
    RESTART = "restart"  # stop the running one, start anew
    QUEUED = "queued"  # run after the running one(s), up to ``max`` waiting
    PARALLEL = "parallel"  # run alongside, up to ``max`` at once


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleTestEvent:
    """One step of a rule test: a state change, an MQTT message, a named command, a time
    jump, or any trigger-shaped event, written like the trigger that would catch it."""

    kind: str  # "state", "mqtt", "advance", "command", "webhook", "event", "device", "at"
    data: dict[str, Any]
    pos: Pos = NOWHERE


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleTest:
    """A rule's own test case: given states and a clock, these events; expect these effects."""

    name: str
    clock: str | None = None  # ISO local date-time the test starts at
    states: dict[str, Any] = field(default_factory=dict)  # entity id -> value or {state, attrs}
    events: tuple[RuleTestEvent, ...] = ()
    expect_commands: tuple[dict[str, Any], ...] | None = None  # None: not checked
    expect_notifications: tuple[dict[str, Any], ...] | None = None
    expect_none: bool = False  # expect no command and no notification at all
    pos: Pos = NOWHERE


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One rule, as written."""

    id: str
    description: str = ""
    triggers: tuple[Trigger, ...]
    conditions: tuple[Condition, ...] = ()
    actions: tuple[Action, ...]
    mode: Mode = Mode.SINGLE
    max: int = 10  # for queued and parallel
    enabled: bool = True
    catch_up: bool = True  # a timer due while the hub was down: fire at start (True) or skip
    variables: dict[str, Value] = field(default_factory=dict)
    tests: tuple[RuleTest, ...] = ()
    pos: Pos = NOWHERE


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every rule loaded from the rule folders, by id, with the files they came from."""

    rules: dict[str, Rule]
    files: tuple[str, ...] = ()
