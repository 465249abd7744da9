"""The notification router: from events to deliveries, per person and channel.

Every ``Notification`` on the bus (a rule's ``notify`` action, :meth:`NotificationRouter.notify`,
or the router's own reports of hub events) is expanded into one :class:`Delivery` per
recipient and channel, then, per delivery and in this order:

1. de-duplication: the same title and text (with the same ``key``, if any) to the same
   recipient within ``dedupe_window`` is dropped (recorded as ``duplicate``); an update of an
   incident (same ``key``, new words) goes through;
2. quiet hours: a person's non-urgent deliveries inside their quiet hours (in the hub's time
   zone) are held (stored, so they survive a restart) and sent as one digest per channel when
   quiet hours end; urgent ones break through when ``urgent_overrides_quiet``;
3. rate limit: a token bucket per person (or address) and channel; a delivery finding it
   empty is dropped (``rate_limited``) unless it is urgent, and one "n messages suppressed"
   summary follows when the bucket has a token again;
4. sending, in its own task: a failing channel is tried again ``retries`` times with doubling
   delays, then recorded as ``failed``.

Hub events reported (configured under ``notifications.events``): ``device_offline`` (after the
device stayed offline ``after``; ``back_online`` says when it returns), ``command_failed``
(only for commands a person or a rule issued), and custom events (``CustomEvent``) whose type
is listed, such as ``speedtest_below_threshold`` — the hook for a speed-test plug-in, which may
also call :meth:`NotificationRouter.notify` directly — and ``device_alert`` (what an adapter
publishes when a device raises or resolves an alert for people). The router never raises into
the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from hub.conversation.people import IdentityKind, People, Person, Role
from hub.events import CommandFailed, CustomEvent, DeviceAvailability, Notification
from hub.model import Context, Origin
from hub.notify import Delivery, DeliveryResult
from hub.notify.config import NotificationsSection, check_target
from hub.notify.texts import render

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.notify import NotificationChannel
    from hub.storage.notifications import DeliveryRecord, DeliveryStore

_LOGGER = logging.getLogger(__name__)

#: Which identity a channel's addresses are (a front-end named otherwise uses the identity
#: kind of the same name, if any).
CHANNEL_IDENTITY: dict[str, IdentityKind] = {
    "discord": IdentityKind.DISCORD,
    "sms": IdentityKind.PHONE,
    "email": IdentityKind.EMAIL,
    "dashboard": IdentityKind.DASHBOARD,
}

#: Data key of the hub's own notifications: the text id and fields, rendered per language.
HUB_TEXT = "hub_text"

_MAX_TEXT = 10_000  # characters of a title or text kept (a runaway template must not flood)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One address on one channel, maybe of a person."""

    channel: str
    address: str
    person: Person | None = None

    @property
    def bucket(self) -> str:
        """Who the rate limit counts: the person, else the address."""
        return self.person.id if self.person is not None else self.address


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0
    sample: Recipient | None = None  # where the "n suppressed" summary goes


@dataclass(slots=True)
class _Held:
    recipient: Recipient
    records: list[DeliveryRecord] = field(default_factory=list)


def channel_identity(channel: str) -> IdentityKind | None:
    """The identity kind of a channel's addresses."""
    found = CHANNEL_IDENTITY.get(channel)
    if found is not None:
        return found
    try:
        return IdentityKind(channel)
    except ValueError:
        return None


class NotificationRouter:
    """Routes notifications to people and channels."""

    def __init__(
        self,
        hub: Hub,
        settings: NotificationsSection | None = None,
        *,
        clock: Callable[[], float] = time.time,
        tick_interval: float = 0.5,
    ) -> None:
        self.hub = hub
        self.settings = settings or _settings_of(hub)
        self.channels: dict[str, NotificationChannel] = {}
        self.clock = clock  # tests move it; everything time-based reads it
        self._tick_interval = tick_interval
        self._store: DeliveryStore | None = None
        self._undo: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._seen: dict[tuple[str, str, str], float] = {}  # dedupe: (channel, address, key)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._held: dict[tuple[str, str, str], _Held] = {}  # (person, channel, address)
        self._offline_due: dict[str, float] = {}  # device id -> when to report it
        self._offline_since: dict[str, float] = {}
        self._offline_told: set[str] = set()
        self._tz = _time_zone(hub)
        self._config_people: People | None = None
        #: The last deliveries decided, newest last (for tests and `hub demo`'s output).
        self.recent: list[DeliveryRecord] = []

    # ----- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the bus, reload held deliveries and start the timer loop."""
        storage = self.hub.storage
        if storage is not None:
            from hub.storage.notifications import DeliveryStore

            self._store = DeliveryStore(storage)
            try:
                for record in await self._store.held():
                    self._hold_again(record)
            except Exception:
                _LOGGER.exception("loading held notifications failed; they stay stored")
        bus = self.hub.bus
        self._undo += [
            bus.subscribe(Notification, self._on_notification, owner="notify"),
            bus.subscribe(DeviceAvailability, self._on_availability, owner="notify"),
            bus.subscribe(CommandFailed, self._on_command_failed, owner="notify"),
            bus.subscribe(CustomEvent, self._on_custom_event, owner="notify"),
        ]
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(), name="notify")

    async def stop(self) -> None:
        """Unsubscribe, give sends in flight a moment, and stop (held deliveries stay stored)."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=5)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)

    def register_channel(self, name: str, channel: NotificationChannel) -> Callable[[], None]:
        """Deliver notifications for channel ``name`` through ``channel``; return the undo."""
        self.channels[name] = channel

        def undo() -> None:
            if self.channels.get(name) is channel:
                del self.channels[name]

        return undo

    # ----- the public hooks ------------------------------------------------------------------

    def notify(
        self,
        message: str,
        title: str = "",
        targets: Iterable[str] = (),
        *,
        urgent: bool = False,
        key: str | None = None,
        resolved: bool = False,
        data: Mapping[str, Any] | None = None,
        context: Context | None = None,
    ) -> None:
        """Send a notification as a rule's ``notify`` would (plug-ins, e.g. a speed test).

        It goes on the bus as a ``Notification`` (so the event stream shows it) and is routed
        from there. Raises ValueError for a malformed target.
        """
        for target in targets:
            check_target(target)
        body = dict(data or {})
        body.setdefault("urgent", urgent)
        if key is not None:
            body.setdefault("key", key)
        if resolved:
            body.setdefault("resolved", True)
        self.hub.bus.publish(
            Notification(
                message=message, title=title, targets=tuple(targets), data=body, context=context
            )
        )

    def record_status(self, delivery_id: str, ok: bool, detail: str) -> None:
        """Record a later status of a delivery (found by its id or the service's id)."""
        status = "delivered" if ok else "undelivered"
        for index, record in enumerate(self.recent):
            if delivery_id in (record.id, record.external_id):
                self.recent[index] = replace(
                    record, status=status, detail=detail, updated=self.clock()
                )
        if self._store is not None:
            try:
                self._store.queue_status(delivery_id, status, detail[:1000], self.clock())
            except Exception:
                _LOGGER.exception("recording the status of delivery %s failed", delivery_id)

    async def history(self, limit: int = 50) -> list[DeliveryRecord]:
        """The newest recorded deliveries, newest first (what is queued is written first)."""
        storage = self.hub.storage
        if self._store is None or storage is None:
            return list(reversed(self.recent))[:limit]
        await storage.flush()
        return await self._store.recent(limit=limit)

    # ----- bus listeners (never raise) ---------------------------------------------------------

    def _on_notification(self, event: Notification) -> None:
        try:
            self._route(event)
        except Exception:
            _LOGGER.exception("routing notification %r failed", event.title or event.message)

    def _on_availability(self, event: DeviceAvailability) -> None:
        try:
            route = self.settings.route("device_offline")
            if route is None:
                return
            device_id = event.device_id
            if not event.available:
                now = self.clock()
                self._offline_since.setdefault(device_id, now)
                self._offline_due.setdefault(device_id, now + route.after)
                return
            self._offline_due.pop(device_id, None)
            self._offline_since.pop(device_id, None)
            if device_id in self._offline_told:
                self._offline_told.discard(device_id)
                if route.back_online:
                    self._hub_notification(
                        "device_online",
                        {"device": self._device_name(device_id)},
                        route.targets,
                        key=f"device_offline:{device_id}",
                        resolved=True,
                    )
        except Exception:
            _LOGGER.exception("handling availability of %s failed", event.device_id)

    def _on_command_failed(self, event: CommandFailed) -> None:
        try:
            route = self.settings.route("command_failed")
            if route is None or event.cancelled:
                return
            # Only commands a person or a rule asked for: a plug-in's own housekeeping or an
            # MQTT script failing is not news for people.
            who = next(
                (c for c in event.context.chain() if c.origin in (Origin.PERSON, Origin.RULE)),
                None,
            )
            if who is None:
                return
            entity = self.hub.registry.entities.get(event.entity_id)
            target = entity.name if entity is not None and entity.name else event.entity_id
            self._hub_notification(
                "command_failed",
                {
                    "target": target,
                    "reason": event.reason,
                    "who": who.describe(),
                },
                route.targets,
                key=f"command_failed:{event.entity_id}",
                urgent=route.urgent,
                context=event.context,
            )
        except Exception:
            _LOGGER.exception("handling failed command %s failed", event.command_id)

    def _on_custom_event(self, event: CustomEvent) -> None:
        try:
            route = self.settings.route(event.event_type)
            if route is None:
                return
            data = dict(event.data)
            urgent = bool(data.get("urgent", route.urgent))
            key = str(data.get("key") or event.event_type)
            if isinstance(data.get("message"), str):
                # The event says it itself: route it as a plain notification (``resolved``
                # closes the incident its ``key`` names, e.g. a device alert that cleared).
                body: dict[str, Any] = {
                    "urgent": urgent,
                    "key": key,
                    "event_type": event.event_type,
                }
                if data.get("resolved") is True:
                    body["resolved"] = True
                self.hub.bus.publish(
                    Notification(
                        message=data["message"],
                        title=str(data.get("title") or event.event_type),
                        targets=tuple(route.targets),
                        data=body,
                        context=event.context,
                    )
                )
                return
            if event.event_type == "speedtest_below_threshold":
                text_id, params = "speedtest_below_threshold", data
            else:
                details = ", ".join(f"{k}: {v}" for k, v in sorted(data.items())) or "-"
                text_id, params = "custom_event", {"event": event.event_type, "details": details}
            self._hub_notification(
                text_id, params, route.targets, key=key, urgent=urgent, context=event.context
            )
        except Exception:
            _LOGGER.exception("handling event %s failed", event.event_type)

    def _hub_notification(
        self,
        text_id: str,
        params: Mapping[str, Any],
        targets: Iterable[str],
        *,
        key: str,
        urgent: bool = False,
        resolved: bool = False,
        context: Context | None = None,
    ) -> None:
        title, text = render(text_id, "en", params)
        data = {
            HUB_TEXT: {"id": text_id, "params": {k: _plain(v) for k, v in params.items()}},
            "key": key,
            "urgent": urgent,
        }
        if resolved:
            data["resolved"] = True
        self.hub.bus.publish(
            Notification(
                message=text,
                title=title,
                targets=tuple(targets),
                data=data,
                context=context or Context(Origin.HUB, "notify"),
            )
        )

    # ----- routing -----------------------------------------------------------------------------

    def _route(self, event: Notification) -> None:
        data = dict(event.data) if isinstance(event.data, Mapping) else {}
        urgent = data.get("urgent") is True
        resolved = data.get("resolved") is True
        key = str(data["key"]) if data.get("key") not in (None, "") else None
        targets = tuple(event.targets) or self.settings.default_targets
        recipients, problems = self.resolve(targets)
        now = self.clock()
        for problem_target, reason in problems:
            self._record(
                self._new_record(
                    Recipient("-", problem_target), event.title, event.message, now, urgent, key
                ),
                "undeliverable",
                reason,
            )
        for recipient in recipients:
            title, text = self._texts_for(event, data, recipient)
            delivery = Delivery(
                id=uuid.uuid4().hex,
                channel=recipient.channel,
                address=recipient.address,
                title=title[:_MAX_TEXT],
                text=text[:_MAX_TEXT],
                person=recipient.person,
                urgent=urgent,
                key=key,
                resolved=resolved,
                data=data,
                context=event.context,
                language=recipient.person.language if recipient.person else "en",
            )
            self._decide(delivery, recipient, now)

    def resolve(self, targets: Iterable[str]) -> tuple[list[Recipient], list[tuple[str, str]]]:
        """The recipients of ``targets`` and, for targets reaching nobody, why."""
        people = self._people()
        out: list[Recipient] = []
        problems: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()

        def add(found: Iterable[Recipient]) -> None:
            for recipient in found:
                marker = (recipient.channel, recipient.address)
                if marker not in seen:
                    seen.add(marker)
                    out.append(recipient)

        for target in targets:
            try:
                check_target(target)
            except ValueError as exc:
                problems.append((target, str(exc)))
                continue
            prefix, sep, rest = target.partition(":")
            if target == "everyone" or prefix == "role":
                group = (
                    list(people.by_id.values())
                    if target == "everyone"
                    else people.with_role(Role(rest))
                )
                if not group:
                    problems.append((target, f"nobody is {target}"))
                for member in group:
                    found, reason = self._person_recipients(member)
                    add(found)
                    if not found:
                        problems.append((member.id, reason))
            elif sep:
                if prefix not in self.channels:
                    problems.append((target, self._no_channel(prefix)))
                else:
                    add([Recipient(prefix, rest, _person_at(people, prefix, rest))])
            else:
                person = people.get(target)
                if person is None:
                    problems.append((target, f"unknown person {target!r}"))
                    continue
                found, reason = self._person_recipients(person)
                add(found)
                if not found:
                    problems.append((person.id, reason))
        return out, problems

    def _person_recipients(self, person: Person) -> tuple[list[Recipient], str]:
        """The channels a person is notified on: their preferences, else every one they have."""
        wanted = person.notify_channels or tuple(
            name for name in self.channels if self._address(person, name) is not None
        )
        found: list[Recipient] = []
        for name in wanted:
            address = self._address(person, name)
            if name in self.channels and address is not None:
                found.append(Recipient(name, address, person))
        if found:
            return found, ""
        if not self.channels:
            return found, "no notification channel is registered (is a front-end running?)"
        listed = ", ".join(wanted) if wanted else "none"
        return found, (
            f"{person.id} has no address on a running channel (their channels: {listed}; "
            f"running: {', '.join(sorted(self.channels))})"
        )

    @staticmethod
    def _address(person: Person, channel: str) -> str | None:
        kind = channel_identity(channel)
        return person.address_on(kind) if kind is not None else None

    def _no_channel(self, name: str) -> str:
        running = ", ".join(sorted(self.channels)) or "none"
        return f"no channel {name!r} is running (running: {running})"

    def _texts_for(
        self, event: Notification, data: Mapping[str, Any], recipient: Recipient
    ) -> tuple[str, str]:
        hub_text = data.get(HUB_TEXT)
        if isinstance(hub_text, Mapping) and recipient.person is not None:
            params = hub_text.get("params")
            try:
                return render(
                    str(hub_text.get("id")),
                    recipient.person.language,
                    params if isinstance(params, Mapping) else {},
                )
            except KeyError:
                pass  # not one of ours: use the text as sent
        return event.title, event.message

    # ----- the decisions -----------------------------------------------------------------------

    def _decide(self, delivery: Delivery, recipient: Recipient, now: float) -> None:
        record = self._new_record(
            recipient,
            delivery.title,
            delivery.text,
            now,
            delivery.urgent,
            delivery.key,
            delivery_id=delivery.id,
        )
        # 1. de-duplication
        window = self.settings.dedupe_window
        # The same words about the same incident are a duplicate; new words about it (an
        # update) are not, so they reach the incident's thread where a channel keeps one.
        words = hashlib.sha256(f"{delivery.title}\n{delivery.text}".encode()).hexdigest()
        dedupe_key = f"{delivery.key}#{words}" if delivery.key else words
        if delivery.resolved:
            dedupe_key += "#resolved"
        seen_key = (recipient.channel, recipient.address, dedupe_key)
        last = self._seen.get(seen_key)
        if window > 0 and last is not None and now - last < window:
            self._record(record, "duplicate", f"the same was sent {now - last:.0f} s ago")
            return
        self._seen[seen_key] = now
        # 2. quiet hours
        person = recipient.person
        breaks_through = person is not None and delivery.urgent and person.urgent_overrides_quiet
        if person is not None and not breaks_through and self._quiet(person, now):
            held = replace(record, data=_held_data(delivery))
            self._record(held, "held", "quiet hours")
            self._held_group(recipient).records.append(held)
            return
        # 3. rate limit
        if not self._take_token(recipient, now) and not delivery.urgent:
            bucket = self._buckets[(recipient.bucket, recipient.channel)]
            bucket.suppressed += 1
            bucket.sample = recipient
            self._record(record, "rate_limited", "too many notifications; one summary follows")
            return
        # 4. send
        self._spawn_send(delivery, record)

    def _take_token(self, recipient: Recipient, now: float) -> bool:
        limit = self.settings.rate_limit
        marker = (recipient.bucket, recipient.channel)
        bucket = self._buckets.get(marker)
        if bucket is None:
            bucket = self._buckets[marker] = _Bucket(float(limit.burst), now)
        self._refill(bucket, now)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        return False

    def _refill(self, bucket: _Bucket, now: float) -> None:
        limit = self.settings.rate_limit
        gained = max(0.0, now - bucket.updated) / limit.refill
        bucket.tokens = min(float(limit.burst), bucket.tokens + gained)
        bucket.updated = now

    def _quiet(self, person: Person, now: float) -> bool:
        if person.quiet_hours is None:
            return False
        local = dt.datetime.fromtimestamp(now, tz=self._tz)
        return person.quiet_hours.contains(local.hour * 60 + local.minute)

    def _held_group(self, recipient: Recipient) -> _Held:
        person_id = recipient.person.id if recipient.person is not None else ""
        marker = (person_id, recipient.channel, recipient.address)
        group = self._held.get(marker)
        if group is None:
            group = self._held[marker] = _Held(recipient)
        return group

    def _hold_again(self, record: DeliveryRecord) -> None:
        """Put a held delivery loaded from storage back in its digest queue."""
        people = self._people()
        person = people.get(record.person) if record.person else None
        self._held_group(Recipient(record.channel, record.address, person)).records.append(record)

    # ----- the timer loop ----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval)
            try:
                await self.tick()
            except Exception:
                _LOGGER.exception("the notification timer failed")

    async def tick(self) -> None:
        """Do what is due: offline reports, digests after quiet hours, suppressed summaries."""
        now = self.clock()
        self._report_offline(now)
        self._send_digests(now)
        self._send_summaries(now)
        window = self.settings.dedupe_window
        if len(self._seen) > 1000:
            self._seen = {k: t for k, t in self._seen.items() if now - t < window}

    def _report_offline(self, now: float) -> None:
        route = self.settings.route("device_offline")
        if route is None:
            self._offline_due.clear()
            return
        for device_id, due in list(self._offline_due.items()):
            if due > now:
                continue
            del self._offline_due[device_id]
            device = self.hub.registry.devices.get(device_id)
            if device is None or device.available:
                continue
            since = self._offline_since.get(device_id, now)
            local = dt.datetime.fromtimestamp(since, tz=self._tz)
            self._offline_told.add(device_id)
            self._hub_notification(
                "device_offline",
                {"device": self._device_name(device_id), "since": local.strftime("%H:%M")},
                route.targets,
                key=f"device_offline:{device_id}",
                urgent=route.urgent,
            )

    def _send_digests(self, now: float) -> None:
        people = self._people()
        for marker, group in list(self._held.items()):
            recipient = group.recipient
            person = people.get(marker[0]) if marker[0] else recipient.person
            if person is not None and self._quiet(person, now):
                continue
            del self._held[marker]
            if not group.records:
                continue
            if person is not None:
                recipient = replace(recipient, person=person)
            self._send_digest(recipient, group.records, now)

    def _send_digest(self, recipient: Recipient, records: list[DeliveryRecord], now: float) -> None:
        language = recipient.person.language if recipient.person else "en"
        if len(records) == 1:
            title, text = records[0].title, records[0].text
        else:
            lines = "\n".join(
                f"- {r.title}: {r.text}" if r.title else f"- {r.text}" for r in records
            )
            title, text = render("digest", language, {"count": len(records), "lines": lines})
        delivery = Delivery(
            id=uuid.uuid4().hex,
            channel=recipient.channel,
            address=recipient.address,
            title=title,
            text=text[:_MAX_TEXT],
            person=recipient.person,
            key=records[0].key if len(records) == 1 else None,
            language=language,
            data={"digest": [r.id for r in records]},
        )
        record = self._new_record(
            recipient,
            delivery.title,
            delivery.text,
            now,
            False,
            delivery.key,
            delivery_id=delivery.id,
        )
        for held in records:
            self._record(held, "digested", f"sent in digest {delivery.id}")
        self._spawn_send(delivery, replace(record, data={"digest": [r.id for r in records]}))

    def _send_summaries(self, now: float) -> None:
        for bucket in self._buckets.values():
            if not bucket.suppressed or bucket.sample is None:
                continue
            self._refill(bucket, now)
            if bucket.tokens < 1:
                continue
            bucket.tokens -= 1
            recipient, count = bucket.sample, bucket.suppressed
            bucket.suppressed = 0
            language = recipient.person.language if recipient.person else "en"
            title, text = render("suppressed", language, {"count": count})
            delivery = Delivery(
                id=uuid.uuid4().hex,
                channel=recipient.channel,
                address=recipient.address,
                title=title,
                text=text,
                person=recipient.person,
                language=language,
                data={"suppressed": count},
            )
            record = self._new_record(
                recipient, title, text, now, False, None, delivery_id=delivery.id
            )
            self._spawn_send(delivery, record)

    # ----- sending -----------------------------------------------------------------------------

    def _spawn_send(self, delivery: Delivery, record: DeliveryRecord) -> None:
        self._record(record, "sending", "")
        task = asyncio.get_running_loop().create_task(
            self._send(delivery, record), name=f"notify {delivery.channel} {delivery.id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, delivery: Delivery, record: DeliveryRecord) -> None:
        settings = self.settings
        detail = ""
        attempts = 0
        for attempt in range(settings.retries + 1):
            attempts += 1
            channel = self.channels.get(delivery.channel)
            if channel is None:
                detail = self._no_channel(delivery.channel)
            else:
                try:
                    result = await asyncio.wait_for(
                        channel.deliver(delivery), timeout=settings.send_timeout
                    )
                except TimeoutError:
                    detail = f"no answer from {delivery.channel} within {settings.send_timeout:g} s"
                except asyncio.CancelledError:
                    self._record(replace(record, attempts=attempts), "failed", "cancelled")
                    raise
                except Exception as exc:
                    detail = f"{type(exc).__name__}: {exc}"
                    _LOGGER.warning(
                        "channel %s raised delivering %s", delivery.channel, delivery.id
                    )
                else:
                    # A third-party channel may not keep to the protocol's return type.
                    returned: object = result
                    if not isinstance(returned, DeliveryResult):
                        detail = f"channel {delivery.channel} returned {type(returned).__name__}"
                    elif result.ok:
                        done = replace(record, attempts=attempts, external_id=result.external_id)
                        self._record(done, "sent", result.detail or "sent")
                        return
                    else:
                        detail = result.detail or "the channel refused it"
            if attempt < settings.retries:
                await asyncio.sleep(settings.retry_delay * 2**attempt)
        _LOGGER.warning(
            "notification %s to %s:%s failed after %d attempt(s): %s",
            delivery.id,
            delivery.channel,
            delivery.address,
            attempts,
            detail,
        )
        self._record(replace(record, attempts=attempts), "failed", detail)

    # ----- records -----------------------------------------------------------------------------

    def _new_record(
        self,
        recipient: Recipient,
        title: str,
        text: str,
        now: float,
        urgent: bool,
        key: str | None,
        *,
        delivery_id: str | None = None,
    ) -> DeliveryRecord:
        from hub.storage.notifications import DeliveryRecord

        return DeliveryRecord(
            id=delivery_id or uuid.uuid4().hex,
            created=now,
            updated=now,
            channel=recipient.channel,
            address=recipient.address,
            person=recipient.person.id if recipient.person else None,
            title=title[:_MAX_TEXT],
            text=text[:_MAX_TEXT],
            urgent=urgent,
            key=key,
            status="sending",
        )

    def _record(self, record: DeliveryRecord, status: str, detail: str) -> None:
        final = replace(record, status=status, detail=detail[:1000], updated=self.clock())
        for index in range(len(self.recent) - 1, -1, -1):
            if self.recent[index].id == final.id:
                self.recent[index] = final
                break
        else:
            self.recent.append(final)
            del self.recent[:-500]
        if status != "sending":
            _LOGGER.info(
                "notification %s to %s:%s %s%s",
                final.id,
                final.channel,
                final.address,
                status,
                f" ({detail})" if detail else "",
            )
        if self._store is not None:
            try:
                self._store.queue(final)
            except Exception:
                _LOGGER.exception("recording delivery %s failed", final.id)

    # ----- helpers -----------------------------------------------------------------------------

    def _people(self) -> People:
        conversation = self.hub.conversation
        if conversation is not None:
            return conversation.people
        if self._config_people is None:
            # No command layer (e.g. a hub started without it): the people of hub.yaml.
            configured = getattr(self.hub.config, "people", ())
            self._config_people = People.of(p.to_person() for p in configured)
        return self._config_people

    def _device_name(self, device_id: str) -> str:
        device = self.hub.registry.devices.get(device_id)
        return device.name if device is not None and device.name else device_id


def _settings_of(hub: Hub) -> NotificationsSection:
    found = getattr(hub.config, "notifications", None)
    return found if isinstance(found, NotificationsSection) else NotificationsSection.default()


def _time_zone(hub: Hub) -> dt.tzinfo | None:
    """The hub's time zone (``hub.location.time_zone``), else the machine's (None)."""
    location = hub.config.hub.location
    if location is None:
        return None
    try:
        return zoneinfo.ZoneInfo(location.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def _person_at(people: People, channel: str, address: str) -> Person | None:
    kind = channel_identity(channel)
    return people.find(kind, address) if kind is not None else None


def _held_data(delivery: Delivery) -> dict[str, Any]:
    return {"resolved": delivery.resolved, "language": delivery.language}


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
