"""The intents of the command layer: what each one does and how it answers.

Every reply text goes through the person's ``_`` (gettext); names of things stay as the
registry has them. Words a person sent are never echoed raw: :func:`echo` keeps letters,
digits and a little punctuation, so a reply can carry no markup, mention or control text.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from hub.commands import Command, CommandError, CommandResult
from hub.conversation import names as nm
from hub.conversation.i18n import N_, Gettext
from hub.conversation.layer import Completion, IntentCall
from hub.conversation.parse import INTENTS, MAX_SLOT, BadInput, clean_text, parse, words_for
from hub.conversation.people import Person, Role
from hub.conversation.permissions import may_control, may_control_all, may_intent
from hub.conversation.reply import Reply, ReplyAction, ReplyField, ReplyStatus
from hub.model import Context, Entity, EntityKind, Origin, State

if TYPE_CHECKING:
    from hub.conversation.layer import CommandLayer, Request

ON_OFF_KINDS = frozenset({EntityKind.LIGHT, EntityKind.SWITCH})
LIST_LIMIT = 30  # lines of a list reply; the rest is counted
_ECHO = re.compile(r"[^\w\s.'-]+", re.UNICODE)

# Words for states, marked for translation.
STATE_WORDS = {
    "on": N_("on"),
    "off": N_("off"),
    "open": N_("open"),
    "closed": N_("closed"),
    "opening": N_("opening"),
    "closing": N_("closing"),
    "stopped": N_("stopped"),
    "locked": N_("locked"),
    "unlocked": N_("unlocked"),
    "locking": N_("locking"),
    "unlocking": N_("unlocking"),
    "jammed": N_("jammed"),
    "heat": N_("heat"),
    "cool": N_("cool"),
    "auto": N_("auto"),
    "dry": N_("dry"),
    "fan_only": N_("fan only"),
}


def echo(text: str, limit: int = 60) -> str:
    """What a person wrote, safe to repeat in a reply: no markup, mentions or controls."""
    cleaned = " ".join(_ECHO.sub(" ", text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


class Turn:
    """One request being answered: who asked, in which language, what it resolved to."""

    def __init__(
        self, layer: CommandLayer, request: Request, person: Person, language: str, _: Gettext
    ) -> None:
        self.layer = layer
        self.hub = layer.hub
        self.request = request
        self.person = person
        self.language = language
        self._ = _
        self.intent = ""
        self.slots: dict[str, Any] = {}
        self.target = ""  # what the request resolved to, for the audit
        via = str(request.frontend)[:32] or None
        self.context = Context(Origin.PERSON, person.id, via=via)

    def reply(self, status: ReplyStatus, text: str, **extra: Any) -> Reply:
        """A reply in this turn's language."""
        return Reply(status, text, language=self.language, **extra)

    def refused(self, text: str | None = None) -> Reply:
        """The polite refusal."""
        return self.reply(
            ReplyStatus.REFUSED, text or self._("Sorry, you are not allowed to do that.")
        )

    def state_word(self, value: Any) -> str:
        """A state value as people read it, translated."""
        if value is None:
            return self._("unknown")
        if isinstance(value, str) and value in STATE_WORDS:
            return self._(STATE_WORDS[value])
        return number(value) if isinstance(value, int | float) else str(value)

    def when(self, ts: float) -> str:
        """A time as HH:MM today, else with its date."""
        tz = _zone(self.hub)
        moment = datetime.fromtimestamp(ts, tz)
        if moment.date() == datetime.now(tz).date():
            return moment.strftime("%H:%M")
        return moment.strftime("%Y-%m-%d %H:%M")


def number(value: float) -> str:
    """A number without needless decimals."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _zone(hub: Any) -> ZoneInfo | None:
    location = hub.config.hub.location
    return ZoneInfo(location.time_zone) if location is not None else None


# ----- entry point --------------------------------------------------------------------------


async def answer(turn: Turn) -> Reply:
    """Understand the request, check it is allowed, do it, and say what happened."""
    _ = turn._
    request = turn.request
    if request.intent is not None:
        try:
            intent, slots = _structured(request.intent, request.slots, turn.layer)
        except BadInput as exc:
            turn.intent = str(request.intent)[:64]
            return _bad_input(turn, exc.code)
    else:
        try:
            text = clean_text(request.text)
        except BadInput as exc:
            return _bad_input(turn, exc.code)
        parsed = parse(text, turn.language)
        if parsed is None:
            return _not_understood(turn, text)
        intent, slots = parsed.intent, dict(parsed.slots)
    turn.intent, turn.slots = intent, slots
    if not may_intent(turn.person, intent):
        if intent in ("rule_enable", "rule_disable"):
            return turn.refused(_("Sorry, you are not allowed to change rules."))
        if intent in ("lock", "unlock"):
            return turn.refused(_("Sorry, you are not allowed to use locks."))
        return turn.refused()
    plugin = turn.layer.intent_handlers.get(intent)
    if plugin is not None:
        return await _plugin_intent(turn, plugin)
    handler = HANDLERS.get(intent)
    if handler is None:
        return _not_understood(turn, request.text if isinstance(request.text, str) else "")
    return await handler(turn)


def _bad_input(turn: Turn, code: str) -> Reply:
    _ = turn._
    texts = {
        "empty": _("Please tell me what to do, for example: turn on the kitchen light."),
        "too_long": _("That message is too long; please send one short command."),
        "control": _("That message contains control characters; please send plain words."),
        "intent": _("I do not know that command."),
        "slots": _("Some details of that command are not valid."),
    }
    return turn.reply(ReplyStatus.INVALID, texts.get(code, texts["slots"]))


def _not_understood(turn: Turn, text: str) -> Reply:
    _ = turn._
    examples = ("turn on the kitchen light", "status", "list scenes", "help")
    return turn.reply(
        ReplyStatus.NOT_UNDERSTOOD,
        _(
            "Sorry, I did not understand \u201c{text}\u201d. Say \u201chelp\u201d for examples."
        ).format(text=echo(text)),
        choices=tuple(ReplyAction(example, example) for example in examples),
    )


_SLOT_KEYS = frozenset(
    {"target", "brightness", "temperature", "scene", "what", "period", "rule", "command", "data"}
)


def _structured(intent: Any, slots: Any, layer: CommandLayer) -> tuple[str, dict[str, Any]]:
    """Check a structured request's intent and slots (raise BadInput)."""
    if not isinstance(intent, str) or (
        intent not in INTENTS and intent not in layer.intent_handlers
    ):
        raise BadInput("intent")
    if not isinstance(slots, Mapping) or len(slots) > 10:
        raise BadInput("slots")
    out: dict[str, Any] = {}
    for key, value in slots.items():
        if not isinstance(key, str) or (key not in _SLOT_KEYS and intent in INTENTS):
            raise BadInput("slots")
        if value is None:
            continue
        if key in ("brightness", "temperature"):
            out[key] = _number_slot(value)
        elif key == "data":
            out[key] = value  # checked by the run intent
        elif isinstance(value, str):
            if len(value) > MAX_SLOT:
                raise BadInput("too_long")
            out[key] = clean_text(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value
        else:
            raise BadInput("slots")
    return intent, out


def _number_slot(value: Any) -> float:
    if isinstance(value, bool):
        raise BadInput("slots")
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%").replace(",", "."))
        except ValueError:
            raise BadInput("slots") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInput("slots")
    return float(value)


async def _plugin_intent(turn: Turn, handler: Callable[[IntentCall], Awaitable[Reply]]) -> Reply:
    call = IntentCall(
        turn.person, dict(turn.slots), turn.language, turn._, turn.context, turn.request
    )
    reply = await handler(call)
    if not isinstance(reply, Reply):
        raise TypeError(f"the {turn.intent} handler returned {type(reply).__name__}, not a Reply")
    return reply


# ----- resolving names ----------------------------------------------------------------------

# The English form of each intent with a name filled in: choices re-send these.
_CANONICAL = {
    "turn_on": "turn on {x}",
    "turn_off": "turn off {x}",
    "toggle": "toggle {x}",
    "set_brightness": "set {x} to {brightness}%",
    "set_temperature": "set {x} to {temperature} degrees",
    "open": "open {x}",
    "close": "close {x}",
    "lock": "lock {x}",
    "unlock": "unlock {x}",
    "scene": "scene {x}",
    "status": "status of {x}",
    "why": "why is {x}",
    "rule_enable": "enable rule {x}",
    "rule_disable": "disable rule {x}",
    "run": "run {x}",
}


def canonical(intent: str, ident: str, slots: Mapping[str, Any]) -> str:
    """The sentence that asks for ``intent`` on ``ident`` (what a choice button sends)."""
    values = {k: number(v) if isinstance(v, float) else v for k, v in slots.items()}
    return _CANONICAL.get(intent, "{x}").format(**{**values, "x": ident})


def _resolve(
    turn: Turn, raw: Any, candidates: Sequence[nm.Candidate], what: str
) -> nm.Candidate | Reply:
    """The one candidate ``raw`` names, or the reply that asks back or says none."""
    _ = turn._
    if not isinstance(raw, str) or not raw.strip():
        return turn.reply(ReplyStatus.INVALID, _("Which one? Please name it."))
    words = words_for((turn.language, turn.request.language or "", "de"))
    found = nm.resolve(raw, candidates, words)
    if found.best is not None:
        return found.best
    slots = {k: v for k, v in turn.slots.items() if k not in ("target", "scene", "rule", "command")}
    if found.ties:
        choices = tuple(
            ReplyAction(m.candidate.label, canonical(turn.intent, m.candidate.id, slots))
            for m in found.ties
        )
        return turn.reply(
            ReplyStatus.ASK,
            _("Which one did you mean by \u201c{name}\u201d?").format(name=echo(raw)),
            choices=choices,
        )
    choices = tuple(
        ReplyAction(m.candidate.label, canonical(turn.intent, m.candidate.id, slots))
        for m in found.suggestions
    )
    if what == "scene":
        text = _("I know no scene called \u201c{name}\u201d.")
    elif what == "rule":
        text = _("I know no rule called \u201c{name}\u201d.")
    elif what == "command":
        text = _("I know no command called \u201c{name}\u201d.")
    else:
        text = _("I know nothing called \u201c{name}\u201d that can do that.")
    return turn.reply(ReplyStatus.NOT_UNDERSTOOD, text.format(name=echo(raw)), choices=choices)


def _target(
    turn: Turn,
    accept: Callable[[Entity], bool],
    *,
    area_accept: Callable[[Entity], bool] | None = None,
) -> nm.Candidate | Reply:
    registry = turn.hub.registry
    candidates = nm.target_candidates(registry, accept, area_accept=area_accept)
    found = _resolve(turn, turn.slots.get("target"), candidates, "target")
    if isinstance(found, nm.Candidate):
        turn.target = found.id
    return found


def _kinds(*kinds: EntityKind) -> Callable[[Entity], bool]:
    wanted = frozenset(kinds)
    return lambda entity: entity.kind in wanted


# ----- running commands ---------------------------------------------------------------------


async def _command(
    turn: Turn,
    candidate: nm.Candidate,
    action: str,
    params: Mapping[str, Any],
    done: str,
    *,
    undo: tuple[str, str] | None = None,
) -> Reply:
    """Check permission, command the candidate's entities, wait for confirmation, answer."""
    _ = turn._
    registry = turn.hub.registry
    entities = [registry.entities[i] for i in candidate.entity_ids if i in registry.entities]
    allowed = [
        e for e in entities if may_control(turn.person, e, registry.devices.get(e.device_id))
    ]
    single = candidate.kind in ("entity", "device")
    if not allowed or (single and len(allowed) < len(entities)):
        return turn.refused(
            _("Sorry, you are not allowed to control {name}.").format(name=candidate.label)
        )
    results = await run_commands(turn, allowed, action, params)
    failed = [r for r in results if not r.ok]
    label = candidate.label
    fields = tuple(
        ReplyField(_label(turn, r.entity_id), r.reason or _("did not work"), inline=False)
        for r in failed
    )
    data = {"target": candidate.id, "results": [r.to_dict() for r in results]}
    if failed:
        if len(failed) == len(results):
            text = _("That did not work for {name}: {reason}").format(
                name=label, reason=failed[0].reason
            )
        else:
            text = _("{name}: {failed} of {total} did not work.").format(
                name=label, failed=len(failed), total=len(results)
            )
        retry = canonical(turn.intent, candidate.id, turn.slots)
        return turn.reply(
            ReplyStatus.FAILED,
            text,
            fields=fields,
            actions=(ReplyAction(_("Try again"), retry, "primary"),),
            data=data,
        )
    actions: tuple[ReplyAction, ...] = ()
    if undo is not None:
        actions = (ReplyAction(_(undo[0]), canonical(undo[1], candidate.id, {})),)
    return turn.reply(ReplyStatus.DONE, done.format(name=label), actions=actions, data=data)


async def run_commands(
    turn: Turn, entities: Iterable[Entity], action: str, params: Mapping[str, Any]
) -> list[CommandResult]:
    """Command each entity with the turn's context; one result per entity (never raises)."""
    commands = turn.hub.commands
    waits: list[Awaitable[list[CommandResult]]] = []
    for entity in entities:
        command = Command(entity.id, action, turn.context, dict(params))
        try:
            futures = commands.issue(command)
        except CommandError as exc:
            waits.append(_failed(command.request_id, entity.id, str(exc)))
            continue
        waits.append(_gather(futures))
    out: list[CommandResult] = []
    for batch in await asyncio.gather(*waits):
        out.extend(batch)
    return out


async def _gather(futures: Sequence[Awaitable[CommandResult]]) -> list[CommandResult]:
    return list(await asyncio.gather(*futures))


async def _failed(command_id: str, entity_id: str, reason: str) -> list[CommandResult]:
    return [CommandResult(command_id, entity_id, ok=False, reason=reason)]


def _label(turn: Turn, entity_id: str) -> str:
    registry = turn.hub.registry
    entity = registry.entities.get(entity_id)
    if entity is None:
        return entity_id
    return nm.entity_label(entity, registry.devices.get(entity.device_id))


# ----- device intents -----------------------------------------------------------------------


async def _turn_on(turn: Turn) -> Reply:
    return await _on_off(turn, "turn_on", turn._("Turned on {name}."), (N_("Turn off"), "turn_off"))


async def _turn_off(turn: Turn) -> Reply:
    return await _on_off(turn, "turn_off", turn._("Turned off {name}."), (N_("Turn on"), "turn_on"))


async def _toggle(turn: Turn) -> Reply:
    return await _on_off(turn, "toggle", turn._("Toggled {name}."), (N_("Toggle"), "toggle"))


async def _on_off(turn: Turn, action: str, done: str, undo: tuple[str, str]) -> Reply:
    # A whole area switched on or off means its lights, never its fridge.
    found = _target(
        turn, _kinds(EntityKind.LIGHT, EntityKind.SWITCH), area_accept=_kinds(EntityKind.LIGHT)
    )
    if isinstance(found, Reply):
        return found
    return await _command(turn, found, action, {}, done, undo=undo)


def _level_is_for(turn: Turn, kind: EntityKind, other: EntityKind) -> bool:
    """ "set X to 21" fits a light and a thermostat alike: True if X names an ``other``."""
    if turn.request.intent is not None:
        return False  # a structured request said which it meant
    raw = turn.slots.get("target")
    if not isinstance(raw, str):
        return False
    registry = turn.hub.registry
    words = words_for((turn.language, "de"))

    def best(wanted: EntityKind) -> nm.Candidate | None:
        pool = nm.target_candidates(registry, _kinds(wanted))
        return nm.resolve(raw, pool, words).best

    return best(kind) is None and best(other) is not None


async def _set_brightness(turn: Turn) -> Reply:
    _ = turn._
    if _level_is_for(turn, EntityKind.LIGHT, EntityKind.CLIMATE):
        turn.intent = "set_temperature"
        turn.slots = {**turn.slots, "temperature": turn.slots.pop("brightness", None)}
        return await _set_temperature(turn)
    percent = turn.slots.get("brightness")
    if not isinstance(percent, int | float) or not 0 <= percent <= 100:
        return turn.reply(ReplyStatus.INVALID, _("Brightness must be between 0 and 100 percent."))
    found = _target(turn, _kinds(EntityKind.LIGHT))
    if isinstance(found, Reply):
        return found
    if percent == 0:
        return await _command(turn, found, "turn_off", {}, _("Turned off {name}."))
    level = max(1, round(percent * 255 / 100))
    done = _("Set {name} to {percent}%.").replace("{percent}", number(percent))
    return await _command(turn, found, "turn_on", {"brightness": level}, done)


async def _set_temperature(turn: Turn) -> Reply:
    _ = turn._
    if _level_is_for(turn, EntityKind.CLIMATE, EntityKind.LIGHT):
        turn.intent = "set_brightness"
        turn.slots = {**turn.slots, "brightness": turn.slots.pop("temperature", None)}
        return await _set_brightness(turn)
    degrees = turn.slots.get("temperature")
    if not isinstance(degrees, int | float) or not 4 <= degrees <= 40:
        return turn.reply(
            ReplyStatus.INVALID, _("The temperature must be between 4 and 40 degrees.")
        )
    found = _target(turn, _kinds(EntityKind.CLIMATE))
    if isinstance(found, Reply):
        return found
    done = _("Set {name} to {degrees} °C.").replace("{degrees}", number(degrees))
    return await _command(turn, found, "set_temperature", {"temperature": float(degrees)}, done)


def _reversible(
    kind: EntityKind, action: str, done: str, undo_label: str, undo_action: str
) -> Callable[[Turn], Awaitable[Reply]]:
    """A handler commanding one kind of entity, with a button doing the opposite."""

    async def handle(turn: Turn) -> Reply:
        found = _target(turn, _kinds(kind))
        if isinstance(found, Reply):
            return found
        return await _command(turn, found, action, {}, turn._(done), undo=(undo_label, undo_action))

    return handle


_open = _reversible(EntityKind.COVER, "open", N_("Opening {name}."), N_("Close"), "close")
_close = _reversible(EntityKind.COVER, "close", N_("Closing {name}."), N_("Open"), "open")
_lock = _reversible(EntityKind.LOCK, "lock", N_("Locked {name}."), N_("Unlock"), "unlock")
_unlock = _reversible(EntityKind.LOCK, "unlock", N_("Unlocked {name}."), N_("Lock"), "lock")


# ----- scenes -------------------------------------------------------------------------------


def _scene_candidates(turn: Turn) -> list[nm.Candidate]:
    scenes = turn.hub.scenes
    if scenes is None:
        return []
    return nm.named_candidates(((s.id, s.name) for s in scenes.scenes.values()), "scene")


async def _scene(turn: Turn) -> Reply:
    _ = turn._
    scenes = turn.hub.scenes
    if scenes is None or not scenes.scenes:
        return turn.reply(ReplyStatus.FAILED, _("No scenes are set up."))
    found = _resolve(turn, turn.slots.get("scene"), _scene_candidates(turn), "scene")
    if isinstance(found, Reply):
        return found
    scene = scenes.scenes[found.id]
    turn.target = f"scene:{scene.id}"
    if not may_control_all(turn.person, turn.hub.registry, scene.entities):
        return turn.refused(
            _("Sorry, you are not allowed to apply the scene {name}.").format(name=scene.name)
        )
    result = await scenes.apply(scene.id, context=turn.context)
    if result["ok"]:
        return turn.reply(
            ReplyStatus.DONE,
            _("Scene {name} applied.").format(name=scene.name),
            data=result,
        )
    failed = {k: v for k, v in result["entities"].items() if not v["ok"]}
    return turn.reply(
        ReplyStatus.FAILED,
        _("Scene {name}: {failed} of {total} did not work.").format(
            name=scene.name, failed=len(failed), total=len(result["entities"])
        ),
        fields=tuple(
            ReplyField(_label(turn, k), str(v["reason"]), inline=False) for k, v in failed.items()
        ),
        actions=(ReplyAction(_("Try again"), f"scene {scene.id}", "primary"),),
        data=result,
    )


# ----- status -------------------------------------------------------------------------------


def describe_state(turn: Turn, entity: Entity, state: State | None) -> str:
    """An entity's state in a few words: ``on (40%)``, ``21.5 °C``, ``heat, 21 °C → 22 °C``."""
    _ = turn._
    device = turn.hub.registry.devices.get(entity.device_id)
    if state is None:
        text = _("unknown")
    else:
        value, attrs = state.value, state.attributes
        text = turn.state_word(value)
        if entity.unit and isinstance(value, int | float):
            text = f"{number(value)} {entity.unit}"
        if entity.kind is EntityKind.LIGHT and value == "on" and "brightness" in attrs:
            brightness = attrs["brightness"]
            if isinstance(brightness, int | float):
                text += f" ({round(brightness * 100 / 255)}%)"
        if entity.kind is EntityKind.COVER and isinstance(attrs.get("position"), int | float):
            text += f" ({number(attrs['position'])}%)"
        if entity.kind is EntityKind.CLIMATE:
            current, target = attrs.get("current_temperature"), attrs.get("target_temperature")
            if isinstance(current, int | float):
                text += f", {number(current)} °C"
            if isinstance(target, int | float):
                text += " → " + f"{number(target)} °C"
    if device is not None and not device.available:
        text += " " + _("(offline)")
    return text


def _toggle_actions(turn: Turn, entities: Iterable[Entity]) -> tuple[ReplyAction, ...]:
    """Buttons that switch the given lights and switches the person may control."""
    _ = turn._
    registry = turn.hub.registry
    out: list[ReplyAction] = []
    for entity in entities:
        if entity.kind not in ON_OFF_KINDS:
            continue
        if not may_control(turn.person, entity, registry.devices.get(entity.device_id)):
            continue
        state = registry.states.get(entity.id)
        on = state is not None and state.value == "on"
        verb = _("Turn off {name}") if on else _("Turn on {name}")
        command = f"turn {'off' if on else 'on'} {entity.id}"
        out.append(ReplyAction(verb.format(name=_label(turn, entity.id)), command))
        if len(out) >= 10:
            break
    return tuple(out)


async def _status(turn: Turn) -> Reply:
    _ = turn._
    registry = turn.hub.registry
    if not turn.slots.get("target"):
        return _house_status(turn)
    candidates = nm.target_candidates(registry, lambda e: True)
    found = _resolve(turn, turn.slots.get("target"), candidates, "target")
    if isinstance(found, Reply):
        return found
    turn.target = found.id
    entities = [registry.entities[i] for i in found.entity_ids if i in registry.entities]
    if len(entities) == 1:
        entity = entities[0]
        state = registry.states.get(entity.id)
        fields: list[ReplyField] = []
        if state is not None:
            fields.append(ReplyField(_("Since"), turn.when(state.last_changed)))
            fields.append(ReplyField(_("Set by"), state.context.describe()))
        return turn.reply(
            ReplyStatus.ANSWER,
            _("{name} is {state}.").format(
                name=_label(turn, entity.id), state=describe_state(turn, entity, state)
            ),
            title=_label(turn, entity.id),
            fields=tuple(fields),
            actions=_toggle_actions(turn, entities),
            data={"entities": {entity.id: _state_data(state)}},
        )
    shown = entities[:LIST_LIMIT]
    fields = [
        ReplyField(_label(turn, e.id), describe_state(turn, e, registry.states.get(e.id)))
        for e in shown
    ]
    lights = [e for e in entities if e.kind is EntityKind.LIGHT]
    lit = sum(1 for e in lights if (s := registry.states.get(e.id)) and s.value == "on")
    if lights:
        text = _("{name}: {on} of {total} lights on.").format(
            name=found.label, on=lit, total=len(lights)
        )
    else:
        text = _("{name}: {count} things.").format(name=found.label, count=len(entities))
    if len(entities) > len(shown):
        text += " " + _("(showing {shown} of {total})").format(
            shown=len(shown), total=len(entities)
        )
    return turn.reply(
        ReplyStatus.ANSWER,
        text,
        title=found.label,
        fields=tuple(fields),
        actions=_toggle_actions(turn, entities),
        data={"entities": {e.id: _state_data(registry.states.get(e.id)) for e in entities}},
    )


def _state_data(state: State | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "state": state.value,
        "attributes": dict(state.attributes),
        "cause": state.context.describe(),
    }


def _house_status(turn: Turn) -> Reply:
    _ = turn._
    registry = turn.hub.registry
    states = registry.states
    fields: list[ReplyField] = []
    lights_on_total = 0
    for area in sorted(registry.areas.values(), key=lambda a: a.name):
        members = [
            e
            for d in registry.devices.values()
            if d.area == area.id
            for e in registry.entities_of(d.id)
        ]
        if not members:
            continue
        parts: list[str] = []
        lights = [e for e in members if e.kind is EntityKind.LIGHT]
        lit = [e for e in lights if (s := states.get(e.id)) and s.value == "on"]
        lights_on_total += len(lit)
        if lights:
            parts.append(_("{on}/{total} lights on").format(on=len(lit), total=len(lights)))
        temps = [
            float(s.value)
            for e in members
            if e.device_class == "temperature"
            and (s := states.get(e.id)) is not None
            and isinstance(s.value, int | float)
        ]
        if temps:
            parts.append(f"{number(round(sum(temps) / len(temps), 1))} °C")
        for e in members:
            if e.kind in (EntityKind.LOCK, EntityKind.COVER):
                current = states.get(e.id)
                word = turn.state_word(current.value if current is not None else None)
                parts.append(f"{_label(turn, e.id)} {word}")
        fields.append(ReplyField(area.name, ", ".join(parts) or "-"))
    offline = [d for d in registry.devices.values() if not d.available]
    text = _("{lights} lights on; {offline} of {devices} devices offline.").format(
        lights=lights_on_total, offline=len(offline), devices=len(registry.devices)
    )
    if offline:
        names = ", ".join(d.name for d in offline[:5])
        fields.append(ReplyField(_("Offline"), names + (" …" if len(offline) > 5 else ""), False))
    actions = tuple(
        ReplyAction(_("Status of {name}").format(name=a.name), f"status of area:{a.id}")
        for a in sorted(registry.areas.values(), key=lambda a: a.name)[:10]
    )
    return turn.reply(
        ReplyStatus.ANSWER,
        text,
        title=turn.hub.config.hub.name,
        fields=tuple(fields[:25]),
        actions=actions,
    )


# ----- why ----------------------------------------------------------------------------------


async def _why(turn: Turn) -> Reply:
    _ = turn._
    registry = turn.hub.registry
    candidates = [
        c
        for c in nm.target_candidates(registry, lambda e: True, include_kinds=False)
        if len(c.entity_ids) == 1
    ]
    found = _resolve(turn, turn.slots.get("target"), candidates, "target")
    if isinstance(found, Reply):
        return found
    entity_id = found.entity_ids[0]
    turn.target = entity_id
    entity = registry.entities[entity_id]
    state = registry.states.get(entity_id)
    name = _label(turn, entity_id)
    if state is None:
        return turn.reply(
            ReplyStatus.ANSWER, _("{name} has not reported a state yet.").format(name=name)
        )
    chain = state.context.chain()
    rules = turn.hub.rules.engine.rules if turn.hub.rules and turn.hub.rules.engine else {}
    fields: list[ReplyField] = []
    for depth, node in enumerate(chain):
        what = node.describe()
        if node.origin is Origin.RULE and node.source in rules:
            description = rules[node.source].rule.description
            if description:
                what += f" ({description})"
        heading = _("Set by") if depth == 0 else _("because of")
        fields.append(ReplyField(heading, f"{what}, {turn.when(node.created)}", inline=False))
    cause = " ← ".join(node.describe() for node in chain)
    text = _("{name} is {state} since {time}: {cause}.").format(
        name=name,
        state=describe_state(turn, entity, state),
        time=turn.when(state.last_changed),
        cause=cause,
    )
    return turn.reply(
        ReplyStatus.ANSWER,
        text,
        title=name,
        fields=tuple(fields),
        data={"entity_id": entity_id, "chain": [chain[0].to_dict()]},
    )


# ----- lists --------------------------------------------------------------------------------


async def _list(turn: Turn) -> Reply:
    _ = turn._
    what = turn.slots.get("what")
    registry = turn.hub.registry
    if what == "scenes":
        scenes = turn.hub.scenes
        items = list(scenes.scenes.values()) if scenes is not None else []
        usable = [s for s in items if may_control_all(turn.person, registry, s.entities)]
        if not items:
            return turn.reply(ReplyStatus.ANSWER, _("No scenes are set up."))
        return turn.reply(
            ReplyStatus.ANSWER,
            _("{count} scenes.").format(count=len(items)),
            title=_("Scenes"),
            fields=tuple(
                ReplyField(s.name, _("{count} things").format(count=len(s.entities)))
                for s in items[:LIST_LIMIT]
            ),
            actions=tuple(ReplyAction(s.name, f"scene {s.id}", "primary") for s in usable[:10]),
            data={"scenes": [s.id for s in items]},
        )
    if what == "rules":
        engine = turn.hub.rules.engine if turn.hub.rules is not None else None
        compiled = list(engine.rules.values()) if engine is not None else []
        if not compiled:
            return turn.reply(ReplyStatus.ANSWER, _("No rules are loaded."))
        admin = turn.person.role is Role.ADMIN
        fields = tuple(
            ReplyField(c.rule.id, _("enabled") if c.enabled else _("disabled"))
            for c in compiled[:LIST_LIMIT]
        )
        actions: tuple[ReplyAction, ...] = ()
        if admin:
            actions = tuple(
                ReplyAction(
                    (_("Disable {name}") if c.enabled else _("Enable {name}")).format(
                        name=c.rule.id
                    ),
                    f"{'disable' if c.enabled else 'enable'} rule {c.rule.id}",
                )
                for c in compiled[:10]
            )
        return turn.reply(
            ReplyStatus.ANSWER,
            _("{count} rules.").format(count=len(compiled)),
            title=_("Rules"),
            fields=fields,
            actions=actions,
            data={"rules": {c.rule.id: c.enabled for c in compiled}},
        )
    if what == "areas":
        areas = sorted(registry.areas.values(), key=lambda a: a.name)
        if not areas:
            return turn.reply(ReplyStatus.ANSWER, _("No areas are set up."))
        counts = {a.id: sum(1 for d in registry.devices.values() if d.area == a.id) for a in areas}
        return turn.reply(
            ReplyStatus.ANSWER,
            _("{count} areas.").format(count=len(areas)),
            title=_("Areas"),
            fields=tuple(
                ReplyField(a.name, _("{count} devices").format(count=counts[a.id])) for a in areas
            ),
            actions=tuple(
                ReplyAction(_("Status of {name}").format(name=a.name), f"status of area:{a.id}")
                for a in areas[:10]
            ),
            data={"areas": [a.id for a in areas]},
        )
    # devices (the default)
    devices = sorted(registry.devices.values(), key=lambda d: d.name)
    if not devices:
        return turn.reply(ReplyStatus.ANSWER, _("No devices have announced themselves yet."))
    shown = devices[:LIST_LIMIT]
    text = _("{count} devices.").format(count=len(devices))
    if len(devices) > len(shown):
        text += " " + _("(showing {shown} of {total})").format(shown=len(shown), total=len(devices))
    area_names = {a.id: a.name for a in registry.areas.values()}
    return turn.reply(
        ReplyStatus.ANSWER,
        text,
        title=_("Devices"),
        fields=tuple(
            ReplyField(
                d.name,
                f"{area_names.get(d.area or '', d.area or '-')}"
                + ("" if d.available else " " + _("(offline)")),
            )
            for d in shown
        ),
        data={"devices": [d.id for d in devices]},
    )


# ----- energy -------------------------------------------------------------------------------


async def _energy(turn: Turn) -> Reply:
    _ = turn._
    hub = turn.hub
    registry = hub.registry
    period = turn.slots.get("period") or "today"
    if period not in ("today", "week"):
        return turn.reply(ReplyStatus.INVALID, _("Ask for energy today or this week."))
    meters = [e for e in registry.entities.values() if e.kind is EntityKind.ENERGY_METER]
    if not meters:
        return turn.reply(ReplyStatus.ANSWER, _("No energy meters are known to the hub."))
    tz = _zone(hub)
    now = datetime.now(tz)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        start -= timedelta(days=start.weekday())
    since = start.timestamp()
    store = hub.rules.store if hub.rules is not None else None
    history_on = store is not None and hub.config.rules.history
    baselines: dict[str, float] = {}
    if history_on and store is not None:
        records = await store.history(since, kinds=["state"], keys=[m.id for m in meters])
        for record in records:
            if record.key in baselines:
                continue
            old, new = record.data.get("old"), record.data.get("value")
            first = old if isinstance(old, int | float) else new
            if isinstance(first, int | float):
                baselines[str(record.key)] = float(first)
    fields: list[ReplyField] = []
    total_used = 0.0
    total_meter = 0.0
    measured = 0
    for meter in sorted(meters, key=lambda m: _label(turn, m.id)):
        state = registry.states.get(meter.id)
        if state is None or not isinstance(state.value, int | float):
            continue
        value = float(state.value)
        total_meter += value
        used: float | None = None
        if meter.id in baselines:
            used = max(0.0, value - baselines[meter.id])
        elif history_on and state.last_changed < since:
            used = 0.0  # no change since the start of the period
        unit = meter.unit or "kWh"
        if used is not None:
            total_used += used
            measured += 1
            fields.append(ReplyField(_label(turn, meter.id), f"{number(round(used, 3))} {unit}"))
        else:
            reading = _("meter at {value} {unit}").format(value=number(round(value, 3)), unit=unit)
            fields.append(ReplyField(_label(turn, meter.id), reading))
    when = _("today") if period == "today" else _("this week")
    if measured:
        text = _("Energy used {when}: {total} kWh, from {count} meters.").format(
            when=when, total=number(round(total_used, 3)), count=measured
        )
        if period == "week" and hub.config.rules.history_keep < 7 * 86400:
            text += " " + _(
                "The hub keeps history for {days} days only, so earlier days may be missing."
            ).format(days=number(round(hub.config.rules.history_keep / 86400, 1)))
    elif history_on:
        text = _(
            "No energy readings were recorded {when} yet; the meters read {total} kWh in total."
        ).format(when=when, total=number(round(total_meter, 3)))
    else:
        text = _(
            "The hub keeps no history of the energy meters, so I cannot say what was used "
            "{when}; the meters read {total} kWh in total."
        ).format(when=when, total=number(round(total_meter, 3)))
    return turn.reply(
        ReplyStatus.ANSWER,
        text,
        title=_("Energy {when}").format(when=when),
        fields=tuple(fields[:25]),
        data={"period": period, "since": since, "used_kwh": total_used if measured else None},
    )


# ----- speed test, rules, named commands, help ----------------------------------------------


async def _speedtest(turn: Turn) -> Reply:
    return turn.reply(
        ReplyStatus.FAILED,
        turn._("Speed tests are not set up: no plug-in offers them."),
    )


def _rule_candidates(turn: Turn) -> list[nm.Candidate]:
    engine = turn.hub.rules.engine if turn.hub.rules is not None else None
    if engine is None:
        return []
    return nm.named_candidates(
        ((c.rule.id, c.rule.description or c.rule.id) for c in engine.rules.values()), "rule"
    )


async def _rule_enable(turn: Turn) -> Reply:
    return await _rule_set(turn, True)


async def _rule_disable(turn: Turn) -> Reply:
    return await _rule_set(turn, False)


async def _rule_set(turn: Turn, enabled: bool) -> Reply:
    _ = turn._
    service = turn.hub.rules
    if service is None or service.engine is None or not service.engine.rules:
        return turn.reply(ReplyStatus.FAILED, _("No rules are loaded."))
    found = _resolve(turn, turn.slots.get("rule"), _rule_candidates(turn), "rule")
    if isinstance(found, Reply):
        return found
    turn.target = f"rule:{found.id}"
    service.engine.set_enabled(found.id, enabled)
    service.publish_status()
    text = _("Rule {name} enabled.") if enabled else _("Rule {name} disabled.")
    undo = f"{'disable' if enabled else 'enable'} rule {found.id}"
    label = _("Disable") if enabled else _("Enable")
    return turn.reply(
        ReplyStatus.DONE,
        text.format(name=found.id),
        actions=(ReplyAction(label, undo),),
        data={"rule": found.id, "enabled": enabled},
    )


def named_commands(hub: Any) -> list[str]:
    """The named commands the loaded rules listen to (``command:`` triggers)."""
    from hub.rules.model import CommandTrigger

    engine = hub.rules.engine if hub.rules is not None else None
    if engine is None:
        return []
    found = {
        trigger.name
        for compiled in engine.rules.values()
        if compiled.enabled
        for trigger in compiled.rule.triggers
        if isinstance(trigger, CommandTrigger)
    }
    return sorted(found)


async def _run(turn: Turn) -> Reply:
    _ = turn._
    service = turn.hub.rules
    available = named_commands(turn.hub)
    if service is None or service.engine is None or not available:
        return turn.reply(ReplyStatus.FAILED, _("No rule defines a named command."))
    candidates = nm.named_candidates(((n, n.replace("_", " ")) for n in available), "command")
    found = _resolve(turn, turn.slots.get("command"), candidates, "command")
    if isinstance(found, Reply):
        return found
    turn.target = f"command:{found.id}"
    data = turn.slots.get("data")
    extra: dict[str, Any] = {}
    if isinstance(data, Mapping):
        if len(data) > 20 or not all(isinstance(k, str) and k.isidentifier() for k in data):
            return turn.reply(ReplyStatus.INVALID, _("Some details of that command are not valid."))
        extra = {k: v for k, v in data.items() if k not in ("platform", "name")}
    elif data is not None:
        extra = {"data": data}
    count = service.engine.fire_command(found.id, turn.context, **extra)
    if count == 0:
        return turn.reply(
            ReplyStatus.FAILED, _("No rule listens to {name} now.").format(name=found.id)
        )
    return turn.reply(
        ReplyStatus.DONE,
        _("Started {name}.").format(name=found.id),
        data={"command": found.id, "rules": count},
    )


async def _help(turn: Turn) -> Reply:
    _ = turn._
    examples = [
        (_("Switch"), "turn on the kitchen light"),
        (_("Dim"), "set the living room light to 40%"),
        (_("Scenes"), "scene movie"),
        (_("Status"), "status of the kitchen"),
        (_("Why"), "why is the hallway light on"),
        (_("Lists"), "list devices"),
        (_("Energy"), "energy today"),
    ]
    if turn.language == "de":
        examples = [
            (_("Switch"), "schalte das Küchenlicht an"),
            (_("Dim"), "dimme das Wohnzimmerlicht auf 40 %"),
            (_("Scenes"), "Szene movie"),
            (_("Status"), "Status der Küche"),
            (_("Why"), "warum ist das Küchenlicht an"),
            (_("Lists"), "zeige alle Geräte"),
            (_("Energy"), "Energie heute"),
        ]
    return turn.reply(
        ReplyStatus.ANSWER,
        _("Tell me what to do in plain words. For example:"),
        title=_("Help"),
        fields=tuple(ReplyField(name, example, inline=False) for name, example in examples),
        actions=(
            ReplyAction(_("Status"), "status"),
            ReplyAction(_("Scenes"), "list scenes"),
            ReplyAction(_("Devices"), "list devices"),
        ),
    )


HANDLERS: dict[str, Callable[[Turn], Awaitable[Reply]]] = {
    "turn_on": _turn_on,
    "turn_off": _turn_off,
    "toggle": _toggle,
    "set_brightness": _set_brightness,
    "set_temperature": _set_temperature,
    "open": _open,
    "close": _close,
    "lock": _lock,
    "unlock": _unlock,
    "scene": _scene,
    "status": _status,
    "list": _list,
    "energy": _energy,
    "speedtest": _speedtest,
    "rule_enable": _rule_enable,
    "rule_disable": _rule_disable,
    "why": _why,
    "run": _run,
    "help": _help,
}


# ----- autocomplete -------------------------------------------------------------------------


def completions(
    layer: CommandLayer, kind: str, prefix: str, person: Person, limit: int
) -> list[Completion]:
    """Ranked names of what ``person`` may use, for a partly typed ``prefix``."""
    hub = layer.hub
    registry = hub.registry
    limit = max(1, min(int(limit), 100))
    prefix = prefix[:MAX_SLOT] if isinstance(prefix, str) else ""

    def usable(entity: Entity) -> bool:
        return may_control(person, entity, registry.devices.get(entity.device_id))

    candidates: list[nm.Candidate]
    if kind in ("target", "entity", "area"):
        pool = nm.target_candidates(registry, usable, include_kinds=False)
        wanted = {"target": None, "entity": ("entity",), "area": ("area",)}[kind]
        candidates = [c for c in pool if wanted is None or c.kind in wanted]
    elif kind == "scene":
        scenes = hub.scenes.scenes.values() if hub.scenes is not None else []
        candidates = nm.named_candidates(
            ((s.id, s.name) for s in scenes if may_control_all(person, registry, s.entities)),
            "scene",
        )
    elif kind == "rule":
        if not may_intent(person, "rule_enable"):
            return []
        engine = hub.rules.engine if hub.rules is not None else None
        rules = engine.rules.values() if engine is not None else []
        candidates = nm.named_candidates(((c.rule.id, c.rule.id) for c in rules), "rule")
    elif kind == "command":
        if not may_intent(person, "run"):
            return []
        candidates = nm.named_candidates(((n, n) for n in named_commands(hub)), "command")
    else:
        return []
    query = nm.normalise(prefix) if prefix.strip() else ""
    if not query:
        ordered = sorted(candidates, key=lambda c: (c.label.casefold(), c.id))
    else:
        scored = []
        for candidate in candidates:
            best = 0.0
            for name in candidate.names:
                if name.startswith(query):
                    best = max(best, 100.0 + len(query) / max(len(name), 1))
                elif any(word.startswith(query) for word in name.split()):
                    best = max(best, 95.0)
                else:
                    best = max(best, nm.score(query, name), float(_partial(query, name)))
            if best >= 60:
                scored.append((best, candidate))
        scored.sort(key=lambda pair: (-pair[0], pair[1].label.casefold()))
        ordered = [c for _, c in scored]
    return [Completion(c.label[:100], c.id[:100]) for c in ordered[:limit]]


def _partial(query: str, name: str) -> float:
    from rapidfuzz import fuzz

    return float(fuzz.partial_ratio(query, name)) if len(query) >= 3 else 0.0
