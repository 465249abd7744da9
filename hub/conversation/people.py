"""People: one identity across front-ends, a role, optional limits, notification preferences.

CONTRACT (shared by the command layer, notifications and every front-end): the names and
fields below are used by other modules; extend, do not rename.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """What a person may do. Admins everything; members use devices; guests only what is allowed."""

    ADMIN = "admin"
    MEMBER = "member"
    GUEST = "guest"


class IdentityKind(StrEnum):
    """Where an identity lives."""

    DISCORD = "discord"  # a Discord user id (snowflake, as text)
    PHONE = "phone"  # an E.164 phone number, e.g. +15551234567
    EMAIL = "email"  # an e-mail address, lower-cased
    DASHBOARD = "dashboard"  # a dashboard login name


@dataclass(frozen=True, slots=True)
class Identity:
    """One address of a person on one front-end (normalised: see :func:`normalise_address`)."""

    kind: IdentityKind
    address: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.address}"


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window (local time, minutes after midnight) in which only urgent news is sent."""

    start_minute: int
    end_minute: int  # may be smaller than start: the window wraps past midnight

    def contains(self, minute_of_day: int) -> bool:
        """Whether ``minute_of_day`` falls inside the window."""
        if self.start_minute <= self.end_minute:
            return self.start_minute <= minute_of_day < self.end_minute
        return minute_of_day >= self.start_minute or minute_of_day < self.end_minute


@dataclass(frozen=True, slots=True)
class Person:
    """Someone the hub knows."""

    id: str
    name: str
    role: Role
    identities: tuple[Identity, ...] = ()
    language: str = "en"
    # Limits (empty = no limit beyond the role): the areas and devices this person may control.
    areas: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    # Notification preferences: channels in order of preference (front-end names such as
    # "discord", "sms", "email"); quiet hours; whether urgent news breaks through them.
    notify_channels: tuple[str, ...] = ()
    quiet_hours: QuietHours | None = None
    urgent_overrides_quiet: bool = True
    # Set for people a front-end made up on the fly (e.g. a Discord member whose Discord role
    # maps to a hub role) rather than people listed in hub.yaml.
    transient: bool = False

    def address_on(self, kind: IdentityKind) -> str | None:
        """The person's first address of ``kind``, if any."""
        for identity in self.identities:
            if identity.kind is kind:
                return identity.address
        return None

    def describe(self) -> str:
        """A short form for logs and contexts, e.g. ``alice``."""
        return self.id


def normalise_address(kind: IdentityKind, address: str) -> str:
    """Return ``address`` in the one form identities are compared in."""
    text = address.strip()
    if kind is IdentityKind.EMAIL or kind is IdentityKind.DASHBOARD:
        return text.lower()
    if kind is IdentityKind.PHONE:
        digits = "".join(ch for ch in text if ch.isdigit())
        return f"+{digits}" if digits else ""
    return text


@dataclass(slots=True)
class People:
    """The directory of people, looked up by id or by an identity."""

    by_id: dict[str, Person] = field(default_factory=dict)
    _by_identity: dict[tuple[IdentityKind, str], Person] = field(default_factory=dict)

    @classmethod
    def of(cls, people: Iterable[Person]) -> People:
        """Build the directory (later people with a duplicate identity lose it)."""
        directory = cls()
        for person in people:
            directory.add(person)
        return directory

    def add(self, person: Person) -> None:
        """Add or replace a person."""
        self.by_id[person.id] = person
        for identity in person.identities:
            key = (identity.kind, normalise_address(identity.kind, identity.address))
            self._by_identity.setdefault(key, person)

    def find(self, kind: IdentityKind, address: str) -> Person | None:
        """The person with this address, or None for a stranger."""
        return self._by_identity.get((kind, normalise_address(kind, address)))

    def get(self, person_id: str) -> Person | None:
        """The person with this id."""
        return self.by_id.get(person_id)

    def with_role(self, role: Role) -> list[Person]:
        """Everyone with ``role``."""
        return [p for p in self.by_id.values() if p.role is role]

    def as_mapping(self) -> Mapping[str, Person]:
        """Everyone by id (read only)."""
        return self.by_id
