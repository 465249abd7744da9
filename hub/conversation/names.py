"""Matching what a person called something against the live registry, fuzzily.

A name is matched against entities, devices, areas and groups (and, separately, scenes, rules
and named commands) by id and by name. ``"the kitchen lights"`` finds the entity named
``Kitchen light``; ``"kitchen"`` plus a kind word (``"kitchen lights"``) also means the lights
of the area; ``"lights"`` alone means every light. A clear winner is used; near ties come back
as several matches so that the layer can ask which one was meant.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz

from hub.model import Device, Entity, EntityKind, Registry

# A match needs at least this score (0-100) ...
MIN_SCORE = 75.0
# ... and must beat the runner-up by this much to be taken without asking.
CLEAR_MARGIN = 6.0
# Below MIN_SCORE, names scoring this much are offered as suggestions.
SUGGEST_SCORE = 50.0

_ARTICLES = frozenset(
    {"the", "a", "an", "my", "our", "all", "der", "die", "das", "den", "dem", "des", "alle"}
)
_NOT_WORD = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACES = re.compile(r"\s+")

# Kind words: "kitchen lights" is the kitchen's lights.
KIND_WORDS: Mapping[str, EntityKind] = {
    "light": EntityKind.LIGHT,
    "lights": EntityKind.LIGHT,
    "lamp": EntityKind.LIGHT,
    "lamps": EntityKind.LIGHT,
    "switch": EntityKind.SWITCH,
    "switches": EntityKind.SWITCH,
    "plug": EntityKind.SWITCH,
    "plugs": EntityKind.SWITCH,
    "blind": EntityKind.COVER,
    "blinds": EntityKind.COVER,
    "cover": EntityKind.COVER,
    "covers": EntityKind.COVER,
    "shutters": EntityKind.COVER,
    "thermostat": EntityKind.CLIMATE,
    "thermostats": EntityKind.CLIMATE,
    "lock": EntityKind.LOCK,
    "locks": EntityKind.LOCK,
}

KIND_PLURAL: Mapping[EntityKind, str] = {
    EntityKind.LIGHT: "lights",
    EntityKind.SWITCH: "switches",
    EntityKind.COVER: "blinds",
    EntityKind.CLIMATE: "thermostats",
    EntityKind.LOCK: "locks",
}


def normalise(text: str) -> str:
    """Lower case, ids' ``_`` as spaces, no punctuation, no leading articles."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("_", " ")
    text = _SPACES.sub(" ", _NOT_WORD.sub(" ", text)).strip()
    words = text.split(" ")
    while len(words) > 1 and words[0] in _ARTICLES:
        words.pop(0)
    return " ".join(words)


def translate_words(text: str, words: Mapping[str, str]) -> str:
    """``text`` (normalised) with each word found in ``words`` replaced."""
    if not words:
        return text
    return " ".join(words.get(word, word) for word in text.split(" "))


@dataclass(frozen=True, slots=True)
class Candidate:
    """Something a name may mean: an entity, device, area, group, scene, rule or command."""

    kind: str  # "entity", "device", "area", "group", "area_kind", "all_kind", "scene", ...
    id: str  # what the layer sends back when the person picks it (an id or "area:kind")
    label: str  # how people see it
    names: tuple[str, ...]  # normalised names it answers to
    entity_ids: tuple[str, ...] = ()  # the entities it stands for (targets only)


@dataclass(frozen=True, slots=True)
class Match:
    """A candidate and how well it matched (0-100)."""

    candidate: Candidate
    score: float


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of matching one name: a winner, a near tie, or nothing close."""

    best: Candidate | None
    ties: tuple[Match, ...] = ()  # set when the name is ambiguous
    suggestions: tuple[Match, ...] = ()  # set when nothing matched well enough


def entity_label(entity: Entity, device: Device | None) -> str:
    """How people call an entity: ``Kitchen light``, ``Kitchen plug power``."""
    if device is None:
        return entity.name
    own = entity.name.casefold()
    if own in device.name.casefold() or len(device.entity_ids) == 1:
        return device.name
    if own.startswith(device.name.casefold()):
        return entity.name  # adapters that already name it "Desk plug energy"
    return f"{device.name} {entity.name.lower()}"


def score(query: str, name: str) -> float:
    """How well ``query`` matches ``name`` (both normalised), 0-100."""
    if query == name:
        return 100.0
    return max(fuzz.ratio(query, name), fuzz.token_sort_ratio(query, name))


def rank(
    queries: Sequence[str], candidates: Iterable[Candidate], *, floor: float = SUGGEST_SCORE
) -> list[Match]:
    """Every candidate scoring at least ``floor`` for any of ``queries``, best first."""
    found: list[Match] = []
    for candidate in candidates:
        best = max((score(q, n) for q in queries if q for n in candidate.names), default=0.0)
        if best >= floor:
            found.append(Match(candidate, best))
    found.sort(key=lambda m: (-m.score, _specificity(m.candidate), m.candidate.label))
    return found


def _specificity(candidate: Candidate) -> int:
    order = ("entity", "device", "group", "area_kind", "area", "all_kind")
    return order.index(candidate.kind) if candidate.kind in order else len(order)


def resolve(
    raw: str, candidates: Iterable[Candidate], words: Mapping[str, str] | None = None
) -> Resolution:
    """Pick what ``raw`` names among ``candidates``."""
    pool = list(candidates)
    exact = [c for c in pool if c.id == raw.strip()]
    if exact:
        return Resolution(exact[0])
    query = normalise(raw)
    queries = [query]
    translated = translate_words(query, words or {})
    if translated != query:
        queries.append(translated)
    ranked = _merge_same_effect(rank(queries, pool))
    good = [m for m in ranked if m.score >= MIN_SCORE]
    if not good:
        return Resolution(None, suggestions=tuple(ranked[:3]))
    top = good[0]
    rivals = [m for m in good[1:] if m.score > top.score - CLEAR_MARGIN]
    if not rivals:
        return Resolution(top.candidate)
    return Resolution(None, ties=(top, *rivals[:7]))


def _merge_same_effect(ranked: list[Match]) -> list[Match]:
    """Drop candidates that mean the same entities as a better (or more specific) one."""
    seen: set[tuple[str, ...]] = set()
    out: list[Match] = []
    for match in ranked:
        key = match.candidate.entity_ids
        if key:
            if key in seen:
                continue
            seen.add(key)
        out.append(match)
    return out


# ----- candidates from the registry -----------------------------------------------------------


def target_candidates(
    registry: Registry,
    accept: Callable[[Entity], bool],
    *,
    include_kinds: bool = True,
    area_accept: Callable[[Entity], bool] | None = None,
) -> list[Candidate]:
    """Entities, devices, groups and areas (and "<area> lights") with an accepted entity.

    ``area_accept`` narrows what a whole area means (switching "the kitchen" off means its
    lights, not its fridge).
    """
    whole_area = area_accept or accept
    out: list[Candidate] = []
    devices = registry.devices
    for entity in registry.entities.values():
        if not accept(entity):
            continue
        device = devices.get(entity.device_id)
        label = entity_label(entity, device)
        entity_names = {normalise(label), normalise(entity.id), normalise(entity.name)}
        if device is not None:
            entity_names.add(normalise(f"{device.name} {entity.name}"))
        out.append(Candidate("entity", entity.id, label, tuple(sorted(entity_names)), (entity.id,)))
    for device in devices.values():
        ids = tuple(e.id for e in registry.entities_of(device.id) if accept(e))
        if ids:
            names = (normalise(device.name), normalise(device.id))
            out.append(Candidate("device", device.id, device.name, names, ids))
    for group in registry.groups.values():
        ids = tuple(e.id for e in registry.group_entities(group.id) if accept(e))
        if ids:
            names = (normalise(group.name), normalise(group.id))
            out.append(Candidate("group", f"group:{group.id}", group.name, names, ids))
    for area in registry.areas.values():
        members = [
            e for d in devices.values() if d.area == area.id for e in registry.entities_of(d.id)
        ]
        ids = tuple(e.id for e in members if accept(e) and whole_area(e))
        names = (normalise(area.name), normalise(area.id))
        if ids:
            out.append(Candidate("area", f"area:{area.id}", area.name, names, ids))
        if include_kinds:
            for kind, plural in KIND_PLURAL.items():
                kind_ids = tuple(e.id for e in members if e.kind is kind and accept(e))
                if kind_ids:
                    kind_names = tuple(
                        f"{n} {word}" for n in names for word, k in KIND_WORDS.items() if k is kind
                    )
                    label = f"{area.name} {plural}"
                    out.append(
                        Candidate(
                            "area_kind", f"area:{area.id}:{kind}", label, kind_names, kind_ids
                        )
                    )
    if include_kinds:
        for kind, plural in KIND_PLURAL.items():
            kind_ids = tuple(
                e.id for e in registry.entities.values() if e.kind is kind and accept(e)
            )
            if kind_ids:
                kind_names = tuple(w for w, k in KIND_WORDS.items() if k is kind)
                out.append(
                    Candidate("all_kind", f"all:{kind}", f"all {plural}", kind_names, kind_ids)
                )
    return out


def named_candidates(items: Iterable[tuple[str, str]], kind: str) -> list[Candidate]:
    """Candidates for scenes, rules or commands given as (id, name) pairs."""
    return [
        Candidate(kind, ident, name or ident, tuple({normalise(name or ident), normalise(ident)}))
        for ident, name in items
    ]
