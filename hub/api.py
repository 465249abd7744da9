"""The public plug-in API: everything an adapter or front-end may use of the hub.

Plug-ins import from here only. Each plug-in gets its own :class:`PluginContext`; everything
registered through it is undone when the plug-in stops or crashes, so a restart starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from hub.bus import Listener
from hub.commands import Command, CommandError, CommandResult, Dialect
from hub.config import validate_model
from hub.conversation import (
    CommandLayer,
    Identity,
    IdentityKind,
    Person,
    Reply,
    ReplyAction,
    ReplyField,
    ReplyStatus,
    Request,
    Role,
)
from hub.conversation.people import normalise_address
from hub.durations import Duration
from hub.events import CustomEvent, DeviceRegistered, DeviceRemoved, Event
from hub.model import (
    NUMERIC_ATTRIBUTES,
    Aggregate,
    Context,
    Device,
    Entity,
    EntityKind,
    Group,
    InvalidValue,
    Origin,
    State,
    check_id,
)
from hub.notify import Delivery, DeliveryResult, NotificationChannel
from hub.repeats import RepeatMemo
from hub.yamlsource import ConfigIssue, SourceDoc, SourceError, load_yaml

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hub.conversation.layer import IntentHandler
    from hub.core import Hub
    from hub.mqtt import MessageHandler

__all__ = [
    "NUMERIC_ATTRIBUTES",
    "CheckContext",
    "Command",
    "CommandError",
    "CommandLayer",
    "CommandResult",
    "ConfigIssue",
    "Context",
    "CustomEvent",
    "Delivery",
    "DeliveryResult",
    "DemoStandIn",
    "Device",
    "DeviceRegistered",
    "DeviceRemoved",
    "Dialect",
    "Duration",
    "Entity",
    "EntityKind",
    "Identity",
    "IdentityKind",
    "InvalidValue",
    "NotificationChannel",
    "Origin",
    "Person",
    "Plugin",
    "PluginContext",
    "RepeatMemo",
    "Reply",
    "ReplyAction",
    "ReplyField",
    "ReplyStatus",
    "Request",
    "Role",
    "SourceDoc",
    "SourceError",
    "State",
    "check_id",
    "load_yaml",
    "normalise_address",
    "validate_model",
]

E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What ``hub check`` tells a plug-in's :meth:`Plugin.check`: where it is configured."""

    #: The folder of ``hub.yaml``: relative paths in the settings start here.
    config_dir: Path
    #: ``hub.yaml`` as loaded, with the position of every key.
    source: SourceDoc
    #: Where the plug-in's section is, e.g. ``("adapters", "firmware")``.
    section: tuple[str, str]

    def issue(
        self, path: Sequence[str | int], message: str, *, severity: str = "error"
    ) -> ConfigIssue:
        """A problem at ``path`` under the plug-in's section, at its line in ``hub.yaml``."""
        return self.source.issue((*self.section, *path), message, severity=severity)


class Plugin:
    """Base class of adapters and front-ends.

    The constructor only stores what it is given; ``start`` registers what the plug-in needs
    through its context; ``run`` is its long-running work (returning or raising counts as a
    crash and the supervisor restarts it); ``stop`` releases what ``start`` took outside the
    context (sockets, threads). Registrations made through the context are undone for it.
    """

    #: A pydantic model for the plug-in's settings in ``hub.yaml`` (None: takes no settings).
    settings_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, context: PluginContext, settings: Any) -> None:
        self.context = context
        self.settings = settings

    @classmethod
    def check(cls, settings: Any, where: CheckContext) -> list[ConfigIssue]:
        """Check what the (already valid) settings refer to, for ``hub check``; [] by default.

        Optional hook: ``hub check`` calls it for every enabled plug-in whose settings
        validated, with the validated settings. Read files, never start anything or touch the
        network. Report a problem inside another file at its own ``file:line:col``, and one
        in the settings with ``where.issue(path, message)``. Raising is reported as a failed
        check of this plug-in.
        """
        return []

    async def start(self) -> None:
        """Set the plug-in up; raise to report a failed start."""

    async def run(self) -> None:
        """Do the plug-in's long-running work; by default wait until stopped."""
        await asyncio.Event().wait()

    async def stop(self) -> None:
        """Release what ``start`` took outside the context."""

    @classmethod
    def demo_standin(cls) -> DemoStandIn | None:
        """A local stand-in of the outside service this plug-in talks to, for `hub demo`."""
        return None


class DemoStandIn(Protocol):
    """A front-end's outside service (Discord, Twilio, an SMTP server) on loopback.

    `hub demo` starts one per front-end that offers it, configures the front-end against it,
    lets the person at the console talk through it and prints what the hub sent out.
    """

    #: How the console names this front-end ("discord", "sms", "email").
    name: str

    async def start(self) -> dict[str, Any]:
        """Start listening; return the front-end's settings that point at the stand-in."""
        ...

    async def stop(self) -> None:
        """Stop listening."""
        ...

    def describe(self) -> list[str]:
        """Lines for the demo's banner: where the stand-in listens and how to use it."""
        ...

    async def say(self, address: str | None, text: str) -> str | None:
        """Send ``text`` from ``address`` (None: someone the hub does not know); the reply.

        None when this front-end takes no words from people (e-mail only sends).
        """
        ...

    def outbox(self) -> list[str]:
        """One line per message the hub sent through the stand-in since the last call."""
        ...


class PluginContext:
    """One plug-in's window on the hub."""

    def __init__(self, hub: Hub, name: str, kind: str) -> None:
        self._hub = hub
        self.name = name
        self.kind = kind
        self.logger = logging.getLogger(f"hub.{kind}.{name}")
        self._undo: list[Callable[[], None]] = []
        self._groups: dict[str, Group] = {}  # groups this plug-in registered, by id

    # ----- reading -----------------------------------------------------------------------------

    @property
    def devices(self) -> Mapping[str, Device]:
        """All devices by id (read only: change them through :meth:`register_device`)."""
        return self._hub.registry.devices

    @property
    def entities(self) -> Mapping[str, Entity]:
        """All entities by id."""
        return self._hub.registry.entities

    @property
    def states(self) -> Mapping[str, State]:
        """Every entity's current State by entity id (read only: report through
        :meth:`report_states`)."""
        return self._hub.registry.states

    def state(self, entity_id: str) -> State | None:
        """The current state of an entity."""
        return self._hub.registry.states.get(entity_id)

    @property
    def config_dir(self) -> Path:
        """The folder of ``hub.yaml``: relative paths in a plug-in's settings start here."""
        path = self._hub.config_path
        return Path(path).parent if path is not None else Path.cwd()

    @property
    def base_topic(self) -> str:
        """Where the hub mirrors its model on MQTT."""
        return self._hub.base_topic

    @property
    def conversation(self) -> CommandLayer:
        """The command layer: hand it every request a person makes through this front-end."""
        if self._hub.conversation is None:
            raise RuntimeError("the hub's command layer is not started")
        return self._hub.conversation

    # ----- registering (each is undone when the plug-in stops) -------------------------------

    def register_channel(self, name: str, channel: NotificationChannel) -> Callable[[], None]:
        """Deliver the notifications routed to channel ``name`` (e.g. "discord") through it."""
        if self._hub.notifier is None:
            raise RuntimeError("the hub's notification router is not started")
        return self._track(self._hub.notifier.register_channel(name, channel))

    def delivery_status(self, delivery_id: str, ok: bool, detail: str) -> None:
        """Record what later became of a delivery (e.g. an SMS status callback)."""
        if self._hub.notifier is not None:
            self._hub.notifier.record_status(delivery_id, ok, detail)

    def register_intent(self, name: str, handler: IntentHandler) -> Callable[[], None]:
        """Answer the command layer's intent ``name`` (e.g. ``speedtest``) with ``handler``.

        The handler gets an ``IntentCall`` (person, slots, language, context) after the
        person's permission was checked, and returns a ``Reply``; raises ValueError if the
        intent already has a handler.
        """
        return self._track(self.conversation.register_intent(name, handler))

    def count(self, name: str, amount: int = 1) -> None:
        """Add to one of this plug-in's counters, shown with its health on ``<base>/stats``."""
        if self._hub.plugins is not None:
            self._hub.plugins.count(self.kind, self.name, name, amount)

    def owner_active(self, owner: str) -> bool:
        """True when this hub keeps devices owned by ``owner`` up to date.

        That is the hub's own device convention and every adapter ``hub.yaml`` enables;
        devices stored by an adapter that is disabled or gone are leftovers.
        """
        from hub.native import NativeDialect

        if owner == NativeDialect.OWNER:
            return True
        section = self._hub.config.adapters.get(owner)
        return section is not None and section.enabled

    def report_health(self, healthy: bool, reason: str = "") -> None:
        """Say whether the plug-in can do its work; False with a clear reason marks it unhealthy
        (``degraded``) without restarting it, e.g. "SMTP login refused by mail.example.com"."""
        if self._hub.plugins is not None:
            self._hub.plugins.report(self.kind, self.name, healthy, reason)

    def audit(
        self,
        action: str,
        result: str,
        detail: str = "",
        *,
        target: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a line to the audit log as this plug-in, e.g. a refused webhook and why.

        The caller bounds how often it does (a flood of forged requests must not become a
        flood of rows); ``params`` must be JSON-ready. Never raises: a bad entry is logged.
        """
        storage = self._hub.storage
        if storage is None:
            return

        from hub.storage import AuditEntry

        try:
            storage.queue_audit(
                AuditEntry(
                    ts=time.time(),
                    kind=self.kind,
                    target=target[:200],
                    action=action[:64],
                    params=dict(params or {}),
                    context=Context(Origin.PLUGIN, self.name),
                    result=result[:32],
                    detail=detail[:300],
                )
            )
        except Exception:
            self.logger.exception("auditing %s of %s failed", action, self.name)

    def _track(self, undo: Callable[[], None]) -> Callable[[], None]:
        done = False

        def tracked() -> None:
            # Runs the undo once, and forgets it: a plug-in that subscribes and unsubscribes
            # topics as devices come and go must not grow this list (nor unsubscribe twice).
            nonlocal done
            if done:
                return
            done = True
            with contextlib.suppress(ValueError):
                self._undo.remove(tracked)
            undo()

        self._undo.append(tracked)
        return tracked

    def subscribe_event(self, event_type: type[E], callback: Listener[E]) -> Callable[[], None]:
        """Listen to bus events of one type."""
        return self._track(self._hub.bus.subscribe(event_type, callback, owner=self.name))

    def subscribe_mqtt(
        self, topic_filter: str, handler: MessageHandler, *, qos: int = 0
    ) -> Callable[[], None]:
        """Receive MQTT messages matching ``topic_filter`` in the event loop."""
        mqtt = self._require_mqtt()
        return self._track(mqtt.subscribe(topic_filter, handler, owner=self.name, qos=qos))

    def on_mqtt_connect(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Run ``hook`` after every broker (re)connect, e.g. to ask devices to re-announce."""
        return self._track(self._require_mqtt().on_connect(hook))

    def register_dialect(self, owner: str, dialect: Dialect) -> Callable[[], None]:
        """Receive the commands for devices whose owner is ``owner``."""
        return self._track(self._hub.commands.register_dialect(owner, dialect))

    def register_group(
        self, group_id: str, name: str, members: Sequence[str], *, aggregate: str = "any"
    ) -> Callable[[], None]:
        """Add or replace a group this plug-in keeps (e.g. a Zigbee group); return its undo.

        ``members`` are entity, device, group or area ids, as in ``hub.yaml``. Commands to the
        group fan out to its members. Raises ValueError for an invalid id or aggregate, or an
        id that ``hub.yaml`` or another plug-in already uses. Registering the same id again
        replaces the group; the group is removed when the plug-in stops.
        """
        check_id(group_id, "group id")
        groups = self._hub.registry.groups
        if group_id in groups and group_id not in self._groups:
            raise ValueError(f"group {group_id!r} already exists and is not {self.name}'s")
        group = Group(group_id, name, list(members), Aggregate(aggregate))
        if group_id not in self._groups:
            # Tracked once per id, however often it is replaced, so updates do not pile up undos.
            self._track(lambda: self._drop_group(group_id, None))
        self._groups[group_id] = group
        groups[group_id] = group
        self._hub.registry.invalidate_groups()
        return lambda: self._drop_group(group_id, group)

    def _drop_group(self, group_id: str, only: Group | None) -> None:
        current = self._groups.get(group_id)
        if current is None or (only is not None and current is not only):
            return  # already removed, or replaced since: that undo is stale
        del self._groups[group_id]
        if self._hub.registry.groups.get(group_id) is current:
            del self._hub.registry.groups[group_id]
            self._hub.registry.invalidate_groups()

    # ----- acting ----------------------------------------------------------------------------

    def publish_mqtt(
        self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Publish a message (never blocks)."""
        self._require_mqtt().publish(topic, payload, qos=qos, retain=retain)

    def register_device(self, device: Device, entities: Sequence[Entity]) -> bool:
        """Add or update a device this plug-in owns."""
        return self._hub.register_device(device, entities)

    def suggested_area(self, device_id: str, name: str | None) -> str | None:
        """The area id for the area a device suggests for itself, or None to leave it be.

        For what the firmware says (Home Assistant discovery's ``suggested_area``, a
        Zigbee2MQTT device option); put the result in the Device's ``area``. None when there
        is no suggestion, when it cannot name an area, or when hub.yaml's ``devices:`` gives
        the device an area: the user's choice wins (it is applied on registration) and no
        area is made for nothing. Otherwise the area of that name or id, created and stored
        when the hub has none (hub.yaml's own areas keep their names).
        """
        if name is None or not name.strip():
            return None
        configured = self._hub.config.devices.get(device_id)
        if configured is not None and configured.area is not None:
            return None
        from hub.areas import ensure_area

        try:
            return ensure_area(self._hub, name)
        except ValueError as exc:
            self.logger.warning("ignored the area %s suggests: %s", device_id, exc)
            return None

    def remove_device(self, device_id: str) -> None:
        """Forget a device."""
        self._hub.remove_device(device_id)

    def set_available(self, device_id: str, available: bool) -> None:
        """Mark a device online or offline."""
        self._hub.set_available(device_id, available)

    def report_state(
        self, entity_id: str, value: Any, attributes: Mapping[str, Any] | None = None
    ) -> None:
        """Report an entity's state (raises InvalidValue or KeyError; nothing changes then)."""
        self._hub.report_state(entity_id, value, attributes)

    def report_states(
        self,
        reports: Sequence[tuple[str, Any, Mapping[str, Any] | None]],
        repeats: Sequence[State] = (),
    ) -> None:
        """Report several entities' states at once, all or nothing.

        Each report is ``(entity_id, value, attributes)``; ``value`` None keeps the current
        value (attributes only). Every report is validated before any is applied, so one bad
        part of a device's message changes nothing (raises InvalidValue or KeyError naming it).
        The readings share one ``last_updated`` and, where they change, one cause (Context).
        ``repeats`` are current States (from :meth:`state`) the message reported again
        unchanged: they skip validation and only move ``last_reported`` (a button's press, or
        a reading a command awaits, is still reported in full).
        """
        self._hub.report_states(reports, repeats)

    def repeat_memo(self) -> RepeatMemo:
        """A memo that reports a topic's payload seen again as the repeats it was last time,
        skipping the adapter's parsing (see :mod:`hub.repeats`)."""
        return RepeatMemo(self._hub)

    def validate_state(
        self, entity: Entity, value: Any, attributes: Mapping[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Check a report against an entity, registered or not yet; return it normalised.

        Changes nothing (raises InvalidValue saying what is wrong), so an adapter can check a
        whole message, including entities it is about to create, before registering any.
        """
        return self._hub.validate_report(entity, value, attributes)

    def reject(self, topic: str, reason: str, *, kind: str = "malformed") -> None:
        """Count and log an inbound message that was ignored."""
        self._hub.reject(topic, reason, kind=kind)

    async def command(
        self,
        target: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        context: Context | None = None,
        timeout: float | None = None,
    ) -> list[CommandResult]:
        """Issue a command and wait for its results (raises CommandError if it cannot be sent)."""
        ctx = context or Context(Origin.PLUGIN, self.name)
        return await self._hub.commands.execute(
            Command(target, action, ctx, dict(params or {})), timeout=timeout
        )

    def publish_event(self, event: Event) -> None:
        """Put an event on the bus."""
        self._hub.bus.publish(event)

    # ----- internals -------------------------------------------------------------------------

    def _require_mqtt(self) -> Any:
        if self._hub.mqtt is None:
            raise RuntimeError("the hub's MQTT link is not started")
        return self._hub.mqtt

    def close(self) -> None:
        """Undo every registration (called by the supervisor)."""
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception:
                self.logger.exception("undoing a registration of %s failed", self.name)
