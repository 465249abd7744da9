"""Areas the hub makes itself, from a device's own suggestion.

Firmware can say where a device is: Home Assistant discovery's ``suggested_area``, a
Zigbee2MQTT device's discovery override. Such a name is matched to an area the hub already
has (by name, then by the id it would make), and only a new place becomes a new area, stored
like the others. hub.yaml's ``areas:`` and ``devices:`` stay the user's word: a configured
area keeps its name, and a device hub.yaml places is never moved by a suggestion.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from typing import TYPE_CHECKING

from hub.model import Area, Registry, check_id

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

#: Longest area name taken from a device (a room name, not a paragraph).
MAX_NAME = 100
_NOT_ID = re.compile(r"[^a-z0-9]+")
_SPACES = re.compile(r"\s+")


def clean_name(name: str) -> str:
    """``name`` with its spaces collapsed; ValueError when it cannot name an area."""
    text = _SPACES.sub(" ", name).strip()
    if not text:
        raise ValueError("an area name must not be empty")
    if len(text) > MAX_NAME:
        raise ValueError(f"an area name must be at most {MAX_NAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise ValueError(f"area name {text[:40]!r} holds control characters")
    return text


def area_id(name: str) -> str:
    """The id an area called ``name`` gets: "Living Room" -> ``living_room``, "Küche" ->
    ``kuche``; a name with no Latin letters or digits gets a stable ``area_<hash>``."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _NOT_ID.sub("_", folded.lower()).strip("_")[:64].strip("_")
    if not slug:
        slug = "area_" + hashlib.sha256(name.casefold().encode()).hexdigest()[:10]
    return check_id(slug, "area id")


def find_area(registry: Registry, name: str) -> Area | None:
    """The area ``name`` means: one of that name (case and spacing aside), else of its id."""
    cleaned = clean_name(name)
    wanted = cleaned.casefold()
    for area in registry.areas.values():
        if _SPACES.sub(" ", area.name).strip().casefold() == wanted:
            return area
    return registry.areas.get(area_id(cleaned))


def ensure_area(hub: Hub, name: str) -> str:
    """The id of the area ``name`` means, created (and stored) when the hub has none.

    Raises ValueError for a name that cannot be an area (empty, too long, control characters).
    """
    found = find_area(hub.registry, name)
    if found is not None:
        return found.id
    cleaned = clean_name(name)
    area = Area(area_id(cleaned), cleaned)
    hub.registry.areas[area.id] = area
    hub.registry.invalidate_groups()  # a group may name this area before it exists
    _LOGGER.info("new area %s (%r), suggested by a device", area.id, area.name)
    if hub.storage is not None:
        hub.spawn(hub.storage.save_area(area), name=f"save area {area.id}")
    return area.id
