"""The event bus: typed events, subscriptions that return their own undo, isolated listeners."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hub.events import Event

E = TypeVar("E", bound=Event)
Listener = Callable[[E], None] | Callable[[E], Awaitable[None]]
Unsubscribe = Callable[[], None]

_LOGGER = logging.getLogger(__name__)


class _Subscription:
    __slots__ = ("callback", "except_types", "is_async", "owner")

    def __init__(
        self,
        callback: Callable[[Any], Any],
        owner: str,
        except_types: frozenset[type[Event]] = frozenset(),
    ) -> None:
        self.callback = callback
        self.owner = owner
        self.is_async = inspect.iscoroutinefunction(callback)
        self.except_types = except_types  # a catch-all's types it never wants


class EventBus:
    """Delivers each event to the listeners of its exact type and to catch-all listeners.

    Synchronous listeners run inline (the hot path stays free of task creation); coroutine
    listeners each get a task. A listener that raises is logged with its owner and the event
    name, and the remaining listeners still run.
    """

    def __init__(self) -> None:
        self._by_type: dict[type[Event], list[_Subscription]] = {}
        self._catch_all: list[_Subscription] = []
        # Per event type, its listeners then the catch-all ones: built on first publish, dropped
        # on every (un)subscribe. Dispatch walks this snapshot, so a listener may unsubscribe
        # (or subscribe) during dispatch without changing who gets the current event.
        self._dispatch: dict[type[Event], tuple[_Subscription, ...]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.listener_errors = 0
        # Events announced so far: lets a producer tell whether some work announced anything.
        self.published = 0

    def subscribe(self, event_type: type[E], callback: Listener[E], *, owner: str) -> Unsubscribe:
        """Call ``callback`` for each event of ``event_type``; return the function that stops it."""
        return self._add(self._by_type.setdefault(event_type, []), callback, owner)

    def subscribe_all(
        self,
        callback: Listener[Event],
        *,
        owner: str,
        except_types: tuple[type[Event], ...] = (),
    ) -> Unsubscribe:
        """Call ``callback`` for every event but those of ``except_types`` (not even called
        for them: the hot path's StateChanged, say); return the function that stops it."""
        return self._add(self._catch_all, callback, owner, frozenset(except_types))

    def has_listeners(self, event_type: type[Event]) -> bool:
        """True when an event of this type would reach anyone (lets producers skip work)."""
        return bool(self._by_type.get(event_type)) or any(
            event_type not in sub.except_types for sub in self._catch_all
        )

    def _add(
        self,
        bucket: list[_Subscription],
        callback: Callable[[Any], Any],
        owner: str,
        except_types: frozenset[type[Event]] = frozenset(),
    ) -> Unsubscribe:
        sub = _Subscription(callback, owner, except_types)
        bucket.append(sub)
        self._dispatch.clear()

        def unsubscribe() -> None:
            if sub in bucket:
                bucket.remove(sub)
                self._dispatch.clear()

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to its listeners now (coroutine listeners are scheduled)."""
        self.published += 1
        event_type = type(event)
        subs = self._dispatch.get(event_type)
        if subs is None:
            subs = (
                *self._by_type.get(event_type, ()),
                *(sub for sub in self._catch_all if event_type not in sub.except_types),
            )
            self._dispatch[event_type] = subs
        for sub in subs:
            if sub.is_async:
                self._call(sub, event)
                continue
            # Synchronous listeners inline (the ingest hot path: several per state report).
            try:
                sub.callback(event)
            except Exception:
                self.listener_errors += 1
                _LOGGER.exception("listener %s/%s failed", sub.owner, event.name)

    def _call(self, sub: _Subscription, event: Event) -> None:
        try:
            if sub.is_async:
                task = asyncio.get_running_loop().create_task(
                    self._run_async(sub, event), name=f"{sub.owner}/{event.name}"
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                sub.callback(event)
        except Exception:
            self.listener_errors += 1
            _LOGGER.exception("listener %s/%s failed", sub.owner, event.name)

    async def _run_async(self, sub: _Subscription, event: Event) -> None:
        try:
            await sub.callback(event)
        except Exception:
            self.listener_errors += 1
            _LOGGER.exception("listener %s/%s failed", sub.owner, event.name)

    async def drain(self) -> None:
        """Wait for the coroutine listeners already scheduled (used at shutdown and in tests)."""
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
