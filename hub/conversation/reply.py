"""The one result object every front-end renders in its own form.

CONTRACT: front-ends render these fields and nothing else; the command layer fills them,
already translated into the person's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ReplyStatus(StrEnum):
    """How a request ended."""

    DONE = "done"  # a command ran and was confirmed (or a scene applied, a rule toggled)
    ANSWER = "answer"  # a question answered (status, energy, why, list)
    ASK = "ask"  # ambiguous: ``choices`` say what the person may have meant
    REFUSED = "refused"  # not allowed (stranger, role, limits); audited
    FAILED = "failed"  # allowed and understood, but it did not work (offline, timed out)
    NOT_UNDERSTOOD = "not_understood"  # no command matched; ``choices`` may suggest some
    INVALID = "invalid"  # understood but bad (value out of range, empty, too long)


@dataclass(frozen=True, slots=True)
class ReplyAction:
    """A button or a choice: pressing it sends ``command`` back as a new request's text."""

    label: str
    command: str
    style: str = "secondary"  # "primary", "secondary", "danger", "success"


@dataclass(frozen=True, slots=True)
class ReplyField:
    """One detail line (a Discord embed field, an e-mail table row, an SMS line)."""

    name: str
    value: str
    inline: bool = True


@dataclass(frozen=True, slots=True)
class Reply:
    """What a request did or answered."""

    status: ReplyStatus
    text: str  # the whole answer in one or a few sentences; an SMS sends this
    title: str = ""  # a heading (embed title, e-mail subject)
    fields: tuple[ReplyField, ...] = ()
    choices: tuple[ReplyAction, ...] = ()  # ask-back options or suggestions
    actions: tuple[ReplyAction, ...] = ()  # follow-up buttons (scene buttons, toggles)
    data: Mapping[str, Any] = field(default_factory=dict)  # structured result for scripts/API
    language: str = "en"

    @property
    def ok(self) -> bool:
        """Whether the request did what was asked (or answered it)."""
        return self.status in (ReplyStatus.DONE, ReplyStatus.ANSWER)

    def plain(self, limit: int | None = None) -> str:
        """Text form: the answer, its fields as lines and its choices numbered; cut to ``limit``."""
        lines = [self.text]
        lines.extend(f"{f.name}: {f.value}" for f in self.fields)
        lines.extend(f"{n}. {c.label}" for n, c in enumerate(self.choices, 1))
        text = "\n".join(line for line in lines if line)
        if limit is not None and len(text) > limit:
            text = text[: max(0, limit - 1)].rstrip() + "…"
        return text


def reply_to_dict(reply: Reply) -> dict[str, Any]:
    """A JSON-ready form of a reply (for ``hub ask --json`` and the MQTT request topic)."""
    return {
        "status": reply.status.value,
        "ok": reply.ok,
        "text": reply.text,
        "title": reply.title,
        "fields": [{"name": f.name, "value": f.value, "inline": f.inline} for f in reply.fields],
        "choices": [
            {"label": c.label, "command": c.command, "style": c.style} for c in reply.choices
        ],
        "actions": [
            {"label": a.label, "command": a.command, "style": a.style} for a in reply.actions
        ],
        "data": dict(reply.data),
        "language": reply.language,
    }


def reply_from_dict(data: Any) -> Reply:
    """Rebuild a reply from :func:`reply_to_dict` output (raises ValueError if malformed)."""
    if not isinstance(data, dict):
        raise ValueError("a reply must be a JSON object")
    try:
        return Reply(
            status=ReplyStatus(data["status"]),
            text=str(data.get("text", "")),
            title=str(data.get("title", "")),
            fields=tuple(
                ReplyField(str(f["name"]), str(f["value"]), bool(f.get("inline", True)))
                for f in data.get("fields", ())
            ),
            choices=tuple(
                ReplyAction(str(c["label"]), str(c["command"]), str(c.get("style", "secondary")))
                for c in data.get("choices", ())
            ),
            actions=tuple(
                ReplyAction(str(a["label"]), str(a["command"]), str(a.get("style", "secondary")))
                for a in data.get("actions", ())
            ),
            data=dict(data.get("data") or {}),
            language=str(data.get("language", "en")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed reply: {exc}") from exc
