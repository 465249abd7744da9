"""Plain words into structured intents, with hassil sentence templates per language.

Why hassil with wildcard slots rather than slot lists of every name: hassil is good at the
sentence (word order, optional words, alternatives, numbers, per-language templates kept as
data), while matching names must be fuzzy, aware of what the person may use, and able to ask
back on a near tie — which a slot list's exact match cannot do. So the templates capture the
name as free words, and :mod:`hub.conversation.names` matches it against the live registry.

Input is checked before it reaches the parser: empty, over :data:`MAX_TEXT` characters, or
with control or formatting characters (bidi overrides, zero-width tricks) is refused.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hassil import Intents, recognize_best

_LOGGER = logging.getLogger(__name__)

SENTENCES_DIR = Path(__file__).resolve().parent / "sentences"
MAX_TEXT = 500  # characters; a command is a sentence, not an essay
MAX_SLOT = 200  # characters of one structured slot value

INTENTS = (
    "turn_on",
    "turn_off",
    "toggle",
    "set_brightness",
    "set_temperature",
    "open",
    "close",
    "lock",
    "unlock",
    "scene",
    "status",
    "list",
    "energy",
    "speedtest",
    "rule_enable",
    "rule_disable",
    "why",
    "run",
    "help",
)

_ALLOWED_CONTROLS = frozenset("\t\n\r")


class BadInput(ValueError):
    """The text cannot be a command; ``code`` says why ("empty", "too_long", "control")."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def clean_text(text: Any) -> str:
    """Return ``text`` normalised to one line; raise BadInput if it cannot be a command."""
    if not isinstance(text, str):
        raise BadInput("empty")
    if len(text) > MAX_TEXT:
        raise BadInput("too_long")
    for char in text:
        if char in _ALLOWED_CONTROLS:
            continue
        if unicodedata.category(char)[0] == "C":  # Cc, Cf, Cs, Co, Cn
            raise BadInput("control")
    cleaned: str = " ".join(unicodedata.normalize("NFKC", text).split())
    if not cleaned:
        raise BadInput("empty")
    return cleaned


@dataclass(frozen=True, slots=True)
class Parsed:
    """An intent with its slots, and the language whose templates matched."""

    intent: str
    slots: Mapping[str, Any] = field(default_factory=dict)
    language: str = "en"


@dataclass(frozen=True, slots=True)
class Language:
    """One language's templates and its words for registry names."""

    code: str
    intents: Intents
    words: Mapping[str, str]


@functools.cache
def load_language(code: str) -> Language | None:
    """The sentence templates of ``code`` (None when there are none)."""
    path = SENTENCES_DIR / f"{code}.yaml"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    words = {str(k).casefold(): str(v) for k, v in (data.pop("words", None) or {}).items()}
    return Language(code, Intents.from_dict(data), words)


def languages() -> tuple[str, ...]:
    """Every language with sentence templates."""
    return tuple(sorted(path.stem for path in SENTENCES_DIR.glob("*.yaml")))


def parse(text: str, preferred: str = "en") -> Parsed | None:
    """Recognise ``text`` (already cleaned) in the preferred language first, then the others."""
    order = [preferred, *(code for code in languages() if code != preferred)]
    for code in order:
        language = load_language(code)
        if language is None:
            continue
        try:
            result = recognize_best(text, language.intents)
        except Exception:  # hassil must never turn a strange sentence into a crash
            _LOGGER.exception("the %s parser failed on %r", code, text[:80])
            continue
        if result is None or result.intent.name not in INTENTS:
            continue
        slots: dict[str, Any] = {}
        for name, entity in result.entities.items():
            value = entity.value
            slots[name] = value.strip() if isinstance(value, str) else value
        return Parsed(result.intent.name, slots, code)
    return None


def words_for(codes: Sequence[str]) -> dict[str, str]:
    """The name words of the given languages, merged (for matching names said in them)."""
    merged: dict[str, str] = {}
    for code in codes:
        language = load_language(code)
        if language is not None:
            merged.update(language.words)
    return merged
