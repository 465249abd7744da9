"""Same bytes again, same repeats: a memo of the messages whose whole effect was a repeat.

Most periodic telemetry is the device's last message again, byte for byte (a Zigbee sensor
whose readings did not move, a discovery plug idling). Reading it the full way (parse, map,
template, validate) only to find that every reading repeats the current state costs an
adapter several times what the repeat itself costs: moving ``last_reported``.

An adapter reads a message the full way once, between :meth:`RepeatMemo.mark` and
:meth:`RepeatMemo.remember`. When that reading announced nothing on the bus (no state
changed, no device came or went, nothing was rejected) and left every entity it reported
holding a State, the memo keeps the payload with those States. The same payload on the same
topic again is then that same set of repeats, as long as:

* every entity still holds the very State the memo saw (States are replaced on any change, so
  identity proves nothing was reported in between that changed it);
* no command awaits a confirmation from any of them (a repeat may confirm it);
* each device is the very Device the memo saw, and online (re-registration replaces it).

Reading the payload the full way is a pure function of the payload, the adapter's mapping and
those States, so under those conditions it would do exactly what the memo does. An adapter
whose mapping changes (a new device definition, a new discovery config) calls :meth:`clear`.
Anything else the full way does besides reporting (timers, availability) the adapter keeps out
of the memo by not calling :meth:`remember` for that message.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.model import Device, State, touch_reported

if TYPE_CHECKING:
    from hub.core import Hub

# Topics remembered at most (one per device state topic in practice); past it the memo starts
# afresh rather than grow with a flood of distinct topics.
_MAX_TOPICS = 20_000


@dataclass(frozen=True, slots=True)
class _Remembered:
    payload: bytes
    devices: tuple[Device, ...]
    states: tuple[State, ...]


class RepeatMemo:
    """Per topic, the last payload whose full reading only repeated current states."""

    __slots__ = ("_hub", "_memo", "hits")

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._memo: dict[str, _Remembered] = {}
        self.hits = 0

    def replay(self, topic: str, payload: bytes) -> bool:
        """Report ``payload`` as the repeats it was last time; False (nothing done) when the
        memo does not hold it or anything it relied on moved: read it the full way."""
        remembered = self._memo.get(topic)
        if remembered is None or remembered.payload != payload:
            return False
        hub = self._hub
        registry = hub.registry
        devices = registry.devices
        for device in remembered.devices:
            if devices.get(device.id) is not device or not device.available:
                return False
        states = registry.states
        awaiting = hub.commands.awaiting
        for state in remembered.states:
            entity_id = state.entity_id
            if states.get(entity_id) is not state or entity_id in awaiting:
                return False
        now = time.time()
        for state in remembered.states:
            touch_reported(state, now)
        hub.stats.reports += len(remembered.states)
        self.hits += 1
        return True

    def mark(self) -> int:
        """Before reading a message the full way: the bus's count of announced events."""
        return self._hub.bus.published

    def remember(self, topic: str, payload: bytes, entity_ids: Iterable[str], mark: int) -> None:
        """After reading ``payload`` the full way (``mark`` taken before): keep it when that
        reading announced nothing and every entity in ``entity_ids`` holds a State on an online
        device; else forget what the memo held for ``topic``."""
        hub = self._hub
        if hub.bus.published == mark:
            registry = hub.registry
            held: list[State] = []
            devices: dict[str, Device] = {}
            for entity_id in entity_ids:
                state = registry.states.get(entity_id)
                entity = registry.entities.get(entity_id)
                device = registry.devices.get(entity.device_id) if entity is not None else None
                if state is None or device is None or not device.available:
                    break
                held.append(state)
                devices[device.id] = device
            else:
                if held:
                    if len(self._memo) >= _MAX_TOPICS and topic not in self._memo:
                        self._memo.clear()
                    self._memo[topic] = _Remembered(payload, tuple(devices.values()), tuple(held))
                    return
        self._memo.pop(topic, None)

    def forget(self, topic: str) -> None:
        """Drop what the memo holds for ``topic``."""
        self._memo.pop(topic, None)

    def clear(self) -> None:
        """Drop everything (the adapter's mapping changed)."""
        self._memo.clear()
