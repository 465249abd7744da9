"""The hub's own device convention, understood out of the box (the simulator speaks it).

``<prefix>/<device>/config``        retained JSON description of the device and its entities
``<prefix>/<device>/availability``  retained ``online`` / ``offline``
``<prefix>/<device>/state``         JSON ``{"<entity>": value}`` or
                                    ``{"<entity>": {"state": v, attr: v}}``
``<prefix>/<device>/set``           JSON command from the hub:
                                    ``{"entity", "action", "params", "id"}``
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from hub.commands import CommandError
from hub.model import (
    ID_PATTERN,
    Device,
    Entity,
    EntityKind,
    InvalidValue,
)

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.mqtt import MqttLink

# Real state and config payloads are a few hundred bytes; anything this big is broken or hostile.
MAX_PAYLOAD = 64 * 1024
_KINDS = {kind.value: kind for kind in EntityKind}
_DEVICE_FIELDS = ("name", "area", "manufacturer", "model", "firmware", "via")


class NativeDialect:
    """Turns the convention's messages into registry updates and commands into messages."""

    OWNER = "native"

    def __init__(self, hub: Hub, *, prefix: str) -> None:
        self._hub = hub
        self.prefix = prefix
        self._mqtt: MqttLink | None = None
        self._prefix_len = len(prefix) + 1

    def attach(self, mqtt: MqttLink) -> None:
        """Subscribe to the convention's topics."""
        self._mqtt = mqtt
        p = self.prefix
        mqtt.subscribe(f"{p}/+/config", self._on_config, owner="native", qos=1)
        mqtt.subscribe(f"{p}/+/availability", self._on_availability, owner="native", qos=1)
        mqtt.subscribe(f"{p}/+/state", self._on_state, owner="native")

    def _device_id(self, topic: str) -> str | None:
        device_id = topic[self._prefix_len : topic.rindex("/")]
        return device_id if ID_PATTERN.match(device_id) else None

    # ----- inbound ---------------------------------------------------------------------------

    def _on_state(self, topic: str, payload: bytes, received: float) -> None:
        hub = self._hub
        device_id = self._device_id(topic)
        if device_id is None:
            hub.reject(topic, "invalid device id in topic", kind="bad_topic")
            return
        device = hub.registry.devices.get(device_id)
        if device is None or device.owner != self.OWNER:
            hub.reject(
                topic,
                f"state for unknown device {device_id!r} (no config seen yet)",
                kind="unknown_device",
            )
            return
        if len(payload) > MAX_PAYLOAD:
            hub.reject(
                topic, f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}", kind="too_large"
            )
            return
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            hub.reject(topic, f"not JSON: {exc}", kind="not_json")
            return
        if not isinstance(data, dict) or not data:
            hub.reject(
                topic, "expected a non-empty JSON object of entity states", kind="wrong_type"
            )
            return
        entities = hub.registry.entities
        validated: list[tuple[Entity, Any, dict[str, Any]]] = []
        # Validate the whole message first: a message with one bad part changes nothing.
        for key, body in data.items():
            entity = entities.get(f"{device_id}.{key}")
            if entity is None:
                hub.reject(topic, f"{device_id} has no entity {key!r}", kind="unknown_entity")
                return
            if isinstance(body, dict):
                value = body.get("state")
                attributes = {k: v for k, v in body.items() if k != "state"}
            else:
                value, attributes = body, None
            try:
                value, attrs = hub.validate_report(entity, value, attributes)
            except InvalidValue as exc:
                hub.reject(topic, f"{entity.id}: {exc}", kind="wrong_type")
                return
            validated.append((entity, value, attrs))
        # last_updated is stamped when the state is applied, not when paho read the socket,
        # so queueing inside the hub is part of the latency it reports.
        for entity, value, attrs in validated:
            hub.apply_state(entity, value, attrs)

    def _on_availability(self, topic: str, payload: bytes, received: float) -> None:
        device_id = self._device_id(topic)
        word = payload.decode("utf-8", "replace").strip().lower()
        if device_id is None or word not in ("online", "offline"):
            self._hub.reject(
                topic,
                f"availability must be 'online' or 'offline', got {word[:40]!r}",
                kind="wrong_type",
            )
            return
        self._hub.set_available(device_id, word == "online")

    def _on_config(self, topic: str, payload: bytes, received: float) -> None:
        hub = self._hub
        device_id = self._device_id(topic)
        if device_id is None:
            hub.reject(topic, "invalid device id in topic", kind="bad_topic")
            return
        if not payload:
            # An empty retained config is how a device (or an admin) removes itself.
            hub.remove_device(device_id)
            return
        if len(payload) > MAX_PAYLOAD:
            hub.reject(
                topic, f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}", kind="too_large"
            )
            return
        try:
            device, entities = parse_device_config(device_id, orjson.loads(payload), self.prefix)
        except orjson.JSONDecodeError as exc:
            hub.reject(topic, f"not JSON: {exc}", kind="not_json")
            return
        except ValueError as exc:
            hub.reject(topic, str(exc), kind="bad_config")
            return
        hub.register_device(device, entities)

    # ----- outbound --------------------------------------------------------------------------

    def send_command(
        self,
        device: Device,
        entity: Entity,
        action: str,
        params: Mapping[str, Any],
        command_id: str,
    ) -> None:
        """Publish ``<prefix>/<device>/set`` with QoS 1."""
        if self._mqtt is None:
            raise CommandError("the MQTT link is not started")
        body = {"entity": entity.key, "action": action, "params": dict(params), "id": command_id}
        self._mqtt.publish(f"{self.prefix}/{device.id}/set", orjson.dumps(body), qos=1)


def parse_device_config(device_id: str, data: Any, prefix: str) -> tuple[Device, list[Entity]]:
    """Build a device and its entities from a config payload; raise ValueError saying why not."""
    if not isinstance(data, dict):
        raise ValueError("device config must be a JSON object")
    for name in _DEVICE_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise ValueError(f"device config: {name!r} must be a string")
    raw_entities = data.get("entities")
    if not isinstance(raw_entities, dict) or not raw_entities:
        raise ValueError("device config: 'entities' must be a non-empty object")
    if len(raw_entities) > 256:
        raise ValueError("device config: more than 256 entities")
    identities = data.get("identities") or {}
    if not isinstance(identities, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in identities.items()
    ):
        raise ValueError("device config: 'identities' must map names to strings")
    entities: list[Entity] = []
    for key, spec in raw_entities.items():
        if not isinstance(key, str) or not ID_PATTERN.match(key):
            raise ValueError(f"device config: invalid entity key {key!r}")
        if not isinstance(spec, dict):
            raise ValueError(f"device config: entity {key!r} must be an object")
        kind = _KINDS.get(spec.get("kind"))  # type: ignore[arg-type]
        if kind is None:
            raise ValueError(
                f"device config: entity {key!r} has unknown kind {spec.get('kind')!r}; "
                f"use one of {', '.join(_KINDS)}"
            )
        for name in ("name", "unit", "device_class"):
            if spec.get(name) is not None and not isinstance(spec[name], str):
                raise ValueError(f"device config: entity {key!r}: {name!r} must be a string")
        name = spec.get("name") or f"{data.get('name') or device_id} {key.replace('_', ' ')}"
        options = _entity_options(key, kind, spec)
        entities.append(
            Entity(
                id=f"{device_id}.{key}",
                device_id=device_id,
                key=key,
                kind=kind,
                name=name,
                unit=spec.get("unit"),
                device_class=spec.get("device_class"),
                options=options,
            )
        )
    device = Device(
        id=device_id,
        name=data.get("name") or device_id,
        owner=NativeDialect.OWNER,
        area=data.get("area"),
        manufacturer=data.get("manufacturer"),
        model=data.get("model"),
        firmware=data.get("firmware"),
        via=data.get("via"),
        identities=dict(identities),
        native={"topic": f"{prefix}/{device_id}"},
    )
    return device, entities


def _entity_options(key: str, kind: EntityKind, spec: dict[str, Any]) -> dict[str, Any]:
    """A number's ``min``/``max``/``step`` or a select's ``options``, checked."""
    options: dict[str, Any] = {}
    if kind is EntityKind.NUMBER:
        for name in ("min", "max", "step"):
            value = spec.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"device config: entity {key!r}: {name!r} must be a number")
            options[name] = value
        if "min" in options and "max" in options and options["min"] > options["max"]:
            raise ValueError(f"device config: entity {key!r}: 'min' is above 'max'")
        if options.get("step", 1) <= 0:
            raise ValueError(f"device config: entity {key!r}: 'step' must be above 0")
    elif kind is EntityKind.SELECT:
        choices = spec.get("options")
        if (
            not isinstance(choices, list)
            or not choices
            or len(choices) > 256
            or not all(isinstance(c, str) and 0 < len(c) <= 255 for c in choices)
        ):
            raise ValueError(
                f"device config: entity {key!r}: 'options' must be a list of 1-256 texts"
            )
        options["options"] = list(choices)
    return options
