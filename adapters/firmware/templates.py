"""Placeholder templates of the profile language, and MQTT topic patterns built from them.

A template is text with placeholders: ``{name}`` (required), ``{name?}`` (optional: renders
empty, or drops its key from a JSON payload) and ``{{`` / ``}}`` for literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(\?)?\}|[{}]")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WILDCARDS = ("+", "#", "\x00")


class TemplateError(ValueError):
    """A template is not well formed, or cannot be rendered."""


class Unbound(TemplateError):
    """A required placeholder has no value."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no value for {{{name}}}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Slot:
    """One placeholder."""

    name: str
    optional: bool = False


Part = str | Slot


@dataclass(frozen=True, slots=True)
class Template:
    """Parsed template text: literal strings and slots."""

    parts: tuple[Part, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse ``text``; raise TemplateError for a stray brace."""
        if not isinstance(text, str):
            raise TemplateError(f"expected text, got {type(text).__name__}")
        parts: list[Part] = []
        pos = 0
        for match in _TOKEN.finditer(text):
            if match.start() > pos:
                parts.append(text[pos : match.start()])
            token = match.group(0)
            if token in ("{{", "}}"):
                parts.append(token[0])
            elif match.group(1) is None:
                raise TemplateError(
                    f"stray {token!r} at position {match.start() + 1} of {text!r} "
                    "(placeholders look like {name}; write {{ or }} for a literal brace)"
                )
            else:
                parts.append(Slot(match.group(1), match.group(2) == "?"))
            pos = match.end()
        if pos < len(text):
            parts.append(text[pos:])
        return cls(_merge(parts))

    @classmethod
    def literal(cls, text: str) -> Template:
        """A template that is ``text`` verbatim (no placeholders)."""
        return cls((text,) if text else ())

    @property
    def names(self) -> frozenset[str]:
        """The names of every slot."""
        return frozenset(p.name for p in self.parts if isinstance(p, Slot))

    @property
    def constant(self) -> bool:
        """True when the template has no slots."""
        return all(isinstance(p, str) for p in self.parts)

    def single(self) -> Slot | None:
        """The slot if the template is exactly one slot (typed values in JSON payloads)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Slot):
            return self.parts[0]
        return None

    def text(self) -> str:
        """The literal text of a constant template."""
        return "".join(p for p in self.parts if isinstance(p, str))

    def render(self, lookup: Callable[[str], Any]) -> str:
        """Render with ``lookup(name)`` (raises KeyError when unbound)."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            try:
                value = lookup(part.name)
            except KeyError:
                if part.optional:
                    continue
                raise Unbound(part.name) from None
            if value is None:
                if part.optional:
                    continue
                raise Unbound(part.name)
            out.append(text_of(value))
        return "".join(out)

    def __str__(self) -> str:
        return "".join(
            p.replace("{", "{{").replace("}", "}}")
            if isinstance(p, str)
            else f"{{{p.name}{'?' if p.optional else ''}}}"
            for p in self.parts
        )


def _merge(parts: Iterable[Part]) -> tuple[Part, ...]:
    out: list[Part] = []
    for part in parts:
        if isinstance(part, str) and out and isinstance(out[-1], str):
            out[-1] = out[-1] + part
        elif part != "":
            out.append(part)
    return tuple(out)


def text_of(value: Any) -> str:
    """How a value is written into text: integral floats without ``.0``, booleans lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ----- expansion --------------------------------------------------------------------------------


class Expander:
    """Substitutes what is known into a template, leaving the rest as slots.

    Options are templates themselves (Tasmota's FullTopic holds placeholders); everything
    else (device variables, built-ins) is literal text, so that a value coming from a device
    can never inject placeholders. A device variable named like an option overrides it and
    is then a template too (Tasmota's discovery message carries each device's FullTopic).
    """

    MAX_DEPTH = 8

    def __init__(
        self,
        options: Mapping[str, Template],
        tokens: Mapping[str, str],
    ) -> None:
        self.options = options
        self.tokens = tokens

    def option_template(self, text: str) -> Template:
        """Parse an option value, translating the firmware's own tokens first."""
        for token, name in self.tokens.items():
            text = text.replace(token, "{" + name + "}")
        return Template.parse(text)

    def expand(
        self,
        template: Template,
        *,
        rule_vars: Mapping[str, Template] | None = None,
        values: Mapping[str, Any] | None = None,
        device: Mapping[str, Any] | None = None,
        literals: Mapping[str, Any] | None = None,
    ) -> Template:
        """Return ``template`` with everything known substituted; raise TemplateError on loops.

        Names are looked up in this order: the rule's own variables (templates), ``values``
        (a message's or command's own), the device's variables, the options, ``literals``
        (built-ins such as ``base_topic``).
        """
        return self._expand(
            template, rule_vars or {}, values or {}, device or {}, literals or {}, 0
        )

    def _expand(
        self,
        template: Template,
        rule_vars: Mapping[str, Template],
        values: Mapping[str, Any],
        device: Mapping[str, Any],
        literals: Mapping[str, Any],
        depth: int,
    ) -> Template:
        if depth > self.MAX_DEPTH:
            raise TemplateError(f"placeholders nest more than {self.MAX_DEPTH} deep (a loop?)")
        parts: list[Part] = []
        for part in template.parts:
            if isinstance(part, str):
                parts.append(part)
                continue
            name = part.name
            sub: Template | None = None
            if name in rule_vars:
                sub = rule_vars[name]
            elif name in values:
                parts.append(text_of(values[name]))
                continue
            elif name in device:
                value = device[name]
                if name in self.options and isinstance(value, str):
                    sub = self.option_template(value)
                else:
                    parts.append(text_of(value))
                    continue
            elif name in self.options:
                sub = self.options[name]
            elif name in literals:
                parts.append(text_of(literals[name]))
                continue
            if sub is None:
                parts.append(part)
            else:
                parts.extend(
                    self._expand(sub, rule_vars, values, device, literals, depth + 1).parts
                )
        return Template(_merge(parts))


# ----- topics -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A subscription filter and the regular expression that takes its variables apart."""

    filter: str
    regex: re.Pattern[str]
    names: tuple[str, ...]

    def match(self, topic: str) -> dict[str, str] | None:
        """The captured variables, or None when ``topic`` does not fit."""
        found = self.regex.fullmatch(topic)
        return None if found is None else found.groupdict()


def compile_topic(template: Template, patterns: Mapping[str, str]) -> TopicPattern:
    """Build the filter (a level holding a slot becomes ``+``) and the capturing regex.

    Raises TemplateError for literal wildcards, empty levels in a filter, or a slot without
    a declared pattern.
    """
    levels: list[list[Part]] = [[]]
    for part in template.parts:
        if isinstance(part, Slot):
            levels[-1].append(part)
            continue
        pieces = part.split("/")
        levels[-1].append(pieces[0])
        for piece in pieces[1:]:
            levels.append([piece])
    filter_levels: list[str] = []
    regex_levels: list[str] = []
    seen: list[str] = []
    for raw_level in levels:
        level = [p for p in raw_level if p != ""]
        if any(isinstance(p, Slot) for p in level):
            filter_levels.append("+")
            regex_pieces: list[str] = []
            for p in level:
                if isinstance(p, str):
                    regex_pieces.append(re.escape(p))
                elif p.name in seen:
                    regex_pieces.append(f"(?P={p.name})")
                else:
                    if p.name not in patterns:
                        raise TemplateError(f"{{{p.name}}} has no pattern (declare it in vars)")
                    seen.append(p.name)
                    regex_pieces.append(f"(?P<{p.name}>{patterns[p.name]})")
            regex_levels.append("".join(regex_pieces))
        else:
            text = "".join(p for p in level if isinstance(p, str))
            if any(w in text for w in _WILDCARDS):
                raise TemplateError(f"topic level {text!r} contains a wildcard or NUL character")
            filter_levels.append(text)
            regex_levels.append(re.escape(text))
    topic_filter = "/".join(filter_levels)
    if not topic_filter:
        raise TemplateError("the topic is empty")
    return TopicPattern(topic_filter, re.compile("/".join(regex_levels)), tuple(seen))


def filter_covers(general: str, specific: str) -> bool:
    """True when every topic matching ``specific`` also matches ``general``."""
    g_levels, s_levels = general.split("/"), specific.split("/")
    for index, g in enumerate(g_levels):
        if g == "#":
            return True
        if index >= len(s_levels):
            return False
        s = s_levels[index]
        if g != "+" and (g != s or s in ("+", "#")):
            return False
    return len(g_levels) == len(s_levels)


def check_publish_topic(topic: str) -> str:
    """Return ``topic`` if a message may be published to it; raise TemplateError otherwise."""
    if not topic or any(w in topic for w in _WILDCARDS) or len(topic.encode()) > 65535:
        raise TemplateError(f"{topic[:120]!r} is not a topic a message can be published to")
    return topic
