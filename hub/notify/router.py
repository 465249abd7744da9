"""The notification router (issue 5: being written; this is its contract)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.notify import NotificationChannel


class NotificationRouter:
    """Routes notifications to people and channels."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.channels: dict[str, NotificationChannel] = {}

    def register_channel(self, name: str, channel: NotificationChannel) -> Callable[[], None]:
        """Deliver notifications for channel ``name`` through ``channel``; return the undo."""
        self.channels[name] = channel

        def undo() -> None:
            if self.channels.get(name) is channel:
                del self.channels[name]

        return undo

    def record_status(self, delivery_id: str, ok: bool, detail: str) -> None:
        """Record a later status of a delivery (found by its id or the service's id)."""
        raise NotImplementedError  # being written (issue 5)
