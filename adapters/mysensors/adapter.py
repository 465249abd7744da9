"""The MySensors serial gateway adapter: nodes, presentations, values, internals, commands.

The gateway is a hub device (``<gateway_id>_gateway``); each node is a device (``<gateway_id>_
<node id>``) ``via`` the gateway, so the topology shows which nodes hang off which gateway
and the gateway going away marks them offline. Node 0 is the gateway itself: sensors wired
to the gateway are its entities.

Lines come from :class:`~adapters.mysensors.link.SerialLink` (a reader thread that hands
chunks to the event loop); everything here runs in the loop thread. A bad line is rejected
through ``PluginContext.reject`` with the line and the reason, counted, and changes nothing.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.mysensors.link import LinkError, SerialLink
from adapters.mysensors.mapping import (
    CHILDREN,
    EntityPlan,
    answer_value,
    child_plans,
    command_values,
    parse_number,
    plan_from_options,
    read_value,
    value_plan,
)
from adapters.mysensors.protocol import (
    GATEWAY_NODE,
    MAX_LINE,
    NO_ID,
    NODE_CHILD,
    Command,
    Internal,
    Message,
    ProtocolError,
    Sensor,
    Value,
    message,
    parse_line,
)
from adapters.mysensors.settings import Settings
from hub.api import (
    CommandError,
    Device,
    Entity,
    EntityKind,
    InvalidValue,
    Plugin,
    PluginContext,
)

OWNER = "mysensors"
MANUFACTURER = "MySensors"
BATTERY = EntityPlan("battery", NODE_CHILD, EntityKind.SENSOR, frozenset(), "%", "battery")
_NODE_TYPES = (Sensor.S_ARDUINO_NODE, Sensor.S_ARDUINO_REPEATER_NODE)
# Internal messages that need nothing from us (routing, signing, sleep notices...).
_QUIET = frozenset(
    {
        Internal.I_FIND_PARENT_REQUEST,
        Internal.I_FIND_PARENT_RESPONSE,
        Internal.I_SIGNING_PRESENTATION,
        Internal.I_NONCE_REQUEST,
        Internal.I_NONCE_RESPONSE,
        Internal.I_PING,
        Internal.I_PONG,
        Internal.I_REGISTRATION_REQUEST,
        Internal.I_REGISTRATION_RESPONSE,
        Internal.I_SIGNAL_REPORT_RESPONSE,
        Internal.I_DISCOVER_RESPONSE,
        Internal.I_LOCKED,
        Internal.I_CHILDREN,
    }
)


@dataclass(slots=True)
class _Node:
    """What the adapter knows of one node."""

    node_id: int
    children: dict[int, tuple[Sensor, str]] = field(default_factory=dict)
    plans: dict[str, EntityPlan] = field(default_factory=dict)
    sketch_name: str | None = None
    sketch_version: str | None = None
    library_version: str | None = None
    available: bool = False  # what the hub was last told
    heard: float = 0.0  # time.monotonic() of its last valid line
    probed: bool = False  # asked for a heartbeat since it was last heard
    asleep: bool = False  # said it goes to sleep (smartSleep) and has not spoken since
    sleep_s: float = 0.0  # how long it sleeps, as its last I_POST_SLEEP_NOTIFICATION said

    def plan_for(self, child: int, value: Value) -> EntityPlan | None:
        """The entity a child's value feeds, if it has one yet."""
        for plan in self.plans.values():
            if plan.child == child and value in plan.values:
                return plan
        return None


class MySensors(Plugin):
    """Speaks the MySensors serial protocol with one gateway (see the module documentation)."""

    settings_model = Settings

    def __init__(self, context: PluginContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self.settings: Settings = settings
        self.gateway_id = f"{settings.gateway_id}_gateway"
        self.source = f"mysensors:{settings.port}"  # the "topic" of rejections and logs
        self._nodes: dict[int, _Node] = {}
        self._link: SerialLink | None = None
        self._buffer = bytearray()
        self._discarding = False  # inside an over-long line: drop bytes up to its newline
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._gateway_available = False
        self._gateway_version: str | None = None
        #: Lines rejected since start, by reason kind (the hub counts them too).
        self.rejected: dict[str, int] = {}
        self.lines = 0  # valid lines handled
        # How often the silence watch looks (0: no node is watched): a quarter of the shortest
        # limit, so a silent node goes offline at most a quarter late.
        limits = [settings.node_timeout, *(n.timeout for n in settings.nodes.values())]
        shortest = min((t for t in limits if t), default=0.0)
        self._watch_tick = min(max(shortest / 4, 0.05), 30.0) if shortest else 0.0

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore known nodes, register the gateway device and the dialect."""
        self._restore()
        self._register_gateway()
        self.context.register_dialect(OWNER, self)

    async def run(self) -> None:
        """Keep the port open: open, read until it is lost, mark offline, re-open with back-off."""
        delay = self.settings.reopen_min
        logger = self.context.logger
        while True:
            link = SerialLink(
                self.settings.port,
                self.settings.baudrate,
                asyncio.get_running_loop(),
                self._on_data,
                self._on_lost,
            )
            try:
                await link.open()
            except LinkError as exc:
                logger.warning("%s; trying again in %g s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.reopen_max)
                continue
            self._link = link
            self._buffer.clear()
            self._discarding = False
            self._lost.clear()
            logger.info("opened %s at %d baud", self.settings.port, self.settings.baudrate)
            delay = self.settings.reopen_min
            self._set_gateway_available(True)
            self._hello()
            watch = (
                asyncio.get_running_loop().create_task(self._watch(), name="mysensors watch")
                if self._watch_tick
                else None
            )
            try:
                await self._lost.wait()
            finally:
                if watch is not None:
                    watch.cancel()
                self._link = None
                self._set_gateway_available(False)
                await link.close()
            logger.warning(
                "lost %s (%s); re-opening in %g s", self.settings.port, self._lost_reason, delay
            )
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Close the port (the supervisor cancels ``run`` first)."""
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    # ----- devices ---------------------------------------------------------------------------

    def device_id(self, node_id: int) -> str:
        """The hub device id of a node (node 0 is the gateway device)."""
        return (
            self.gateway_id if node_id == GATEWAY_NODE else f"{self.settings.gateway_id}_{node_id}"
        )

    def _restore(self) -> None:
        """Nodes of an earlier run, from the stored devices: ids stay assigned, entities kept."""
        ctx = self.context
        for device in ctx.devices.values():
            native = device.native
            node_id = native.get("node_id")
            if (
                device.owner != OWNER
                or native.get("gateway") != self.settings.gateway_id
                or isinstance(node_id, bool)
                or not isinstance(node_id, int)
                or not 0 <= node_id < NO_ID
            ):
                continue
            node = _Node(node_id)
            for child, info in (native.get("children") or {}).items():
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    node.children[int(child)] = (Sensor(info["type"]), str(info.get("name", "")))
            for entity_id in device.entity_ids:
                entity = ctx.entities.get(entity_id)
                if entity is None:
                    continue
                plan = plan_from_options(
                    entity.key, entity.kind, entity.unit, entity.device_class, entity.options
                )
                if plan is not None:
                    node.plans[plan.key] = EntityPlan(
                        plan.key,
                        plan.child,
                        plan.kind,
                        plan.values,
                        plan.unit,
                        plan.device_class,
                        plan.number,
                        entity.name,
                    )
            node.sketch_name = native.get("sketch_name")
            node.sketch_version = native.get("sketch_version")
            node.library_version = native.get("library_version")
            self._nodes[node_id] = node

    def _node_name(self, node: _Node) -> str:
        configured = self.settings.nodes.get(node.node_id)
        if configured is not None and configured.name:
            return configured.name
        if node.node_id == GATEWAY_NODE:
            return self.settings.name
        return f"{node.sketch_name or 'MySensors node'} {node.node_id}"

    def _register_gateway(self) -> None:
        node = self._nodes.setdefault(GATEWAY_NODE, _Node(GATEWAY_NODE))
        self._register(node)

    def _register(self, node: _Node) -> None:
        settings = self.settings
        is_gateway = node.node_id == GATEWAY_NODE
        configured = settings.nodes.get(node.node_id)
        device_id = self.device_id(node.node_id)
        name = self._node_name(node)
        device = Device(
            id=device_id,
            name=name,
            owner=OWNER,
            area=(configured.area if configured else None)
            or (settings.area if is_gateway else None),
            manufacturer=MANUFACTURER,
            model=node.sketch_name or ("Serial gateway" if is_gateway else None),
            firmware=node.sketch_version or (self._gateway_version if is_gateway else None),
            via=None if is_gateway else self.gateway_id,
            native={
                "gateway": settings.gateway_id,
                "port": settings.port,
                "node_id": node.node_id,
                "children": {
                    str(child): {"type": int(sensor), "name": label}
                    for child, (sensor, label) in sorted(node.children.items())
                },
                "sketch_name": node.sketch_name,
                "sketch_version": node.sketch_version,
                "library_version": node.library_version,
            },
        )
        entities = [
            Entity(
                id=f"{device_id}.{plan.key}",
                device_id=device_id,
                key=plan.key,
                kind=plan.kind,
                name=plan.name or f"{name} {plan.key.replace('_', ' ')}",
                unit=plan.unit,
                device_class=plan.device_class,
                options=plan.options(),
            )
            for plan in node.plans.values()
        ]
        self.context.register_device(device, entities)

    def _node(self, node_id: int) -> _Node:
        """The node, registered as a device the first time it is heard of."""
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = _Node(node_id)
            self._register(node)
        return node

    def _seen(self, node: _Node, *, announce: bool = False) -> None:
        """A node spoke: it is online (``announce``: it re-presented, resend what it missed)."""
        if node.node_id == GATEWAY_NODE:
            return  # the gateway's availability is the port's
        node.heard = time.monotonic()
        node.probed = node.asleep = False
        if not node.available or announce:
            node.available = True
            self.context.set_available(self.device_id(node.node_id), True)

    def _set_gateway_available(self, available: bool) -> None:
        self._gateway_available = available
        self.context.set_available(self.gateway_id, available)
        if not available:
            # Nothing reaches the nodes without their gateway: the whole subtree is offline.
            for node in self._nodes.values():
                if node.node_id != GATEWAY_NODE and node.available:
                    node.available = False
                    self.context.set_available(self.device_id(node.node_id), False)

    def _hello(self) -> None:
        """After the port (re)opens: ask the gateway its version and each known node to speak."""
        self._send(message(GATEWAY_NODE, GATEWAY_NODE, Command.INTERNAL, Internal.I_VERSION))
        for node_id in sorted(self._nodes):
            if node_id != GATEWAY_NODE:
                self._send(
                    message(node_id, NODE_CHILD, Command.INTERNAL, Internal.I_HEARTBEAT_REQUEST)
                )

    # ----- silence -------------------------------------------------------------------------

    def silence_limit(self, node: _Node) -> float:
        """How long ``node`` may be silent before it is offline (0: forever)."""
        configured = self.settings.nodes.get(node.node_id)
        limit = (
            configured.timeout
            if configured is not None and configured.timeout is not None
            else self.settings.node_timeout
        )
        if not limit:
            return 0.0
        # A smartSleep node said how long it sleeps: one missed wake-up is not yet silence.
        return max(limit, 2 * node.sleep_s)

    async def _watch(self) -> None:
        """While the port is open: probe quiet nodes, mark silent ones offline."""
        while True:
            await asyncio.sleep(self._watch_tick)
            self._check_silence(time.monotonic())

    def _check_silence(self, now: float) -> None:
        for node in self._nodes.values():
            if node.node_id == GATEWAY_NODE or not node.available:
                continue
            limit = self.silence_limit(node)
            silent = now - node.heard
            if not limit or silent < limit / 2:
                continue
            if silent >= limit:
                node.available = False
                self.context.logger.info(
                    "node %d silent for %.0f s (limit %g s): offline until it speaks",
                    node.node_id,
                    silent,
                    limit,
                )
                self.context.set_available(self.device_id(node.node_id), False)
            elif not node.probed and not node.asleep:
                # Halfway: every awake MySensors node answers I_HEARTBEAT_REQUEST in its
                # library (core/MySensorsCore.cpp), so only a dead or sleeping one stays silent.
                node.probed = True
                self._send(
                    message(
                        node.node_id, NODE_CHILD, Command.INTERNAL, Internal.I_HEARTBEAT_REQUEST
                    )
                )

    # ----- reading ---------------------------------------------------------------------------

    def _on_lost(self, reason: str) -> None:
        """From the link, in the loop thread: the port failed (unplugged, EOF, read error)."""
        self._lost_reason = reason
        self._lost.set()

    def _on_data(self, data: bytes) -> None:
        """From the link, in the loop thread: split bytes into lines and handle each."""
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if self._discarding:
                self._discarding = False  # the tail of an over-long line, already rejected
                continue
            self._on_line(line)
        if len(buffer) > MAX_LINE + 2:
            # No newline in sight: reject what is there and drop the rest of that line.
            self._reject(bytes(buffer[:60]) + b"...", f"line over {MAX_LINE} bytes", "too_large")
            buffer.clear()
            self._discarding = True

    def _reject(self, line: bytes, reason: str, kind: str = "malformed") -> None:
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
        shown = line[:80].decode("ascii", "backslashreplace")
        self.context.reject(self.source, f"line {shown!r}: {reason}", kind=kind)

    def _on_line(self, line: bytes) -> None:
        if not line.strip():
            return  # blank lines (a gateway's \r\n after a reset) are harmless
        try:
            msg = parse_line(line)
        except ProtocolError as exc:
            self._reject(line, str(exc))
            return
        fresh = msg.node_id not in self._nodes
        try:
            self._dispatch(msg)
        except (ProtocolError, InvalidValue, KeyError) as exc:
            self._forget_if_fresh(msg.node_id, fresh)
            self._reject(line, f"{msg.describe()}: {exc}", "wrong_type")
            return
        except Exception as exc:  # never let one line take the adapter down
            self.context.logger.exception("handling %r failed", line)
            self._forget_if_fresh(msg.node_id, fresh)
            self._reject(line, f"{type(exc).__name__}: {exc}", "error")
            return
        self.lines += 1

    def _forget_if_fresh(self, node_id: int, fresh: bool) -> None:
        """A node first heard of in a rejected line is not a node: leave no device behind."""
        if fresh and node_id in self._nodes:
            del self._nodes[node_id]
            if self.device_id(node_id) in self.context.devices:
                self.context.remove_device(self.device_id(node_id))

    def _dispatch(self, msg: Message) -> None:
        if msg.node_id == NO_ID:
            if msg.command is Command.INTERNAL and msg.type is Internal.I_ID_REQUEST:
                self._assign_id()
                return
            if msg.command is Command.INTERNAL:
                return  # a node looking for its parent before it has an id: nothing to do
            raise ProtocolError("a node without an id (255) may only ask for one")
        node = self._node(msg.node_id)
        if msg.command is Command.PRESENTATION:
            self._on_presentation(node, msg)
        elif msg.command is Command.SET:
            self._on_set(node, msg)
        elif msg.command is Command.REQ:
            self._seen(node)
            self._on_req(node, msg)
        elif msg.command is Command.INTERNAL:
            self._on_internal(node, msg)
        else:
            self._seen(node)
            self.context.logger.debug(
                "ignored %s: firmware updates are not supported", msg.describe()
            )

    def _on_presentation(self, node: _Node, msg: Message) -> None:
        assert isinstance(msg.type, Sensor)
        if msg.child_id == NODE_CHILD:
            if msg.type not in _NODE_TYPES:
                raise ProtocolError(f"child 255 is the node itself, not a {msg.type.name}")
            node.library_version = msg.payload or None
            self._register(node)
            self._seen(node, announce=True)
            return
        if msg.type in _NODE_TYPES:
            raise ProtocolError(f"{msg.type.name} is only presented by child 255")
        previous = node.children.get(msg.child_id)
        node.children[msg.child_id] = (msg.type, msg.payload)
        plans = child_plans(msg.child_id, msg.type, msg.payload, metric=self.settings.metric)
        if previous is not None and previous[0] != msg.type:
            # The child is something else now (the sketch changed): its old entities go.
            for key in [k for k, p in node.plans.items() if p.child == msg.child_id]:
                del node.plans[key]
        for plan in plans:
            node.plans[plan.key] = plan
        self._register(node)
        self._seen(node)

    def _new_plan(self, node: _Node, child: int, value: Value) -> EntityPlan:
        """The entity a child's value will be, the first time it arrives (not stored yet)."""
        sensor = node.children.get(child, (None, ""))[0]
        spec = CHILDREN.get(sensor) if sensor is not None else None
        if sensor is not None and spec is not None and value in spec.values:
            # The child's main entity, lost from storage: made again as at presentation.
            plan = child_plans(child, sensor, "", metric=self.settings.metric)[0]
        else:
            plan = value_plan(child, value, sensor, metric=self.settings.metric)
        if plan.key in node.plans:
            raise ProtocolError(
                f"{value.name} of child {child} would be {plan.key}, which another value feeds"
            )
        return plan

    def _on_set(self, node: _Node, msg: Message) -> None:
        assert isinstance(msg.type, Value)
        if msg.ack and not self.settings.echo_confirms:
            # The node's radio echo of a command we sent: it arrived, but the node has not said
            # it acted on it; its own report confirms the command.
            self._seen(node)
            self.context.logger.debug("%s received", msg.describe())
            return
        plan = node.plan_for(msg.child_id, msg.type)
        new = plan is None
        if plan is None:
            plan = self._new_plan(node, msg.child_id, msg.type)
        state, attributes = read_value(plan, msg.type, msg.payload)
        if new:
            # Checked before the entity exists: a bad first value must not create one.
            self._validate(node, plan, state, attributes)
            node.plans[plan.key] = plan
            self._register(node)
        entity_id = f"{self.device_id(node.node_id)}.{plan.key}"
        self.context.report_states([(entity_id, state, attributes)])
        self._seen(node)

    def _validate(
        self, node: _Node, plan: EntityPlan, state: Any, attributes: Mapping[str, Any]
    ) -> None:
        device_id = self.device_id(node.node_id)
        entity = Entity(
            f"{device_id}.{plan.key}", device_id, plan.key, plan.kind, plan.key, plan.unit
        )
        self.context.validate_state(entity, state, attributes)

    def _on_req(self, node: _Node, msg: Message) -> None:
        assert isinstance(msg.type, Value)
        plan = node.plan_for(msg.child_id, msg.type)
        current = self.context.state(f"{self.device_id(node.node_id)}.{plan.key}") if plan else None
        if plan is None or current is None:
            self.context.logger.debug("%s: the hub has no value to answer with", msg.describe())
            return
        payload = answer_value(plan, msg.type, current.value, current.attributes)
        self._send(message(node.node_id, msg.child_id, Command.SET, msg.type, payload[:25]))

    def _on_internal(self, node: _Node, msg: Message) -> None:
        kind = msg.type
        assert isinstance(kind, Internal)
        logger = self.context.logger
        self._seen(node)  # any valid line of a node is a sign of life (not the gateway's)
        if kind is Internal.I_LOG_MESSAGE or kind is Internal.I_DEBUG:
            # A MY_DEBUG gateway prints dozens of these a second about itself; nodes' own log
            # lines are rarer and meant to be read.
            level = 10 if node.node_id == GATEWAY_NODE else 20
            logger.log(level, "node %d log: %s", node.node_id, msg.payload)
            return
        if kind is Internal.I_GATEWAY_READY:
            logger.info("gateway ready: %s", msg.payload)
            self._set_gateway_available(True)
            self._hello()
            return
        if kind is Internal.I_VERSION:
            if node.node_id == GATEWAY_NODE and msg.payload != self._gateway_version:
                self._gateway_version = msg.payload or None
                self._register(node)
            return
        if kind is Internal.I_BATTERY_LEVEL:
            battery = parse_number(msg.payload, "I_BATTERY_LEVEL")
            if not 0 <= battery <= 100:
                raise InvalidValue(f"I_BATTERY_LEVEL must be 0-100, got {msg.payload!r}")
            if BATTERY.key not in node.plans:
                node.plans[BATTERY.key] = BATTERY
                self._register(node)
            self.context.report_states([(f"{self.device_id(node.node_id)}.battery", battery, None)])
        elif kind is Internal.I_TIME:
            # Nodes have no time zone: MySensors controllers send local wall-clock time as
            # seconds since 1970.
            now = calendar.timegm(time.localtime())
            self._send(message(node.node_id, NODE_CHILD, Command.INTERNAL, Internal.I_TIME, now))
        elif kind is Internal.I_CONFIG:
            unit = "M" if self.settings.metric else "I"
            self._send(message(node.node_id, NODE_CHILD, Command.INTERNAL, Internal.I_CONFIG, unit))
        elif kind is Internal.I_SKETCH_NAME or kind is Internal.I_SKETCH_VERSION:
            text = msg.payload.strip() or None
            if kind is Internal.I_SKETCH_NAME:
                node.sketch_name = text
            else:
                node.sketch_version = text
            self._register(node)
        elif kind is Internal.I_ID_REQUEST:
            self._assign_id()
        elif kind is Internal.I_PRE_SLEEP_NOTIFICATION:
            # smartSleep: it listens for the payload's milliseconds, then sleeps and hears
            # nothing, so asking it for a heartbeat is pointless until it speaks again.
            node.asleep = True
        elif kind is Internal.I_POST_SLEEP_NOTIFICATION:
            slept = parse_number(msg.payload, "I_POST_SLEEP_NOTIFICATION")
            if slept < 0:
                raise InvalidValue(f"a sleep time cannot be negative, got {msg.payload!r}")
            node.sleep_s = slept / 1000  # the sleep it woke from, in ms: its usual one
        elif kind is Internal.I_HEARTBEAT_RESPONSE or kind is Internal.I_PRESENTATION:
            pass  # being heard is the point
        elif kind not in _QUIET:
            logger.debug("ignored %s", msg.describe())

    def _assign_id(self) -> None:
        """Answer I_ID_REQUEST with the lowest free id; the id is stored with its device."""
        free = next((n for n in range(1, NO_ID) if n not in self._nodes), None)
        if free is None:
            self.context.logger.error("no free MySensors node id: all 254 are taken")
            return
        self._node(free)  # registered now, so the id is taken across restarts too
        self.context.logger.info("assigned node id %d", free)
        self._send(message(NO_ID, NODE_CHILD, Command.INTERNAL, Internal.I_ID_RESPONSE, free))

    # ----- writing ---------------------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        link = self._link
        if link is None or not link.is_open:
            self.context.logger.debug("not sent (port closed): %s", msg.describe())
            return
        with contextlib.suppress(LinkError):
            link.write(msg.encode())

    def send_command(
        self,
        device: Device,
        entity: Entity,
        action: str,
        params: Mapping[str, Any],
        command_id: str,
    ) -> None:
        """Send the set messages for a hub command, asking the node for an ack."""
        node_id = device.native.get("node_id")
        node = self._nodes.get(node_id) if isinstance(node_id, int) else None
        if node is None:
            raise CommandError(f"{device.id} is not a node of {self.settings.gateway_id}")
        plan = node.plans.get(entity.key)
        if plan is None:
            raise CommandError(f"{device.id} has no {entity.key}")
        link = self._link
        if link is None or not link.is_open:
            raise CommandError(f"the MySensors gateway on {self.settings.port} is not connected")
        current = self.context.state(entity.id)
        for value, payload in command_values(
            plan, action, params, current.value if current else None
        ):
            line = message(node.node_id, plan.child, Command.SET, value, payload, ack=True)
            try:
                link.write(line.encode())
            except LinkError as exc:
                raise CommandError(str(exc)) from exc
