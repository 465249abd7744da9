"""The storage suite, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine
from storesupport import raw

from hub.model import (
    Aggregate,
    Area,
    Context,
    Device,
    Entity,
    EntityKind,
    Group,
    Origin,
    Registry,
    State,
)
from hub.storage import AuditEntry, Storage, StorageError, redact_url
from hub.storage.schema import HEAD_REVISION, metadata

REPO = Path(__file__).resolve().parents[2]


# -- helpers ---------------------------------------------------------------------------------


async def reopen(store: Storage, url: str) -> Storage:
    await store.close()
    fresh = Storage(url, flush_interval=60)
    await fresh.start()
    return fresh


def plug(
    device_id: str, keys: Sequence[str] = ("power",), **fields: Any
) -> tuple[Device, list[Entity]]:
    entities = [
        Entity(
            id=f"{device_id}.{key}",
            device_id=device_id,
            key=key,
            kind=EntityKind.SWITCH if key == "power" else EntityKind.SENSOR,
            name=key.title(),
            unit=None if key == "power" else "W",
            device_class=None if key == "power" else "power",
            options={"topic": f"stat/{device_id}/{key}"},
        )
        for key in keys
    ]
    device = Device(
        id=device_id,
        name=f"Plug {device_id}",
        owner="tasmota",
        entity_ids=[e.id for e in entities],
        **fields,
    )
    return device, entities


def state(entity_id: str, value: Any, ctx: Context, at: float = 1000.0, **attrs: Any) -> State:
    return State(entity_id, value, attrs, last_changed=at, last_updated=at + 0.5, context=ctx)


def entry(ts: float, target: str, command_id: str | None = None, **kw: Any) -> AuditEntry:
    return AuditEntry(
        ts=ts,
        kind=kw.pop("kind", "command"),
        target=target,
        action=kw.pop("action", "turn_on"),
        params=kw.pop("params", {}),
        context=kw.pop("context", None),
        result=kw.pop("result", "ok"),
        command_id=command_id,
        **kw,
    )


PERSON = Context(Origin.PERSON, "alice", via="discord")


# -- schema and migrations -------------------------------------------------------------------


def _compare(connection: Connection) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migration_creates_the_schema_of_the_metadata(storage_url: str) -> None:
    store = Storage(storage_url)
    await store.start()
    await store.close()

    engine = create_async_engine(storage_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            differences = await conn.run_sync(_compare)
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    finally:
        await engine.dispose()
    assert tables == {*metadata.tables, "alembic_version"}
    assert differences == []
    assert version == [(HEAD_REVISION,)]


def test_head_revision_constant_matches_the_migration_scripts() -> None:
    from alembic.script import ScriptDirectory

    from hub.storage.migrations import alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION


async def test_sqlite_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'dir' / 'hub.db'}"
    store = Storage(url)
    await store.start()
    await store.close()
    assert (tmp_path / "new" / "dir" / "hub.db").exists()
    assert await raw(url, "PRAGMA journal_mode") == [("wal",)]


async def test_start_on_a_migrated_database_is_fast_and_skips_alembic(storage_url: str) -> None:
    first = Storage(storage_url)
    await first.start()
    await first.close()

    timings = []
    for _ in range(3):
        store = Storage(storage_url)
        began = time.perf_counter()
        await store.start()
        timings.append(time.perf_counter() - began)
        await store.close()
    assert min(timings) < 0.1, timings

    # In a fresh interpreter: starting on an up-to-date database never imports alembic.
    script = (
        "import asyncio, sys\n"
        "from hub.storage import Storage\n"
        "async def main():\n"
        f"    s = Storage({storage_url!r})\n"
        "    await s.start()\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
        "print('alembic' in sys.modules)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == "False"


async def test_two_services_starting_at_once_migrate_once(storage_url: str) -> None:
    first, second = Storage(storage_url), Storage(storage_url)
    try:
        await asyncio.gather(first.start(), second.start())
        await first.save_area(Area("kitchen", "Kitchen"))
        registry = Registry()
        await second.load_into(registry)
        assert set(registry.areas) == {"kitchen"}
    finally:
        await first.close()
        await second.close()
    assert await raw(storage_url, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


async def test_database_from_a_newer_hub_is_refused_clearly(storage_url: str) -> None:
    store = Storage(storage_url)
    await store.start()
    await store.close()
    await raw(storage_url, "UPDATE alembic_version SET version_num = '9999'")

    with pytest.raises(StorageError, match=r"migrating the database failed.*9999"):
        await Storage(storage_url).start()


# -- registry ----------------------------------------------------------------------------------


async def test_registry_round_trip_across_restart(storage: Storage, storage_url: str) -> None:
    bridge, bridge_entities = plug("bridge", keys=())
    lamp, lamp_entities = plug(
        "lamp",
        keys=("energy", "power"),  # stored order is by id
        area="kitchen",
        manufacturer="Tasmota",
        model="Sonoff S31",
        firmware="13.2",
        via="bridge",
        identities={"mac": "aa:bb:cc:dd:ee:ff", "ip": "192.0.2.7"},
        available=True,
        native={"topic": "lamp", "qos": 1, "nested": {"list": [1, 2.5, None, "x"]}},
    )
    await storage.save_device(bridge, bridge_entities)
    await storage.save_device(lamp, lamp_entities)
    await storage.save_area(Area("kitchen", "Kitchen"))
    await storage.save_group(Group("downstairs", "Downstairs", ["lamp.power"], Aggregate.ALL))

    scene = PERSON.child(Origin.SCENE, "movie").child(Origin.DEVICE, "lamp")
    storage.queue_state(state("lamp.power", "on", scene, brightness=128.0))
    storage.queue_state(state("lamp.energy", 12.5, PERSON))
    await storage.flush()

    store = await reopen(storage, storage_url)
    try:
        registry = Registry()
        await store.load_into(registry)
    finally:
        await store.close()

    assert registry.devices == {"bridge": bridge, "lamp": lamp}
    assert registry.entities == {e.id: e for e in lamp_entities}
    assert registry.areas == {"kitchen": Area("kitchen", "Kitchen")}
    assert registry.groups == {
        "downstairs": Group("downstairs", "Downstairs", ["lamp.power"], Aggregate.ALL)
    }
    loaded = registry.states["lamp.power"]
    assert loaded == state("lamp.power", "on", scene, brightness=128.0)
    assert [c.describe() for c in loaded.context.chain()] == [
        "device lamp",
        "scene movie",
        "person alice via discord",
    ]
    assert [c.id for c in loaded.context.chain()] == [c.id for c in scene.chain()]
    assert registry.states["lamp.energy"].value == 12.5
    assert registry.resolve("area:kitchen") == lamp_entities


async def test_soft_deleted_areas_and_groups_are_not_loaded(
    storage: Storage, storage_url: str
) -> None:
    for area_id in ("kitchen", "attic"):
        await storage.save_area(Area(area_id, area_id.title()))
    for group_id in ("lights", "heaters"):
        await storage.save_group(Group(group_id, group_id.title(), []))
    await storage.delete_area("attic")
    await storage.delete_group("heaters")
    await storage.delete_area("no-such-area")  # nothing to do, no error

    registry = Registry()
    await storage.load_into(registry)
    assert set(registry.areas) == {"kitchen"}
    assert set(registry.groups) == {"lights"}
    # Soft: the rows are still there, marked.
    rows = await raw(storage_url, "SELECT id FROM areas WHERE deleted_at IS NOT NULL")
    assert rows == [("attic",)]

    await storage.save_area(Area("attic", "Loft"))  # saving again brings it back
    registry = Registry()
    await storage.load_into(registry)
    assert registry.areas["attic"] == Area("attic", "Loft")


async def test_save_device_deletes_entities_no_longer_listed(
    storage: Storage, storage_url: str
) -> None:
    device, entities = plug("strip", keys=("power", "energy", "voltage"))
    await storage.save_device(device, entities)
    for entity in entities:
        storage.queue_state(state(entity.id, "on" if entity.key == "power" else 1.0, PERSON))
    await storage.flush()

    device.entity_ids = ["strip.power"]
    device.firmware = "2.0"
    await storage.save_device(device, entities[:1])

    [(stored, stored_entities, states)] = await storage.device_rows()
    assert stored.firmware == "2.0"
    assert [e.id for e in stored_entities] == ["strip.power"]
    assert set(states) == {"strip.power"}
    assert await raw(storage_url, "SELECT entity_id FROM states") == [("strip.power",)]

    await storage.remove_device("strip")
    assert await storage.device_rows() == []
    assert await raw(storage_url, "SELECT count(*) FROM entities") == [(0,)]
    assert await raw(storage_url, "SELECT count(*) FROM states") == [(0,)]


async def test_save_device_refuses_an_entity_of_another_device(storage: Storage) -> None:
    device, _ = plug("a")
    _, others = plug("b")
    with pytest.raises(ValueError, match=r"entity 'b.power' belongs to device 'b', not to 'a'"):
        await storage.save_device(device, others)


# -- audit -------------------------------------------------------------------------------------


async def test_audit_is_newest_first_and_filters(storage: Storage) -> None:
    rule = PERSON.child(Origin.RULE, "night")
    storage.queue_audit(entry(10.0, "lamp", "c1", context=rule, params={"brightness": 80}))
    storage.queue_audit(entry(30.0, "fan", "c2", result="timeout", detail="no reply in 5 s"))
    storage.queue_audit(entry(20.0, "lamp", "c3", action="turn_off"))
    storage.queue_audit(entry(30.0, "lamp", "c3", kind="change", result="confirmed"))
    assert storage.pending_writes == 4
    await storage.flush()
    assert storage.pending_writes == 0

    newest = await storage.audit()
    assert [(e.ts, e.command_id) for e in newest] == [
        (30.0, "c3"),
        (30.0, "c2"),
        (20.0, "c3"),
        (10.0, "c1"),
    ]
    assert [e.command_id for e in await storage.audit(limit=2)] == ["c3", "c2"]
    assert [e.ts for e in await storage.audit(target="lamp")] == [30.0, 20.0, 10.0]
    assert [e.kind for e in await storage.audit(command_id="c3")] == ["change", "command"]
    assert [e.ts for e in await storage.audit(target="lamp", command_id="c3", limit=1)] == [30.0]
    assert await storage.audit(target="nothing") == []

    oldest = newest[-1]
    assert oldest == entry(10.0, "lamp", "c1", context=rule, params={"brightness": 80})
    assert oldest.context is not None
    assert oldest.context.parent == PERSON
    assert newest[1].context is None
    assert newest[1].detail == "no reply in 5 s"

    with pytest.raises(ValueError, match="audit limit"):
        await storage.audit(limit=0)


def test_audit_entry_validates_itself() -> None:
    with pytest.raises(ValueError, match="ts: expected a finite number"):
        entry(math.inf, "lamp")
    with pytest.raises(ValueError, match="command_id: at most 255"):
        entry(1.0, "lamp", "x" * 256)


# -- batched writes ----------------------------------------------------------------------------


async def test_batched_states_keep_only_the_latest_per_entity(
    storage: Storage, storage_url: str
) -> None:
    device, entities = plug("lamp", keys=("power", "energy"))
    await storage.save_device(device, entities)
    for n in range(50):
        storage.queue_state(state("lamp.power", "on" if n % 2 else "off", PERSON, at=n))
        storage.queue_state(state("lamp.energy", float(n), PERSON, at=n))
    assert storage.pending_writes == 2
    await storage.flush()
    assert storage.pending_writes == 0

    [(_, _, states)] = await storage.device_rows()
    assert states["lamp.power"].value == "on"
    assert states["lamp.power"].last_changed == 49
    assert states["lamp.energy"].value == 49.0
    assert await raw(storage_url, "SELECT count(*) FROM states") == [(2,)]


async def test_a_flush_larger_than_one_write_chunk_stores_every_state(
    storage: Storage, storage_url: str
) -> None:
    # A flush writes in chunks (yielding to the event loop between them); none may be lost.
    keys = [f"sensor{n}" for n in range(450)]
    device, entities = plug("meter", keys=keys)
    await storage.save_device(device, entities)
    for n, key in enumerate(keys):
        storage.queue_state(state(f"meter.{key}", float(n), PERSON, at=n))
    await storage.flush()
    [(_, _, states)] = await storage.device_rows()
    assert len(states) == 450
    assert states["meter.sensor0"].value == 0.0
    assert states["meter.sensor449"].value == 449.0
    assert await raw(storage_url, "SELECT count(*) FROM states") == [(450,)]


async def test_state_of_an_unsaved_entity_does_not_block_the_others(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    device, entities = plug("lamp")
    await storage.save_device(device, entities)
    storage.queue_state(state("ghost.power", "on", PERSON))
    storage.queue_state(state("lamp.power", "on", PERSON))
    with caplog.at_level(logging.WARNING, logger="hub.storage.store"):
        await storage.flush()

    assert storage.pending_writes == 0
    [(_, _, states)] = await storage.device_rows()
    assert set(states) == {"lamp.power"}
    assert "not stored: ghost.power" in caplog.text


async def test_queued_device_is_written_before_its_states_in_one_flush(
    storage: Storage, storage_url: str
) -> None:
    device, entities = plug("desk", keys=("power", "watts"))
    storage.queue_device(device, entities)
    device.name = "renamed after queueing"  # the queue keeps what was announced
    storage.queue_state(state("desk.power", "on", PERSON))
    storage.queue_state(state("desk.watts", 42.0, PERSON))
    assert storage.pending_writes == 3
    await storage.flush()
    assert storage.pending_writes == 0
    [(stored, stored_entities, states)] = await storage.device_rows()
    assert stored.name == "Plug desk"
    assert [e.id for e in stored_entities] == ["desk.power", "desk.watts"]
    assert states["desk.watts"].value == 42.0


async def test_removing_a_device_drops_its_queued_save(storage: Storage) -> None:
    device, entities = plug("gone")
    storage.queue_device(device, entities)
    await storage.remove_device("gone")
    await storage.flush()
    assert await storage.device_rows() == []


async def test_close_flushes_and_a_reopened_storage_flushes_again(
    storage: Storage, storage_url: str
) -> None:
    device, entities = plug("lamp")
    await storage.save_device(device, entities)
    storage.queue_state(state("lamp.power", "on", PERSON, at=1.0))
    storage.queue_audit(entry(1.0, "lamp", "c1"))

    store = await reopen(storage, storage_url)  # close() wrote the queue
    try:
        [(_, _, states)] = await store.device_rows()
        assert states["lamp.power"].value == "on"
        store.queue_state(state("lamp.power", "off", PERSON, at=2.0))
        store.queue_audit(entry(2.0, "lamp", "c2"))
        await store.flush()
        [(_, _, states)] = await store.device_rows()
        assert states["lamp.power"].value == "off"
        assert [e.command_id for e in await store.audit()] == ["c2", "c1"]
    finally:
        await store.close()
    await store.close()  # idempotent
    with pytest.raises(StorageError, match="is closed"):
        store.queue_state(state("lamp.power", "on", PERSON))
    with pytest.raises(StorageError, match="is closed"):
        await store.audit()


async def test_background_flusher_writes_without_being_asked(storage_url: str) -> None:
    store = Storage(storage_url, flush_interval=0.05)
    await store.start()
    try:
        device, entities = plug("lamp")
        await store.save_device(device, entities)
        store.queue_state(state("lamp.power", "on", PERSON))
        store.queue_audit(entry(1.0, "lamp"))
        # pending_writes drops to 0 when a flush takes the rows, before it commits them:
        # wait for the rows themselves.
        for _ in range(100):
            if len(await store.audit()) == 1:
                break
            await asyncio.sleep(0.02)
        assert store.pending_writes == 0
        assert len(await store.audit()) == 1
        [(_, _, states)] = await store.device_rows()
        assert states["lamp.power"].value == "on"
    finally:
        await store.close()


async def test_failed_flush_writes_nothing_and_keeps_everything(
    storage: Storage, storage_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    device, entities = plug("lamp")
    await storage.save_device(device, entities)
    storage.queue_state(state("lamp.power", "on", PERSON, at=1.0))
    storage.queue_audit(entry(1.0, "lamp", "c1"))
    storage.queue_audit(entry(2.0, "lamp", "c2"))
    # Someone else breaks the database under our feet: the audit table is gone.
    await raw(storage_url, "ALTER TABLE audit RENAME TO audit_away")

    with (
        caplog.at_level(logging.ERROR, logger="hub.storage.store"),
        pytest.raises(StorageError, match="writing states and audit entries failed"),
    ):
        await storage.flush()
    assert "3 writes kept for the next flush" in caplog.text
    assert storage.pending_writes == 3
    # One transaction: the state that could have been written was not.
    assert await raw(storage_url, "SELECT count(*) FROM states") == [(0,)]

    storage.queue_state(state("lamp.power", "off", PERSON, at=5.0))  # newer than the kept one
    storage.queue_audit(entry(3.0, "lamp", "c3"))
    await raw(storage_url, "ALTER TABLE audit_away RENAME TO audit")
    await storage.flush()

    assert storage.pending_writes == 0
    [(_, _, states)] = await storage.device_rows()
    assert states["lamp.power"].value == "off"
    assert [e.command_id for e in await storage.audit()] == ["c3", "c2", "c1"]


async def test_a_row_that_cannot_be_stored_does_not_hold_up_the_others(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    device, entities = plug("lamp")
    await storage.save_device(device, entities)
    storage.queue_state(state("lamp.power", "on", PERSON))
    storage.queue_audit(entry(1.0, "lamp", "good-1"))
    storage.queue_audit(entry(2.0, "lamp", "bad", params={"level": math.nan}))  # not JSON
    storage.queue_audit(entry(3.0, "lamp", "good-2", params={"when": Path("/x")}))

    with caplog.at_level(logging.ERROR, logger="hub.storage.store"):
        await storage.flush()
    assert storage.pending_writes == 0
    assert "dropped a row that cannot be stored" in caplog.text
    assert "'bad'" in caplog.text
    stored = await storage.audit()
    assert [e.command_id for e in stored] == ["good-2", "good-1"]
    assert stored[0].params == {"when": "/x"}  # unknown types are kept as text
    [(_, _, states)] = await storage.device_rows()
    assert states["lamp.power"].value == "on"


async def test_concurrent_writers_do_not_lock_each_other_out(storage: Storage) -> None:
    async def churn(n: int) -> None:
        device, entities = plug(f"dev{n}", keys=("power", "energy"))
        await storage.save_device(device, entities)
        for i in range(5):
            storage.queue_state(state(f"dev{n}.power", "on" if i % 2 else "off", PERSON))
            storage.queue_audit(entry(float(i), f"dev{n}"))
            await storage.flush()

    await asyncio.gather(*(churn(n) for n in range(8)))
    await storage.flush()
    rows = await storage.device_rows()
    assert len(rows) == 8
    assert all(states[f"{d.id}.power"].value == "off" for d, _, states in rows)
    assert len(await storage.audit(limit=1000)) == 40


async def test_in_memory_sqlite_serves_concurrent_callers() -> None:
    store = Storage("sqlite+aiosqlite:///:memory:", flush_interval=60)
    await store.start()
    try:

        async def churn(n: int) -> None:
            device, entities = plug(f"dev{n}")
            await store.save_device(device, entities)
            store.queue_state(state(f"dev{n}.power", "on", PERSON))
            await store.flush()

        await asyncio.wait_for(asyncio.gather(*(churn(n) for n in range(6))), timeout=10)
        rows = await store.device_rows()
        assert [len(states) for _, _, states in rows] == [1] * 6
    finally:
        await store.close()


# -- errors ------------------------------------------------------------------------------------


async def test_unreachable_database_gives_a_clear_error_without_the_password(
    storage_url: str, tmp_path: Path
) -> None:
    if storage_url.startswith("sqlite"):
        (tmp_path / "file").write_text("not a directory")
        bad = f"sqlite+aiosqlite:///{tmp_path / 'file' / 'hub.db'}"
        expected = (
            r"creating the database's directory failed on sqlite\+aiosqlite:///.*/file/hub.db: "
            r".*/file is a file, not a directory"
        )
    else:
        bad = storage_url.replace("postgres@", "postgres:s3cr3t-pw@") + "_missing"
        expected = (
            r"connecting to the database failed on postgresql.*postgres:\*\*\*@.*does not exist"
        )
    store = Storage(bad)
    with pytest.raises(StorageError, match=expected) as caught:
        await store.start()
    assert "s3cr3t" not in str(caught.value)
    await store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "invalid database URL 'not a url'"),
        ("mysql://root:s3cr3t@db/hub", r"unsupported database URL 'mysql://root:\*\*\*@db/hub'"),
        ("postgresql+psycopg2://u:s3cr3t@h/db", "unsupported database URL"),
    ],
)
def test_bad_url_is_refused_at_once(url: str, expected: str) -> None:
    with pytest.raises(StorageError, match=expected) as caught:
        Storage(url)
    assert "s3cr3t" not in str(caught.value)


async def test_refused_connection_is_a_storage_error() -> None:
    store = Storage("postgresql://hub:s3cr3t@127.0.0.1:1/hub")  # nothing listens on port 1
    with pytest.raises(
        StorageError,
        match=r"connecting to the database failed on postgresql://hub:\*\*\*@127.0.0.1:1/hub: ",
    ) as caught:
        await store.start()
    assert "s3cr3t" not in str(caught.value)


async def test_use_before_start_is_a_storage_error(storage_url: str) -> None:
    store = Storage(storage_url)
    with pytest.raises(StorageError, match=r"not started: call start\(\) first"):
        await store.flush()
    store.queue_state(state("x.y", "on", PERSON))  # queueing before start is fine
    assert store.pending_writes == 1


def test_redact_url() -> None:
    assert (
        redact_url("postgresql+asyncpg://hub:pw@db:5432/hub")
        == "postgresql+asyncpg://hub:***@db:5432/hub"
    )
    assert redact_url("postgresql://hub@db/hub") == "postgresql://hub@db/hub"
    assert redact_url("sqlite+aiosqlite:///var/lib/hub.db") == "sqlite+aiosqlite:///var/lib/hub.db"
    assert redact_url("see redis://:tok@r:6379/0 and x") == "see redis://:***@r:6379/0 and x"
