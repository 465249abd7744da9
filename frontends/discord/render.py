"""Replies and alerts as Discord embeds with buttons (pure: no network, easy to test).

Discord's limits are enforced here, so a long answer is cut with an ellipsis rather than
refused by Discord: embed title 256 characters, description 4096, 25 fields of 256/1024,
6000 in all; 25 buttons in 5 rows, labels of 80, ``custom_id`` of 100.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Iterable

from frontends.discord._discord import discord
from hub.api import Delivery, Reply, ReplyAction, ReplyStatus

TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
EMBED_TOTAL_MAX = 6000
BUTTONS_MAX = 25
LABEL_MAX = 80
CUSTOM_ID_MAX = 100
# A button's custom_id carries its command ("hub:scene movie"); a longer command is kept here
# under a random reference ("hub#<ref>"), bounded so a flood of replies cannot grow it forever.
REFERENCES_MAX = 10_000
COMMAND_PREFIX = "hub:"
REFERENCE_PREFIX = "hub#"
BUTTON_TEMPLATE = r"hub(?P<kind>[:#])(?P<value>.+)"

COLOURS = {
    ReplyStatus.DONE: discord.Colour.green(),
    ReplyStatus.ANSWER: discord.Colour.blurple(),
    ReplyStatus.ASK: discord.Colour.gold(),
    ReplyStatus.REFUSED: discord.Colour.red(),
    ReplyStatus.FAILED: discord.Colour.dark_red(),
    ReplyStatus.NOT_UNDERSTOOD: discord.Colour.light_grey(),
    ReplyStatus.INVALID: discord.Colour.orange(),
}
STYLES = {
    "primary": discord.ButtonStyle.primary,
    "secondary": discord.ButtonStyle.secondary,
    "success": discord.ButtonStyle.success,
    "danger": discord.ButtonStyle.danger,
}
ALERT_COLOUR = discord.Colour.orange()
URGENT_COLOUR = discord.Colour.red()
RESOLVED_COLOUR = discord.Colour.green()


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when something was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


class ButtonCommands:
    """Maps buttons to commands: in the ``custom_id`` when it fits, else by a reference."""

    def __init__(self, limit: int = REFERENCES_MAX) -> None:
        self._limit = limit
        self._refs: OrderedDict[str, str] = OrderedDict()

    def custom_id(self, command: str) -> str:
        """The ``custom_id`` of a button that sends ``command``."""
        if len(COMMAND_PREFIX) + len(command) <= CUSTOM_ID_MAX:
            return COMMAND_PREFIX + command
        ref = secrets.token_urlsafe(12)
        self._refs[ref] = command
        while len(self._refs) > self._limit:
            self._refs.popitem(last=False)
        return REFERENCE_PREFIX + ref

    def command(self, kind: str, value: str) -> str | None:
        """The command behind a pressed button (None: a reference this hub no longer has)."""
        if kind == ":":
            return value
        return self._refs.get(value)


def reply_embed(reply: Reply) -> discord.Embed:
    """The embed of a reply: title, text, fields, colour by status."""
    embed = discord.Embed(
        title=cut(reply.title, TITLE_MAX) or None,
        description=cut(reply.text, DESCRIPTION_MAX) or None,
        colour=COLOURS.get(reply.status, discord.Colour.default()),
    )
    used = len(embed.title or "") + len(embed.description or "")
    for field in reply.fields[:FIELDS_MAX]:
        name = cut(field.name, FIELD_NAME_MAX) or "\u200b"  # Discord refuses an empty name
        value = cut(field.value, FIELD_VALUE_MAX) or "\u200b"
        if used + len(name) + len(value) > EMBED_TOTAL_MAX:
            break
        used += len(name) + len(value)
        embed.add_field(name=name, value=value, inline=field.inline)
    return embed


def buttons(
    actions: Iterable[ReplyAction], commands: ButtonCommands
) -> list[discord.ui.Button[discord.ui.View]]:
    """Buttons for choices and actions (at most 25; the same command only once)."""
    out: list[discord.ui.Button[discord.ui.View]] = []
    seen: set[str] = set()
    for action in actions:
        if not action.command or action.command in seen or len(out) >= BUTTONS_MAX:
            continue
        seen.add(action.command)
        out.append(
            discord.ui.Button(
                label=cut(action.label or action.command, LABEL_MAX),
                style=STYLES.get(action.style, discord.ButtonStyle.secondary),
                custom_id=commands.custom_id(action.command),
            )
        )
    return out


def reply_view(actions: Iterable[ReplyAction], commands: ButtonCommands) -> discord.ui.View | None:
    """A view holding the buttons, or None when there are none."""
    items = buttons(actions, commands)
    if not items:
        return None
    # timeout=None: the buttons stay usable; presses are dispatched by their custom_id.
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    return view


def reply_actions(reply: Reply) -> tuple[ReplyAction, ...]:
    """The buttons a reply gets: its choices first, then its follow-up actions."""
    return reply.choices + reply.actions


def delivery_embed(delivery: Delivery) -> discord.Embed:
    """The embed of an alert."""
    if delivery.resolved:
        colour = RESOLVED_COLOUR
    elif delivery.urgent:
        colour = URGENT_COLOUR
    else:
        colour = ALERT_COLOUR
    return discord.Embed(
        title=cut(delivery.title, TITLE_MAX) or None,
        description=cut(delivery.text, DESCRIPTION_MAX) or None,
        colour=colour,
    )


def thread_name(delivery: Delivery) -> str:
    """The name of an incident's thread (or forum post): its title, else its key."""
    name = (delivery.title or delivery.key or "alert").replace("\n", " ").strip()
    return cut(name, 100) or "alert"


def embed_text(embed: discord.Embed) -> str:
    """The text an embed shows (title, description, fields), for logs and tests."""
    lines = [embed.title or "", embed.description or ""]
    lines.extend(f"{field.name}: {field.value}" for field in embed.fields)
    return "\n".join(line for line in lines if line)
