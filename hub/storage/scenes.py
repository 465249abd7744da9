"""Revert snapshots of scenes: what a scene's entities were before it was applied.

Written at once, one transaction per snapshot, not by the flusher: scenes are applied at
human pace, and a snapshot must be stored by the time ``scene apply`` reports success. Read
once, when the scene service starts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select

from hub.storage import schema
from hub.storage.store import Storage

_LOGGER = logging.getLogger(__name__)

_MAX_ID = 255  # schema.ID


@dataclass(frozen=True, slots=True)
class SavedState:
    """One entity's state to restore: its value and the attributes a command can set again."""

    value: Any
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SceneSnapshot:
    """The states a scene's entities had before it was applied, by entity id."""

    scene_id: str
    taken: float
    states: Mapping[str, SavedState]

    def __post_init__(self) -> None:
        for what, ident in (("scene id", self.scene_id), *(("entity id", e) for e in self.states)):
            if not isinstance(ident, str) or not 0 < len(ident) <= _MAX_ID:
                raise ValueError(f"snapshot of scene {self.scene_id!r}: bad {what} {ident!r}")
        if isinstance(self.taken, bool) or not isinstance(self.taken, int | float):
            raise ValueError(f"snapshot of scene {self.scene_id!r}: taken must be epoch seconds")
        if not math.isfinite(self.taken):
            raise ValueError(f"snapshot of scene {self.scene_id!r}: taken must be finite")


class SceneSnapshotStore:
    """The ``scene_snapshots`` table: save, remove and load every scene's revert snapshot."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def save(self, snapshot: SceneSnapshot) -> None:
        """Store ``snapshot`` now, replacing the scene's stored one (all or nothing)."""
        table = schema.scene_snapshots
        rows = [
            {
                "scene_id": snapshot.scene_id,
                "entity_id": entity_id,
                "value": saved.value,
                "attributes": dict(saved.attributes),
                "taken": float(snapshot.taken),
            }
            for entity_id, saved in snapshot.states.items()
        ]
        storage = self._storage
        with storage._mapped(f"saving the revert snapshot of scene {snapshot.scene_id!r}"):
            async with storage._write() as conn:
                await conn.execute(delete(table).where(table.c.scene_id == snapshot.scene_id))
                if rows:
                    await conn.execute(table.insert(), rows)

    async def remove(self, scene_id: str) -> None:
        """Delete the scene's stored snapshot (nothing happens if there is none)."""
        table = schema.scene_snapshots
        storage = self._storage
        with storage._mapped(f"removing the revert snapshot of scene {scene_id!r}"):
            async with storage._write() as conn:
                await conn.execute(delete(table).where(table.c.scene_id == scene_id))

    async def load(self) -> dict[str, SceneSnapshot]:
        """Every stored snapshot by scene id; a row that cannot be read is skipped and logged."""
        table = schema.scene_snapshots
        storage = self._storage
        stmt = select(table).order_by(table.c.scene_id, table.c.entity_id)
        with storage._mapped("loading the scenes' revert snapshots"):
            async with storage._read() as conn:
                rows = (await conn.execute(stmt)).all()
        states: dict[str, dict[str, SavedState]] = {}
        taken: dict[str, float] = {}
        for row in rows:
            attributes = row.attributes
            if not isinstance(attributes, dict):
                # One damaged row must not cost the scene its other entities.
                _LOGGER.warning(
                    "scene_snapshots row (%r, %r) cannot be read: attributes are %r; skipped",
                    row.scene_id,
                    row.entity_id,
                    type(attributes).__name__,
                )
                continue
            states.setdefault(row.scene_id, {})[row.entity_id] = SavedState(row.value, attributes)
            taken[row.scene_id] = max(taken.get(row.scene_id, 0.0), float(row.taken))
        return {
            scene_id: SceneSnapshot(scene_id, taken[scene_id], found)
            for scene_id, found in states.items()
        }
