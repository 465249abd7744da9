"""The rule engine's storage (timers, traces, event history), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import create_async_engine
from storesupport import database_at, raw

from hub.model import Context, Device, Entity, EntityKind, Origin, State
from hub.storage import (
    AuditEntry,
    HistoryRecord,
    RuleStore,
    Storage,
    StorageError,
    TimerRecord,
    TraceRecord,
)
from hub.storage.migrations import alembic_config
from hub.storage.schema import HEAD_REVISION
from hub.storage.store import _json_dumps

RULE = Context(Origin.RULE, "night")

# -- helpers ---------------------------------------------------------------------------------


async def count(url: str, table: str) -> int:
    [(n,)] = await raw(url, f"SELECT count(*) FROM {table}")
    return int(n)


@pytest.fixture
def rules(storage: Storage) -> RuleStore:
    # The tests' timestamps are small numbers: no purge by the wall clock (tested on its own).
    return RuleStore(storage, history_keep=math.inf)


def timer(timer_id: str, due: float, rule_id: str = "night", **data: Any) -> TimerRecord:
    return TimerRecord(
        id=timer_id, rule_id=rule_id, kind="delay", due=due, data=data, created=due - 60
    )


def trace(
    run: str | int, started: float, outcome: str = "ok", rule_id: str = "night", **extra: Any
) -> TraceRecord:
    return TraceRecord(
        rule_id=rule_id,
        run_id=str(run),
        started=started,
        finished=None if outcome == "running" else started + 0.5,
        outcome=outcome,
        trace={"steps": [{"path": "actions/0", "result": outcome}], **extra},
    )


def hist(
    ts: float, kind: str = "state", key: str | None = "lamp.power", **data: Any
) -> HistoryRecord:
    return HistoryRecord(ts=ts, kind=kind, key=key, data=data or {"value": "on"})


async def lamp(storage: Storage) -> None:
    device = Device(id="lamp", name="Lamp", owner="test", entity_ids=["lamp.power"])
    entity = Entity(
        id="lamp.power", device_id="lamp", key="power", kind=EntityKind.SWITCH, name="P"
    )
    await storage.save_device(device, [entity])


def lamp_state(value: str, at: float = 1000.0) -> State:
    return State("lamp.power", value, {}, last_changed=at, last_updated=at, context=RULE)


# -- schema ------------------------------------------------------------------------------------


async def test_a_database_at_0001_is_migrated_and_keeps_its_data(storage_url: str) -> None:
    await database_at(storage_url, "0001")
    assert await raw(storage_url, "SELECT version_num FROM alembic_version") == [("0001",)]

    store = Storage(storage_url)
    await store.start()
    await store.close()

    assert await raw(storage_url, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert await raw(storage_url, "SELECT id, name FROM areas") == [("attic", "Attic")]
    for table in ("rule_timers", "rule_traces", "event_history"):
        assert await count(storage_url, table) == 0

    # And back down: 0002's downgrade drops exactly its tables.
    engine = create_async_engine(storage_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0001"))
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert not tables & {"rule_timers", "rule_traces", "event_history"}
    assert "areas" in tables


# -- timers ------------------------------------------------------------------------------------


async def test_timers_upsert_remove_and_load_soonest_first(
    storage: Storage, rules: RuleStore, storage_url: str
) -> None:
    rules.queue_timer(timer("t1", 30.0, step=1))
    rules.queue_timer(timer("t2", 10.0, rule_id="porch"))
    rules.queue_timer(timer("t3", 20.0))
    assert rules.pending_writes == 3
    assert storage.pending_writes == 3
    await storage.flush()
    assert storage.pending_writes == 0
    assert [t.id for t in await rules.load_timers()] == ["t2", "t3", "t1"]

    rules.queue_timer(timer("t1", 5.0, step=2))  # upsert: same id, new due and data
    rules.queue_timer_removal("t2")
    rules.queue_timer_removal("never-stored")  # nothing to delete, no error
    await storage.flush()
    loaded = await rules.load_timers()
    assert loaded == [timer("t1", 5.0, step=2), timer("t3", 20.0)]
    assert loaded[0].data == {"step": 2}
    assert await count(storage_url, "rule_timers") == 2


async def test_the_latest_intent_per_timer_id_wins(storage: Storage, rules: RuleStore) -> None:
    rules.queue_timer(timer("stored", 1.0))
    await storage.flush()

    rules.queue_timer(timer("a", 1.0))
    rules.queue_timer_removal("a")  # set, then cancelled: never stored
    rules.queue_timer_removal("stored")
    rules.queue_timer(timer("stored", 9.0, again=True))  # cancelled, then set again
    rules.queue_timer(timer("b", 2.0))
    rules.queue_timer(timer("b", 3.0))
    assert rules.pending_writes == 3  # one intent per id
    await storage.flush()
    assert await rules.load_timers() == [timer("b", 3.0), timer("stored", 9.0, again=True)]


async def test_timers_survive_close_and_reopen(storage_url: str) -> None:
    store = Storage(storage_url, flush_interval=60)
    await store.start()
    rules = RuleStore(store)
    rules.queue_timer(timer("hold", 100.0, entity="lamp.power", to="on"))
    rules.queue_timer(TimerRecord("cron", "morning", "schedule", 50.0, {"at": "07:00"}, 1.0))
    await store.close()  # close() flushes what is queued

    with pytest.raises(StorageError, match=r"is closed: timer 'late' not stored"):
        rules.queue_timer(timer("late", 1.0))
    assert rules.pending_writes == 0

    fresh = Storage(storage_url, flush_interval=60)
    await fresh.start()
    try:
        loaded = await RuleStore(fresh).load_timers()
    finally:
        await fresh.close()
    assert loaded == [
        TimerRecord("cron", "morning", "schedule", 50.0, {"at": "07:00"}, 1.0),
        timer("hold", 100.0, entity="lamp.power", to="on"),
    ]


# -- traces ------------------------------------------------------------------------------------


async def test_dull_runs_never_push_out_the_last_failure(
    storage: Storage, rules: RuleStore, storage_url: str
) -> None:
    for n in range(30):
        rules.queue_trace(trace(n, float(n), "conditions_failed"))
    await storage.flush()
    rules.queue_trace(trace("boom", 30.0, "error", error="ZeroDivisionError"))
    await storage.flush()
    for n in range(31, 61):
        rules.queue_trace(trace(n, float(n), "conditions_failed"))
    rules.queue_trace(trace("other-rule", 1.0, "conditions_failed", rule_id="porch"))
    await storage.flush()

    stored = await rules.traces("night", limit=100)
    assert [t.started for t in stored if t.outcome == "conditions_failed"] == [
        float(n) for n in range(60, 40, -1)
    ]
    [error] = await rules.traces("night", outcome="error")
    assert error.run_id == "boom"
    assert error.trace["error"] == "ZeroDivisionError"
    assert len(stored) == 21
    # Pruned in the database, not only in the query.
    assert await count(storage_url, "rule_traces") == 22
    assert [t.run_id for t in await rules.traces("porch")] == ["other-rule"]


async def test_retention_is_one_delete_per_rule_and_outcome(
    storage: Storage, storage_url: str
) -> None:
    rules = RuleStore(storage, traces_per_outcome=3)
    for n in range(10):
        for rule_id in ("a", "b"):
            rules.queue_trace(trace(n, float(n), "ok" if n % 2 else "stopped", rule_id=rule_id))

    deletes: list[tuple[str, int]] = []

    def spy(_conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM RULE_TRACES"):
            deletes.append((statement, len(params) if many else 1))

    engine = storage._engine
    assert engine is not None
    event.listen(engine.sync_engine, "before_cursor_execute", spy)
    try:
        await storage.flush()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", spy)

    # One statement, executed once per (rule, outcome) pair: 2 rules x 2 outcomes.
    assert [n for _, n in deletes] == [4]
    assert await count(storage_url, "rule_traces") == 12
    assert [t.run_id for t in await rules.traces("a", outcome="ok")] == ["9", "7", "5"]


async def test_a_run_is_stored_once_and_its_end_replaces_running(
    storage: Storage, rules: RuleStore, storage_url: str
) -> None:
    rules.queue_trace(trace("r1", 10.0, "running"))
    await storage.flush()
    assert (await rules.traces("night"))[0].finished is None

    rules.queue_trace(trace("r1", 10.0, "ok", detail="done"))
    await storage.flush()
    [stored] = await rules.traces("night")
    assert (stored.outcome, stored.finished, stored.trace["detail"]) == ("ok", 10.5, "done")
    assert await rules.traces("night", outcome="running") == []
    assert await count(storage_url, "rule_traces") == 1


async def test_traces_are_newest_first_and_filter(storage: Storage, rules: RuleStore) -> None:
    rules.queue_trace(trace("r2", 20.0, "error"))
    rules.queue_trace(trace("r1", 10.0, "ok"))
    rules.queue_trace(trace("r4", 40.0, "stopped"))
    rules.queue_trace(trace("r3", 30.0, "ok"))
    rules.queue_trace(trace("x", 99.0, "ok", rule_id="porch"))
    assert await rules.traces("night") == []  # not flushed yet
    await storage.flush()

    assert [t.run_id for t in await rules.traces("night")] == ["r4", "r3", "r2", "r1"]
    assert [t.run_id for t in await rules.traces("night", limit=2)] == ["r4", "r3"]
    assert [t.run_id for t in await rules.traces("night", outcome="ok")] == ["r3", "r1"]
    assert await rules.traces("night", outcome="aborted") == []
    assert await rules.last_trace("night") == trace("r4", 40.0, "stopped")
    assert await rules.last_trace("nobody") is None
    with pytest.raises(ValueError, match="traces limit"):
        await rules.traces("night", limit=0)


# -- history -----------------------------------------------------------------------------------


async def test_history_by_time_kind_and_key_oldest_first(
    storage: Storage, rules: RuleStore
) -> None:
    rules.queue_history(hist(30.0, "mqtt", "zigbee2mqtt/porch", payload="ON"))
    rules.queue_history(hist(10.0, "state", "lamp.power", value="on"))
    rules.queue_history(hist(20.0, "command", "lamp", action="turn_off"))
    rules.queue_history(hist(20.0, "state", "lamp.power", value="off"))
    rules.queue_history(hist(40.0, "event", None, name="arrived"))
    await storage.flush()

    everything = await rules.history(0.0)
    assert [(r.ts, r.kind) for r in everything] == [
        (10.0, "state"),
        (20.0, "command"),
        (20.0, "state"),
        (30.0, "mqtt"),
        (40.0, "event"),
    ]
    assert everything[0] == hist(10.0, "state", "lamp.power", value="on")
    assert everything[-1].key is None
    assert [r.ts for r in await rules.history(20.0, 40.0)] == [20.0, 20.0, 30.0]  # [since, until)
    assert [r.kind for r in await rules.history(0.0, kinds={"state", "event"})] == [
        "state",
        "state",
        "event",
    ]
    assert [r.ts for r in await rules.history(0.0, keys=["lamp.power"])] == [10.0, 20.0]
    assert await rules.history(0.0, kinds=[]) == []
    assert await rules.history(41.0) == []


async def test_a_large_history_backlog_is_written_whole_and_in_order(
    storage: Storage, rules: RuleStore
) -> None:
    # A busy hub flushes tens of thousands of rows at once, many per statement and several
    # statements per call: rows at every boundary (and a last, shorter statement) must land.
    count = 2 * 4000 + 2000 + 321
    for n in range(count):
        rules.record_history(float(n), "state", f"sensor.s{n % 7}", {"value": n, "old": None})
    assert storage.pending_writes == count
    await storage.flush()
    assert storage.pending_writes == 0
    seen = [(r.ts, r.key, r.data["value"]) async for r in rules.iter_history(0.0, chunk=5000)]
    assert seen == [(float(n), f"sensor.s{n % 7}", n) for n in range(count)]


async def test_iter_history_reads_in_chunks_across_equal_timestamps(
    storage: Storage, rules: RuleStore
) -> None:
    # Many rows share a timestamp, so chunk boundaries fall inside a run of equal ts.
    expected = [(float(n // 4), n) for n in range(23)]
    for ts, n in expected:
        rules.queue_history(hist(ts, n=n))
    await storage.flush()

    seen = [(r.ts, r.data["n"]) async for r in rules.iter_history(0.0, chunk=3)]
    assert seen == expected
    seen = [(r.ts, r.data["n"]) async for r in rules.iter_history(1.0, 3.0, chunk=4)]
    assert seen == expected[4:12]


async def test_purge_history(storage: Storage, rules: RuleStore, storage_url: str) -> None:
    for ts in (1.0, 2.0, 3.0, 4.0):
        rules.queue_history(hist(ts))
    await storage.flush()
    assert await rules.purge_history(3.0) == 2
    assert [r.ts for r in await rules.history(0.0)] == [3.0, 4.0]
    assert await rules.purge_history(3.0) == 0
    assert await count(storage_url, "event_history") == 2


async def test_the_flusher_purges_old_history_at_most_hourly(
    storage: Storage, storage_url: str
) -> None:
    now = [10_000.0]
    rules = RuleStore(storage, history_keep=100.0, clock=lambda: now[0])
    rules.queue_history(hist(9_800.0, n="old"))
    rules.queue_history(hist(9_950.0, n="recent"))
    await storage.flush()  # the first flush purges: keep ts >= 9_900
    assert [r.data["n"] for r in await rules.history(0.0)] == ["recent"]

    now[0] += 1800.0  # half an hour later: no purge yet
    rules.queue_history(hist(1.0, n="ancient"))
    await storage.flush()
    assert await count(storage_url, "event_history") == 2

    now[0] += 1800.0  # an hour after the last purge
    rules.queue_history(hist(now[0], n="new"))
    await storage.flush()
    assert [r.data["n"] for r in await rules.history(0.0)] == ["new"]


async def test_a_large_purge_goes_on_over_several_flushes(
    storage: Storage, storage_url: str
) -> None:
    now = [0.0]
    rules = RuleStore(storage, history_keep=3000.0, purge_chunk=5, clock=lambda: now[0])
    for n in range(12):
        rules.queue_history(hist(float(n), n=n))
    rules.queue_history(hist(950.0, n="keep"))
    await storage.flush()  # nothing is old yet
    assert await count(storage_url, "event_history") == 13

    now[0] = 3600.0  # the next purge is due; the cut-off is 600
    remaining = []
    for _ in range(4):
        await storage.flush()
        remaining.append((await count(storage_url, "event_history"), rules.pending_writes))
    # 5 per flush; a full chunk keeps the purge pending so the flusher goes on at once.
    assert remaining == [(8, 1), (3, 1), (1, 0), (1, 0)]


# -- the shared flush --------------------------------------------------------------------------


@pytest.mark.parametrize("broken", ["audit", "rule_timers", "rule_traces", "event_history"])
async def test_one_transaction_with_the_states_and_a_failed_flush_keeps_all(
    storage: Storage, storage_url: str, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    rules = RuleStore(storage, history_keep=math.inf)
    await lamp(storage)
    storage.queue_state(lamp_state("on"))
    storage.queue_audit(AuditEntry(1.0, "command", "lamp", "turn_on", {}, RULE, "ok"))
    rules.queue_timer(timer("t1", 5.0))
    rules.queue_trace(trace("r1", 1.0))
    rules.queue_history(hist(1.0))
    await raw(storage_url, f"ALTER TABLE {broken} RENAME TO {broken}_away")

    with (
        caplog.at_level(logging.ERROR, logger="hub.storage.store"),
        pytest.raises(StorageError, match="writing states and audit entries failed"),
    ):
        await storage.flush()
    assert "5 writes kept for the next flush" in caplog.text
    assert rules.pending_writes == 3
    for table in ("states", "audit", "rule_timers", "rule_traces", "event_history"):
        if table != broken:
            assert await count(storage_url, table) == 0, table

    # Queued meanwhile: newer, and wins over what the failed flush put back.
    rules.queue_timer(timer("t1", 7.0))
    rules.queue_trace(trace("r1", 1.0, "error"))
    await raw(storage_url, f"ALTER TABLE {broken}_away RENAME TO {broken}")
    await storage.flush()
    assert storage.pending_writes == 0
    assert await rules.load_timers() == [timer("t1", 7.0)]
    assert [t.outcome for t in await rules.traces("night")] == ["error"]
    assert [r.ts for r in await rules.history(0.0)] == [1.0]
    assert len(await storage.audit()) == 1
    [(_, _, states)] = await storage.device_rows()
    assert states["lamp.power"].value == "on"


async def test_a_row_that_cannot_be_stored_is_dropped_alone(
    storage: Storage, rules: RuleStore, caplog: pytest.LogCaptureFixture
) -> None:
    await lamp(storage)
    storage.queue_state(lamp_state("on"))
    rules.queue_history(hist(1.0, n=1))
    rules.queue_history(hist(2.0, level=math.nan))  # not JSON
    rules.queue_history(hist(3.0, n=3))
    rules.queue_timer(timer("good", 1.0))
    rules.queue_timer(timer("bad", 2.0, level=math.inf))
    with caplog.at_level(logging.ERROR, logger="hub.storage.store"):
        await storage.flush()
    assert storage.pending_writes == 0
    assert caplog.text.count("dropped a row that cannot be stored") == 2
    assert [r.ts for r in await rules.history(0.0)] == [1.0, 3.0]
    assert [t.id for t in await rules.load_timers()] == ["good"]
    [(_, _, states)] = await storage.device_rows()
    assert states["lamp.power"].value == "on"


async def test_the_background_flusher_writes_rule_data_unasked(storage_url: str) -> None:
    store = Storage(storage_url, flush_interval=0.05)
    await store.start()
    try:
        rules = RuleStore(store)
        rules.queue_history(hist(time.time()))
        rules.queue_timer(timer("t1", 1.0))
        # pending_writes drops to 0 when a flush takes the rows, before it commits them:
        # wait for the rows themselves.
        for _ in range(100):
            if len(await rules.history(0.0)) == 1 and len(await rules.load_timers()) == 1:
                break
            await asyncio.sleep(0.02)
        assert store.pending_writes == 0
        assert len(await rules.history(0.0)) == 1
        assert len(await rules.load_timers()) == 1
    finally:
        await store.close()


async def test_a_detached_store_is_no_longer_flushed(storage: Storage, rules: RuleStore) -> None:
    rules.queue_history(hist(1.0))
    assert storage.pending_writes == 1
    rules.detach()
    assert storage.pending_writes == 0
    await storage.flush()
    assert rules.pending_writes == 1
    assert await rules.history(0.0) == []


async def test_history_flush_of_2000_rows_is_cheap(
    storage: Storage, rules: RuleStore, storage_url: str
) -> None:
    await storage.flush()  # the first flush's purge and statement compilation, not measured
    best = math.inf
    for round_ in range(3):
        base = 1_000_000.0 + round_ * 10
        for n in range(2000):
            rules.queue_history(
                HistoryRecord(
                    ts=base + n / 1000,
                    kind="state",
                    key=f"sensor.s{n % 50}.temperature",
                    data={"value": 20.0 + n % 7, "old": 19.5, "context": {"origin": "device"}},
                )
            )
        cpu = time.process_time()
        await storage.flush()
        best = min(best, time.process_time() - cpu)
    assert await count(storage_url, "event_history") == 6000
    backend = storage_url.split(":", maxsplit=1)[0]
    print(f"\n2000-row history flush on {backend}: {best * 1000:.1f} ms CPU")
    # Measured ~30 ms on SQLite; a regression to per-row statements costs several times that.
    assert best < 0.25


# -- validation ----------------------------------------------------------------------------------


def test_records_validate_themselves() -> None:
    with pytest.raises(
        ValueError, match=r"timer 't' kind: .*got 'dealy' \(did you mean 'delay'\?\)"
    ):
        TimerRecord("t", "r", "dealy", 1.0, {}, 0.0)
    with pytest.raises(ValueError, match="timer 't' due: expected a finite number"):
        TimerRecord("t", "r", "for", math.nan, {}, 0.0)
    with pytest.raises(ValueError, match="timer id: at most 255 characters"):
        TimerRecord("t" * 256, "r", "for", 1.0, {}, 0.0)
    with pytest.raises(ValueError, match="timer 't' data: expected a dict, got list"):
        TimerRecord("t", "r", "for", 1.0, [], 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trace of rule 'r' outcome: at most 32 characters"):
        TraceRecord("r", "1", 1.0, None, "x" * 33, {})
    with pytest.raises(ValueError, match="trace of rule 'r' finished: expected epoch seconds"):
        TraceRecord("r", "1", 1.0, "later", "ok", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"history record kind: .*'stat' \(did you mean 'state'"):
        HistoryRecord(1.0, "stat", None, {})
    with pytest.raises(ValueError, match="history record key: expected a string or None"):
        HistoryRecord(1.0, "state", 5, {})  # type: ignore[arg-type]


async def test_bad_queries_and_settings_are_refused(storage: Storage, rules: RuleStore) -> None:
    with pytest.raises(ValueError, match="history kinds: expected a collection of kinds"):
        await rules.history(0.0, kinds="state")
    with pytest.raises(ValueError, match=r"history query kind: .*did you mean 'mqtt'"):
        await rules.history(0.0, kinds=["mqt"])
    with pytest.raises(ValueError, match="history query until: expected a finite number"):
        await rules.history(0.0, math.inf)
    with pytest.raises(ValueError, match="traces_per_outcome must be a whole number"):
        RuleStore(storage, traces_per_outcome=0)
    with pytest.raises(ValueError, match="history_keep must be a positive number"):
        RuleStore(storage, history_keep=-1)


async def test_history_comes_back_as_recorded_whatever_its_data(
    storage: Storage, rules: RuleStore
) -> None:
    """History rows go straight to the driver (one per state change); what is read back is
    what the JSON column always stored, for data JSON has no word for too."""
    stamp = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
    recorded: list[dict[Any, Any]] = [
        {"value": 21.5, "attributes": {}, "old": 21.0},
        {"value": "on", "attributes": {"brightness": 200, "name": 'Küche ☀ "x"'}, "old": None},
        {"value": 1, "attributes": {"nested": {"list": [1, 2.5, "x", None, True]}}, "old": 0},
        {"value": 2**40, "attributes": {}, "old": -1},
        {"when": stamp, "tags": ("a", "b"), 3: "an int key"},
    ]
    for n, data in enumerate(recorded):
        rules.queue_history(HistoryRecord(ts=float(n + 1), kind="event", key="k", data=data))
    await storage.flush()
    stored = [r.data for r in await rules.history(0.0)]
    assert stored == [json.loads(_json_dumps(data)) for data in recorded]
    assert stored[4] == {"when": str(stamp), "tags": ["a", "b"], "3": "an int key"}
