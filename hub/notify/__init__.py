"""Notifications: routed to people and channels, de-duplicated, rate-limited, quiet hours.

CONTRACT (front-ends implement :class:`NotificationChannel` and register it with
``PluginContext.register_channel``): the router turns each ``Notification`` event (a rule's
``notify`` action) and each hub event worth telling people about (device offline, command
failed, speed test below its threshold) into :class:`Delivery` objects, one per recipient and
channel, and awaits ``channel.deliver``; the result is recorded.

Notification targets (a rule's ``targets:``): a person id (``alice``), ``role:admin`` /
``role:member`` / ``everyone``, or ``<channel>:<address>`` which goes to that channel as is
(``discord:alerts`` — a channel name from the Discord settings or a channel id;
``sms:+15551234567``; ``email:ops@example.com``). No targets: the configured defaults.
A notification's ``data`` may carry ``urgent: true`` (breaks through quiet hours), ``key``
(de-duplication and incident key: one Discord thread per key) and ``resolved: true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.conversation.people import Person
from hub.conversation.reply import ReplyAction
from hub.model import Context


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one recipient on one channel, already translated."""

    id: str  # unique; a channel's status callbacks refer to it
    channel: str  # the front-end name: "discord", "sms", "email"
    address: str  # the person's address on that channel, or the channel target as written
    title: str
    text: str
    person: Person | None = None  # None when the target is a channel, not a person
    urgent: bool = False
    key: str | None = None  # de-duplication / incident key (a Discord thread per key)
    resolved: bool = False  # the incident named by ``key`` is over
    actions: tuple[ReplyAction, ...] = ()  # buttons where the channel has them
    data: Mapping[str, Any] = field(default_factory=dict)
    context: Context | None = None
    language: str = "en"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a channel did with a delivery."""

    ok: bool
    detail: str = ""  # e.g. "sent", "queued", or why it failed
    external_id: str | None = None  # the service's id (Twilio message SID, Discord message id)


class NotificationChannel(Protocol):
    """A front-end's way of delivering notifications."""

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Send one delivery; raise nothing for a failed send, return ``ok=False`` saying why."""
        ...
