"""Who may do what: roles, limits by area and device, and the few things only admins do.

- admin: everything.
- member: every device and scene, every question, named commands; not rules on or off.
- guest: switch lights, switches and covers, apply scenes that stay within their limits, and
  ask questions (status, why, lists, energy, help).
- Locks: admins and members only.
- Limits (``areas``/``devices`` of a person) restrict members and guests to those areas and
  devices; admins are never limited.
"""

from __future__ import annotations

from collections.abc import Iterable

from hub.conversation.people import Person, Role
from hub.model import Device, Entity, EntityKind, Registry

GUEST_KINDS = frozenset({EntityKind.LIGHT, EntityKind.SWITCH, EntityKind.COVER})
MEMBER_INTENTS = frozenset({"run", "speedtest", "set_temperature", "lock", "unlock"})
ADMIN_INTENTS = frozenset({"rule_enable", "rule_disable"})
# Questions anyone the hub knows may ask.
READ_INTENTS = frozenset({"status", "list", "energy", "why", "help"})


def may_intent(person: Person, intent: str) -> bool:
    """Whether the person's role allows this kind of request at all."""
    if person.role is Role.ADMIN:
        return True
    if intent in ADMIN_INTENTS:
        return False
    if intent in MEMBER_INTENTS:
        return person.role is Role.MEMBER
    return True


def within_limits(person: Person, device: Device | None) -> bool:
    """Whether a device lies within the person's area and device limits (if any)."""
    if person.role is Role.ADMIN or not (person.areas or person.devices):
        return True
    if device is None:
        return False
    return device.id in person.devices or (device.area is not None and device.area in person.areas)


def may_control(person: Person, entity: Entity, device: Device | None) -> bool:
    """Whether the person may command this entity."""
    if person.role is Role.ADMIN:
        return True
    if entity.kind is EntityKind.LOCK and person.role is not Role.MEMBER:
        return False
    if person.role is Role.GUEST and entity.kind not in GUEST_KINDS:
        return False
    return within_limits(person, device)


def may_control_all(person: Person, registry: Registry, entity_ids: Iterable[str]) -> bool:
    """Whether the person may command every one of these entities (a scene's, say)."""
    for entity_id in entity_ids:
        entity = registry.entities.get(entity_id)
        if entity is None:
            continue  # a scene naming a missing entity fails on its own; not a permission matter
        if not may_control(person, entity, registry.devices.get(entity.device_id)):
            return False
    return True
