"""Group states, kept current: the one place a group's aggregated state is recomputed.

A group's state is worked out again when a member's state changes or memberships may have
changed (a device came, went or moved; a group was added or removed). The changes of one
loop turn are coalesced, so a scene that switches ten members is one group change. Each
change is published as a :class:`~hub.events.GroupStateChanged` on the bus: the mirror puts
it on ``<base>/groups/<id>/state``, the rule engine fires ``state``/``numeric`` triggers on
``group:<id>`` with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.bus import EventBus
from hub.events import GroupStateChanged, StateChanged
from hub.model import Context, GroupSummary, Origin, Registry, State

# The cause a group's state carries when rule expressions read it (the chain to the member
# change behind it is on the GroupStateChanged event, which triggers use).
_GROUP_CONTEXT = Context(Origin.HUB, "groups")


_NOT_PINNED: Any = object()


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """A group's state as last published, with when its value last changed."""

    summary: GroupSummary
    last_changed: float


class GroupStates:
    """Recomputes group states on member changes and publishes GroupStateChanged events."""

    def __init__(self, registry: Registry, bus: EventBus) -> None:
        self._registry = registry
        self._bus = bus
        self._current: dict[str, GroupSnapshot] = {}
        self._dirty: dict[str, Context | None] = {}  # group id -> the change that caused it
        self._stamps: dict[str, float] = {}  # group id -> last_changed of that change
        self._pinned: dict[str, Any] = {}
        self._flush_scheduled = False
        self._undo: list[Callable[[], None]] = []

    def attach(self) -> Callable[[], None]:
        """Follow member states and memberships; return the undo."""
        self._undo.append(self._bus.subscribe(StateChanged, self._on_state, owner="groups"))
        self._registry.on_membership_change = self._on_membership_change
        self._on_membership_change()  # groups configured before attaching
        return self.detach

    def detach(self) -> None:
        """Stop following (the last published states stay readable)."""
        while self._undo:
            self._undo.pop()()
        if self._registry.on_membership_change == self._on_membership_change:
            self._registry.on_membership_change = None

    # ----- reading ---------------------------------------------------------------------------

    def snapshot(self, group_id: str) -> GroupSnapshot | None:
        """The group's state as last published (None: unknown group, or not computed yet)."""
        return self._current.get(group_id)

    def snapshots(self) -> dict[str, GroupSnapshot]:
        """Every group's last published state, by id."""
        return dict(self._current)

    def value(self, group_id: str) -> Any:
        """The group's aggregated value now (None when unknown or no member is known)."""
        if group_id in self._pinned:
            return self._pinned[group_id]
        if group_id not in self._registry.groups:
            return None
        current = self._current.get(group_id)
        if current is not None and group_id not in self._dirty:
            return current.summary.state
        return self._registry.group_state(group_id)

    def summary(self, group_id: str) -> GroupSummary | None:
        """The group's value and member counts now (None: no such group).

        "Now" as :meth:`value` says it: a member change of this loop turn counts already,
        before its GroupStateChanged is published at the end of the turn.
        """
        current = self._current.get(group_id)
        if current is not None and group_id not in self._dirty:
            return current.summary
        pinned = self._pinned.get(group_id, _NOT_PINNED)
        if group_id not in self._registry.groups:
            return None if pinned is _NOT_PINNED else GroupSummary(pinned, 0, 0, 0)
        summary = self._registry.group_summary(group_id)
        if pinned is not _NOT_PINNED:
            summary = GroupSummary(pinned, summary.members, summary.on, summary.known)
        return summary

    def state(self, group_id: str, entity_id: str | None = None) -> State | None:
        """The group's aggregated state as a :class:`State` named ``entity_id`` (default
        ``group:<id>``), for rule expressions: the value, ``last_changed``, and ``aggregate``,
        ``members``, ``on`` and ``known`` as attributes. None: no such group."""
        summary = self.summary(group_id)
        if summary is None:
            return None
        group = self._registry.groups.get(group_id)
        current = self._current.get(group_id)
        if current is not None and current.summary.state == summary.state:
            changed = current.last_changed
        else:
            # Changed in this loop turn (not yet published): when the member changed.
            changed = self._stamps.get(group_id, time.time())
        return State(
            entity_id=entity_id or f"group:{group_id}",
            value=summary.state,
            attributes={
                "aggregate": group.aggregate.value if group is not None else None,
                "members": summary.members,
                "on": summary.on,
                "known": summary.known,
            },
            last_changed=changed,
            last_updated=changed,
            context=_GROUP_CONTEXT,
        )

    def pin(
        self,
        group_id: str,
        value: Any,
        context: Context | None = None,
        *,
        now: float | None = None,
    ) -> None:
        """Give a group this value whatever its members say (rule tests drive groups so)."""
        self._pinned[group_id] = value
        self._mark(group_id, context, time.time() if now is None else now)
        self.flush()

    # ----- following -------------------------------------------------------------------------

    def _on_state(self, event: StateChanged) -> None:
        if not event.value_changed:
            # Attributes only (a member's brightness): no group value or count moves.
            return
        groups = self._registry.groups_of(event.entity_id)
        if groups:
            for group_id in groups:
                self._mark(group_id, event.new.context, event.new.last_changed)
            self._schedule()

    def _on_membership_change(self) -> None:
        # Any group's members may differ; removed groups are told so too.
        now = time.time()
        for group_id in (*self._registry.groups, *self._current):
            self._mark(group_id, None, now, weak=True)
        if self._dirty:
            self._schedule()

    def _mark(
        self, group_id: str, context: Context | None, stamp: float, *, weak: bool = False
    ) -> None:
        # A member's change names the cause and the time; a membership change only when
        # nothing in this turn did.
        if context is not None or group_id not in self._dirty:
            self._dirty[group_id] = context
        if not weak or group_id not in self._stamps:
            self._stamps[group_id] = stamp

    def _schedule(self) -> None:
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()  # no loop (set-up code, tests): at once
            return
        # Coalesce: the member reports of one loop turn become one change per group, at the
        # end of the turn (so no added latency).
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Recompute the marked groups now and publish what changed."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        stamps, self._stamps = self._stamps, {}
        registry = self._registry
        for group_id, context in dirty.items():
            previous = self._current.get(group_id)
            group = registry.groups.get(group_id)
            if group is None:
                self._pinned.pop(group_id, None)
                if self._current.pop(group_id, None) is not None:
                    self._bus.publish(
                        GroupStateChanged(
                            group_id,
                            previous.summary.state if previous else None,
                            None,
                            removed=True,
                            context=context,
                        )
                    )
                continue
            summary = registry.group_summary(group_id)
            if group_id in self._pinned:
                summary = GroupSummary(
                    self._pinned[group_id], summary.members, summary.on, summary.known
                )
            if previous is not None and previous.summary == summary:
                continue  # e.g. a member changed but the aggregate and counts did not
            old = previous.summary.state if previous is not None else None
            changed = stamps.get(group_id, time.time())
            if previous is not None and old == summary.state:
                changed = previous.last_changed  # only the counts moved
            self._current[group_id] = GroupSnapshot(summary, changed)
            self._bus.publish(
                GroupStateChanged(
                    group_id,
                    old,
                    summary.state,
                    aggregate=group.aggregate.value,
                    members=summary.members,
                    on=summary.on,
                    known=summary.known,
                    last_changed=changed,
                    first=previous is None,
                    context=context,
                )
            )
