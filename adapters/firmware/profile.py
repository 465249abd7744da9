"""Firmware profiles: the YAML schema, its validation (every problem at its line) and compilation.

The language is described in ``firmware-bridges/README.md``; this module is its reference
implementation. A profile is loaded once at start; messages are then decoded with the
compiled form (paths, patterns and transforms built ahead).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters.firmware.decode import DecodePlan
from adapters.firmware.paths import JsonPath, PathError, parse_path
from adapters.firmware.templates import (
    NAME,
    Expander,
    Template,
    TemplateError,
    compile_topic,
)
from adapters.firmware.transforms import Transform, compile_transform
from hub.api import ConfigIssue, EntityKind, SourceDoc, SourceError, load_yaml, validate_model


def _bundled_dir() -> Path:
    """Where the bundled profiles (and the MySensors reference node) are.

    People edit them in the checkout's top-level ``firmware-bridges/``; a wheel carries that
    folder inside this package (pyproject.toml's force-include), where the checkout's folder
    is not. An editable install or a checkout on ``PYTHONPATH`` has no packaged copy.
    """
    packaged = resources.files("adapters.firmware").joinpath("firmware-bridges")
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "firmware-bridges"


BUNDLED_DIR = _bundled_dir()
BUNDLED = ("tasmota", "shelly-gen2", "esphome", "generic-json")

#: Hub actions a command set may define.
ACTIONS = (
    "turn_on",
    "turn_off",
    "toggle",
    "open",
    "close",
    "stop",
    "set_position",
    "set_temperature",
    "set_mode",
    "lock",
    "unlock",
    "press",
)
#: Command parameters the hub passes (checked by the hub before a command reaches us).
PARAMS = ("brightness", "color_temp", "transition", "position", "temperature", "mode", "color")
#: Names the adapter itself provides.
BUILTINS = ("seq", "command_id", "base_topic", "item", "index")
_KINDS = {kind.value: kind for kind in EntityKind}
DEFAULT_VAR_PATTERN = "[^/]+"

Scalar = str | int | float | bool
TemplateList = str | list[str]


class ProfileError(Exception):
    """One or more problems in profile files; ``issues`` lists them all at their lines."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.col))
        super().__init__("\n".join(str(i) for i in self.issues))


# ----- the YAML schema ------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OptionSpec(_Spec):
    """A setting of the profile, overridable per installation."""

    default: Scalar
    help: str = ""


class VarSpec(_Spec):
    """How a variable is recognised in topics, keys and values."""

    pattern: str = DEFAULT_VAR_PATTERN
    type: Literal["text", "int"] = "text"


class DeviceSpec(_Spec):
    """How devices are named and described."""

    key: str
    id: TemplateList | None = None
    name: TemplateList | None = None
    model: TemplateList | None = None
    firmware: TemplateList | None = None
    manufacturer: TemplateList | None = None
    identities: dict[str, str] = Field(default_factory=dict)
    match_by: list[str] = Field(default_factory=list)
    discover: bool = False
    available_on_message: bool = False


class AvailabilitySpec(_Spec):
    """Which values of a message say online and offline."""

    path: str = ""
    online: str | bool
    offline: str | bool


class MappingSpec(_Spec):
    """One value of a message mapped to an entity's state or attribute."""

    path: str = ""
    entity: str
    kind: str
    attribute: str | None = None
    name: TemplateList | None = None
    unit: TemplateList | None = None
    device_class: str | None = None
    transform: list[Any] = Field(default_factory=list)
    each: str | None = None
    commands: str | None = None
    upgrades: list[str] = Field(default_factory=list)


class UseSpec(_Spec):
    """Apply a named decoder at a place in the message."""

    use: str
    at: str = ""
    when: dict[str, Scalar] = Field(default_factory=dict)


class OutSpec(_Spec):
    """A message the adapter publishes."""

    topic: str
    vars: dict[str, str] = Field(default_factory=dict)
    payload: str | None = None
    json_: Any = Field(default=None, alias="json")
    qos: int = Field(default=1, ge=0, le=2)
    retain: bool = False
    when: str | None = None
    unless: str | None = None


class LetSpec(_Spec):
    """A value derived from a command parameter."""

    from_: str = Field(alias="from")
    transform: list[Any] = Field(default_factory=list)


class CommandSetSpec(_Spec):
    """The native messages for each hub action, for one kind of entity."""

    let: dict[str, LetSpec] = Field(default_factory=dict)
    turn_on: list[OutSpec] | None = None
    turn_off: list[OutSpec] | None = None
    toggle: list[OutSpec] | None = None
    open: list[OutSpec] | None = None
    close: list[OutSpec] | None = None
    stop: list[OutSpec] | None = None
    set_position: list[OutSpec] | None = None
    set_temperature: list[OutSpec] | None = None
    set_mode: list[OutSpec] | None = None
    lock: list[OutSpec] | None = None
    unlock: list[OutSpec] | None = None
    press: list[OutSpec] | None = None


class MessageSpec(_Spec):
    """One kind of inbound message."""

    name: str | None = None
    topic: str
    vars: dict[str, str] = Field(default_factory=dict)
    format: Literal["json", "text"] = "json"
    when: dict[str, Scalar] = Field(default_factory=dict)
    announce: bool = False
    device: dict[str, str] = Field(default_factory=dict)
    bind: dict[str, str] = Field(default_factory=dict)
    correlate: str | None = None
    availability: AvailabilitySpec | None = None
    remove_on_empty: bool = False
    error: str | None = None
    decode: list[dict[str, Any]] = Field(default_factory=list)


class ProfileSpec(_Spec):
    """A whole profile file."""

    format: Literal[1]
    title: str
    description: str = ""
    docs: TemplateList | None = None
    manufacturer: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    tokens: dict[str, str] = Field(default_factory=dict)
    vars: dict[str, VarSpec] = Field(default_factory=dict)
    device: DeviceSpec
    decoders: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    messages: list[MessageSpec] = Field(min_length=1)
    commands: dict[str, CommandSetSpec] = Field(default_factory=dict)
    on_online: list[OutSpec] = Field(default_factory=list)


# ----- the compiled form ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """A value a message must have: equal to a constant, or fitting a pattern that binds."""

    path: JsonPath
    constant: Any = None
    pattern: re.Pattern[str] | None = None
    ints: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class FieldMap:
    """A compiled mapping."""

    path: JsonPath
    entity: Template
    kind: EntityKind
    attribute: str | None
    name: tuple[Template, ...]
    unit: tuple[Template, ...]
    device_class: str | None
    transforms: tuple[Transform, ...]
    each: Template | None
    commands: str | None
    upgrades: frozenset[EntityKind]
    where: str  # "messages[3].decode[1]", for messages in logs


@dataclass(frozen=True, slots=True)
class DecodeGroup:
    """Mappings applied at every place ``at`` reaches that meets ``when``."""

    at: JsonPath
    when: tuple[Condition, ...]
    maps: tuple[FieldMap, ...]


@dataclass(frozen=True, slots=True)
class Availability:
    """Compiled availability rule."""

    path: JsonPath
    online: Template | bool
    offline: Template | bool


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled message rule."""

    index: int
    name: str
    topic: Template
    vars: Mapping[str, Template]
    format: str
    when: tuple[Condition, ...]
    announce: bool
    device_vars: tuple[tuple[str, JsonPath], ...]
    bind: tuple[tuple[str, JsonPath], ...]
    correlate: JsonPath | None
    availability: Availability | None
    remove_on_empty: bool
    error: JsonPath | None
    decode: tuple[DecodeGroup, ...]
    #: ``decode`` planned for reading messages fast (built from it).
    plan: DecodePlan = field(init=False, repr=False, compare=False)
    #: Its messages are plain JSON readings: nothing identifies, announces, removes or marks
    #: devices, and there is no error field to look for (what a device's lane may read).
    readings_only: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", DecodePlan(self.decode))
        object.__setattr__(
            self,
            "readings_only",
            self.format == "json"
            and bool(self.decode)
            and not self.device_vars
            and self.correlate is None
            and self.availability is None
            and not self.remove_on_empty
            and not self.announce
            and self.error is None,
        )


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A compiled outbound message: ``json`` holds Templates where the YAML had text."""

    topic: Template
    vars: Mapping[str, Template]
    payload: Template | None
    json: Any
    has_json: bool
    qos: int
    retain: bool
    when: str | None
    unless: str | None


@dataclass(frozen=True, slots=True)
class Let:
    """A derived command value."""

    source: str
    transforms: tuple[Transform, ...]


@dataclass(frozen=True, slots=True)
class CommandSet:
    """Compiled command set."""

    lets: Mapping[str, Let]
    actions: Mapping[str, tuple[Outgoing, ...]]


@dataclass(frozen=True, slots=True)
class DeviceDef:
    """Compiled device section."""

    key: str
    id: tuple[Template, ...]
    name: tuple[Template, ...]
    model: tuple[Template, ...]
    firmware: tuple[Template, ...]
    manufacturer: tuple[Template, ...]
    identities: Mapping[str, Template]
    match_by: tuple[str, ...]
    discover: bool
    available_on_message: bool


@dataclass(slots=True)
class Profile:
    """A loaded, validated profile."""

    name: str
    file: str
    title: str
    manufacturer: str | None
    options: Mapping[str, OptionSpec]
    tokens: Mapping[str, str]
    var_patterns: Mapping[str, str]
    int_vars: frozenset[str]
    device: DeviceDef
    rules: tuple[Rule, ...]
    commands: Mapping[str, CommandSet]
    on_online: tuple[Outgoing, ...]
    device_vars: frozenset[str]

    def expander(self, overrides: Mapping[str, Any]) -> Expander:
        """An expander with the option values of one installation (defaults + overrides)."""
        values: dict[str, Template] = {}
        expander = Expander(values, self.tokens)
        for name, spec in self.options.items():
            raw = overrides.get(name, spec.default)
            values[name] = expander.option_template(_scalar_text(raw))
        return expander

    def check_overrides(self, overrides: Mapping[str, Any]) -> list[str]:
        """Problems with per-installation option values (unknown names, bad templates)."""
        problems: list[str] = []
        for name, value in overrides.items():
            if name not in self.options:
                problems.append(
                    f"the {self.name} profile has no option {name!r}{_hint(name, self.options)}"
                    f"; its options: {', '.join(self.options) or 'none'}"
                )
                continue
            if not isinstance(value, str | int | float | bool):
                problems.append(f"option {name!r} must be text or a number")
                continue
            try:
                template = Expander({}, self.tokens).option_template(_scalar_text(value))
            except TemplateError as exc:
                problems.append(f"option {name!r}: {exc}")
                continue
            unknown = template.names - self._option_names_allowed()
            if unknown:
                problems.append(
                    f"option {name!r} uses unknown placeholder(s) {', '.join(sorted(unknown))}"
                )
        return problems

    def _option_names_allowed(self) -> frozenset[str]:
        return frozenset(self.options) | frozenset(self.var_patterns) | frozenset(BUILTINS)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ----- loading ----------------------------------------------------------------------------------


def resolve_ref(ref: str, base_dir: Path) -> Path:
    """The file a ``profiles`` entry names: a bundled profile or a path (relative to base)."""
    if "/" in ref or "\\" in ref or ref.endswith((".yaml", ".yml")):
        path = Path(ref).expanduser()
        return path if path.is_absolute() else base_dir / path
    return BUNDLED_DIR / f"{ref}.yaml"


def profile_name(ref: str) -> str:
    """The name a ``profiles`` entry gives its profile (its file's stem)."""
    return Path(ref).stem if ("/" in ref or ref.endswith((".yaml", ".yml"))) else ref


def load_profile(path: Path, name: str | None = None) -> Profile:
    """Load, validate and compile one profile file; raise ProfileError listing every problem."""
    try:
        source = load_yaml(path)
    except SourceError as exc:
        raise ProfileError(exc.issues) from None
    spec, issues = validate_model(ProfileSpec, source.data, source)
    if spec is None:
        raise ProfileError(issues)
    compiler = _Compiler(name or path.stem, source, spec)
    profile = compiler.compile()
    if compiler.issues:
        raise ProfileError(compiler.issues)
    return profile


class _Compiler:
    """Turns a validated spec into a Profile, collecting semantic problems with positions."""

    def __init__(self, name: str, source: SourceDoc, spec: ProfileSpec) -> None:
        self.name = name
        self.source = source
        self.spec = spec
        self.issues: list[ConfigIssue] = []
        self.patterns: dict[str, str] = {}
        self.ints: frozenset[str] = frozenset()

    def issue(self, path: tuple[str | int, ...], message: str) -> None:
        """Record a problem at ``path`` (the value's position)."""
        self.issues.append(self.source.issue(path, message, at_value=True))

    # --- helpers ---

    def template(self, text: str, path: tuple[str | int, ...], known: frozenset[str]) -> Template:
        """Parse a template, checking that every placeholder is known."""
        try:
            template = Template.parse(text)
        except TemplateError as exc:
            self.issue(path, str(exc))
            return Template.literal("")
        for name in sorted(template.names - known):
            self.issue(path, f"unknown placeholder {{{name}}}{_hint(name, known)}")
        return template

    def templates(
        self, value: TemplateList | None, path: tuple[str | int, ...], known: frozenset[str]
    ) -> tuple[Template, ...]:
        """Parse a template or a list of alternatives."""
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        return tuple(
            self.template(t, path if isinstance(value, str) else (*path, i), known)
            for i, t in enumerate(items)
        )

    def path(self, text: str, path: tuple[str | int, ...]) -> JsonPath:
        """Compile a JSON path."""
        try:
            return parse_path(text, self.patterns, self.ints)
        except PathError as exc:
            self.issue(path, str(exc))
            return JsonPath("", ())

    def transforms(self, items: list[Any], path: tuple[str | int, ...]) -> tuple[Transform, ...]:
        """Compile a list of transforms."""
        out: list[Transform] = []
        for index, item in enumerate(items):
            try:
                out.append(compile_transform(item))
            except ValueError as exc:
                self.issue((*path, index), str(exc))
        return tuple(out)

    def conditions(
        self, when: Mapping[str, Scalar], path: tuple[str | int, ...]
    ) -> tuple[Condition, ...]:
        """Compile ``when:`` conditions (constants, or patterns that bind)."""
        out: list[Condition] = []
        for key, expected in when.items():
            where = (*path, key)
            json_path = self.path(key, where)
            if not json_path.literal:
                self.issue(where, "a condition's path cannot hold patterns or '*'")
                continue
            if isinstance(expected, str):
                try:
                    template = Template.parse(expected)
                except TemplateError as exc:
                    self.issue(where, str(exc))
                    continue
                if not template.constant:
                    unknown = template.names - set(self.patterns)
                    for name in sorted(unknown):
                        self.issue(where, f"{{{name}}} has no pattern (declare it in vars)")
                    pattern = _single_pattern(expected, self.patterns)
                    if pattern is not None:
                        out.append(
                            Condition(json_path, pattern=pattern, ints=self.ints & template.names)
                        )
                    continue
                out.append(Condition(json_path, constant=template.text()))
                continue
            out.append(Condition(json_path, constant=expected))
        return tuple(out)

    # --- sections ---

    def compile(self) -> Profile:
        """Compile the whole profile."""
        spec = self.spec
        for name, var in spec.vars.items():
            where = ("vars", name)
            if not NAME.fullmatch(name):
                self.issue(where, f"invalid variable name {name!r}")
            if name in BUILTINS or name in PARAMS:
                self.issue(where, f"{name!r} is a built-in name; choose another")
            try:
                regex = re.compile(var.pattern)
            except re.error as exc:
                self.issue((*where, "pattern"), f"invalid regular expression: {exc}")
                self.patterns[name] = DEFAULT_VAR_PATTERN  # declared all the same: no cascade
                continue
            if regex.groups:
                self.issue(
                    (*where, "pattern"), "use (?:...) rather than capturing groups in a pattern"
                )
            self.patterns[name] = var.pattern
        self.ints = frozenset(n for n, v in spec.vars.items() if v.type == "int")
        # item/index are bound by 'each' and '*'; declare them so that paths may use them.
        self.patterns.setdefault("index", "[0-9]+")

        options: dict[str, OptionSpec] = {}
        for name, raw in spec.options.items():
            where = ("options", name)
            if not NAME.fullmatch(name):
                self.issue(where, f"invalid option name {name!r}")
                continue
            if name in self.patterns or name in BUILTINS or name in PARAMS:
                self.issue(where, f"option {name!r} clashes with a variable or built-in name")
            if isinstance(raw, dict):
                option, issues = validate_model(OptionSpec, raw, self.source, where)
                self.issues.extend(issues)
                if option is not None:
                    options[name] = option
            elif isinstance(raw, str | int | float | bool):
                options[name] = OptionSpec(default=raw)
            else:
                self.issue(where, "an option is a value or {default: ..., help: ...}")
        for token, var_name in spec.tokens.items():
            if not NAME.fullmatch(var_name):
                self.issue(("tokens", token), f"invalid variable name {var_name!r}")
        device_vars = {spec.device.key}
        for message in spec.messages:
            device_vars.update(message.device)
        bind_names = {n for m in spec.messages for n in m.bind}
        self.device_var_names = frozenset(device_vars)
        base_known = (
            frozenset(options)
            | frozenset(self.patterns)
            | frozenset(BUILTINS)
            | self.device_var_names
        )
        self.option_names = frozenset(options)
        for name, opt in options.items():
            try:
                template = Expander({}, spec.tokens).option_template(_scalar_text(opt.default))
            except TemplateError as exc:
                self.issue(("options", name), str(exc))
                continue
            for slot in sorted(template.names - base_known):
                self.issue(("options", name), f"unknown placeholder {{{slot}}}")

        device = self.device(spec.device, base_known)
        decoders = {
            name: self.decode_items(items, ("decoders", name), base_known | bind_names, {})
            for name, items in spec.decoders.items()
        }
        rules = tuple(
            self.rule(index, message, base_known, decoders)
            for index, message in enumerate(spec.messages)
        )
        commands = {
            name: self.command_set(name, cs, base_known) for name, cs in spec.commands.items()
        }
        on_online = tuple(
            self.outgoing(out, ("on_online", i), base_known | {"seq"})
            for i, out in enumerate(spec.on_online)
        )
        return Profile(
            name=self.name,
            file=self.source.file,
            title=spec.title,
            manufacturer=spec.manufacturer,
            options=options,
            tokens=dict(spec.tokens),
            var_patterns=dict(self.patterns),
            int_vars=self.ints,
            device=device,
            rules=rules,
            commands=commands,
            on_online=on_online,
            device_vars=self.device_var_names,
        )

    def device(self, spec: DeviceSpec, known: frozenset[str]) -> DeviceDef:
        """Compile the device section."""
        where = ("device",)
        if spec.key not in self.patterns:
            self.issue((*where, "key"), f"the key variable {spec.key!r} must be declared in vars")
        for name in spec.match_by:
            if name not in spec.identities:
                self.issue(
                    (*where, "match_by"),
                    f"{name!r} is not one of the identities ({', '.join(spec.identities)})",
                )
        ids = self.templates(spec.id, (*where, "id"), known) or (
            Template.parse("{" + spec.key + "}"),
        )
        return DeviceDef(
            key=spec.key,
            id=ids,
            name=self.templates(spec.name, (*where, "name"), known),
            model=self.templates(spec.model, (*where, "model"), known),
            firmware=self.templates(spec.firmware, (*where, "firmware"), known),
            manufacturer=self.templates(spec.manufacturer, (*where, "manufacturer"), known),
            identities={
                k: self.template(v, (*where, "identities", k), known)
                for k, v in spec.identities.items()
            },
            match_by=tuple(spec.match_by),
            discover=spec.discover,
            available_on_message=spec.available_on_message,
        )

    def decode_items(
        self,
        items: list[dict[str, Any]],
        where: tuple[str | int, ...],
        known: frozenset[str],
        decoders: Mapping[str, tuple[DecodeGroup, ...]],
    ) -> tuple[DecodeGroup, ...]:
        """Compile a ``decode:`` list (mappings and ``use:`` of decoders)."""
        groups: list[DecodeGroup] = []
        for index, item in enumerate(items):
            path = (*where, index)
            if "use" in item:
                use, issues = validate_model(UseSpec, item, self.source, path)
                self.issues.extend(issues)
                if use is None:
                    continue
                if use.use not in decoders:
                    self.issue(
                        (*path, "use"),
                        f"unknown decoder {use.use!r}{_hint(use.use, decoders)}"
                        + ("" if decoders else " (decoders cannot use other decoders)"),
                    )
                    continue
                at = self.path(use.at, (*path, "at"))
                when = self.conditions(use.when, (*path, "when"))
                for group in decoders[use.use]:
                    groups.append(DecodeGroup(at + group.at, when + group.when, group.maps))
                continue
            mapping, issues = validate_model(MappingSpec, item, self.source, path)
            self.issues.extend(issues)
            if mapping is not None:
                fmap = self.field_map(mapping, path, known)
                if fmap is not None:
                    groups.append(DecodeGroup(JsonPath("", ()), (), (fmap,)))
        return tuple(groups)

    def field_map(
        self, spec: MappingSpec, where: tuple[str | int, ...], known: frozenset[str]
    ) -> FieldMap | None:
        """Compile one mapping."""
        kind = _KINDS.get(spec.kind)
        if kind is None:
            self.issue(
                (*where, "kind"),
                f"unknown entity kind {spec.kind!r}{_hint(spec.kind, _KINDS)}; "
                f"use one of {', '.join(_KINDS)}",
            )
            return None
        if spec.commands is not None and spec.commands not in self.spec.commands:
            self.issue(
                (*where, "commands"),
                f"unknown command set {spec.commands!r}{_hint(spec.commands, self.spec.commands)}"
                f"; the profile has: {', '.join(self.spec.commands) or 'none'}",
            )
        upgrades: set[EntityKind] = set()
        for i, name in enumerate(spec.upgrades):
            if name not in _KINDS:
                self.issue((*where, "upgrades", i), f"unknown entity kind {name!r}")
            else:
                upgrades.add(_KINDS[name])
        each_known = known | {"item", "index"}
        return FieldMap(
            path=self.path(spec.path, (*where, "path")),
            entity=self.template(spec.entity, (*where, "entity"), known),
            kind=kind,
            attribute=spec.attribute,
            name=self.templates(spec.name, (*where, "name"), each_known),
            unit=self.templates(spec.unit, (*where, "unit"), each_known),
            device_class=spec.device_class,
            transforms=self.transforms(spec.transform, (*where, "transform")),
            each=None
            if spec.each is None
            else self.template(spec.each, (*where, "each"), each_known),
            commands=spec.commands,
            upgrades=frozenset(upgrades),
            where=".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in where).replace(
                ".[", "["
            ),
        )

    def rule(
        self,
        index: int,
        spec: MessageSpec,
        known: frozenset[str],
        decoders: Mapping[str, tuple[DecodeGroup, ...]],
    ) -> Rule:
        """Compile one message rule."""
        where: tuple[str | int, ...] = ("messages", index)
        rule_vars = {
            name: self.template(text, (*where, "vars", name), known)
            for name, text in spec.vars.items()
        }
        topic_known = known | frozenset(rule_vars)
        topic = self.template(spec.topic, (*where, "topic"), topic_known)
        topic_names = (
            self.check_topic(topic, rule_vars, (*where, "topic"))
            if topic.names <= topic_known
            else None  # unknown placeholders are reported already
        )
        bind_known = known | frozenset(spec.bind)
        device_vars = tuple(
            (name, self.path(p, (*where, "device", name))) for name, p in spec.device.items()
        )
        for name, json_path in device_vars:
            if not json_path.literal:
                self.issue((*where, "device", name), "a device variable's path must be literal")
        bind = tuple((name, self.path(p, (*where, "bind", name))) for name, p in spec.bind.items())
        correlate = None if spec.correlate is None else self.path(spec.correlate, where)
        identifies = (
            topic_names is None  # the topic did not build: that is reported already
            or self.spec.device.key in topic_names
            or self.spec.device.key in spec.device
            or correlate is not None
            or any(name in topic_names for name in self.identity_names())
        )
        if not identifies:
            self.issue(
                (*where, "topic"),
                f"this message does not say which device it is from: put {{{self.spec.device.key}}}"
                " in the topic, take it from the payload with device:, or use correlate:",
            )
        if spec.format == "text" and (spec.when or spec.device or spec.bind):
            self.issue(where, "when:, device: and bind: need format: json")
        availability = None
        if spec.availability is not None:
            av = spec.availability
            availability = Availability(
                path=self.path(av.path, (*where, "availability", "path")),
                online=av.online
                if isinstance(av.online, bool)
                else self.template(av.online, (*where, "availability", "online"), known),
                offline=av.offline
                if isinstance(av.offline, bool)
                else self.template(av.offline, (*where, "availability", "offline"), known),
            )
        return Rule(
            index=index,
            name=spec.name or f"messages[{index}]",
            topic=topic,
            vars=rule_vars,
            format=spec.format,
            when=self.conditions(spec.when, (*where, "when")),
            announce=spec.announce,
            device_vars=device_vars,
            bind=bind,
            correlate=correlate,
            availability=availability,
            remove_on_empty=spec.remove_on_empty,
            error=None if spec.error is None else self.path(spec.error, (*where, "error")),
            decode=self.decode_items(spec.decode, (*where, "decode"), bind_known, decoders),
        )

    def identity_names(self) -> frozenset[str]:
        """The variables the ``match_by`` identities are made of."""
        names: set[str] = set()
        for identity in self.spec.device.match_by:
            text = self.spec.device.identities.get(identity)
            if text is not None:
                try:
                    names |= Template.parse(text).names
                except TemplateError:
                    continue  # reported with the device section
        return frozenset(names)

    def check_topic(
        self, topic: Template, rule_vars: Mapping[str, Template], where: tuple[str | int, ...]
    ) -> frozenset[str] | None:
        """Build the topic with the default options; return the variables it captures.

        Catches wildcards and variables without patterns now rather than at start.
        """
        option_templates: dict[str, Template] = {}
        expander = Expander(option_templates, self.spec.tokens)
        for name, raw in self.spec.options.items():
            value = raw.get("default") if isinstance(raw, dict) else raw
            try:
                option_templates[name] = expander.option_template(_scalar_text(value))
            except TemplateError:
                return None  # reported with the option
        try:
            expanded = expander.expand(topic, rule_vars=rule_vars, literals={"base_topic": "hub"})
            compile_topic(expanded, self.patterns)
        except TemplateError as exc:
            self.issue(where, str(exc))
            return None
        return expanded.names

    def command_set(self, name: str, spec: CommandSetSpec, known: frozenset[str]) -> CommandSet:
        """Compile one command set."""
        where: tuple[str | int, ...] = ("commands", name)
        lets: dict[str, Let] = {}
        for let_name, let in spec.let.items():
            path = (*where, "let", let_name)
            if let.from_ not in PARAMS:
                self.issue(
                    (*path, "from"),
                    f"unknown command parameter {let.from_!r}{_hint(let.from_, PARAMS)}",
                )
            lets[let_name] = Let(let.from_, self.transforms(let.transform, (*path, "transform")))
        command_known = known | frozenset(PARAMS) | frozenset(lets) | {"seq", "command_id"}
        actions: dict[str, tuple[Outgoing, ...]] = {}
        for action in ACTIONS:
            outs: list[OutSpec] | None = getattr(spec, action)
            if outs is None:
                continue
            actions[action] = tuple(
                self.outgoing(out, (*where, action, i), command_known) for i, out in enumerate(outs)
            )
        return CommandSet(lets, actions)

    def outgoing(
        self, spec: OutSpec, where: tuple[str | int, ...], known: frozenset[str]
    ) -> Outgoing:
        """Compile one outbound message."""
        rule_vars = {
            name: self.template(text, (*where, "vars", name), known)
            for name, text in spec.vars.items()
        }
        known = known | frozenset(rule_vars)
        if (spec.payload is None) == (spec.json_ is None):
            self.issue(where, "give exactly one of payload: (text) or json: (a structure)")
        for param_field in ("when", "unless"):
            param = getattr(spec, param_field)
            if param is not None and param not in PARAMS:
                self.issue(
                    (*where, param_field),
                    f"unknown command parameter {param!r}{_hint(param, PARAMS)}",
                )
        return Outgoing(
            topic=self.template(spec.topic, (*where, "topic"), known),
            vars=rule_vars,
            payload=None
            if spec.payload is None
            else self.template(spec.payload, (*where, "payload"), known),
            json=self.json_template(spec.json_, (*where, "json"), known),
            has_json=spec.json_ is not None,
            qos=spec.qos,
            retain=spec.retain,
            when=spec.when,
            unless=spec.unless,
        )

    def json_template(self, value: Any, where: tuple[str | int, ...], known: frozenset[str]) -> Any:
        """Compile a JSON payload template: text leaves become templates."""
        if isinstance(value, str):
            return self.template(value, where, known)
        if isinstance(value, dict):
            return {k: self.json_template(v, (*where, k), known) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json_template(v, (*where, i), known) for i, v in enumerate(value)]
        return value


def _single_pattern(text: str, patterns: Mapping[str, str]) -> re.Pattern[str] | None:
    """A regex for a value template such as ``input:{channel}`` (whole-value match)."""
    try:
        template = Template.parse(text)
    except TemplateError:
        return None
    pieces: list[str] = []
    seen: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            pieces.append(re.escape(part))
        elif part.name in seen:
            pieces.append(f"(?P={part.name})")
        elif part.name in patterns:
            seen.append(part.name)
            pieces.append(f"(?P<{part.name}>{patterns[part.name]})")
        else:
            return None
    return re.compile("".join(pieces))
