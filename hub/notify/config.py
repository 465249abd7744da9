"""The ``notifications:`` section of ``hub.yaml``: which events go to whom, and the limits.

```yaml
notifications:
  default_targets: [role:admin]   # a rule's notify without targets
  dedupe_window: 10m              # same key (or title + text) to the same recipient: once
  rate_limit: {burst: 5, refill: 2m}   # per person and channel (a token bucket)
  retries: 2                      # a failing channel is tried again, after 2 s, then 4 s
  retry_delay: 2s
  events:
    device_offline: {targets: [role:admin], after: 1m}
    command_failed: {targets: [role:admin]}
    speedtest_below_threshold: {targets: [alice], urgent: false}
    device_alert: {targets: [role:admin]}   # alerts devices raise (a Homie device's $alert)
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hub.durations import Duration
from hub.model import check_id

if TYPE_CHECKING:
    from hub.yamlsource import ConfigIssue, PathKey, SourceDoc

_STRICT = ConfigDict(extra="forbid", frozen=True)

ROLES = ("admin", "member", "guest")

#: Hub events the router reports without configuration, and to whom. ``device_alert`` is
#: what a device itself raises for people (e.g. a Homie device's ``$alert``: "battery low").
DEFAULT_EVENTS = (
    "device_offline",
    "command_failed",
    "speedtest_below_threshold",
    "device_alert",
)


def check_target(value: str) -> str:
    """Validate one target: a person id, ``role:ROLE``, ``everyone`` or ``CHANNEL:ADDRESS``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a target must not be empty")
    value = value.strip()
    if value == "everyone":
        return value
    prefix, sep, rest = value.partition(":")
    if not sep:
        try:
            return check_id(value, "person id")
        except ValueError:
            raise ValueError(
                f"invalid target {value!r}: use a person id, role:admin, role:member, "
                "role:guest, everyone, or <channel>:<address> such as email:ops@example.com"
            ) from None
    if prefix == "role":
        if rest not in ROLES:
            from hub.yamlsource import suggest

            raise ValueError(f"unknown role {rest!r}: use {', '.join(ROLES)}{suggest(rest, ROLES)}")
        return value
    check_id(prefix, "channel name")
    if not rest.strip() or any(ch in rest for ch in "\r\n\x00"):
        raise ValueError(f"target {value!r} names no valid address after {prefix + ':'!r}")
    return value


Target = Annotated[str, AfterValidator(check_target)]


def _event_name(value: str) -> str:
    return check_id(value, "event name")


class EventRoute(BaseModel):
    """Where one kind of hub event is reported."""

    model_config = _STRICT

    enabled: bool = True
    targets: tuple[Target, ...] = ("role:admin",)
    urgent: bool = False
    # device_offline only: how long a device must stay offline before anyone is told (so a
    # flapping device does not spam), and whether to say when it is back.
    after: Annotated[Duration, Field(ge=0, le=86400)] = 60.0
    back_online: bool = True


#: The route of a default event not configured (shared: the model is frozen, and the bus
#: listeners and the timer ask for it on every availability change and tick).
_DEFAULT_ROUTE = EventRoute()


class RateLimit(BaseModel):
    """A token bucket per person (or address) and channel."""

    model_config = _STRICT

    burst: Annotated[int, Field(ge=1, le=10000)] = 5
    refill: Annotated[Duration, Field(gt=0, le=86400)] = 120.0  # one more message per refill


class NotificationsSection(BaseModel):
    """The ``notifications:`` section."""

    model_config = _STRICT

    default_targets: tuple[Target, ...] = ("role:admin",)
    dedupe_window: Annotated[Duration, Field(ge=0, le=7 * 86400)] = 600.0
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_delay: Annotated[Duration, Field(ge=0, le=600)] = 2.0
    send_timeout: Annotated[Duration, Field(gt=0, le=600)] = 30.0
    events: dict[Annotated[str, AfterValidator(_event_name)], EventRoute] = Field(
        default_factory=dict
    )

    def route(self, event: str) -> EventRoute | None:
        """The route of a hub event or custom event type (None: not reported)."""
        found = self.events.get(event)
        if found is not None:
            return found if found.enabled else None
        return _DEFAULT_ROUTE if event in DEFAULT_EVENTS else None

    @classmethod
    def default(cls) -> NotificationsSection:
        """The settings used when ``hub.yaml`` has no ``notifications:``."""
        return cls.model_validate({})


def check_notifications(data: dict[str, Any], source: SourceDoc) -> list[ConfigIssue]:
    """Targets naming a person who is not under ``people:`` (with a "did you mean")."""
    from hub.yamlsource import suggest

    section = data.get("notifications")
    if not isinstance(section, dict):
        return []
    people = data.get("people")
    known = (
        [p["id"] for p in people if isinstance(p, dict) and isinstance(p.get("id"), str)]
        if isinstance(people, list)
        else []
    )
    places: list[tuple[PathKey, Any]] = [
        (("notifications", "default_targets"), section.get("default_targets"))
    ]
    events = section.get("events")
    for name, route in events.items() if isinstance(events, dict) else ():
        if isinstance(route, dict):
            places.append((("notifications", "events", name, "targets"), route.get("targets")))
    issues: list[ConfigIssue] = []
    for path, targets in places:
        for index, target in enumerate(targets if isinstance(targets, list) else ()):
            if not isinstance(target, str) or ":" in target or target == "everyone":
                continue
            if target not in known:
                message = f"unknown person {target!r}{suggest(target, known)}"
                if not known:
                    message += " (no people are configured)"
                issues.append(source.issue((*path, index), message, at_value=True))
    return issues
