"""The scenes' revert snapshots (scene_snapshots), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import logging

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine
from storesupport import database_at, raw

from hub.storage import Storage, StorageError
from hub.storage.migrations import alembic_config
from hub.storage.scenes import SavedState, SceneSnapshot, SceneSnapshotStore
from hub.storage.schema import HEAD_REVISION

MOVIE = SceneSnapshot(
    "movie",
    1000.0,
    {
        "living_room_light.light": SavedState("on", {"brightness": 128, "color_temp": 370}),
        "living_room_blinds.cover": SavedState("open", {"position": 60}),
        "living_room_tv_plug.switch": SavedState("off"),
        "living_room_thermostat.thermostat": SavedState("heat", {"target_temperature": 20.5}),
        "hall_select.mode": SavedState(None),
    },
)


async def test_a_snapshot_is_stored_at_once_and_survives_a_reopen(
    storage: Storage, storage_url: str
) -> None:
    await SceneSnapshotStore(storage).save(MOVIE)
    # Written in its own transaction, not left for a flush.
    assert storage.pending_writes == 0
    rows = await raw(storage_url, "SELECT count(*) FROM scene_snapshots WHERE scene_id = 'movie'")
    assert rows == [(5,)]
    await storage.close()

    reopened = Storage(storage_url, flush_interval=60)
    await reopened.start()
    try:
        loaded = await SceneSnapshotStore(reopened).load()
    finally:
        await reopened.close()
    assert loaded == {"movie": MOVIE}


async def test_saving_again_replaces_the_scenes_snapshot_and_remove_deletes_only_it(
    storage: Storage,
) -> None:
    store = SceneSnapshotStore(storage)
    cosy = SceneSnapshot("cosy", 1500.0, {"kitchen_light.light": SavedState("off")})
    await store.save(MOVIE)
    await store.save(cosy)
    smaller = SceneSnapshot(
        "movie", 2000.0, {"living_room_light.light": SavedState("off", {"brightness": 3})}
    )
    await store.save(smaller)
    assert await store.load() == {"movie": smaller, "cosy": cosy}

    await store.remove("movie")
    await store.remove("never_applied")  # nothing stored: not an error
    assert await store.load() == {"cosy": cosy}


async def test_a_damaged_row_costs_only_that_entity(
    storage: Storage, storage_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SceneSnapshotStore(storage)
    await store.save(MOVIE)
    await raw(
        storage_url,
        "UPDATE scene_snapshots SET attributes = '[1, 2]' "
        "WHERE entity_id = 'living_room_light.light'",
    )
    with caplog.at_level(logging.WARNING, logger="hub.storage.scenes"):
        loaded = await store.load()
    assert set(loaded["movie"].states) == set(MOVIE.states) - {"living_room_light.light"}
    assert "'movie', 'living_room_light.light'" in caplog.text


async def test_errors_are_storage_errors(storage_url: str) -> None:
    store = Storage(storage_url, flush_interval=60)
    await store.start()
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await SceneSnapshotStore(store).save(MOVIE)


def test_a_snapshot_checks_itself() -> None:
    with pytest.raises(ValueError, match="bad scene id"):
        SceneSnapshot("", 1.0, {})
    with pytest.raises(ValueError, match="bad entity id"):
        SceneSnapshot("movie", 1.0, {"x" * 256: SavedState("on")})
    with pytest.raises(ValueError, match="finite"):
        SceneSnapshot("movie", float("nan"), {})


async def test_a_database_at_0003_gets_the_table_and_keeps_its_data(storage_url: str) -> None:
    await database_at(storage_url, "0003")

    store = Storage(storage_url)
    await store.start()
    try:
        await SceneSnapshotStore(store).save(MOVIE)
    finally:
        await store.close()
    assert await raw(storage_url, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert await raw(storage_url, "SELECT id FROM areas") == [("attic",)]

    # And back down: 0004's downgrade drops exactly its table.
    engine = create_async_engine(storage_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0003"))
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert "scene_snapshots" not in tables
    assert {"areas", "notification_deliveries", "rule_timers"} <= tables
