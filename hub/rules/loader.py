"""Rule files (YAML) into the rule model, every problem reported at its line and column.

The syntax is docs/rules.md. A file holds one rule (a mapping) or several (a list). Problems
are ``file:line:col: path: message``; the path is the YAML path inside the file, the top-level
list being called ``rules`` (``rules[0].actions[2].params.brightness``); in a one-rule file it
starts at the rule (``actions[2].params.brightness``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from hub.durations import parse_duration
from hub.model import ENTITY_ID_PATTERN, ID_PATTERN
from hub.rules.model import (
    Action,
    AndCondition,
    CalendarTrigger,
    Choice,
    ChooseAction,
    CommandAction,
    CommandTrigger,
    Condition,
    CronTrigger,
    DelayAction,
    DeviceTrigger,
    EventTrigger,
    ExpressionCondition,
    FireEventAction,
    HubStartTrigger,
    IntervalTrigger,
    Mode,
    MqttTrigger,
    NotCondition,
    NotifyAction,
    NumericCondition,
    NumericTrigger,
    OrCondition,
    ParallelAction,
    Pos,
    RepeatAction,
    RepeatKind,
    Rule,
    RuleSet,
    RuleTest,
    RuleTestEvent,
    SceneAction,
    StateCondition,
    StateTrigger,
    StopAction,
    SunCondition,
    SunEvent,
    SunTrigger,
    TimeCondition,
    TimeTrigger,
    Trigger,
    TriggerCondition,
    VariablesAction,
    WaitAction,
    WebhookCallAction,
    WebhookTrigger,
    group_of,
)
from hub.topics import InvalidTopic, Topic, TopicFilter
from hub.yamlsource import (
    ConfigError,
    ConfigIssue,
    PathKey,
    SecretResolver,
    SourceDoc,
    SourceError,
    format_path,
    load_yaml,
    suggest,
)

__all__ = [
    "ACTION_TYPES",
    "CONDITION_TYPES",
    "TEST_EVENT_TYPES",
    "TRIGGER_TYPES",
    "check_rule_files",
    "load_rule_file",
    "load_rules",
]

RULE_SUFFIXES = (".yaml", ".yml")

# Each type key with the other keys its form takes.
TRIGGER_TYPES: dict[str, tuple[str, ...]] = {
    "state": ("from", "to", "attribute", "for"),
    "numeric": ("above", "below", "attribute", "for"),
    "mqtt": ("payload", "json"),
    "time": (),
    "cron": (),
    "every": (),
    "sun": ("offset",),
    "hub": (),
    "device": ("to", "for"),
    "command": (),
    "webhook": (),
    "calendar": ("event", "offset", "match"),
    "event": ("data",),
}
CONDITION_TYPES: dict[str, tuple[str, ...]] = {
    "state": ("is", "attribute", "for"),
    "numeric": ("above", "below", "attribute"),
    "time": (),
    "sun": (),
    "trigger": (),
    "and": (),
    "or": (),
    "not": (),
    "expr": (),
}
ACTION_TYPES: dict[str, tuple[str, ...]] = {
    "command": ("action", "params", "wait"),
    "scene": (),
    "notify": ("title", "targets", "data"),
    "delay": (),
    "wait": ("timeout", "continue_on_timeout"),
    "wait_expr": ("timeout", "continue_on_timeout"),
    "choose": ("default",),
    "if": ("then", "else"),
    "repeat": (),
    "parallel": (),
    "variables": (),
    "stop": ("error",),
    "webhook_call": ("method", "json", "headers", "timeout"),
    "event": ("data",),
}
TEST_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "state": ("to", "attributes"),
    "mqtt": ("payload",),
    "advance": (),
    "at": (),
    "command": (),
    "webhook": (),
    "event": ("data",),
    "device": ("to",),
}
RULE_KEYS = (
    "id",
    "description",
    "mode",
    "max",
    "enabled",
    "catch_up",
    "variables",
    "triggers",
    "conditions",
    "actions",
    "tests",
)
ACTION_COMMON = ("alias", "continue_on_error")
TEST_KEYS = ("name", "clock", "states", "events", "expect")
EXPECT_KEYS = ("commands", "notifications", "nothing")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Names a run sets itself; a variable by that name would hide them.
RESERVED_VARIABLES = frozenset({"trigger", "wait", "repeat"})
TARGET_KINDS = ("entity", "device", "group", "area", "tag")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JSON_PATH = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")

# --- checks that live with the engine (imported lazily: `hub check` stays light) ----------


def _expression_error(text: str) -> str | None:
    from hub.rules.expr import validate_expression

    return validate_expression(text)


def _template_error(text: str) -> str | None:
    from hub.rules.expr import validate_template

    return validate_template(text)


def _time_of_day_error(text: str) -> str | None:
    from hub.rules.schedule import parse_time_of_day

    try:
        parse_time_of_day(text)
    except ValueError as exc:
        return str(exc)
    return None


def _cron_error(text: str) -> str | None:
    from hub.rules.schedule import validate_cron

    return validate_cron(text)


# --- describing values --------------------------------------------------------------------


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _is_template(text: str) -> bool:
    return "{{" in text or "}}" in text


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- one file -----------------------------------------------------------------------------


class _RuleFile:
    """Reads one loaded rule file into rules, collecting every problem as it goes."""

    def __init__(self, doc: SourceDoc) -> None:
        self.doc = doc
        self.listed = isinstance(doc.data, list)  # a list of rules, shown as ``rules[i]``
        self.issues: list[ConfigIssue] = []
        self.errors = 0
        # Per rule: its trigger ids, and where conditions refer to trigger ids.
        self.trigger_ids: set[str] = set()
        self.trigger_refs: list[tuple[PathKey, str]] = []
        self._triggers: dict[str, Callable[[dict[str, Any], PathKey, dict[str, Any]], Trigger]]
        self._triggers = {
            "state": self._state_trigger,
            "numeric": self._numeric_trigger,
            "mqtt": self._mqtt_trigger,
            "time": self._time_trigger,
            "cron": self._cron_trigger,
            "every": self._every_trigger,
            "sun": self._sun_trigger,
            "hub": self._hub_trigger,
            "device": self._device_trigger,
            "command": self._command_trigger,
            "webhook": self._webhook_trigger,
            "calendar": self._calendar_trigger,
            "event": self._event_trigger,
        }
        self._conditions: dict[str, Callable[[dict[str, Any], PathKey, Pos], Condition]]
        self._conditions = {
            "state": self._state_condition,
            "numeric": self._numeric_condition,
            "time": self._time_condition,
            "sun": self._sun_condition,
            "trigger": self._trigger_condition,
            "and": functools.partial(self._combined_condition, "and"),
            "or": functools.partial(self._combined_condition, "or"),
            "not": functools.partial(self._combined_condition, "not"),
            "expr": self._expr_condition,
        }
        self._actions: dict[str, Callable[[dict[str, Any], PathKey, dict[str, Any]], Action]]
        self._actions = {
            "command": self._command_action,
            "scene": self._scene_action,
            "notify": self._notify_action,
            "delay": self._delay_action,
            "wait": self._wait_action,
            "wait_expr": self._wait_action,
            "choose": self._choose_action,
            "if": self._if_action,
            "repeat": self._repeat_action,
            "parallel": self._parallel_action,
            "variables": self._variables_action,
            "stop": self._stop_action,
            "webhook_call": self._webhook_call_action,
            "event": self._event_action,
        }

    # --- reporting ---

    def shown(self, path: PathKey) -> str:
        """The path as printed: ``rules[0].actions`` in a list file."""
        return format_path(("rules", *path) if self.listed else path)

    def _add(
        self, at: PathKey, shown: PathKey, message: str, *, at_value: bool, severity: str
    ) -> None:
        if self.doc.unresolved(at):
            # yamlsource has already said why this value is missing; it still spoils the rule.
            if severity == "error":
                self.errors += 1
            return
        line, col = self.doc.value_position(at) if at_value else self.doc.position(at)
        self.issues.append(
            ConfigIssue(self.doc.file, line, col, self.shown(shown), message, severity)
        )
        if severity == "error":
            self.errors += 1

    def error(self, path: PathKey, message: str) -> None:
        """An error about the value at ``path``."""
        self._add(path, path, message, at_value=True, severity="error")

    def error_at_key(self, key_path: PathKey, message: str) -> None:
        """An error shown at a key, with the path of the mapping that holds it."""
        self._add(key_path, key_path[:-1], message, at_value=False, severity="error")

    def pos(self, path: PathKey) -> Pos:
        """Where the node at ``path`` starts."""
        line, col = self.doc.value_position(path)
        return Pos(self.doc.file, line, col)

    def check_keys(
        self,
        data: Mapping[str, Any],
        path: PathKey,
        allowed: Sequence[str],
        required: Sequence[str] = (),
    ) -> None:
        """Report unknown keys (with a suggestion) and missing required ones."""
        for key in data:
            if key not in allowed:
                self.error_at_key((*path, key), f"unknown key {key!r}{suggest(key, allowed)}")
        self.require(data, path, *required)

    def require(self, data: Mapping[str, Any], path: PathKey, *keys: str) -> None:
        """Report each of ``keys`` missing from ``data``, at the mapping."""
        for key in keys:
            if key not in data:
                self.at_mapping(path, f"missing required key {key!r}")

    def at_mapping(self, path: PathKey, message: str) -> None:
        """An error about the mapping at ``path`` as a whole (shown at its key)."""
        self._add(path, path, message, at_value=False, severity="error")

    # --- plain values ---

    def mapping(self, value: Any, path: PathKey, what: str) -> dict[str, Any] | None:
        """``value`` if it is a mapping, else report and return None."""
        if isinstance(value, dict):
            return value
        if "(" not in what and "{" not in what:
            what += " (a mapping of key: value)"
        self.error(path, f"expected {what}, got {_describe(value)}")
        return None

    def items(self, value: Any, path: PathKey, what: str) -> list[tuple[Any, PathKey]]:
        """The items of a non-empty list (a single item stands for a list of one)."""
        if isinstance(value, list):
            if not value:
                self.error(path, f"needs at least one {what}")
            return [(item, (*path, index)) for index, item in enumerate(value)]
        if value is None:
            self.error(path, f"needs at least one {what}")
            return []
        return [(value, path)]

    def text(self, value: Any, path: PathKey, what: str = "text", *, empty: bool = False) -> str:
        """``value`` if it is text (non-empty unless ``empty``), else report and return ''."""
        if isinstance(value, str) and (empty or value.strip()):
            return value
        if isinstance(value, str):
            self.error(path, f"{what} must not be empty")
        else:
            quote = " (put it in quotes)" if _is_number(value) or isinstance(value, bool) else ""
            self.error(path, f"expected {what}, got {_describe(value)}{quote}")
        return ""

    def boolean(self, value: Any, path: PathKey) -> bool:
        """``value`` if it is true or false, else report."""
        if isinstance(value, bool):
            return value
        self.error(path, f"expected true or false, got {_describe(value)}")
        return False

    def integer(self, value: Any, path: PathKey, minimum: int) -> int:
        """``value`` if it is a whole number of at least ``minimum``, else report."""
        if not isinstance(value, int) or isinstance(value, bool):
            self.error(path, f"expected a whole number, got {_describe(value)}")
            return minimum
        if value < minimum:
            self.error(path, f"must be at least {minimum}, got {value}")
            return minimum
        return value

    def duration(
        self, value: Any, path: PathKey, *, signed: bool = False, positive: bool = False
    ) -> float:
        """Seconds from a duration (``signed``: may start with '-'), else report and return 0."""
        sign, raw = 1.0, value
        if signed and isinstance(value, str) and value.strip()[:1] in ("-", "+"):
            sign, raw = (-1.0 if value.strip()[0] == "-" else 1.0), value.strip()[1:]
        elif signed and _is_number(value) and value < 0:
            sign, raw = -1.0, -value
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            message = str(exc)
            if signed:
                message = f"expected a duration like '30m' or '-30m', got {_describe(value)}"
            self.error(path, message)
            return 0.0
        if positive and seconds <= 0:
            self.error(path, f"must be more than 0 seconds, got {_describe(value)}")
        return sign * seconds

    def choice(self, value: Any, path: PathKey, choices: Sequence[str]) -> str | None:
        """``value`` if it is one of ``choices``, else report (with a suggestion)."""
        choices = [str(choice) for choice in choices]  # enum members by their values
        if isinstance(value, str) and value in choices:
            return value
        hint = suggest(value, choices) if isinstance(value, str) else ""
        listed = ", ".join(repr(choice) for choice in choices)
        self.error(path, f"expected one of {listed}, got {_describe(value)}{hint}")
        return None

    def ident(self, value: Any, path: PathKey, what: str) -> str:
        """A valid rule, trigger, device or webhook id (``hub.model.check_id``), else report."""
        if isinstance(value, str) and ID_PATTERN.match(value):
            return value
        if isinstance(value, str):
            self.error(
                path, f"invalid {what} {value!r}: use 1-64 lowercase letters, digits, '_' or '-'"
            )
        else:
            self.error(path, f"expected {_article(what)}, got {_describe(value)}")
        return ""

    def entity_id(self, value: Any, path: PathKey) -> str:
        """A valid entity id (``<device>.<key>``), else report."""
        if isinstance(value, str) and ENTITY_ID_PATTERN.match(value):
            return value
        if isinstance(value, str):
            self.error(
                path,
                f"invalid entity id {value!r}: use <device>.<key>, each 1-64 lowercase "
                "letters, digits, '_' or '-'",
            )
        else:
            self.error(path, f"expected an entity id, got {_describe(value)}")
        return ""

    def entity_ids(self, value: Any, path: PathKey) -> tuple[str, ...]:
        """One entity id or a list of them."""
        return tuple(self.entity_id(item, at) for item, at in self.items(value, path, "entity"))

    def subject(self, value: Any, path: PathKey) -> str:
        """What a state/numeric trigger or condition watches: an entity id, ``group:<id>`` or
        a bare group id (no dot: it cannot be an entity), kept as written."""
        if isinstance(value, str) and ENTITY_ID_PATTERN.match(value):
            return value
        if isinstance(value, str):
            group = group_of(value)
            if group is not None and ID_PATTERN.match(group):
                return value
            self.error(
                path,
                f"invalid entity or group {value!r}: use an entity id (<device>.<key>) or a "
                "group id (group:<id>), each part 1-64 lowercase letters, digits, '_' or '-'",
            )
        else:
            self.error(path, f"expected an entity or group id, got {_describe(value)}")
        return ""

    def subjects(self, data: Mapping[str, Any], kind: str, path: PathKey) -> tuple[str, ...]:
        """The entities and groups of ``data[kind]``; a group has no attributes to watch."""
        found = tuple(
            self.subject(item, at) for item, at in self.items(data[kind], (*path, kind), "entity")
        )
        groups = [name for name in found if name and group_of(name) is not None]
        if groups and data.get("attribute") is not None:
            self.error_at_key(
                (*path, "attribute"),
                f"a group has no attributes: {groups[0]!r} is a group "
                "(its state is the members' aggregate)",
            )
        return found

    def device_ids(self, value: Any, path: PathKey) -> tuple[str, ...]:
        """One device id or a list of them."""
        return tuple(
            self.ident(item, at, "device id") for item, at in self.items(value, path, "device")
        )

    def values(self, value: Any, path: PathKey) -> tuple[Any, ...]:
        """One value or a list of values (text, numbers, true/false), kept as written."""
        found = []
        for item, at in self.items(value, path, "value"):
            if isinstance(item, dict | list) or item is None:
                self.error(
                    at, f"expected a value (text, number, true or false), got {_describe(item)}"
                )
            found.append(item)
        return tuple(found)

    def texts(self, value: Any, path: PathKey, what: str) -> tuple[str, ...]:
        """One text or a list of texts."""
        return tuple(self.text(item, at, what) for item, at in self.items(value, path, what))

    def threshold(self, value: Any, path: PathKey) -> float | str | None:
        """A number, or an entity id whose state is the number."""
        if _is_number(value):
            return float(value)
        if isinstance(value, str) and ENTITY_ID_PATTERN.match(value):
            return value
        self.error(path, f"expected a number or an entity id, got {_describe(value)}")
        return None

    def time_of_day(self, value: Any, path: PathKey) -> str:
        """A time of day ("HH:MM" or "HH:MM:SS"), kept as written."""
        text = self.text(value, path, "a time of day like '07:30'")
        if text:
            message = _time_of_day_error(text)
            if message:
                self.error(path, message)
        return text

    def expression(self, value: Any, path: PathKey) -> str:
        """The text of a valid safe expression."""
        text = self.text(value, path, "an expression")
        if text:
            message = _expression_error(text)
            if message:
                self.error(path, f"invalid expression: {message}")
        return text

    def template(self, value: Any, path: PathKey) -> Any:
        """A value whose texts may be templates (checked, at any depth), kept as written."""
        if isinstance(value, str) and _is_template(value):
            message = _template_error(value)
            if message:
                self.error(path, f"invalid template: {message}")
        elif isinstance(value, dict):
            for key, item in value.items():
                self.template(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.template(item, (*path, index))
        return value

    def template_text(self, value: Any, path: PathKey, what: str, *, empty: bool = False) -> str:
        """Text that may be a template."""
        text = self.text(value, path, what, empty=empty)
        self.template(text, path)
        return text

    def data(self, value: Any, path: PathKey, *, templates: bool) -> dict[str, Any]:
        """A mapping of values (``templates``: whose texts may be templates); empty if absent."""
        if value is None:
            return {}
        found = self.mapping(value, path, "data")
        if found is None:
            return {}
        return self.template(found, path) if templates else found

    def variables(self, value: Any, path: PathKey) -> dict[str, Any]:
        """Variable names (identifiers, not reserved) with values that may be templates."""
        found = self.data(value, path, templates=True)
        for name in found:
            if not _NAME.fullmatch(name):
                self.error_at_key(
                    (*path, name),
                    f"invalid variable name {name!r}: use letters, digits and '_', "
                    "not starting with a digit",
                )
            elif name in RESERVED_VARIABLES:
                self.error_at_key(
                    (*path, name), f"{name!r} is set by the run itself: choose another name"
                )
        return found

    def target(self, value: Any, path: PathKey) -> str:
        """A command target: entity, device, group or area id (``kind:`` prefix), or template."""
        text = self.text(value, path, "a target (entity, device, group or area id)")
        if not text or _is_template(text):
            self.template(text, path)
            return text
        kind, sep, name = text.partition(":")
        if not sep:
            kind, name = "", text
        elif kind not in TARGET_KINDS:
            self.error(
                path,
                f"unknown target kind {kind!r} in {text!r}: use entity:, device:, group:, "
                f"area: or tag:{suggest(kind, TARGET_KINDS)}",
            )
            return text
        if kind == "entity" or (not kind and "." in name):
            self.entity_id(name, path)
        elif not ID_PATTERN.match(name):
            self.error(
                path,
                f"invalid target {text!r}: use an entity id (<device>.<key>) or a device, "
                "group or area id",
            )
        return text

    def pick(
        self,
        data: Mapping[str, Any],
        path: PathKey,
        types: Mapping[str, Sequence[str]],
        common: Sequence[str],
        what: str,
    ) -> str | None:
        """The type key of a trigger/condition/action mapping; report unknown keys."""
        present = [key for key in data if key in types]
        if len(present) > 1:
            # A type key that is another present type's option is that option (a calendar
            # trigger's `event:`, a command's `wait:`).
            present = [key for key in present if not any(key in types[other] for other in present)]
        if len(present) == 1:
            kind = present[0]
            self.check_keys(data, path, (kind, *types[kind], *common))
            return kind
        if present:
            if set(present) == {"wait", "wait_expr"}:
                message = "give either 'wait' (triggers) or 'wait_expr', not both"
            else:
                both = " and ".join(map(repr, present))
                message = (
                    f"{_article(what)} has exactly one type, got {both} (write one {what} each)"
                )
            self.error_at_key((*path, present[1]), message)
            return None
        options = {option for keys in types.values() for option in keys} | set(common)
        unknown = [key for key in data if key not in options]
        if unknown:
            hint = suggest(unknown[0], types)
            self.error_at_key((*path, unknown[0]), f"unknown {what} type {unknown[0]!r}{hint}")
        else:
            self.error(path, f"{_article(what)} needs its type: one of {', '.join(types)}")
        return None

    # --- triggers ---

    def trigger(self, value: Any, path: PathKey) -> Trigger | None:
        """One trigger mapping."""
        data = self.mapping(value, path, "a trigger")
        if data is None:
            return None
        kind = self.pick(data, path, TRIGGER_TYPES, ("id",), "trigger")
        if kind is None:
            return None
        common: dict[str, Any] = {"pos": self.pos(path)}
        if "id" in data:
            common["id"] = self.ident(data["id"], (*path, "id"), "trigger id")
        return self._triggers[kind](data, path, common)

    def triggers(self, value: Any, path: PathKey) -> tuple[Trigger, ...]:
        """A list of triggers (or one)."""
        found = (self.trigger(item, at) for item, at in self.items(value, path, "trigger"))
        return tuple(trigger for trigger in found if trigger is not None)

    def _for(self, data: Mapping[str, Any], path: PathKey) -> float | None:
        value = data.get("for")
        return None if value is None else self.duration(value, (*path, "for"))

    def _attribute(self, data: Mapping[str, Any], path: PathKey) -> str | None:
        value = data.get("attribute")
        return (
            None if value is None else self.text(value, (*path, "attribute"), "an attribute name")
        )

    def _range(
        self, data: Mapping[str, Any], path: PathKey
    ) -> tuple[float | str | None, float | str | None]:
        above = data.get("above")
        below = data.get("below")
        low = None if above is None else self.threshold(above, (*path, "above"))
        high = None if below is None else self.threshold(below, (*path, "below"))
        if above is None and below is None:
            self.at_mapping(path, "give 'above', 'below' or both")
        if isinstance(low, float) and isinstance(high, float) and low >= high:
            self.error(
                (*path, "below"),
                f"'below' ({below}) must be more than 'above' ({above}): no number is in between",
            )
        return low, high

    def _state_trigger(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Trigger:
        return StateTrigger(
            **common,
            entity_ids=self.subjects(data, "state", path),
            from_=None if data.get("from") is None else self.values(data["from"], (*path, "from")),
            to=None if data.get("to") is None else self.values(data["to"], (*path, "to")),
            attribute=self._attribute(data, path),
            for_=self._for(data, path),
        )

    def _numeric_trigger(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Trigger:
        entity_ids = self.subjects(data, "numeric", path)
        above, below = self._range(data, path)
        return NumericTrigger(
            **common,
            entity_ids=entity_ids,
            above=above,
            below=below,
            attribute=self._attribute(data, path),
            for_=self._for(data, path),
        )

    def _mqtt_trigger(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Trigger:
        topic = self.text(data["mqtt"], (*path, "mqtt"), "a topic filter")
        if topic:
            try:
                TopicFilter(topic)
            except InvalidTopic as exc:
                self.error((*path, "mqtt"), str(exc))
        payload = data.get("payload")
        if isinstance(payload, int) and not isinstance(payload, bool):
            payload = str(payload)  # `payload: 1` means the text "1"
        elif payload is not None:
            payload = self.text(payload, (*path, "payload"), "the payload text", empty=True)
        json_field, json_value = None, None
        if data.get("json") is not None:
            where = (*path, "json")
            spec = self.mapping(data["json"], where, "{path: a.b, value: X}")
            if spec is not None:
                self.check_keys(spec, where, ("path", "value"), ("path", "value"))
                if "path" in spec:
                    json_field = self.text(spec["path"], (*where, "path"), "a dotted path")
                    if json_field and not _JSON_PATH.fullmatch(json_field):
                        self.error((*where, "path"), f"invalid dotted path {json_field!r}")
                json_value = spec.get("value")
            if payload is not None:
                self.error_at_key(where, "give 'payload' or 'json', not both")
        return MqttTrigger(
            **common, topic=topic, payload=payload, json_field=json_field, json_value=json_value
        )

    def _time_trigger(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Trigger:
        where = (*path, "time")
        times = tuple(
            self.time_of_day(item, at) for item, at in self.items(data["time"], where, "time")
        )
        return TimeTrigger(**common, at=times)

    def _cron_trigger(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Trigger:
        where = (*path, "cron")
        text = self.text(data["cron"], where, "a cron expression like '*/5 * * * *'")
        if text:
            message = _cron_error(text)
            if message:
                self.error(where, message)
        return CronTrigger(**common, expression=text)

    def _every_trigger(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Trigger:
        every = self.duration(data["every"], (*path, "every"), positive=True)
        return IntervalTrigger(**common, every=every)

    def _sun_trigger(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Trigger:
        event = self.choice(data["sun"], (*path, "sun"), list(SunEvent))
        offset = data.get("offset")
        return SunTrigger(
            **common,
            event=SunEvent(event or "sunrise"),
            offset=0.0 if offset is None else self.duration(offset, (*path, "offset"), signed=True),
        )

    def _hub_trigger(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Trigger:
        self.choice(data["hub"], (*path, "hub"), ("start",))
        return HubStartTrigger(**common)

    def _device_trigger(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Trigger:
        device_ids = self.device_ids(data["device"], (*path, "device"))
        self.require(data, path, "to")
        event = (
            None
            if "to" not in data
            else self.choice(data["to"], (*path, "to"), ("online", "offline"))
        )
        return DeviceTrigger(
            **common, device_ids=device_ids, event=event or "online", for_=self._for(data, path)
        )

    def _command_trigger(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Trigger:
        return CommandTrigger(
            **common, name=self.text(data["command"], (*path, "command"), "a command name")
        )

    def _webhook_trigger(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Trigger:
        # The name is part of the URL (/api/webhook/NAME): same rules as ids.
        name = self.ident(data["webhook"], (*path, "webhook"), "webhook name")
        return WebhookTrigger(**common, name=name)

    def _calendar_trigger(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Trigger:
        calendar = self.text(data["calendar"], (*path, "calendar"), "a calendar name")
        self.require(data, path, "event")
        event = (
            None
            if "event" not in data
            else self.choice(data["event"], (*path, "event"), ("start", "end"))
        )
        offset = data.get("offset")
        match = data.get("match")
        return CalendarTrigger(
            **common,
            calendar=calendar,
            event=event or "start",
            offset=0.0 if offset is None else self.duration(offset, (*path, "offset"), signed=True),
            match=None if match is None else self.text(match, (*path, "match"), "text to match"),
        )

    def _event_trigger(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Trigger:
        event_type = self.text(data["event"], (*path, "event"), "an event type")
        return EventTrigger(
            **common,
            event_type=event_type,
            data=self.data(data.get("data"), (*path, "data"), templates=False),
        )

    # --- conditions ---

    def condition(self, value: Any, path: PathKey) -> Condition | None:
        """One condition: a mapping, or a plain expression string."""
        if isinstance(value, str):
            return ExpressionCondition(expression=self.expression(value, path), pos=self.pos(path))
        data = self.mapping(value, path, "a condition (a mapping, or an expression as text)")
        if data is None:
            return None
        kind = self.pick(data, path, CONDITION_TYPES, (), "condition")
        if kind is None:
            return None
        return self._conditions[kind](data, path, self.pos(path))

    def conditions(self, value: Any, path: PathKey) -> tuple[Condition, ...]:
        """A list of conditions (or one)."""
        found = (self.condition(item, at) for item, at in self.items(value, path, "condition"))
        return tuple(condition for condition in found if condition is not None)

    def _state_condition(self, data: dict[str, Any], path: PathKey, pos: Pos) -> Condition:
        entity_ids = self.subjects(data, "state", path)
        self.require(data, path, "is")
        return StateCondition(
            pos=pos,
            entity_ids=entity_ids,
            state=self.values(data["is"], (*path, "is")) if "is" in data else (),
            attribute=self._attribute(data, path),
            for_=self._for(data, path),
        )

    def _numeric_condition(self, data: dict[str, Any], path: PathKey, pos: Pos) -> Condition:
        entity_ids = self.subjects(data, "numeric", path)
        above, below = self._range(data, path)
        return NumericCondition(
            pos=pos,
            entity_ids=entity_ids,
            above=above,
            below=below,
            attribute=self._attribute(data, path),
        )

    def _time_condition(self, data: dict[str, Any], path: PathKey, pos: Pos) -> Condition:
        where = (*path, "time")
        spec = self.mapping(
            data["time"], where, "{after: 'HH:MM', before: 'HH:MM', weekdays: [..]}"
        )
        if spec is None:
            return TimeCondition(pos=pos)
        self.check_keys(spec, where, ("after", "before", "weekdays"))
        if not any(spec.get(key) is not None for key in ("after", "before", "weekdays")):
            self.error(where, "give 'after', 'before' or 'weekdays'")
        after = spec.get("after")
        before = spec.get("before")
        weekdays = None
        if spec.get("weekdays") is not None:
            days = []
            for item, at in self.items(spec["weekdays"], (*where, "weekdays"), "weekday"):
                day = self.choice(item.lower() if isinstance(item, str) else item, at, WEEKDAYS)
                days.append(day or "")
            weekdays = tuple(days)
        return TimeCondition(
            pos=pos,
            after=None if after is None else self.time_of_day(after, (*where, "after")),
            before=None if before is None else self.time_of_day(before, (*where, "before")),
            weekdays=weekdays,
        )

    def _sun_condition(self, data: dict[str, Any], path: PathKey, pos: Pos) -> Condition:
        where = (*path, "sun")
        spec = self.mapping(data["sun"], where, "{after: sunset, before: sunrise, ..}")
        if spec is None:
            return SunCondition(pos=pos)
        keys = ("after", "after_offset", "before", "before_offset")
        self.check_keys(spec, where, keys)
        events: dict[str, SunEvent | None] = {}
        offsets: dict[str, float] = {}
        for side in ("after", "before"):
            event = spec.get(side)
            chosen = None if event is None else self.choice(event, (*where, side), list(SunEvent))
            events[side] = None if chosen is None else SunEvent(chosen)
            offset = spec.get(f"{side}_offset")
            offsets[side] = 0.0
            if offset is not None:
                offsets[side] = self.duration(offset, (*where, f"{side}_offset"), signed=True)
                if event is None:
                    self.error_at_key((*where, f"{side}_offset"), f"'{side}_offset' needs '{side}'")
        if spec.get("after") is None and spec.get("before") is None:
            self.error(where, "give 'after', 'before' or both")
        return SunCondition(
            pos=pos,
            after=events["after"],
            after_offset=offsets["after"],
            before=events["before"],
            before_offset=offsets["before"],
        )

    def _trigger_condition(self, data: dict[str, Any], path: PathKey, pos: Pos) -> Condition:
        where = (*path, "trigger")
        ids = []
        for item, at in self.items(data["trigger"], where, "trigger id"):
            ident = self.ident(item, at, "trigger id")
            if ident:
                self.trigger_refs.append((at, ident))
            ids.append(ident)
        return TriggerCondition(pos=pos, ids=tuple(ids))

    def _combined_condition(
        self, kind: str, data: dict[str, Any], path: PathKey, pos: Pos
    ) -> Condition:
        inner = self.conditions(data[kind], (*path, kind))
        cls = {"and": AndCondition, "or": OrCondition, "not": NotCondition}[kind]
        return cls(pos=pos, conditions=inner)

    def _expr_condition(self, data: dict[str, Any], path: PathKey, pos: Pos) -> Condition:
        return ExpressionCondition(
            pos=pos, expression=self.expression(data["expr"], (*path, "expr"))
        )

    # --- actions ---

    def action(self, value: Any, path: PathKey) -> Action | None:
        """One action mapping."""
        data = self.mapping(value, path, "an action")
        if data is None:
            return None
        kind = self.pick(data, path, ACTION_TYPES, ACTION_COMMON, "action")
        if kind is None:
            return None
        common: dict[str, Any] = {"pos": self.pos(path)}
        if data.get("alias") is not None:
            common["alias"] = self.text(data["alias"], (*path, "alias"), "a name for the step")
        if "continue_on_error" in data:
            where = (*path, "continue_on_error")
            common["continue_on_error"] = self.boolean(data["continue_on_error"], where)
        return self._actions[kind](data, path, common)

    def actions(self, value: Any, path: PathKey) -> tuple[Action, ...]:
        """A list of actions (or one)."""
        found = (self.action(item, at) for item, at in self.items(value, path, "action"))
        return tuple(action for action in found if action is not None)

    def _command_action(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Action:
        self.require(data, path, "action")
        action = ""
        if "action" in data:
            action = self.text(data["action"], (*path, "action"), "an action name like 'turn_on'")
        return CommandAction(
            **common,
            target=self.target(data["command"], (*path, "command")),
            action=action,
            params=self.data(data.get("params"), (*path, "params"), templates=True),
            wait=self.boolean(data["wait"], (*path, "wait")) if "wait" in data else True,
        )

    def _scene_action(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Action:
        return SceneAction(
            **common, scene=self.template_text(data["scene"], (*path, "scene"), "a scene name")
        )

    def _notify_action(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Action:
        title = data.get("title")
        targets = data.get("targets")
        return NotifyAction(
            **common,
            message=self.template_text(data["notify"], (*path, "notify"), "a message"),
            title=None if title is None else self.template_text(title, (*path, "title"), "a title"),
            targets=() if targets is None else self.texts(targets, (*path, "targets"), "a target"),
            data=self.data(data.get("data"), (*path, "data"), templates=True),
        )

    def _delay_action(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Action:
        value = data["delay"]
        where = (*path, "delay")
        if isinstance(value, str) and _is_template(value):
            duration: Any = self.template(value, where)
        else:
            duration = self.duration(value, where)
        return DelayAction(**common, duration=duration)

    def _wait_action(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Action:
        triggers: tuple[Trigger, ...] = ()
        expression = None
        if "wait" in data:
            triggers = self.triggers(data["wait"], (*path, "wait"))
        else:
            expression = self.expression(data["wait_expr"], (*path, "wait_expr"))
        timeout = data.get("timeout")
        continue_on_timeout = True
        if "continue_on_timeout" in data:
            where = (*path, "continue_on_timeout")
            continue_on_timeout = self.boolean(data["continue_on_timeout"], where)
        return WaitAction(
            **common,
            triggers=triggers,
            expression=expression,
            timeout=None
            if timeout is None
            else self.duration(timeout, (*path, "timeout"), positive=True),
            continue_on_timeout=continue_on_timeout,
        )

    def _choose_action(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Action:
        choices = []
        for item, at in self.items(data["choose"], (*path, "choose"), "choice"):
            spec = self.mapping(item, at, "a choice {conditions: [..], actions: [..]}")
            if spec is None:
                continue
            self.check_keys(spec, at, ("conditions", "actions"), ("conditions", "actions"))
            choices.append(
                Choice(
                    conditions=self.conditions(spec.get("conditions"), (*at, "conditions"))
                    if "conditions" in spec
                    else (),
                    actions=self.actions(spec.get("actions"), (*at, "actions"))
                    if "actions" in spec
                    else (),
                    pos=self.pos(at),
                )
            )
        default = data.get("default")
        return ChooseAction(
            **common,
            choices=tuple(choices),
            default=() if default is None else self.actions(default, (*path, "default")),
        )

    def _if_action(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Action:
        self.require(data, path, "then")
        choice = Choice(
            conditions=self.conditions(data["if"], (*path, "if")),
            actions=self.actions(data["then"], (*path, "then")) if "then" in data else (),
            pos=common["pos"],
        )
        otherwise = data.get("else")
        return ChooseAction(
            **common,
            choices=(choice,),
            default=() if otherwise is None else self.actions(otherwise, (*path, "else")),
        )

    def _repeat_action(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Action:
        where = (*path, "repeat")
        spec = self.mapping(
            data["repeat"], where, "{count: N, actions: [..]} (or while, until, for_each)"
        )
        if spec is None:
            return RepeatAction(**common, kind=RepeatKind.COUNT, actions=())
        forms = [kind.value for kind in RepeatKind]
        self.check_keys(spec, where, (*forms, "actions", "max_iterations"), ("actions",))
        given = [form for form in forms if form in spec]
        if len(given) != 1:
            message = "give one of 'count', 'while', 'until' or 'for_each'"
            if given:
                self.error_at_key(
                    (*where, given[1]), f"{message}, not {' and '.join(map(repr, given))}"
                )
            else:
                self.at_mapping(where, message)
        kind = RepeatKind(given[0]) if given else RepeatKind.COUNT
        count: Any = None
        conditions: tuple[Condition, ...] = ()
        items: Any = None
        if kind is RepeatKind.COUNT and "count" in spec:
            count = self._count(spec["count"], (*where, "count"))
        elif kind in (RepeatKind.WHILE, RepeatKind.UNTIL):
            conditions = self.conditions(spec[kind.value], (*where, kind.value))
        elif kind is RepeatKind.FOR_EACH:
            items = self._for_each(spec["for_each"], (*where, "for_each"))
        max_iterations = 1000
        if "max_iterations" in spec:
            max_iterations = self.integer(spec["max_iterations"], (*where, "max_iterations"), 1)
        return RepeatAction(
            **common,
            kind=kind,
            actions=self.actions(spec["actions"], (*where, "actions")) if "actions" in spec else (),
            count=count,
            conditions=conditions,
            items=items,
            max_iterations=max_iterations,
        )

    def _count(self, value: Any, path: PathKey) -> Any:
        if isinstance(value, str) and _is_template(value):
            return self.template(value, path)
        return self.integer(value, path, 0) if _is_number(value) else self._bad_count(value, path)

    def _bad_count(self, value: Any, path: PathKey) -> int:
        self.error(path, f"expected a whole number or a template, got {_describe(value)}")
        return 0

    def _for_each(self, value: Any, path: PathKey) -> Any:
        if isinstance(value, list):
            return self.template(value, path)
        if isinstance(value, str) and _is_template(value):
            return self.template(value, path)
        self.error(path, f"expected a list or a template giving one, got {_describe(value)}")
        return []

    def _parallel_action(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Action:
        branches = []
        for item, at in self.items(data["parallel"], (*path, "parallel"), "branch"):
            # A branch is a list of actions, or a single action.
            branches.append(self.actions(item, at))
        return ParallelAction(**common, branches=tuple(branches))

    def _variables_action(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Action:
        where = (*path, "variables")
        return VariablesAction(**common, variables=self.variables(data["variables"], where))

    def _stop_action(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Action:
        reason = data["stop"]
        return StopAction(
            **common,
            reason=""
            if reason is None
            else self.template_text(reason, (*path, "stop"), "a reason", empty=True),
            error=self.boolean(data["error"], (*path, "error")) if "error" in data else False,
        )

    def _webhook_call_action(
        self, data: dict[str, Any], path: PathKey, common: dict[str, Any]
    ) -> Action:
        where = (*path, "webhook_call")
        url = self.template_text(data["webhook_call"], where, "a URL")
        if url and not _is_template(url) and not url.startswith(("http://", "https://")):
            self.error(where, f"expected an http:// or https:// URL, got {url!r}")
        method = "POST"
        raw = data.get("method")
        if isinstance(raw, str) and raw.upper() in HTTP_METHODS:
            method = raw.upper()
        elif "method" in data:
            self.choice(raw, (*path, "method"), HTTP_METHODS)
        headers: dict[str, str] = {}
        for name, value in self.data(
            data.get("headers"), (*path, "headers"), templates=True
        ).items():
            headers[name] = self.text(value, (*path, "headers", name), "header text", empty=True)
        timeout = data.get("timeout")
        return WebhookCallAction(
            **common,
            url=url,
            method=method,
            json=self.template(data.get("json"), (*path, "json")),
            headers=headers,
            timeout=10.0
            if timeout is None
            else self.duration(timeout, (*path, "timeout"), positive=True),
        )

    def _event_action(self, data: dict[str, Any], path: PathKey, common: dict[str, Any]) -> Action:
        return FireEventAction(
            **common,
            event_type=self.text(data["event"], (*path, "event"), "an event type"),
            data=self.data(data.get("data"), (*path, "data"), templates=True),
        )

    # --- tests ---

    def test(self, value: Any, path: PathKey) -> RuleTest | None:
        """One rule test."""
        data = self.mapping(value, path, "a test")
        if data is None:
            return None
        self.check_keys(data, path, TEST_KEYS, ("name", "expect"))
        name = self.text(data["name"], (*path, "name"), "a test name") if "name" in data else ""
        clock = data.get("clock")
        if clock is not None:
            clock = self._clock(clock, (*path, "clock"))
        states = self._test_states(data.get("states"), (*path, "states"))
        events: list[RuleTestEvent] = []
        if data.get("events") is not None:
            for item, at in self.items(data["events"], (*path, "events"), "event"):
                event = self.test_event(item, at)
                if event is not None:
                    events.append(event)
        expect: dict[str, Any] = {}
        if "expect" in data:
            expect = self._expect(data["expect"], (*path, "expect"))
        return RuleTest(
            name=name,
            clock=clock,
            states=states,
            events=tuple(events),
            expect_commands=expect.get("commands"),
            expect_notifications=expect.get("notifications"),
            expect_none=bool(expect.get("nothing")),
            pos=self.pos(path),
        )

    def _clock(self, value: Any, path: PathKey) -> str:
        text = self.text(value, path, "a local date-time like '2026-01-05T21:00:00'")
        if not text:
            return text
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.error(path, f"expected a local date-time like '2026-01-05T21:00:00', got {text!r}")
            return text
        if moment.tzinfo is not None:
            self.error(path, f"give a local date-time without a time zone, got {text!r}")
        return text

    def _test_states(self, value: Any, path: PathKey) -> dict[str, Any]:
        states = self.data(value, path, templates=False)
        for entity_id, state in states.items():
            where = (*path, entity_id)
            group = group_of(entity_id)
            if not ENTITY_ID_PATTERN.match(entity_id) and not (
                group is not None and ID_PATTERN.match(group)
            ):
                self.error_at_key(
                    where,
                    f"invalid entity or group {entity_id!r}: use <device>.<key> or group:<id>",
                )
            if isinstance(state, dict):
                if "state" not in state:
                    self.at_mapping(where, "missing required key 'state'")
            elif isinstance(state, list):
                self.error(
                    where, "expected a value, or {state: value, <attribute>: value}, got a list"
                )
        return states

    def test_event(self, value: Any, path: PathKey) -> RuleTestEvent | None:
        """One step of a test, written like the trigger that would catch it."""
        data = self.mapping(value, path, "a test event")
        if data is None:
            return None
        kind = self.pick(data, path, TEST_EVENT_TYPES, (), "test event")
        if kind is None:
            return None
        where = (*path, kind)
        written = dict(data)
        if kind == "state":
            self.subject(data["state"], where)
            self.require(data, path, "to")
            if data.get("attributes") is not None:
                self.mapping(data["attributes"], (*path, "attributes"), "attributes")
        elif kind == "mqtt":
            topic = self.text(data["mqtt"], where, "a topic")
            if topic:
                try:
                    Topic(topic)
                except InvalidTopic as exc:
                    self.error(where, str(exc))
        elif kind == "advance":
            written["advance"] = self.duration(data["advance"], where, positive=True)
        elif kind == "at":
            self.time_of_day(data["at"], where)
        elif kind == "command":
            self.text(data["command"], where, "a command name")
        elif kind == "webhook":
            self.ident(data["webhook"], where, "webhook name")
        elif kind == "event":
            self.text(data["event"], where, "an event type")
            self.data(data.get("data"), (*path, "data"), templates=False)
        else:  # device
            self.ident(data["device"], where, "device id")
            self.require(data, path, "to")
            if "to" in data:
                self.choice(data["to"], (*path, "to"), ("online", "offline"))
        return RuleTestEvent(kind=kind, data=written, pos=self.pos(path))

    def _expect(self, value: Any, path: PathKey) -> dict[str, Any]:
        spec = self.mapping(value, path, "expectations (commands, notifications or nothing)")
        if spec is None:
            return {}
        self.check_keys(spec, path, EXPECT_KEYS)
        found: dict[str, Any] = {}
        if spec.get("nothing") is not None:
            found["nothing"] = self.boolean(spec["nothing"], (*path, "nothing"))
            if found["nothing"] and any(spec.get(key) is not None for key in EXPECT_KEYS[:2]):
                self.error_at_key(
                    (*path, "nothing"), "'nothing: true' cannot go with commands or notifications"
                )
        if "commands" in spec:
            found["commands"] = self._expected(spec["commands"], (*path, "commands"), command=True)
        if "notifications" in spec:
            where = (*path, "notifications")
            found["notifications"] = self._expected(spec["notifications"], where, command=False)
        if not found.get("nothing") and "commands" not in found and "notifications" not in found:
            self.at_mapping(path, "expect needs 'commands', 'notifications' or 'nothing: true'")
        return found

    def _expected(self, value: Any, path: PathKey, *, command: bool) -> tuple[dict[str, Any], ...]:
        # An empty list is allowed: "expect no commands" (notifications still checked).
        if value is None or value == []:
            return ()
        found = []
        for item, at in self.items(value, path, "expectation"):
            spec = self.mapping(
                item, at, "an expected command" if command else "an expected notification"
            )
            if spec is None:
                continue
            spec = dict(spec)
            if command:
                self.check_keys(spec, at, ("target", "action", "params"), ("target", "action"))
                for key in ("target", "action"):
                    if key in spec:
                        self.text(spec[key], (*at, key), f"the {key}")
                if spec.get("params") is not None:
                    self.mapping(spec["params"], (*at, "params"), "params")
            else:
                self.check_keys(spec, at, ("message", "message_contains", "targets"))
                given = [key for key in ("message", "message_contains") if key in spec]
                if len(given) != 1:
                    message = "give 'message' or 'message_contains'"
                    if given:
                        self.error_at_key((*at, given[1]), f"{message}, not both")
                    else:
                        self.at_mapping(at, message)
                for key in given:
                    self.text(spec[key], (*at, key), "the message")
                if spec.get("targets") is not None:
                    spec["targets"] = self.texts(spec["targets"], (*at, "targets"), "a target")
            found.append(spec)
        return tuple(found)

    # --- rules ---

    def rule(self, value: Any, path: PathKey) -> Rule | None:
        """One rule; None when it has errors (they are reported)."""
        data = self.mapping(value, path, "a rule")
        if data is None:
            return None
        errors = self.errors
        self.check_keys(data, path, RULE_KEYS, ("id", "triggers", "actions"))
        rule_id = self.ident(data["id"], (*path, "id"), "rule id") if "id" in data else ""
        description = data.get("description")
        if description is not None:
            description = self.text(
                description, (*path, "description"), "a description", empty=True
            )
        mode = Mode.SINGLE
        if "mode" in data:
            mode = Mode(self.choice(data["mode"], (*path, "mode"), list(Mode)) or Mode.SINGLE)
        most = 10
        if "max" in data:
            most = self.integer(data["max"], (*path, "max"), 1)
        flags = {}
        for key in ("enabled", "catch_up"):
            flags[key] = self.boolean(data[key], (*path, key)) if key in data else True
        variables = self.variables(data.get("variables"), (*path, "variables"))
        triggers = (
            self.triggers(data["triggers"], (*path, "triggers")) if "triggers" in data else ()
        )
        self.trigger_ids = {trigger.id for trigger in triggers if trigger.id}
        self.trigger_refs = []
        conditions: tuple[Condition, ...] = ()
        if data.get("conditions") is not None:
            conditions = self.conditions(data["conditions"], (*path, "conditions"))
        actions = self.actions(data["actions"], (*path, "actions")) if "actions" in data else ()
        self._check_trigger_refs()
        tests = self._tests(data.get("tests"), (*path, "tests"))
        if self.errors > errors:
            return None
        return Rule(
            id=rule_id,
            description=description or "",
            triggers=triggers,
            conditions=conditions,
            actions=actions,
            mode=mode,
            max=most,
            enabled=flags["enabled"],
            catch_up=flags["catch_up"],
            variables=variables,
            tests=tests,
            pos=self.pos(path),
        )

    def _check_trigger_refs(self) -> None:
        for at, ident in self.trigger_refs:
            if ident in self.trigger_ids:
                continue
            known = sorted(self.trigger_ids)
            hint = suggest(ident, known) or f" (this rule's trigger ids: {', '.join(known)})"
            if not known:
                hint = " (no trigger of this rule has an id)"
            self.error(at, f"unknown trigger id {ident!r}{hint}")

    def _tests(self, value: Any, path: PathKey) -> tuple[RuleTest, ...]:
        if value is None:
            return ()
        tests: list[RuleTest] = []
        names: dict[str, int] = {}
        for item, at in self.items(value, path, "test"):
            test = self.test(item, at)
            if test is None:
                continue
            if test.name and test.name in names:
                self.error(
                    (*at, "name"),
                    f"duplicate test name {test.name!r} (first on line {names[test.name]})",
                )
            elif test.name:
                names[test.name] = test.pos.line
            tests.append(test)
        return tuple(tests)

    def load(self, yaml_issues: Sequence[ConfigIssue] = ()) -> list[Rule]:
        """Every rule of the file without an error (``yaml_issues``: the YAML loader's)."""
        data = self.doc.data
        flawed = [issue.path for issue in yaml_issues if issue.severity == "error"]
        if data is None:
            return []
        if isinstance(data, dict):
            rule = self.rule(data, ())
            return [] if rule is None or flawed else [rule]
        if not isinstance(data, list):
            self.error(
                (),
                f"a rule file holds a rule (a mapping) or a list of rules, got {_describe(data)}",
            )
            return []
        rules: dict[str, Rule] = {}
        for index, item in enumerate(data):
            rule = self.rule(item, (index,))
            # A problem the YAML loader found inside this rule (a duplicate key, a missing
            # secret) spoils it too.
            if rule is None or any(
                not path.startswith("[") or path.startswith(f"[{index}]") for path in flawed
            ):
                continue
            first = rules.get(rule.id)
            if first is None:
                rules[rule.id] = rule
            else:
                message = f"duplicate rule id {rule.id!r} (first defined at {first.pos})"
                self.error((index, "id"), message)
        return list(rules.values())

    def id_location(self, rule: Rule) -> tuple[int, int, str]:
        """Where ``rule``'s id value was written (line, col) and that path as shown."""
        path: PathKey = ("id",)
        if self.listed:
            index = next(i for i, item in enumerate(self.doc.data) if self.pos((i,)) == rule.pos)
            path = (index, "id")
        line, col = self.doc.value_position(path)
        return line, col, self.shown(path)


# --- files and folders --------------------------------------------------------------------


def _with_rules_prefix(issue: ConfigIssue) -> ConfigIssue:
    # yamlsource names paths from the document root; in a list file that root is ``rules``.
    if issue.path.startswith("["):
        return dataclasses.replace(issue, path=f"rules{issue.path}")
    return issue


def _sorted(issues: Iterable[ConfigIssue]) -> list[ConfigIssue]:
    return sorted(issues, key=lambda issue: (issue.line, issue.col))


def _read_rule_file(
    path: Path, secrets: SecretResolver | None
) -> tuple[list[Rule], list[ConfigIssue], list[tuple[int, int, str]]]:
    """The file's good rules, its problems, and where each good rule's id was written."""
    try:
        doc = load_yaml(path, secrets=secrets)
        issues: list[ConfigIssue] = []
    except SourceError as exc:
        if exc.doc is None:
            return [], list(exc.issues), []
        doc = exc.doc
        issues = list(exc.issues)
    reader = _RuleFile(doc)
    rules = reader.load(issues)
    if reader.listed:
        issues = [_with_rules_prefix(issue) for issue in issues]
    locations = [reader.id_location(rule) for rule in rules]
    return rules, _sorted([*issues, *reader.issues]), locations


def load_rule_file(
    path: Path, *, secrets: SecretResolver | None = None
) -> tuple[list[Rule], list[ConfigIssue]]:
    """Load one rule file: the rules without errors, and every problem found (sorted)."""
    rules, issues, _ = _read_rule_file(Path(path), secrets)
    return rules, issues


def _rule_files(paths: Sequence[Path], *, missing_ok: bool) -> tuple[list[Path], list[ConfigIssue]]:
    files: list[Path] = []
    issues: list[ConfigIssue] = []
    seen: set[Path] = set()
    for folder in map(Path, paths):
        if folder.is_file():
            found = [folder]
        elif folder.is_dir():
            found = sorted(
                path
                for path in folder.rglob("*")
                if path.suffix in RULE_SUFFIXES
                and path.is_file()
                # Editors' and version control's hidden files are not rules.
                and not any(part.startswith(".") for part in path.relative_to(folder).parts)
            )
        else:
            if not missing_ok:
                issues.append(ConfigIssue(str(folder), 1, 1, "", "rules folder not found"))
            continue
        for path in found:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files, issues


def _collect(
    paths: Sequence[Path], *, missing_ok: bool, secrets: SecretResolver | None
) -> tuple[dict[str, Rule], list[str], list[ConfigIssue]]:
    files, issues = _rule_files(paths, missing_ok=missing_ok)
    rules: dict[str, Rule] = {}
    for file in files:
        found, file_issues, locations = _read_rule_file(file, secrets)
        issues.extend(file_issues)
        for rule, (line, col, shown) in zip(found, locations, strict=True):
            first = rules.get(rule.id)
            if first is None:
                rules[rule.id] = rule
                continue
            message = f"duplicate rule id {rule.id!r} (first defined at {first.pos})"
            issues.append(ConfigIssue(rule.pos.file, line, col, shown, message))
    return rules, [str(file) for file in files], issues


def load_rules(
    paths: Sequence[Path], *, missing_ok: bool = False, secrets: SecretResolver | None = None
) -> RuleSet:
    """Load every ``*.yaml``/``*.yml`` under ``paths`` (recursively, sorted); raise
    ConfigError with every problem of every file. ``missing_ok``: a missing folder is empty."""
    rules, files, issues = _collect(paths, missing_ok=missing_ok, secrets=secrets)
    if any(issue.severity == "error" for issue in issues):
        raise ConfigError(issues)
    return RuleSet(rules=rules, files=tuple(files))


def check_rule_files(
    paths: Sequence[Path], *, missing_ok: bool = False, secrets: SecretResolver | None = None
) -> list[ConfigIssue]:
    """Every problem (errors and warnings) in the rule files under ``paths``; never raises.

    ``missing_ok``: a folder that does not exist is fine (the default ``rules/``).
    """
    _, _, issues = _collect(paths, missing_ok=missing_ok, secrets=secrets)
    return issues
