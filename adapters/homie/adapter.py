"""The Homie 5 adapter: ``$state``, ``$description`` and property values in, ``/set`` out.

Topics read (``<d>`` is the ``domain`` setting, default ``homie``), all through one
subscription to ``<d>/5/#``:

``<d>/5/<id>/$state``          ``init``, ``ready``, ``disconnected``, ``sleeping``, ``lost``:
                               availability (``ready``/``sleeping`` online); an empty retained
                               payload removes the device
``<d>/5/<id>/$description``    the device, its nodes and properties (JSON): one hub device,
                               its entities replaced whenever the document changes
``<d>/5/<id>/<node>/<prop>``   a property value, parsed strictly by datatype and format
``<d>/5/<id>/<node>/<prop>/$target``  the value the property is moving to: the entity's
                               ``target`` attribute until the value reaches it (None then)
``<d>/5/<id>/$alert/<alert>``  a retained, user-facing alert: a ``device_alert`` hub event
                               (notifications route it); an empty payload resolves it
``<d>/5/<id>/$log/<level>``    ignored: device logs are not the hub's to keep

Topics written: ``<d>/5/<id>/<node>/<prop>/set``, never retained, QoS 2 for retained
properties and QoS 0 for non-retained ones (the convention's "QoS and retained messages").

The hub's device id is ``id_prefix`` + the Homie id (``homie_kitchen-light``), so a rename
changes the name only. A child device is ``via`` its parent; when a root device is ``lost``
every device below it is offline too. Values that come before their ``$description`` are
kept (bounded) and applied when it arrives.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from adapters.homie.description import (
    Description,
    DescriptionError,
    EntityPlan,
    check_homie_id,
    command_values,
    parse_description,
    plan_entities,
    read_property,
)
from adapters.homie.settings import Settings
from adapters.homie.values import PayloadError, PropertySpec, format_value, parse_value
from hub.api import (
    CommandError,
    Context,
    CustomEvent,
    Device,
    Entity,
    EntityKind,
    InvalidValue,
    Origin,
    Plugin,
    PluginContext,
)

OWNER: Final = "homie"
STATES: Final = frozenset({"init", "ready", "disconnected", "sleeping", "lost"})
ONLINE_STATES: Final = frozenset({"ready", "sleeping"})
# Values kept for devices not described yet (retained messages come in no particular order).
MAX_EARLY: Final = 20_000
MAX_EARLY_BYTES: Final = 8 * 1024 * 1024
#: The hub event an alert becomes (notifications route it like any custom event).
ALERT_EVENT: Final = "device_alert"
MAX_ALERTS: Final = 64  # per device
MAX_ALERT_TEXT: Final = 1000  # characters of an alert kept and told
_TARGET: Final = "/$target"  # the suffix of a property's target among early payloads

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class _HomieDevice:
    """What the adapter knows of one Homie device."""

    homie_id: str
    hub_id: str
    state: str | None = None
    description: Description | None = None
    raw_description: bytes | None = None
    plans: dict[str, EntityPlan] = field(default_factory=dict)  # entity key -> plan
    by_path: dict[str, EntityPlan] = field(default_factory=dict)  # "node/prop" -> plan
    early: dict[str, bytes] = field(default_factory=dict)  # "node/prop" -> payload
    pending_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> attributes
    # entity key -> (brightness value sent to the device, the hub brightness it stands for)
    brightness_sent: dict[str, tuple[float, float]] = field(default_factory=dict)
    reported: bool | None = None  # the availability the hub was last told
    last: dict[str, Any] = field(default_factory=dict)  # "node/prop" -> last parsed value
    # "node/prop" -> (the $target parsed, the same in the hub's terms)
    targets: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    alerts: dict[str, str] = field(default_factory=dict)  # alert id -> text, as now raised
    told: dict[str, str] = field(default_factory=dict)  # alerts told before this run (stored)
    untold: set[str] = field(default_factory=set)  # alerts waiting for the device's name

    @property
    def root(self) -> str | None:
        """The Homie id of the root device, for a child device."""
        return self.description.root if self.description else None


class Homie(Plugin):
    """Speaks the Homie 5 convention for the hub (see the module documentation)."""

    settings_model = Settings

    def __init__(self, context: PluginContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self.settings: Settings = settings
        self.base = f"{settings.domain}/5/"
        self._devices: dict[str, _HomieDevice] = {}  # Homie id -> device
        self._by_hub: dict[str, _HomieDevice] = {}  # hub device id -> device
        self._early_count = 0
        self._early_bytes = 0

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the commands for Homie devices and follow ``<domain>/5/#``."""
        ctx = self.context
        ctx.register_dialect(OWNER, self)
        # One subscription for everything: a value is never missed between a $description and
        # a per-device SUBACK. The link renews it after every reconnect and the broker then
        # sends every retained $state, $description and value again.
        ctx.subscribe_mqtt(f"{self.base}#", self._on_message, qos=2)
        ctx.on_mqtt_connect(self._on_reconnect)

    async def stop(self) -> None:
        """Nobody follows the devices until the adapter is back: their availability is unknown."""
        for device in self._devices.values():
            if device.hub_id in self.context.devices:
                self.context.set_available(device.hub_id, False)
        self._devices.clear()
        self._by_hub.clear()

    def _on_reconnect(self) -> None:
        # The retained topics arrive again with the renewed subscription; values kept for
        # undescribed devices are stale now and come again with them.
        for device in self._devices.values():
            device.early.clear()
        self._early_count = self._early_bytes = 0
        self.context.logger.info("broker (re)connected: re-reading the retained Homie topics")

    def hub_id(self, homie_id: str) -> str:
        """The hub's device id for a Homie device id."""
        return f"{self.settings.id_prefix}{homie_id}"

    # ----- routing ---------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, received: float) -> None:
        """Everything under ``<domain>/5/``, routed by its levels."""
        levels = topic[len(self.base) :].split("/")
        first = levels[0]
        if first == "$broadcast":
            return  # controllers' messages to every device, ours included
        # Our own commands and other controllers' commands: not device state.
        if len(levels) == 4 and levels[3] == "set":
            return
        if len(levels) >= 2 and levels[1] == "$log":
            return  # device logs (the convention's "Logging"): not kept by the hub
        target = len(levels) == 4 and levels[3] == "$target"
        try:
            check_homie_id(first, "device id")
            if levels[1:2] == ["$alert"]:
                if len(levels) != 3:
                    raise DescriptionError("an alert topic is <device>/$alert/<alert id>")
                check_homie_id(levels[2], "alert id")
            elif len(levels) == 3 or target:
                check_homie_id(levels[1], "node id")
                check_homie_id(levels[2], "property id")
        except DescriptionError as exc:
            self.context.reject(topic, str(exc), kind="bad_topic")
            return
        if levels[1:2] == ["$alert"]:
            self._on_alert(topic, first, levels[2], payload)
            return
        if target:
            self._on_target(topic, first, f"{levels[1]}/{levels[2]}", payload)
            return
        if len(levels) == 2:
            if levels[1] == "$state":
                self._on_state(topic, first, payload)
            elif levels[1] == "$description":
                self._on_description(topic, first, payload)
            # other $attributes belong to extensions; they are not ours to judge
        elif len(levels) == 3:
            self._on_value(topic, first, f"{levels[1]}/{levels[2]}", payload)

    def _too_large(self, topic: str, payload: bytes, limit: int) -> bool:
        if len(payload) <= limit:
            return False
        self.context.reject(
            topic, f"payload of {len(payload)} bytes is over {limit}", kind="too_large"
        )
        return True

    def _device(self, topic: str, homie_id: str) -> _HomieDevice | None:
        device = self._devices.get(homie_id)
        if device is not None:
            return device
        if len(self._devices) >= self.settings.max_devices:
            self.context.reject(
                topic, f"more than {self.settings.max_devices} Homie devices", kind="too_many"
            )
            return None
        hub_id = self.hub_id(homie_id)
        if len(hub_id) > 64:
            self.context.reject(
                topic, f"device id {hub_id!r} would be over 64 characters", kind="bad_topic"
            )
            return None
        device = _HomieDevice(homie_id, hub_id)
        stored = self.context.devices.get(hub_id)
        if stored is not None and stored.owner == OWNER:
            # Alerts people were told of before a restart: their retained topics come again
            # and must not be news twice.
            alerts = stored.native.get("alerts")
            if isinstance(alerts, dict):
                device.told = {str(k): str(v) for k, v in alerts.items()}
        self._devices[homie_id] = device
        self._by_hub[hub_id] = device
        return device

    # ----- $state ----------------------------------------------------------------------------

    def _on_state(self, topic: str, homie_id: str, payload: bytes) -> None:
        if not payload:
            self._remove(homie_id)
            return
        if self._too_large(topic, payload, 64):
            return
        word = payload.decode("utf-8", "replace")
        if word not in STATES:
            self.context.reject(
                topic,
                f"$state must be one of {', '.join(sorted(STATES))}, got {word[:40]!r}",
                kind="bad_state",
            )
            return
        device = self._device(topic, homie_id)
        if device is None or device.state == word:
            return
        device.state = word
        if device.description is not None:
            self._register(device)
        self._sync_availability(device)
        # A lost (or found again) root takes every device below it along.
        for other in self._devices.values():
            if other.root == homie_id:
                self._sync_availability(other)

    def _effective_state(self, device: _HomieDevice) -> str | None:
        root = self._devices.get(device.root) if device.root else None
        if root is not None and root.state == "lost":
            return "lost"
        return device.state

    def _sync_availability(self, device: _HomieDevice) -> None:
        if device.description is None:
            return  # not a hub device yet
        state = self._effective_state(device)
        available = state in ONLINE_STATES
        # Every "ready" counts: a device that comes back may have missed commands meanwhile.
        if available != device.reported or state == "ready":
            device.reported = available
            self.context.set_available(device.hub_id, available)

    def _remove(self, homie_id: str) -> None:
        device = self._devices.pop(homie_id, None)
        hub_id = device.hub_id if device else self.hub_id(homie_id)
        self._by_hub.pop(hub_id, None)
        if device is not None:
            self._forget_early(device)
        known = self.context.devices.get(hub_id)
        if known is not None and known.owner == OWNER:
            self.context.logger.info("Homie device %s removed ($state cleared)", homie_id)
            self.context.remove_device(hub_id)

    # ----- $description ----------------------------------------------------------------------

    def _on_description(self, topic: str, homie_id: str, payload: bytes) -> None:
        if not payload:
            # The device is being removed (its $state goes first) or reconfigured: its
            # entities stay until a new description or the $state's removal.
            return
        if self._too_large(topic, payload, self.settings.max_description):
            return
        device = self._devices.get(homie_id)
        if device is not None and device.raw_description == payload:
            return  # the same document again (a reconnect, a duplicate)
        try:
            description = parse_description(orjson.loads(payload))
        except orjson.JSONDecodeError as exc:
            self.context.reject(topic, f"not JSON: {exc}", kind="not_json")
            return
        except DescriptionError as exc:
            self.context.reject(topic, f"{homie_id}: {exc}", kind="bad_description")
            return
        plans, skipped = plan_entities(description)
        problems = description.problems + skipped
        if problems:
            # The convention: ignore what is broken, keep the rest of the device.
            self.context.reject(
                topic, f"{homie_id}: left out {'; '.join(problems)}", kind="bad_description"
            )
        device = self._device(topic, homie_id)
        if device is None:
            return
        previous = device.description
        # Targets and last values of properties the new document describes alike stay valid.
        before = {spec.path: spec for spec in previous.properties} if previous else {}
        kept = {spec.path for spec in description.properties if before.get(spec.path) == spec}
        device.targets = {p: t for p, t in device.targets.items() if p in kept}
        device.last = {p: v for p, v in device.last.items() if p in kept}
        device.description = description
        device.raw_description = payload
        device.plans = {plan.key: plan for plan in plans}
        device.by_path = {}
        for plan in plans:
            for spec in (plan.value, plan.brightness, plan.color):
                if spec is not None:
                    device.by_path[spec.path] = plan
        device.pending_attrs.clear()
        device.brightness_sent.clear()
        if previous is not None and previous.version != description.version:
            self.context.logger.info(
                "Homie device %s: description version %s replaces %s",
                homie_id,
                description.version,
                previous.version,
            )
        self._register(device)
        device.reported = None
        self._sync_availability(device)
        early = device.early
        self._forget_early(device)
        for path, value in early.items():
            if path.endswith(_TARGET):
                prop = path[: -len(_TARGET)]
                self._on_target(f"{self.base}{homie_id}/{path}", homie_id, prop, value)
            else:
                self._on_value(f"{self.base}{homie_id}/{path}", homie_id, path, value)
        for alert_id in sorted(device.untold):
            self._tell_alert(device, alert_id, device.alerts[alert_id])
        device.untold.clear()

    def _register(self, device: _HomieDevice) -> None:
        description = device.description
        assert description is not None
        via = self.hub_id(description.parent) if description.parent else None
        hub_device = Device(
            id=device.hub_id,
            name=description.name,
            owner=OWNER,
            model=description.type,
            via=via,
            identities={"homie": f"{self.base}{device.homie_id}"},
            native={
                "topic": f"{self.base}{device.homie_id}",
                "homie_id": device.homie_id,
                "homie": description.homie,
                "version": description.version,
                "state": device.state,
                "root": description.root,
                "children": list(description.children),
                "extensions": list(description.extensions),
                "alerts": dict(sorted(device.alerts.items())),
            },
        )
        self.context.register_device(
            hub_device, [plan.entity(device.hub_id) for plan in device.plans.values()]
        )

    # ----- values ----------------------------------------------------------------------------

    def _keep_early(self, device: _HomieDevice, path: str, payload: bytes) -> None:
        size = len(payload)
        old = device.early.get(path)
        if old is None and (
            self._early_count >= MAX_EARLY or self._early_bytes + size > MAX_EARLY_BYTES
        ):
            return  # bounded: a retained value comes again after a reconnect, others soon
        self._early_count += old is None
        self._early_bytes += size - (len(old) if old is not None else 0)
        device.early[path] = payload

    def _forget_early(self, device: _HomieDevice) -> None:
        self._early_count -= len(device.early)
        self._early_bytes -= sum(len(v) for v in device.early.values())
        device.early = {}

    def _property(
        self, topic: str, homie_id: str, path: str, early_key: str, payload: bytes
    ) -> tuple[_HomieDevice, EntityPlan, PropertySpec] | None:
        """The device, entity plan and value spec a property topic names; None when there is
        none (the message is kept under ``early_key`` until a description may name it, or
        rejected)."""
        device = self._device(topic, homie_id)
        if device is None:
            return None
        plan = device.by_path.get(path)
        if plan is None:
            if device.description is None or device.state == "init":
                # Not described yet, or being reconfigured: its new description may name it.
                self._keep_early(device, early_key, payload)
            else:
                self.context.reject(
                    topic,
                    f"{homie_id}: no property {path} in its description",
                    kind="unknown_property",
                )
            return None
        spec = next(s for s in (plan.value, plan.brightness, plan.color) if s and s.path == path)
        return device, plan, spec

    def _on_value(self, topic: str, homie_id: str, path: str, payload: bytes) -> None:
        if not payload:
            return  # a retained value being cleared (a property removed)
        if self._too_large(topic, payload, self.settings.max_payload):
            return
        found = self._property(topic, homie_id, path, path, payload)
        if found is None:
            return
        device, plan, spec = found
        try:
            value = parse_value(spec, payload)
            if spec is plan.brightness:
                sent = device.brightness_sent.get(plan.key)
                hub_value, attrs = read_property(plan, spec, value)
                if sent is not None and sent[0] == value:
                    # The device took the value we sent for this hub brightness: say that one,
                    # not the rounding of its own range back into 0-255.
                    attrs = {"brightness": sent[1]}
            else:
                hub_value, attrs = read_property(plan, spec, value)
        except (PayloadError, DescriptionError) as exc:
            self.context.reject(topic, f"{homie_id}/{path}: {exc}", kind="wrong_type")
            return
        device.last[path] = value
        target = device.targets.get(path)
        if target is not None and _same(spec, target[0], value):
            # Arrived: the move is over (the convention: the value then matches the target).
            del device.targets[path]
            attrs = {**attrs, "target": self._target_attribute(device, plan)}
        self._report(device, plan, topic, hub_value, attrs)

    def _report(
        self,
        device: _HomieDevice,
        plan: EntityPlan,
        topic: str,
        value: Any,
        attrs: dict[str, Any],
    ) -> None:
        ctx = self.context
        entity_id = f"{device.hub_id}.{plan.key}"
        if value is None and ctx.state(entity_id) is None:
            # An attribute (brightness, color) before the light's first on/off: kept for it.
            device.pending_attrs.setdefault(plan.key, {}).update(attrs)
            return
        if value is not None and plan.key in device.pending_attrs:
            attrs = {**device.pending_attrs.pop(plan.key), **attrs}
        current = ctx.state(entity_id)
        if (
            plan.brightness is not None
            and current is not None
            and "brightness" not in attrs
            and "brightness" in current.attributes
        ):
            # A light's power and brightness are separate Homie properties; each report
            # carries the whole light state, so a command waiting for both is confirmed
            # by whichever of them comes last.
            attrs = {**attrs, "brightness": current.attributes["brightness"]}
        try:
            ctx.report_states([(entity_id, value, attrs or None)])
        except (InvalidValue, KeyError) as exc:
            ctx.reject(topic, f"{device.homie_id}: {exc}", kind="wrong_type")

    # ----- $target ----------------------------------------------------------------------------

    def _on_target(self, topic: str, homie_id: str, path: str, payload: bytes) -> None:
        """``<node>/<prop>/$target``: where the property is going (a fading dimmer, a valve)."""
        device = self._devices.get(homie_id)
        if not payload:
            # The target topic cleared: no move is announced any more.
            if device is None:
                return
            early = device.early.pop(path + _TARGET, None)
            if early is not None:
                self._early_count -= 1
                self._early_bytes -= len(early)
            plan = device.by_path.get(path)
            if device.targets.pop(path, None) is not None and plan is not None:
                self._sync_target(device, plan, topic)
            return
        if self._too_large(topic, payload, self.settings.max_payload):
            return
        found = self._property(topic, homie_id, path, path + _TARGET, payload)
        if found is None:
            return
        device, plan, spec = found
        try:
            value = parse_value(spec, payload)
            in_hub = self._target_value(device, plan, spec, value)
        except (PayloadError, DescriptionError) as exc:
            self.context.reject(topic, f"{homie_id}/{path}/$target: {exc}", kind="wrong_type")
            return
        last = device.last.get(path)
        if last is not None and _same(spec, last, value):
            device.targets.pop(path, None)  # already there (e.g. a retained target, again)
        else:
            device.targets[path] = (value, in_hub)
        self._sync_target(device, plan, topic)

    def _target_value(
        self, device: _HomieDevice, plan: EntityPlan, spec: PropertySpec, value: Any
    ) -> Any:
        """A target in the hub's terms: the state it will be, or the light attribute."""
        hub_value, attrs = read_property(plan, spec, value)
        if spec is plan.brightness:
            sent = device.brightness_sent.get(plan.key)
            # Our own command's brightness, not its rounding through the device's range.
            return sent[1] if sent is not None and sent[0] == value else attrs["brightness"]
        if spec is plan.color:
            return attrs["color"]
        return hub_value

    def _target_attribute(self, device: _HomieDevice, plan: EntityPlan) -> Any:
        """The entity's ``target`` attribute: a light's is ``{"state", "brightness", "color"}``
        (the parts that move), any other entity's the state it moves to; None: not moving."""
        targets = device.targets
        if plan.kind is EntityKind.LIGHT:
            parts = {
                name: targets[spec.path][1]
                for name, spec in (
                    ("state", plan.value),
                    ("brightness", plan.brightness),
                    ("color", plan.color),
                )
                if spec is not None and spec.path in targets
            }
            return parts or None
        found = targets.get(plan.value.path)
        return None if found is None else found[1]

    def _sync_target(self, device: _HomieDevice, plan: EntityPlan, topic: str) -> None:
        """Tell the hub the entity's target, if that changes it."""
        new = self._target_attribute(device, plan)
        current = self.context.state(f"{device.hub_id}.{plan.key}")
        if current is None:
            # No state to hang it on yet: it goes with the first value.
            device.pending_attrs.setdefault(plan.key, {})["target"] = new
            return
        if current.attributes.get("target") != new:
            self._report(device, plan, topic, None, {"target": new})

    # ----- $alert -----------------------------------------------------------------------------

    def _on_alert(self, topic: str, homie_id: str, alert_id: str, payload: bytes) -> None:
        """``$alert/<id>``: a retained, user-facing message; an empty payload resolves it."""
        if not payload:
            device = self._devices.get(homie_id)
            if device is None or alert_id not in device.alerts:
                return
            text = device.alerts.pop(alert_id)
            device.told.pop(alert_id, None)
            self._store_alerts(device)
            if alert_id in device.untold:
                device.untold.discard(alert_id)  # never told, so nothing to resolve
            else:
                self._tell_alert(device, alert_id, text, resolved=True)
            return
        if self._too_large(topic, payload, self.settings.max_payload):
            return
        try:
            text = payload.decode("utf-8").strip().strip("\x00")
        except UnicodeDecodeError as exc:
            self.context.reject(topic, f"alert is not UTF-8: {exc.reason}", kind="wrong_type")
            return
        if not text:
            self.context.reject(
                topic, "an alert needs a message (an empty payload clears it)", kind="wrong_type"
            )
            return
        if len(text) > MAX_ALERT_TEXT:
            text = text[: MAX_ALERT_TEXT - 1] + "…"
        device = self._device(topic, homie_id)
        if device is None:
            return
        if device.alerts.get(alert_id) == text:
            return  # the retained alert again (a reconnect): nothing new
        if alert_id not in device.alerts and len(device.alerts) >= MAX_ALERTS:
            self.context.reject(
                topic, f"{homie_id}: more than {MAX_ALERTS} alerts at once", kind="too_many"
            )
            return
        device.alerts[alert_id] = text
        self._store_alerts(device)
        if device.told.get(alert_id) == text:
            return  # told before the hub restarted
        device.told.pop(alert_id, None)
        if device.description is None and device.hub_id not in self.context.devices:
            device.untold.add(alert_id)  # told once the device has a name
        else:
            self._tell_alert(device, alert_id, text)

    def _store_alerts(self, device: _HomieDevice) -> None:
        # Kept on the device (stored), so that a restart does not tell the same alert again.
        if device.description is not None:
            self._register(device)

    def _tell_alert(
        self, device: _HomieDevice, alert_id: str, text: str, *, resolved: bool = False
    ) -> None:
        """Put a ``device_alert`` event on the bus; the notification router takes it from there."""
        stored = self.context.devices.get(device.hub_id)
        name = (
            device.description.name
            if device.description is not None
            else stored.name
            if stored is not None
            else device.homie_id
        )
        if resolved:
            title = f"{name}: {alert_id} resolved"
            message = f"{name}: resolved: {text}"
        else:
            title = f"{name}: {alert_id}"
            message = f"{name}: {text}"
        self.context.publish_event(
            CustomEvent(
                ALERT_EVENT,
                {
                    "device": device.hub_id,
                    "device_name": name,
                    "alert": alert_id,
                    "text": text,
                    "resolved": resolved,
                    "title": title,
                    "message": message,
                    # One incident per device and alert: its resolution closes it.
                    "key": f"{ALERT_EVENT}:{device.hub_id}:{alert_id}",
                    "source": OWNER,
                },
                Context(Origin.DEVICE, device.hub_id),
            )
        )

    # ----- commands --------------------------------------------------------------------------

    def send_command(
        self,
        device: Device,
        entity: Entity,
        action: str,
        params: Mapping[str, Any],
        command_id: str,
    ) -> None:
        """Publish the ``/set`` message(s) for a hub command, formatted by datatype."""
        homie = self._by_hub.get(device.id)
        if homie is None or homie.description is None:
            raise CommandError(f"{device.id} has not published its Homie $description (yet)")
        plan = homie.plans.get(entity.key)
        if plan is None:
            raise CommandError(f"{device.id} no longer describes {entity.key}")
        current = self.context.state(entity.id)
        sends = command_values(plan, action, dict(params), current.value if current else None)
        messages: list[tuple[PropertySpec, bytes]] = []
        for spec, value in sends:
            try:
                messages.append((spec, format_value(spec, value)))
            except PayloadError as exc:
                raise CommandError(f"{spec.path}: {exc}") from None
        for spec, payload in messages:
            if spec is plan.brightness:
                sent = parse_value(spec, payload)  # what the device will echo back
                homie.brightness_sent[plan.key] = (sent, float(params["brightness"]))
            topic = f"{self.base}{homie.homie_id}/{spec.path}/set"
            # The convention: QoS 2 for retained properties, 0 for momentary (non-retained).
            self.context.publish_mqtt(topic, payload, qos=2 if spec.retained else 0)


def _same(spec: PropertySpec, a: Any, b: Any) -> bool:
    """Whether two parsed values of ``spec`` are the same value (floats within half a step)."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool):
            return False
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            return False
        tolerance = spec.step / 2 if spec.step else 1e-9 * max(1.0, abs(a), abs(b))
        return math.isclose(a, b, rel_tol=0, abs_tol=tolerance)
    return bool(a == b)
