"""The public plug-in API: everything an adapter or front-end may use of the hub.

Plug-ins import from here only. Each plug-in gets its own :class:`PluginContext`; everything
registered through it is undone when the plug-in stops or crashes, so a restart starts clean.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from hub.bus import Listener
from hub.commands import Command, CommandError, CommandResult, Dialect
from hub.events import Event
from hub.model import (
    Context,
    Device,
    Entity,
    EntityKind,
    InvalidValue,
    Origin,
    State,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hub.core import Hub
    from hub.mqtt import MessageHandler

__all__ = [
    "Command",
    "CommandError",
    "CommandResult",
    "Context",
    "Device",
    "Dialect",
    "Entity",
    "EntityKind",
    "InvalidValue",
    "Origin",
    "Plugin",
    "PluginContext",
    "State",
]

E = TypeVar("E", bound=Event)


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

    async def start(self) -> None:
        """Set the plug-in up; raise to report a failed start."""

    async def run(self) -> None:
        """Do the plug-in's long-running work; by default wait until stopped."""
        await asyncio.Event().wait()

    async def stop(self) -> None:
        """Release what ``start`` took outside the context."""


class PluginContext:
    """One plug-in's window on the hub."""

    def __init__(self, hub: Hub, name: str, kind: str) -> None:
        self._hub = hub
        self.name = name
        self.kind = kind
        self.logger = logging.getLogger(f"hub.{kind}.{name}")
        self._undo: list[Callable[[], None]] = []

    # ----- reading -----------------------------------------------------------------------------

    @property
    def devices(self) -> Mapping[str, Device]:
        """All devices by id (read only: change them through :meth:`register_device`)."""
        return self._hub.registry.devices

    @property
    def entities(self) -> Mapping[str, Entity]:
        """All entities by id."""
        return self._hub.registry.entities

    def state(self, entity_id: str) -> State | None:
        """The current state of an entity."""
        return self._hub.registry.states.get(entity_id)

    @property
    def base_topic(self) -> str:
        """Where the hub mirrors its model on MQTT."""
        return self._hub.base_topic

    # ----- registering (each is undone when the plug-in stops) -------------------------------

    def _track(self, undo: Callable[[], None]) -> Callable[[], None]:
        self._undo.append(undo)
        return undo

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

    # ----- acting ----------------------------------------------------------------------------

    def publish_mqtt(
        self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Publish a message (never blocks)."""
        self._require_mqtt().publish(topic, payload, qos=qos, retain=retain)

    def register_device(self, device: Device, entities: Sequence[Entity]) -> bool:
        """Add or update a device this plug-in owns."""
        return self._hub.register_device(device, entities)

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
