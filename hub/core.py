"""The hub: owns the registry, bus, MQTT link, command router, storage and plug-ins."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from hub.bus import EventBus
from hub.commands import CommandRouter
from hub.events import (
    CommandConfirmed,
    CommandFailed,
    CommandIssued,
    DeviceAvailability,
    DeviceRegistered,
    DeviceRemoved,
    Event,
    PayloadRejected,
    StateChanged,
    make_state_changed,
)
from hub.groups import GroupStates
from hub.model import (
    Area,
    Context,
    Device,
    Entity,
    EntityKind,
    Group,
    InvalidValue,
    Origin,
    Registry,
    State,
    coerce_attributes,
    coerce_value,
    make_context,
    make_state,
    touch_reported,
)

if TYPE_CHECKING:
    from hub.broker import EmbeddedBroker
    from hub.config import HubConfig
    from hub.conversation import CommandLayer
    from hub.mqtt import MqttLink
    from hub.notify.router import NotificationRouter
    from hub.plugins import PluginManager
    from hub.rules.service import RulesService
    from hub.scenes import SceneService
    from hub.storage import Storage
    from hub.yamlsource import SourceDoc

_LOGGER = logging.getLogger(__name__)

# At most this many log lines per rejection reason and minute: a flooding device must not
# flood the log too. Every rejection is still counted.
_REJECT_LOG_BURST = 5


@dataclass(slots=True)
class HubStats:
    """Counters reported on ``<base>/stats`` and by `hub bench`."""

    reports: int = 0
    state_changes: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)


class Hub:
    """The running hub. Adapters and front-ends reach it through ``hub.api.PluginContext``."""

    def __init__(
        self,
        config: HubConfig,
        *,
        config_path: Path | None = None,
        source: SourceDoc | None = None,
        secrets_path: Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.secrets_path = secrets_path  # rule files may use !secret too
        self.source = source  # where each setting was written, for plug-in settings errors
        self.registry = Registry()
        self.bus = EventBus()
        self.commands = CommandRouter(self.registry, self.bus, timeout=config.hub.command_timeout)
        self._awaiting = self.commands.awaiting  # checked on every report
        # Group states follow their members from the start (rule tests use unstarted hubs).
        self.groups = GroupStates(self.registry, self.bus)
        self.groups.attach()
        # hub.yaml's `devices:` overrides, built once: every registration consults them.
        self._customizations = {
            device_id: custom.customization() for device_id, custom in config.devices.items()
        }
        self.stats = HubStats()
        self.mqtt: MqttLink | None = None
        self.storage: Storage | None = None
        self.broker: EmbeddedBroker | None = None
        self.plugins: PluginManager | None = None
        self.rules: RulesService | None = None
        self.scenes: SceneService | None = None  # scenes: started after MQTT, before rules
        # The command layer and the notification router: started before plug-ins, since
        # front-ends hand requests to the first and register channels with the second.
        self.conversation: CommandLayer | None = None
        self.notifier: NotificationRouter | None = None
        self._runtime_file: Path | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._reject_log: dict[str, tuple[float, int]] = {}
        self._stopped = asyncio.Event()
        self._undo: list[Any] = []
        self.started = False

    @property
    def base_topic(self) -> str:
        """The base topic the normalized model is mirrored under."""
        return self.config.hub.base_topic

    # ----- state ------------------------------------------------------------------------------

    def validate_report(
        self, entity: Entity, value: Any, attributes: Mapping[str, Any] | None
    ) -> tuple[Any, dict[str, Any]]:
        """Return the report normalised for ``entity``; raise InvalidValue saying what is wrong."""
        if value is None:
            current = self.registry.states.get(entity.id)
            if current is None:
                raise InvalidValue(f"{entity.id}: a first report must carry a state")
            normalised = current.value
        else:
            normalised = coerce_value(entity.kind, value, numeric=entity.unit is not None)
            if entity.kind is EntityKind.SELECT:
                choices = entity.options.get("options")
                if isinstance(choices, list) and normalised not in choices:
                    raise InvalidValue(f"{normalised[:40]!r} is not one of {entity.id}'s options")
        return normalised, coerce_attributes(attributes) if attributes else {}

    def apply_state(
        self,
        entity: Entity,
        value: Any,
        attributes: Mapping[str, Any],
        *,
        context: Context | None = None,
        now: float | None = None,
        fresh: dict[str, Context] | None = None,
    ) -> StateChanged | None:
        """Store an already validated report and announce it. The ingest hot path.

        A report that repeats the current value and attributes (most of a firmware's periodic
        telemetry) only moves ``last_reported`` and returns None: no StateChanged, nothing
        recorded, as Home Assistant separates state_reported from state_changed. A repeat that
        confirms a command is still announced, and every button press is a change (its
        ``last_changed`` moves), even the same press twice.

        ``fresh`` (one dict per device message) shares one new device Context between the
        readings of a message that change with no command behind them: one message, one cause.
        """
        now = time.time() if now is None else now
        entity_id = entity.id
        states = self.registry.states
        old = states.get(entity_id)
        cause = (
            self.commands.on_report(entity_id, value, attributes)
            if entity_id in self._awaiting
            else None
        )
        if old is None:
            merged: Mapping[str, Any] = attributes
            changed = True
        else:
            # A button's state is its last press: the same press again is a new event.
            changed = old.value != value or entity.kind is EntityKind.BUTTON
            merged = old.attributes
            if attributes:
                for key, attribute in attributes.items():
                    if key not in merged or merged[key] != attribute:
                        merged = {**merged, **attributes}
                        break
            if not changed and merged is old.attributes and cause is None:
                touch_reported(old, now)
                self.stats.reports += 1
                return None
        if context is None:
            if cause is not None:
                context = make_context(Origin.DEVICE, entity.device_id, cause, now)
            elif changed or old is None:
                device_id = entity.device_id
                context = fresh.get(device_id) if fresh is not None else None
                if context is None:
                    context = make_context(Origin.DEVICE, device_id, None, now)
                    if fresh is not None:
                        fresh[device_id] = context
            else:
                context = old.context  # the value's cause is unchanged
        new = make_state(
            entity_id,
            value,
            merged,
            now if changed or old is None else old.last_changed,
            now,
            context,
        )
        states[entity_id] = new
        self.stats.reports += 1
        if changed:
            self.stats.state_changes += 1
        event = make_state_changed(entity_id, entity.device_id, old, new)
        self.bus.publish(event)
        return event

    def report_states(
        self,
        reports: Sequence[tuple[str, Any, Mapping[str, Any] | None]],
        repeats: Sequence[State] = (),
    ) -> None:
        """Validate every report, then apply them all (see ``PluginContext.report_states``).

        A bare repeat (the current value again, of the same type, no attributes, no command
        awaiting it) is already valid: it skips validation and only moves ``last_reported``.
        ``repeats`` are States the caller found current and reported again as they are; a
        button's (its press again is a new press) or one a command awaits is reported in full.
        """
        entities = self.registry.entities
        states = self.registry.states
        awaiting = self._awaiting
        button = EntityKind.BUTTON
        validated: list[tuple[Entity, Any, dict[str, Any]]] = []
        bare: list[State] = []
        in_full: list[tuple[str, Any, Mapping[str, Any] | None]] = []
        for state in repeats:
            entity_id = state.entity_id
            if states.get(entity_id) is not state:
                raise KeyError(f"{entity_id}: not the current state")
            if entity_id in awaiting or entities[entity_id].kind is button:
                in_full.append((entity_id, state.value, None))
            else:
                bare.append(state)
        for entity_id, value, attributes in [*reports, *in_full] if in_full else reports:
            entity = entities.get(entity_id)
            if entity is None:
                raise KeyError(f"unknown entity {entity_id!r}")
            if not attributes:
                old = states.get(entity_id)
                if (
                    old is not None
                    and type(value) is type(old.value)
                    and value == old.value
                    and entity.kind is not button
                    and entity_id not in awaiting
                ):
                    bare.append(old)
                    continue
            try:
                validated.append((entity, *self.validate_report(entity, value, attributes)))
            except InvalidValue as exc:
                raise InvalidValue(f"{entity_id}: {exc}") from None
        # One timestamp and one cause for the whole message (the readings arrived together).
        now = time.time()
        for old in bare:
            touch_reported(old, now)
        self.stats.reports += len(bare)
        fresh: dict[str, Context] = {}
        for entity, value, attrs in validated:
            self.apply_state(entity, value, attrs, now=now, fresh=fresh)

    def report_state(
        self,
        entity_id: str,
        value: Any,
        attributes: Mapping[str, Any] | None = None,
        *,
        context: Context | None = None,
    ) -> StateChanged | None:
        """Validate and store one entity's report (raises KeyError / InvalidValue); None when
        it only repeated the current state."""
        entity = self.registry.entities.get(entity_id)
        if entity is None:
            raise KeyError(f"unknown entity {entity_id!r}")
        value, attrs = self.validate_report(entity, value, attributes)
        return self.apply_state(entity, value, attrs, context=context)

    def reject(self, topic: str, reason: str, *, kind: str = "malformed") -> None:
        """Count and log (rate limited) an inbound message that was ignored."""
        stats = self.stats
        stats.rejected += 1
        stats.rejected_by_reason[kind] = stats.rejected_by_reason.get(kind, 0) + 1
        now = time.monotonic()
        window_start, count = self._reject_log.get(kind, (now, 0))
        if now - window_start > 60:
            window_start, count = now, 0
        if count < _REJECT_LOG_BURST:
            _LOGGER.warning("ignored message on %s: %s", topic[:200], reason[:300])
        elif count == _REJECT_LOG_BURST:
            _LOGGER.warning("more %s messages ignored; logging again in a minute", kind)
        self._reject_log[kind] = (window_start, count + 1)
        if self.bus.has_listeners(PayloadRejected):
            self.bus.publish(PayloadRejected(topic[:200], reason[:300]))

    # ----- registry --------------------------------------------------------------------------

    def register_device(self, device: Device, entities: Sequence[Entity]) -> bool:
        """Add or update a device with its entities; return True if anything changed.

        Entities the device no longer lists are removed with their states; the states of the
        others are kept.
        """
        registry = self.registry
        custom = self._customizations.get(device.id)
        if custom is not None:
            # hub.yaml's `devices:` overrides, on copies: the adapter's objects stay its own.
            device, entities = custom.apply(device, entities)
        previous = registry.devices.get(device.id)
        new_ids = [entity.id for entity in entities]
        if previous is not None:
            if previous.owner != device.owner:
                _LOGGER.warning(
                    "device %s is now announced by %s (was %s)",
                    device.id,
                    device.owner,
                    previous.owner,
                )
            device.available = previous.available
            same = previous.to_dict() == device.to_dict() and all(
                registry.entities.get(e.id) == e for e in entities
            )
            if same:
                return False
            for old_id in previous.entity_ids:
                if old_id not in new_ids:
                    registry.entities.pop(old_id, None)
                    registry.states.pop(old_id, None)
        device.entity_ids = new_ids
        registry.devices[device.id] = device
        for entity in entities:
            registry.entities[entity.id] = entity
        if self.storage is not None:
            self.storage.queue_device(device, entities)
        registry.invalidate_groups()  # its area, tags or entities may change group memberships
        self.bus.publish(DeviceRegistered(device.id))
        return True

    def remove_device(self, device_id: str) -> None:
        """Forget a device, its entities and states."""
        device = self.registry.devices.pop(device_id, None)
        if device is None:
            return
        for entity_id in device.entity_ids:
            self.registry.entities.pop(entity_id, None)
            self.registry.states.pop(entity_id, None)
        if self.storage is not None:
            self.spawn(self.storage.remove_device(device_id), name=f"remove {device_id}")
        self.registry.invalidate_groups()
        self.bus.publish(DeviceRemoved(device_id))

    def set_available(self, device_id: str, available: bool) -> None:
        """Mark a device online or offline; resend its unconfirmed commands when it says online.

        Every "online" counts, not only a change: a device that re-announces itself has just
        (re)connected and may have missed commands while it was away (a broker restart).
        """
        device = self.registry.devices.get(device_id)
        if device is None:
            return
        if available:
            resent = self.commands.resend(device_id)
            if resent:
                _LOGGER.info("%s is back; sent %d unconfirmed command(s) again", device_id, resent)
        if device.available == available:
            return
        device.available = available
        if self.storage is not None:
            self.storage.queue_device(device, list(self.registry.entities_of(device_id)))
        self.bus.publish(DeviceAvailability(device_id, available))

    def _apply_configured_areas_and_groups(self) -> None:
        for area in self.config.areas:
            self.registry.areas[area.id] = Area(area.id, area.name)
        for group in self.config.groups:
            self.registry.groups[group.id] = Group(
                group.id, group.name, list(group.members), group.aggregate, group.kind
            )
        # Devices loaded from storage get hub.yaml's current overrides before anything reads them.
        for device_id, custom in self._customizations.items():
            device = self.registry.devices.get(device_id)
            if device is None:
                continue
            customized, entities = custom.apply(device, list(self.registry.entities_of(device_id)))
            self.registry.devices[device_id] = customized
            for entity in entities:
                self.registry.entities[entity.id] = entity
        self.registry.invalidate_groups()

    # ----- tasks -----------------------------------------------------------------------------

    def spawn(self, awaitable: Awaitable[Any], *, name: str) -> asyncio.Task[Any]:
        """Run ``awaitable`` in the background; its failure is logged, never lost silently."""

        async def guarded() -> Any:
            try:
                return await awaitable
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("background task %r failed", name)
                return None

        task = asyncio.get_running_loop().create_task(guarded(), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self, *, start_plugins: bool = True, start_rules: bool = True) -> None:
        """Open storage, connect to (or start) the broker, subscribe, and start plug-ins."""
        from hub.mirror import Mirror
        from hub.mqtt import MqttLink
        from hub.native import NativeDialect
        from hub.storage import Storage

        config = self.config
        self.storage = Storage(
            config.database.resolved_url, flush_interval=config.database.flush_interval
        )
        await self.storage.start()
        await self.storage.load_into(self.registry)
        for device in self.registry.devices.values():
            device.available = False  # until the device says otherwise on this run
        self._apply_configured_areas_and_groups()
        self._undo.append(self.bus.subscribe(StateChanged, self._persist_state, owner="storage"))
        self._undo += [
            self.bus.subscribe(CommandIssued, self._audit_command, owner="audit"),
            self.bus.subscribe(CommandConfirmed, self._audit_command, owner="audit"),
            self.bus.subscribe(CommandFailed, self._audit_command, owner="audit"),
        ]

        url = config.mqtt.url
        if url is None:
            from hub.broker import make_embedded_broker

            self.broker = make_embedded_broker()
            await self.broker.start()
            url = self.broker.url
            _LOGGER.info("no broker configured; started %s", self.broker.describe())
        status_topic = f"{self.base_topic}/status"
        protocol = config.mqtt.protocol
        if self.broker is not None and not self.broker.supports_mqtt5:
            protocol = "3.1.1"  # our own in-process broker: no need to probe
        self.mqtt = MqttLink(
            url,
            client_id=config.mqtt.client_id,
            username=config.mqtt.username,
            password=config.mqtt.password,
            keepalive=config.mqtt.keepalive,
            protocol=protocol,
            session_expiry=config.mqtt.session_expiry,
            will=(status_topic, b"offline"),
            tls_ca=config.mqtt.tls_ca,
        )
        native = NativeDialect(self, prefix=config.hub.device_topic)
        self._undo.append(self.commands.register_dialect(NativeDialect.OWNER, native))
        native.attach(self.mqtt)
        self.mirror = Mirror(self, self.mqtt)
        self.mirror.attach()
        self.mqtt.on_connect(self._on_reconnect)
        await self.mqtt.start()
        # --- scenes (before rules: a rule's scene action needs them) ---
        from hub.scenes import SceneService

        self.scenes = SceneService(self)
        self.scenes.load()
        await self.scenes.start()
        # --- end scenes ---
        if start_rules:
            from hub.rules.service import RulesService

            self.rules = RulesService(self)
            await self.rules.start()
        await self._start_people_services()
        if start_plugins:
            from hub.plugins import PluginManager

            self.plugins = PluginManager(self)
            await self.plugins.start_all()
        self._write_runtime_file()
        # Objects that live as long as the hub (modules, registry, SQLAlchemy's tables) need
        # no cyclic collection; freezing them keeps each full collection short under load.
        gc.collect()
        gc.freeze()
        self.started = True

    async def _start_people_services(self) -> None:
        """Start the notification router and the command layer (before the plug-ins, which
        register channels with the first and hand requests to the second)."""
        from hub.conversation import CommandLayer, People
        from hub.notify.router import NotificationRouter

        self.notifier = NotificationRouter(self)
        await self.notifier.start()
        self.conversation = CommandLayer(
            self, People.of(person.to_person() for person in self.config.people)
        )
        self.conversation.start()

    def _write_runtime_file(self) -> None:
        # CLI commands that talk to the running hub (hub rules enable ...) find its broker
        # here when hub.yaml names none (the embedded broker's port is chosen at start).
        if self.config_path is None or self.mqtt is None:
            return
        path = self.config_path.parent / ".hub-runtime.json"
        broker = self.broker.url if self.broker is not None else self.config.mqtt.url
        try:
            path.write_text(orjson.dumps({"pid": os.getpid(), "broker": broker}).decode())
            self._runtime_file = path
        except OSError as exc:
            _LOGGER.warning("cannot write %s: %s", path, exc)

    def _on_reconnect(self) -> None:
        resent = self.commands.resend()
        if resent:
            _LOGGER.info("broker connection back; sent %d unconfirmed command(s) again", resent)

    def _persist_state(self, event: StateChanged) -> None:
        if self.storage is not None:
            self.storage.queue_state(event.new)

    def _audit_command(self, event: Event) -> None:
        if self.storage is None:
            return
        from hub.storage import AuditEntry

        if isinstance(event, CommandIssued):
            action, params, result, detail = event.action, event.params, "issued", ""
        elif isinstance(event, CommandConfirmed):
            action, params, result = "", {}, "confirmed"
            detail = f"{(event.confirmed_at - event.issued_at) * 1000:.1f} ms"
        elif isinstance(event, CommandFailed):
            action, params, result, detail = "", {}, "failed", event.reason
        else:
            return
        self.storage.queue_audit(
            AuditEntry(
                ts=time.time(),
                kind="command",
                target=event.entity_id,
                action=action,
                params=params,
                context=event.context,
                result=result,
                detail=detail,
                command_id=event.command_id,
            )
        )

    async def stop(self) -> None:
        """Stop plug-ins, say goodbye on MQTT, flush storage and stop an embedded broker."""
        if self.plugins is not None:
            await self.plugins.stop_all()
        if self.rules is not None:
            await self.rules.stop()
        if self.notifier is not None:  # after rules and plug-ins: sends in flight finish
            await self.notifier.stop()
        if self.conversation is not None:
            self.conversation.stop()
        if self.scenes is not None:  # scenes
            self.scenes.stop()
        self.commands.cancel_all("the hub is shutting down")
        if self.mqtt is not None:
            mirror = getattr(self, "mirror", None)
            if mirror is not None:
                await mirror.goodbye()
            await self.mqtt.stop()
        for task in list(self._background):
            # Pending device saves must land: wait for them rather than cancel.
            await asyncio.wait({task}, timeout=5)
        await self.bus.drain()
        if self.storage is not None:
            await self.storage.close()
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        if self.broker is not None:
            await self.broker.stop()
        if self._runtime_file is not None:
            self._runtime_file.unlink(missing_ok=True)
        self.started = False
        self._stopped.set()

    def request_stop(self) -> None:
        """Ask :meth:`run_until_stopped` to return (signal handlers call this)."""
        self._stopped.set()

    async def run_until_stopped(self) -> None:
        """Wait until :meth:`request_stop` is called."""
        await self._stopped.wait()
