"""The router's own texts (device offline, command failed, digests), in one place.

Each text is an English gettext message id with ``{name}`` fields; :func:`render` translates
it into the recipient's language through the command layer's catalogs when they exist, and
falls back to English.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hub.conversation.i18n import gettext_for

_LOGGER = logging.getLogger(__name__)

# (title, text) per text id; the strings are the gettext message ids.
TEXTS: dict[str, tuple[str, str]] = {
    "device_offline": ("{device} is offline", "{device} has been offline since {since}."),
    "device_online": ("{device} is back online", "{device} is back online."),
    "command_failed": (
        "A command to {target} failed",
        "A command to {target} failed: {reason} (asked by {who}).",
    ),
    "speedtest_below_threshold": (
        "Internet speed is low",
        "The speed test measured {download} Mbit/s down and {upload} Mbit/s up "
        "(threshold {threshold} Mbit/s).",
    ),
    "custom_event": ("{event}", "{details}"),
    "digest": (
        "{count} notifications during quiet hours",
        "While quiet hours were on:\n{lines}",
    ),
    "suppressed": (
        "{count} messages suppressed",
        "{count} notifications were not sent because too many came at once.",
    ),
}


class _SafeFields(dict[str, Any]):
    """Format fields: a missing one prints as "?" instead of raising."""

    def __missing__(self, key: str) -> str:
        return "?"


def render(text_id: str, language: str, params: Mapping[str, Any]) -> tuple[str, str]:
    """The (title, text) of ``text_id`` in ``language``, with ``params`` filled in."""
    title, text = TEXTS[text_id]
    if language != "en":
        try:
            translate = gettext_for(language)  # the command layer's catalog: one for all texts
            title, text = translate(title), translate(text)
        except Exception:  # a broken catalog must not stop a notification
            _LOGGER.exception("translating notification %r into %r failed", text_id, language)
    fields = _SafeFields({key: _shown(value) for key, value in params.items()})
    return title.format_map(fields), text.format_map(fields)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return "?" if value is None else str(value)
