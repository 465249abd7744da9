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

Over MQTT (``hub ask`` uses it): a JSON request ``{"id", "as": <person id>, "text"}`` (or
``"intent"`` and ``"slots"``) on ``<base>/conversation/request`` is answered with the reply
as JSON on ``<base>/conversation/response/<id>``. Whoever may publish on the hub's broker may
already command every device (``<base>/command``), so this adds no new power.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from hub.conversation.i18n import Gettext, gettext_for, normalise_language
from hub.conversation.people import Identity, People, Person
from hub.conversation.reply import Reply, ReplyStatus, reply_to_dict
from hub.model import Context

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

CompletionKind = Literal["target", "entity", "area", "scene", "rule", "command"]

# What an audit row keeps of the words a person sent.
AUDIT_TEXT = 200
_INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TX_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_REQUEST_BYTES = 16 * 1024


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


@dataclass(frozen=True, slots=True)
class IntentCall:
    """What a plug-in's intent handler gets: who asked, the slots, how to answer."""

    person: Person
    slots: Mapping[str, Any]
    language: str
    gettext: Gettext  # translates the plug-in's own texts only if the hub's catalog has them
    context: Context  # use it for every command the handler issues
    request: Request


IntentHandler = Callable[[IntentCall], Awaitable[Reply]]


class CommandLayer:
    """Parses, checks permissions, runs and answers requests; audits every one."""

    def __init__(self, hub: Hub, people: People) -> None:
        self.hub = hub
        self.people = people
        self.intent_handlers: dict[str, IntentHandler] = {}
        self._undo: list[Callable[[], None]] = []

    # ----- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Answer requests sent over MQTT (``hub ask``)."""
        mqtt = self.hub.mqtt
        if mqtt is not None:
            topic = f"{self.hub.base_topic}/conversation/request"
            self._undo.append(mqtt.subscribe(topic, self._on_mqtt, owner="conversation", qos=1))

    def stop(self) -> None:
        """Remove the MQTT subscription."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def person_for(self, identity: Identity) -> Person | None:
        """The person behind an identity, or None for a stranger."""
        return self.people.find(identity.kind, identity.address)

    def register_intent(self, name: str, handler: IntentHandler) -> Callable[[], None]:
        """Let a plug-in answer an intent (e.g. ``speedtest``); return the undo."""
        if not _INTENT_NAME.match(name):
            raise ValueError(f"invalid intent name {name!r}: use lowercase letters, digits, '_'")
        if name in self.intent_handlers:
            raise ValueError(f"intent {name!r} already has a handler")
        self.intent_handlers[name] = handler

        def undo() -> None:
            if self.intent_handlers.get(name) is handler:
                del self.intent_handlers[name]

        return undo

    # ----- requests ----------------------------------------------------------------------------

    async def handle(self, request: Request) -> Reply:
        """Answer a request (never raises for bad input: the reply says what was wrong)."""
        from hub.conversation.handlers import Turn, answer

        person = request.person
        if person is None and request.sender is not None:
            person = self.person_for(request.sender)
        language = normalise_language(
            request.language or (person.language if person is not None else None)
        )
        _ = gettext_for(language)
        turn: Turn | None = None
        try:
            if person is None:
                reply = Reply(
                    ReplyStatus.REFUSED,
                    _("Sorry, I don't know you, so I cannot do anything for you."),
                    language=language,
                )
            else:
                turn = Turn(self, request, person, language, _)
                reply = await answer(turn)
        except Exception:
            _LOGGER.exception("request from %s via %s failed", person, request.frontend)
            reply = Reply(
                ReplyStatus.FAILED,
                _("Something went wrong on my side; the hub's log says what."),
                language=language,
            )
        self._audit(request, person, turn, reply)
        return reply

    def complete(
        self, kind: CompletionKind, prefix: str, person: Person | None, limit: int = 25
    ) -> list[Completion]:
        """Suggestions for a partly typed name the person may use (best match first)."""
        if person is None:
            return []
        from hub.conversation.handlers import completions

        try:
            return completions(self, kind, prefix, person, limit)
        except Exception:  # autocomplete must never break a front-end
            _LOGGER.exception("autocomplete of %s %r failed", kind, prefix[:50])
            return []

    # ----- audit -------------------------------------------------------------------------------

    def _audit(self, request: Request, person: Person | None, turn: Any, reply: Reply) -> None:
        storage = self.hub.storage
        if storage is None:
            return
        from hub.storage import AuditEntry, StorageError

        text = request.text if isinstance(request.text, str) else ""
        params = {
            "frontend": str(request.frontend)[:32],
            "identity": str(request.sender)[:120] if request.sender is not None else None,
            "channel": str(request.channel)[:120] if request.channel else None,
            "person": person.id if person is not None else None,
            "text": text[:AUDIT_TEXT],
            "slots": _jsonable(turn.slots if turn is not None else request.slots),
        }
        context = turn.context if turn is not None else None
        intent = turn.intent if turn is not None else (request.intent or "")
        try:
            storage.queue_audit(
                AuditEntry(
                    ts=time.time(),
                    kind="conversation",
                    target=(turn.target if turn is not None else "")[:200],
                    action=str(intent or "")[:64],
                    params=params,
                    context=context,
                    result=reply.status.value,
                    detail=reply.text[:300],
                )
            )
        except (StorageError, ValueError) as exc:
            _LOGGER.warning("request not audited: %s", exc)

    # ----- MQTT requests -----------------------------------------------------------------------

    def _on_mqtt(self, topic: str, payload: bytes, received: float) -> None:
        if len(payload) > _MAX_REQUEST_BYTES:
            self.hub.reject(topic, "a conversation request over 16 KiB", kind="too_large")
            return
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            body = None
        tx = body.get("id") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(tx, str) or not _TX_ID.match(tx):
            self.hub.reject(
                topic, 'expected {"id": "<1-64 letters/digits>", "as": ..., "text": ...}'
            )
            return
        who = body.get("as")
        person = self.people.get(who) if isinstance(who, str) else None
        intent = body.get("intent")
        slots = body.get("slots")
        language = body.get("language")
        frontend = body.get("frontend")
        text = body.get("text")
        request = Request(
            frontend=frontend if frontend in ("cli", "mqtt") else "mqtt",
            sender=None,
            text=text if isinstance(text, str) else "",
            intent=intent if isinstance(intent, str) else None,
            slots=slots if isinstance(slots, dict) else {},
            person=person,
            language=language if isinstance(language, str) else None,
            channel=f"as {who}"[:80] if isinstance(who, str) else None,
        )

        async def run() -> None:
            reply = await self.handle(request)
            mqtt = self.hub.mqtt
            if mqtt is not None:
                out = {"id": tx, **reply_to_dict(reply)}
                response = f"{self.hub.base_topic}/conversation/response/{tx}"
                mqtt.publish(response, orjson.dumps(out, default=str), qos=1)

        self.hub.spawn(run(), name=f"conversation {tx}")


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A bounded JSON-ready copy of slot values for the audit log."""
    if depth > 3:
        return "..."
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value[:AUDIT_TEXT]
    if isinstance(value, Mapping):
        return {str(k)[:64]: _jsonable(v, depth + 1) for k, v in list(value.items())[:20]}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value[:20]]
    return str(value)[:AUDIT_TEXT]
