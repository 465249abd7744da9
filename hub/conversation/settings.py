"""The ``people:`` section of ``hub.yaml``: who the hub knows, their addresses and roles.

::

    people:
      - id: alice
        name: Alice
        role: admin                 # admin, member or guest (default guest)
        discord: "100000000000000001"
        phones: ["+15550000001"]
        emails: [alice@example.com]
        dashboard: alice
        language: de                # replies in German (default en)
        areas: [living_room]        # limits: only these areas ...
        devices: [garage_light]     # ... and these devices (admins are never limited)
        notify:
          channels: [discord, sms]  # in order of preference
          quiet_hours: "22:00-07:00"
          urgent_overrides_quiet: true
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from hub.conversation.i18n import available_languages
from hub.conversation.people import (
    Identity,
    IdentityKind,
    Person,
    QuietHours,
    Role,
    normalise_address,
)
from hub.model import check_id
from hub.yamlsource import ConfigIssue, SourceDoc, suggest

_STRICT = ConfigDict(extra="forbid", frozen=True)
_SNOWFLAKE = re.compile(r"^[0-9]{15,21}$")
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_LOGIN = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_CLOCK = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


def _one_or_many(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


def _as_text(value: Any) -> Any:
    # A Discord id written without quotes is a YAML number.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _person_id(value: str) -> str:
    return check_id(value, "person id")


def _area_id(value: str) -> str:
    return check_id(value, "area id")


def _device_id(value: str) -> str:
    return check_id(value, "device id")


def _channel(value: str) -> str:
    return check_id(value, "channel name")


def _discord(value: str) -> str:
    if not _SNOWFLAKE.match(value.strip()):
        raise ValueError(f"expected a Discord user id (15-21 digits), got {value!r}")
    return value.strip()


def _phone(value: str) -> str:
    number = normalise_address(IdentityKind.PHONE, value)
    if not value.strip().startswith("+") or not 8 <= len(number) - 1 <= 15:
        raise ValueError(
            f"expected a phone number in international form like +15551234567, got {value!r}"
        )
    return number


def _email(value: str) -> str:
    if not _EMAIL.match(value.strip()):
        raise ValueError(f"expected an e-mail address like alice@example.com, got {value!r}")
    return normalise_address(IdentityKind.EMAIL, value)


def _login(value: str) -> str:
    if not _LOGIN.match(value.strip()):
        raise ValueError(
            f"expected a login name of 1-64 letters, digits, '.', '_', '@' or '-', got {value!r}"
        )
    return normalise_address(IdentityKind.DASHBOARD, value)


def _language(value: str) -> str:
    code = value.strip().replace("-", "_").split("_", 1)[0].lower()
    known = available_languages()
    if code not in known:
        raise ValueError(
            f"no replies in language {value!r}{suggest(code, known)}; available: {', '.join(known)}"
        )
    return code


def parse_quiet_hours(value: str) -> QuietHours:
    """``"22:00-07:00"`` as a :class:`QuietHours` (raises ValueError saying what is wrong)."""
    start, sep, end = value.partition("-")
    first, last = _CLOCK.match(start.strip()), _CLOCK.match(end.strip())
    if not sep or first is None or last is None:
        raise ValueError(f"expected quiet hours like '22:00-07:00', got {value!r}")
    start_minute = int(first.group(1)) * 60 + int(first.group(2))
    end_minute = int(last.group(1)) * 60 + int(last.group(2))
    if start_minute == end_minute:
        raise ValueError(f"quiet hours {value!r} start and end at the same time")
    return QuietHours(start_minute, end_minute)


def _quiet(value: str) -> str:
    parse_quiet_hours(value)
    return value


class NotifyConfig(BaseModel):
    """A person's notification preferences."""

    model_config = _STRICT

    channels: Annotated[
        tuple[Annotated[str, AfterValidator(_channel)], ...], BeforeValidator(_one_or_many)
    ] = ()
    quiet_hours: Annotated[str, AfterValidator(_quiet)] | None = None
    urgent_overrides_quiet: bool = True


class PersonConfig(BaseModel):
    """One person of ``people:``."""

    model_config = _STRICT

    id: Annotated[str, AfterValidator(_person_id)]
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    role: Role = Role.GUEST
    discord: Annotated[str, BeforeValidator(_as_text), AfterValidator(_discord)] | None = None
    phones: Annotated[
        tuple[Annotated[str, AfterValidator(_phone)], ...], BeforeValidator(_one_or_many)
    ] = ()
    emails: Annotated[
        tuple[Annotated[str, AfterValidator(_email)], ...], BeforeValidator(_one_or_many)
    ] = ()
    dashboard: Annotated[str, AfterValidator(_login)] | None = None
    language: Annotated[str, AfterValidator(_language)] = "en"
    areas: Annotated[
        tuple[Annotated[str, AfterValidator(_area_id)], ...], BeforeValidator(_one_or_many)
    ] = ()
    devices: Annotated[
        tuple[Annotated[str, AfterValidator(_device_id)], ...], BeforeValidator(_one_or_many)
    ] = ()
    notify: NotifyConfig = Field(default_factory=NotifyConfig)

    def identities(self) -> tuple[Identity, ...]:
        """Every address of this person, normalised."""
        out: list[Identity] = []
        if self.discord:
            out.append(Identity(IdentityKind.DISCORD, self.discord))
        out.extend(Identity(IdentityKind.PHONE, phone) for phone in self.phones)
        out.extend(Identity(IdentityKind.EMAIL, email) for email in self.emails)
        if self.dashboard:
            out.append(Identity(IdentityKind.DASHBOARD, self.dashboard))
        return tuple(out)

    def to_person(self) -> Person:
        """The person as the command layer and the notifier see them."""
        quiet = self.notify.quiet_hours
        return Person(
            id=self.id,
            name=self.name or self.id.replace("_", " ").title(),
            role=self.role,
            identities=self.identities(),
            language=self.language,
            areas=frozenset(self.areas),
            devices=frozenset(self.devices),
            notify_channels=self.notify.channels,
            quiet_hours=parse_quiet_hours(quiet) if quiet else None,
            urgent_overrides_quiet=self.notify.urgent_overrides_quiet,
        )


# ----- checks across people (called by hub.config's cross-section checks) ----------------------

_IDENTITY_KEYS = (
    ("discord", IdentityKind.DISCORD),
    ("phones", IdentityKind.PHONE),
    ("emails", IdentityKind.EMAIL),
    ("dashboard", IdentityKind.DASHBOARD),
)


def check_people(
    data: dict[str, Any], areas: dict[str, int], source: SourceDoc
) -> list[ConfigIssue]:
    """Duplicate ids and addresses, and limits naming unknown areas, each at its position."""
    issues: list[ConfigIssue] = []
    people = data.get("people")
    if not isinstance(people, list):
        return issues
    ids: dict[str, int] = {}
    owners: dict[tuple[IdentityKind, str], int] = {}
    for index, person in enumerate(people):
        if not isinstance(person, dict):
            continue
        ident = person.get("id")
        if isinstance(ident, str):
            if ident in ids:
                line = source.value_position(("people", ids[ident], "id"))[0]
                message = (
                    f"duplicate person id {ident!r} (first used by people[{ids[ident]}] "
                    f"on line {line})"
                )
                issues.append(source.issue(("people", index, "id"), message, at_value=True))
            else:
                ids[ident] = index
        for key, kind in _IDENTITY_KEYS:
            raw = person.get(key)
            values = raw if isinstance(raw, list) else [raw]
            for position, item in enumerate(values):
                value = _as_text(item)
                if not isinstance(value, str) or not value.strip():
                    continue
                path: tuple[str | int, ...] = ("people", index, key)
                if isinstance(raw, list):
                    path = (*path, position)
                address = normalise_address(kind, value)
                first = owners.get((kind, address))
                if first is not None and first != index:
                    message = (
                        f"{kind.value} address {value!r} already belongs to people[{first}]; "
                        "one address can name only one person"
                    )
                    issues.append(source.issue(path, message, at_value=True))
                else:
                    owners.setdefault((kind, address), index)
        limits = person.get("areas")
        for position, area in enumerate(limits if isinstance(limits, list) else []):
            if isinstance(area, str) and areas and area not in areas:
                message = f"unknown area {area!r}{suggest(area, areas)}"
                issues.append(
                    source.issue(("people", index, "areas", position), message, at_value=True)
                )
    return issues
