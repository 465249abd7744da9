"""The command layer: a request in plain words or structured form in, a reply out.

CONTRACT (front-ends depend on these signatures): ``Request``, ``Completion``,
``CommandLayer.handle``, ``CommandLayer.complete``, ``CommandLayer.person_for``,
``CommandLayer.people``. Structured intents (``Request.intent``) and their slots:

=================  ===========================================================
intent             slots
=================  ===========================================================
turn_on/turn_off/  target (a name as a person would say it: "kitchen light",
toggle             "kitchen", an entity/device/group/area id)
set_brightness     target, brightness (0-100, percent)
set_temperature    target, temperature (degrees)
open/close         target
lock/unlock        target
scene              scene (name or id)
status             target (optional: the whole house)
list               what: devices | scenes | rules | areas
energy             period: today | week
speedtest          (none)
rule_enable/       rule (name or id)
rule_disable
why                target
run                command (a named command a rule defines), data (optional)
help               (none)
=================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hub.conversation.people import Identity, People, Person
from hub.conversation.reply import Reply

if TYPE_CHECKING:
    from hub.core import Hub

CompletionKind = Literal["target", "entity", "area", "scene", "rule", "command"]


@dataclass(frozen=True, slots=True)
class Request:
    """What a person asked, from one front-end."""

    frontend: str  # "discord", "sms", "email", "dashboard", "cli", "mqtt"
    sender: Identity | None  # None only for local callers (the CLI)
    text: str = ""  # plain words, e.g. "turn off the kitchen lights"
    intent: str | None = None  # or a structured intent (see the module docstring)
    slots: Mapping[str, Any] = field(default_factory=dict)
    # A front-end that resolved the person itself (e.g. Discord role mapping) passes it here;
    # otherwise the layer looks the sender up in the people directory.
    person: Person | None = None
    language: str | None = None  # overrides the person's language for this reply
    channel: str | None = None  # where in the front-end it came from (for the audit)


@dataclass(frozen=True, slots=True)
class Completion:
    """An autocomplete suggestion: show ``label``, send ``value``."""

    label: str
    value: str


class CommandLayer:
    """Parses, checks permissions, runs and answers requests; audits every one."""

    def __init__(self, hub: Hub, people: People) -> None:
        self.hub = hub
        self.people = people

    def person_for(self, identity: Identity) -> Person | None:
        """The person behind an identity, or None for a stranger."""
        return self.people.find(identity.kind, identity.address)

    async def handle(self, request: Request) -> Reply:
        """Answer a request (never raises for bad input: the reply says what was wrong)."""
        raise NotImplementedError  # being written (issue 5)

    def complete(
        self, kind: CompletionKind, prefix: str, person: Person | None, limit: int = 25
    ) -> list[Completion]:
        """Suggestions for a partly typed name the person may use (best match first)."""
        raise NotImplementedError  # being written (issue 5)
