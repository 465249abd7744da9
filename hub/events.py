"""Typed events carried by the event bus."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from hub.model import Context, State


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every bus event; ``name`` is the stable wire name used on the event stream."""

    name: ClassVar[str] = "event"

    def payload(self) -> dict[str, Any]:
        """Return the JSON-ready body published on the event stream."""
        return {}


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    """An entity's state or attributes were updated (``old`` is None for the first state)."""

    name: ClassVar[str] = "state_changed"
    entity_id: str
    device_id: str
    old: State | None
    new: State

    @property
    def value_changed(self) -> bool:
        """True when the value itself changed, not only attributes or the timestamp."""
        return self.old is None or self.old.value != self.new.value

    def payload(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "device_id": self.device_id,
            "old": self.old.value if self.old else None,
            "new": self.new.to_dict(),
        }


_new_object = object.__new__
_CHANGED_SETTERS = tuple(
    StateChanged.__dict__[name].__set__ for name in ("entity_id", "device_id", "old", "new")
)


def make_state_changed(
    entity_id: str, device_id: str, old: State | None, new: State
) -> StateChanged:
    """Return ``StateChanged(...)`` built through its slots, without the frozen dataclass
    __init__'s ``object.__setattr__`` per field (one per reading on the ingest hot path)."""
    event: StateChanged = _new_object(StateChanged)
    set_entity, set_device, set_old, set_new = _CHANGED_SETTERS
    set_entity(event, entity_id)
    set_device(event, device_id)
    set_old(event, old)
    set_new(event, new)
    return event


@dataclass(frozen=True, slots=True)
class GroupStateChanged(Event):
    """A group's aggregated state (or its member counts) changed, or the group was removed.

    ``old`` is None for the group's first state; ``context`` is the member change behind it
    (None when memberships changed).
    """

    name: ClassVar[str] = "group_state_changed"
    group_id: str
    old: Any
    new: Any
    aggregate: str = "any"
    members: int = 0
    on: int = 0
    known: int = 0
    last_changed: float = 0.0
    first: bool = False
    removed: bool = False
    context: Context | None = None

    @property
    def value_changed(self) -> bool:
        """True when the aggregated value itself changed, not only the member counts."""
        return self.first or self.old != self.new

    def payload(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "old": self.old,
            "new": self.new,
            "aggregate": self.aggregate,
            "members": self.members,
            "on": self.on,
            "known": self.known,
            "removed": self.removed,
            "context": self.context.to_dict() if self.context else None,
        }


@dataclass(frozen=True, slots=True)
class CommandIssued(Event):
    """A command was sent to one entity in its device's dialect."""

    name: ClassVar[str] = "command_issued"
    command_id: str
    request_id: str
    entity_id: str
    action: str
    params: dict[str, Any]
    context: Context

    def payload(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "request_id": self.request_id,
            "entity_id": self.entity_id,
            "action": self.action,
            "params": self.params,
            "context": self.context.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class CommandConfirmed(Event):
    """The device reported the state a command asked for."""

    name: ClassVar[str] = "command_confirmed"
    command_id: str
    request_id: str
    entity_id: str
    issued_at: float
    confirmed_at: float
    context: Context

    def payload(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "request_id": self.request_id,
            "entity_id": self.entity_id,
            "issued_at": self.issued_at,
            "confirmed_at": self.confirmed_at,
            "latency_ms": round((self.confirmed_at - self.issued_at) * 1000, 3),
            "context": self.context.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class CommandFailed(Event):
    """A command could not be sent or was not confirmed in time."""

    name: ClassVar[str] = "command_failed"
    command_id: str
    request_id: str
    entity_id: str
    reason: str
    context: Context
    # The hub cancelled it (shutting down): nobody's command went wrong.
    cancelled: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "request_id": self.request_id,
            "entity_id": self.entity_id,
            "reason": self.reason,
            "context": self.context.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class DeviceAvailability(Event):
    """A device went online or offline."""

    name: ClassVar[str] = "device_availability"
    device_id: str
    available: bool

    def payload(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "available": self.available}


@dataclass(frozen=True, slots=True)
class DeviceRegistered(Event):
    """A device was added to the registry or its description changed."""

    name: ClassVar[str] = "device_registered"
    device_id: str

    def payload(self) -> dict[str, Any]:
        return {"device_id": self.device_id}


@dataclass(frozen=True, slots=True)
class DeviceRemoved(Event):
    """A device was removed from the registry."""

    name: ClassVar[str] = "device_removed"
    device_id: str

    def payload(self) -> dict[str, Any]:
        return {"device_id": self.device_id}


@dataclass(frozen=True, slots=True)
class PayloadRejected(Event):
    """An inbound message was malformed and ignored; nothing was changed."""

    name: ClassVar[str] = "payload_rejected"
    topic: str
    reason: str

    def payload(self) -> dict[str, Any]:
        return {"topic": self.topic, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class PluginHealth(Event):
    """A plug-in's health changed (``healthy`` False with a reason while it is restarted)."""

    name: ClassVar[str] = "plugin_health"
    plugin: str
    healthy: bool
    reason: str = ""

    def payload(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "healthy": self.healthy, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class BrokerConnection(Event):
    """The hub's MQTT link connected or lost its broker."""

    name: ClassVar[str] = "broker_connection"
    connected: bool
    reason: str = ""

    def payload(self) -> dict[str, Any]:
        return {"connected": self.connected, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Notification(Event):
    """A message meant for people; front-ends deliver it, the event stream records it."""

    name: ClassVar[str] = "notification"
    message: str
    title: str = ""
    targets: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    context: Context | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "title": self.title,
            "targets": list(self.targets),
            "data": self.data,
            "context": self.context.to_dict() if self.context else None,
        }


@dataclass(frozen=True, slots=True)
class CustomEvent(Event):
    """An event fired by a rule's ``event`` action or a plug-in; ``event`` triggers react."""

    name: ClassVar[str] = "custom_event"
    event_type: str
    data: dict[str, Any] = field(default_factory=dict)
    context: Context | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "data": self.data,
            "context": self.context.to_dict() if self.context else None,
        }
