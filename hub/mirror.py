"""Mirrors the normalized model onto MQTT under the base topic, and takes commands from it.

``<base>/status``                  retained ``online``; ``offline`` as the last will
``<base>/stats``                   retained JSON counters, refreshed every few seconds
``<base>/devices/<id>/config``     retained device description with its entities
``<base>/devices/<id>/state``      retained JSON of every entity's state
``<base>/groups/<id>/state``       retained JSON of a group's aggregated state:
                                   ``{"state", "aggregate", "members", "on", "known",
                                   "last_changed"}``, republished on each GroupStateChanged
                                   (``hub.groups`` recomputes it)
``<base>/devices/<id>/set``        JSON command to the device:
                                   ``{"entity", "action", "params", "id"}``
``<base>/command``                 JSON command to any target:
                                   ``{"target", "action", "params", "id"}``
``<base>/events/<name>``           the event stream (commands, availability, rejections, ...)
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from hub.commands import Command, CommandError
from hub.events import (
    CommandFailed,
    DeviceAvailability,
    DeviceRegistered,
    DeviceRemoved,
    Event,
    GroupStateChanged,
    StateChanged,
)
from hub.model import Context, Device, Origin, State, new_context_id

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.mqtt import MqttLink

_LOGGER = logging.getLogger(__name__)
_STATS_PERIOD = 2.0


class Mirror:
    """Publishes the registry's devices and states, the event stream and the hub's status."""

    def __init__(self, hub: Hub, mqtt: MqttLink) -> None:
        self._hub = hub
        self._mqtt = mqtt
        self.base = hub.base_topic
        # device id -> the entities whose state changed since its last publish
        self._dirty: dict[str, set[str]] = {}
        self._fragments: dict[str, tuple[State, orjson.Fragment]] = {}
        # device id -> the Device its last body was built for, and that body's entities (by
        # key, in the device's order): a flush updates only the entities that changed
        self._bodies: dict[str, tuple[Device, dict[str, orjson.Fragment]]] = {}
        self._flush_scheduled = False
        self._stats_task: asyncio.Task[None] | None = None
        self._undo: list[Any] = []

    def attach(self) -> None:
        """Subscribe to the bus and the command topics; resync on every (re)connect."""
        bus = self._hub.bus
        self._undo += [
            bus.subscribe(StateChanged, self._on_state, owner="mirror"),
            bus.subscribe(DeviceRegistered, self._on_device, owner="mirror"),
            bus.subscribe(DeviceAvailability, self._on_availability, owner="mirror"),
            bus.subscribe(DeviceRemoved, self._on_removed, owner="mirror"),
            bus.subscribe(GroupStateChanged, self._on_group, owner="mirror"),
            # States travel on the retained device topics, not as events.
            bus.subscribe_all(self._on_any, owner="mirror", except_types=(StateChanged,)),
            self._mqtt.on_connect(self.resync),
            self._mqtt.subscribe(
                f"{self.base}/devices/+/set", self._on_device_command, owner="mirror", qos=1
            ),
            self._mqtt.subscribe(f"{self.base}/command", self._on_command, owner="mirror", qos=1),
        ]
        self._stats_task = asyncio.get_running_loop().create_task(self._stats_loop())

    # ----- outbound --------------------------------------------------------------------------

    def resync(self) -> None:
        """Publish status, every device and every state again (after a broker restart)."""
        mqtt = self._mqtt
        mqtt.publish(f"{self.base}/status", b"online", qos=1, retain=True)
        for device_id in list(self._hub.registry.devices):
            self._publish_config(device_id)
            self._publish_state(device_id)
        for group_id, snapshot in self._hub.groups.snapshots().items():
            group = self._hub.registry.groups.get(group_id)
            if group is not None:
                summary = snapshot.summary
                self._publish_group(
                    group_id,
                    {
                        "state": summary.state,
                        "aggregate": group.aggregate.value,
                        "members": summary.members,
                        "on": summary.on,
                        "known": summary.known,
                        "last_changed": snapshot.last_changed,
                    },
                )
        self._publish_stats()

    def _on_state(self, event: StateChanged) -> None:
        old = event.old
        if (
            old is not None
            and old.value == event.new.value
            and old.attributes == event.new.attributes
            and old.last_changed == event.new.last_changed
        ):
            if not _same_body(old, event.new):
                # A repeat that confirmed a command moves last_updated: the body kept for
                # the device no longer matches, and its next publish builds it anew.
                self._bodies.pop(event.device_id, None)
            return  # a repeat report: the retained state is still right (a press is not)
        changed = self._dirty.get(event.device_id)
        if changed is None:
            self._dirty[event.device_id] = {event.entity_id}
            self._schedule_flush()
        else:
            changed.add(event.entity_id)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            # Coalesce: a batch of reports for one device becomes one publish, at the end of
            # the current loop iteration (so no added latency).
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        if not self._mqtt.connected:
            return  # resync republishes everything on reconnect
        for device_id, changed in dirty.items():
            self._publish_state(device_id, changed)

    def _on_group(self, event: GroupStateChanged) -> None:
        if not self._mqtt.connected:
            return  # resync republishes every group on reconnect
        if event.removed:
            self._publish_group(event.group_id, None)
            return
        body = {
            "state": event.new,
            "aggregate": event.aggregate,
            "members": event.members,
            "on": event.on,
            "known": event.known,
            "last_changed": event.last_changed,
        }
        self._publish_group(event.group_id, body)

    def _publish_group(self, group_id: str, body: dict[str, Any] | None) -> None:
        topic = f"{self.base}/groups/{group_id}/state"
        if body is None:
            self._mqtt.publish(topic, b"", qos=1, retain=True)  # a removed group
        else:
            self._mqtt.publish(topic, orjson.dumps(body), retain=True)

    def _publish_state(self, device_id: str, changed: set[str] | None = None) -> None:
        """Publish the device's state; ``changed``: the only entities whose state changed
        since its last publish (None: any may have)."""
        registry = self._hub.registry
        device = registry.devices.get(device_id)
        if device is None:
            return
        states = registry.states
        by_id = registry.entities
        fragments = self._fragments
        kept = self._bodies.get(device_id)
        entities: dict[str, orjson.Fragment] | None = None
        if changed is not None and kept is not None and kept[0] is device:
            # The same Device (registering anew replaces it): only what changed is new.
            entities = kept[1]
            for entity_id in changed:
                entity = by_id.get(entity_id)
                state = states.get(entity_id)
                if entity is None or state is None or entity.key not in entities:
                    entities = None  # an entity's first state: its place is the device's
                    break
                fragment = orjson.Fragment(orjson.dumps(_entity_body(state)))
                fragments[entity_id] = (state, fragment)
                entities[entity.key] = fragment
        if entities is None:
            entities = {}
            # Every entity of the device: firmware devices have a dozen.
            for entity_id in device.entity_ids:
                entity = by_id.get(entity_id)
                state = states.get(entity_id)
                if entity is None or state is None:
                    continue
                cached = fragments.get(entity_id)
                if cached is None or (cached[0] is not state and not _same_body(cached[0], state)):
                    # States are immutable: serialise each one once, however often mirrored.
                    cached = (state, orjson.Fragment(orjson.dumps(_entity_body(state))))
                    fragments[entity_id] = cached
                entities[entity.key] = cached[1]
            self._bodies[device_id] = (device, entities)
        body = {"available": device.available, "entities": entities}
        self._mqtt.publish(
            f"{self.base}/devices/{device_id}/state", orjson.dumps(body), retain=True
        )

    def _publish_config(self, device_id: str) -> None:
        registry = self._hub.registry
        device = registry.devices.get(device_id)
        if device is None:
            return
        body = device.to_dict()
        body["entities"] = [e.to_dict() for e in registry.entities_of(device_id)]
        self._mqtt.publish(
            f"{self.base}/devices/{device_id}/config", orjson.dumps(body), qos=1, retain=True
        )

    def _on_device(self, event: DeviceRegistered) -> None:
        if self._mqtt.connected:
            self._publish_config(event.device_id)
            self._publish_state(event.device_id)

    def _on_availability(self, event: DeviceAvailability) -> None:
        if self._mqtt.connected:
            self._publish_state(event.device_id)

    def _on_removed(self, event: DeviceRemoved) -> None:
        self._bodies.pop(event.device_id, None)
        for entity_id in [e for e in self._fragments if e.startswith(f"{event.device_id}.")]:
            del self._fragments[entity_id]
        for leaf in ("config", "state"):
            self._mqtt.publish(
                f"{self.base}/devices/{event.device_id}/{leaf}", b"", qos=1, retain=True
            )

    def _on_any(self, event: Event) -> None:
        if not self._mqtt.connected:
            return
        body = event.payload()
        self._mqtt.publish(f"{self.base}/events/{event.name}", orjson.dumps(body, default=str))

    def _publish_stats(self) -> None:
        hub = self._hub
        link = self._mqtt.stats
        body = {
            "received": link.received,
            "reports": hub.stats.reports,
            "state_changes": hub.stats.state_changes,
            "rejected": hub.stats.rejected,
            "rejected_by_reason": hub.stats.rejected_by_reason,
            "pending_inbound": self._mqtt.pending_inbound(),
            "pending_commands": hub.commands.pending_count,
            # Writes queued for the database: grows when storage cannot keep up.
            "pending_writes": hub.storage.pending_writes if hub.storage is not None else 0,
            "devices": len(hub.registry.devices),
            "entities": len(hub.registry.entities),
            "listener_errors": hub.bus.listener_errors,
            "plugins": hub.plugins.health() if hub.plugins is not None else {},
        }
        self._mqtt.publish(f"{self.base}/stats", orjson.dumps(body), retain=True)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(_STATS_PERIOD)
            if self._mqtt.connected:
                self._publish_stats()

    async def goodbye(self) -> None:
        """Publish final stats and ``offline`` status before a clean disconnect."""
        if self._stats_task is not None:
            self._stats_task.cancel()
        for undo in self._undo:
            undo()
        self._undo.clear()
        if self._mqtt.connected:
            self._publish_stats()
            try:
                await self._mqtt.publish_acked(
                    f"{self.base}/status", b"offline", retain=True, timeout=3
                )
            except TimeoutError:
                _LOGGER.warning("the broker did not acknowledge the hub's offline status")

    # ----- inbound commands ------------------------------------------------------------------

    def _on_device_command(self, topic: str, payload: bytes, received: float) -> None:
        device_id = topic[len(self.base) + len("/devices/") : -len("/set")]
        body = self._parse_command(topic, payload)
        if body is None:
            return
        entity = body.get("entity")
        if entity is not None and not isinstance(entity, str):
            self._refuse(topic, body, "'entity' must be a string")
            return
        target = f"{device_id}.{entity}" if entity else f"device:{device_id}"
        self._run(topic, body, target)

    def _on_command(self, topic: str, payload: bytes, received: float) -> None:
        body = self._parse_command(topic, payload)
        if body is None:
            return
        target = body.get("target")
        if not isinstance(target, str) or not target:
            self._refuse(topic, body, "'target' must be an entity, device, group or area id")
            return
        self._run(topic, body, target)

    def _parse_command(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        if len(payload) > 16 * 1024:
            self._hub.reject(topic, "command payload over 16 KiB", kind="too_large")
            return None
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            self._hub.reject(topic, f"command is not JSON: {exc}", kind="not_json")
            return None
        if not isinstance(body, dict):
            self._hub.reject(topic, "command must be a JSON object", kind="wrong_type")
            return None
        return body

    def _refuse(self, topic: str, body: dict[str, Any], reason: str) -> None:
        request_id = str(body.get("id") or new_context_id())
        _LOGGER.warning("refused command on %s: %s", topic, reason)
        self._hub.bus.publish(
            CommandFailed(
                request_id,
                request_id,
                str(body.get("target", "")),
                reason,
                Context(Origin.MQTT, topic),
            )
        )

    def _run(self, topic: str, body: dict[str, Any], target: str) -> None:
        action = body.get("action")
        params = body.get("params") or {}
        if not isinstance(action, str) or not action:
            self._refuse(topic, body, "'action' must be a string such as 'turn_on'")
            return
        if not isinstance(params, dict):
            self._refuse(topic, body, "'params' must be an object")
            return
        request_id = str(body.get("id") or new_context_id())[:128]
        context = Context(Origin.MQTT, topic)
        command = Command(target, action, context, params, request_id)
        try:
            self._hub.commands.issue(command)
        except CommandError as exc:
            self._refuse(topic, {**body, "id": request_id, "target": target}, str(exc))


def _entity_body(state: State) -> dict[str, Any]:
    return {
        "state": state.value,
        "attributes": state.attributes,
        "last_changed": state.last_changed,
        "last_updated": state.last_updated,
        "context": state.context.id,
        "cause": state.context.describe(),
    }


def _same_body(mirrored: State, state: State) -> bool:
    """True when ``state`` mirrors as ``mirrored`` did: the same state, or a repeat report that
    moved only ``last_reported`` (which the mirror does not carry)."""
    return mirrored is state or (
        mirrored.value is state.value
        and mirrored.attributes is state.attributes
        and mirrored.context is state.context
        and mirrored.last_updated == state.last_updated
        and mirrored.last_changed == state.last_changed
    )
