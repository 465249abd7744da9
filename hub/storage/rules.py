"""Durable storage of the rule engine: pending timers, run traces and the event history.

Everything is queued synchronously and written by Storage's flusher in the transaction that
writes the states, so a timer, the trace of the run that set it and the state it changed are
stored together or not at all. Reads see what has been flushed.
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from sqlalchemy import ColumnElement, and_, bindparam, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.storage import schema
from hub.storage.store import (
    _DB_ERRORS,
    DriverInsert,
    Storage,
    _chunks,
    _reason,
    execute_in_chunks,
    json_text,
)

TIMER_KINDS = frozenset({"for", "delay", "wait", "schedule"})
HISTORY_KINDS = frozenset({"state", "mqtt", "device", "command", "event", "webhook"})

HOUR = 3600.0
DAY = 24 * HOUR

_MAX_ID = 255  # schema.ID
_MAX_OUTCOME = 32  # rule_traces.outcome

_Refused = list[tuple[dict[str, Any], str]]


# -- value objects -----------------------------------------------------------------------------


def _bad(what: str, field: str, message: str) -> NoReturn:
    raise ValueError(f"{what} {field}: {message}")


def _check_time(what: str, field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _bad(what, field, f"expected epoch seconds, got {value!r}")
    if not math.isfinite(value):
        _bad(what, field, f"expected a finite number, got {value!r}")


def _check_id(what: str, field: str, value: object, limit: int = _MAX_ID) -> None:
    if not isinstance(value, str) or not value:
        _bad(what, field, f"expected a non-empty string, got {value!r}")
    if len(value) > limit:
        _bad(what, field, f"at most {limit} characters, got {len(value)}")


def _check_dict(what: str, field: str, value: object) -> None:
    if not isinstance(value, dict):
        _bad(what, field, f"expected a dict, got {type(value).__name__}")


def _check_kind(what: str, value: object, known: frozenset[str]) -> None:
    if value in known:
        return
    hint = ""
    if isinstance(value, str) and (close := difflib.get_close_matches(value, known, n=1)):
        hint = f" (did you mean {close[0]!r}?)"
    _bad(what, "kind", f"expected one of {', '.join(sorted(known))}, got {value!r}{hint}")


@dataclass(frozen=True, slots=True)
class TimerRecord:
    """A pending `for:` hold, delay, wait or schedule: what the engine needs to resume it."""

    id: str
    rule_id: str
    kind: str
    due: float
    data: dict[str, Any]
    created: float

    def __post_init__(self) -> None:
        _check_id("timer", "id", self.id)
        what = f"timer {self.id!r}"
        _check_id(what, "rule_id", self.rule_id)
        _check_kind(what, self.kind, TIMER_KINDS)
        _check_time(what, "due", self.due)
        _check_time(what, "created", self.created)
        _check_dict(what, "data", self.data)


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """The trace of one rule run; stored once per (rule_id, run_id), the latest wins."""

    rule_id: str
    run_id: str
    started: float
    finished: float | None
    outcome: str
    trace: dict[str, Any]

    def __post_init__(self) -> None:
        _check_id("trace", "rule_id", self.rule_id)
        what = f"trace of rule {self.rule_id!r}"
        _check_id(what, "run_id", self.run_id)
        _check_time(what, "started", self.started)
        if self.finished is not None:
            _check_time(what, "finished", self.finished)
        _check_id(what, "outcome", self.outcome, _MAX_OUTCOME)
        _check_dict(what, "trace", self.trace)


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One recorded happening (state change, MQTT message, ...) for replays and `hub why`."""

    ts: float
    kind: str
    key: str | None
    data: dict[str, Any]

    def __post_init__(self) -> None:
        _check_time("history record", "ts", self.ts)
        _check_kind("history record", self.kind, HISTORY_KINDS)
        if self.key is not None and not isinstance(self.key, str):
            _bad("history record", "key", f"expected a string or None, got {self.key!r}")
        _check_dict("history record", "data", self.data)


# A queued history record: ts, kind, key and its data as JSON text (as a dict when it is not
# JSON, for the salvage to drop alone).
_HistoryRow = tuple[float, str, str | None, str | dict[str, Any]]


# -- the store ---------------------------------------------------------------------------------


class RuleStore:
    """Timers, traces and history of the rule engine, written by ``storage``'s flushes.

    Queued records are treated as immutable: do not change their dicts after queueing.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        traces_per_outcome: int = 20,
        history_keep: float = 3 * DAY,
        purge_every: float = HOUR,
        purge_chunk: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, number in (
            ("traces_per_outcome", traces_per_outcome),
            ("purge_chunk", purge_chunk),
        ):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {number!r}")
        for name, seconds in (("history_keep", history_keep), ("purge_every", purge_every)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
        self._storage = storage
        self._keep_traces = traces_per_outcome
        self._history_keep = float(history_keep)  # math.inf: never purge
        self._purge_every = float(purge_every)
        self._purge_chunk = purge_chunk
        self._clock = clock
        # Latest intent per timer id: a record to upsert, or None to delete.
        self._timers: dict[str, TimerRecord | None] = {}
        self._traces: dict[tuple[str, str], TraceRecord] = {}
        self._history: list[_HistoryRow] = []
        self._next_purge = 0.0  # the first flush purges
        self._purge_more = False  # the last purge hit purge_chunk: go on at the next flush
        self._statements = _Statements(storage, traces_per_outcome, purge_chunk)
        self._detach = storage.add_flush_part(self)

    def detach(self) -> None:
        """Stop adding this store's writes to the storage's flushes (the queue is not written)."""
        self._detach()

    # -- queueing (the hot path: no I/O) ------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        """How many timer, trace and history writes (and purges) wait for the next flush."""
        queued = len(self._timers) + len(self._traces) + len(self._history)
        return queued + (1 if self._purge_more else 0)

    def queue_timer(self, timer: TimerRecord) -> None:
        """Store ``timer`` (replacing the stored timer of its id) at the next flush."""
        self._storage.wake_flusher(f"timer {timer.id!r}")
        self._timers.pop(timer.id, None)
        self._timers[timer.id] = timer

    def queue_timer_removal(self, timer_id: str) -> None:
        """Delete the timer ``timer_id`` at the next flush (nothing happens if it is unknown)."""
        _check_id("timer removal", "id", timer_id)
        self._storage.wake_flusher(f"removal of timer {timer_id!r}")
        self._timers.pop(timer_id, None)
        self._timers[timer_id] = None

    def queue_trace(self, trace: TraceRecord) -> None:
        """Store ``trace`` at the next flush, replacing an earlier trace of the same run."""
        self._storage.wake_flusher(f"trace of rule {trace.rule_id!r}")
        key = (trace.rule_id, trace.run_id)
        self._traces.pop(key, None)
        self._traces[key] = trace

    def queue_history(self, record: HistoryRecord) -> None:
        """Append ``record`` to the event history at the next flush."""
        self.record_history(record.ts, record.kind, record.key, record.data)

    def record_history(self, ts: float, kind: str, key: str | None, data: dict[str, Any]) -> None:
        """Queue a history record the engine made from checked values: a state change,
        recorded for every changed reading, skips HistoryRecord's validation (the ingest path).

        The record is queued as its row, data already JSON: a queue of plain tuples is
        invisible to the garbage collector. Queued as records with their dicts, a backlog
        under heavy ingest made every full collection longer (200 ms at 60,000 msgs/s),
        stalling the loop and with it the flush that would have emptied the queue.
        """
        try:
            data_text: str | dict[str, Any] = json_text(data)
        except (TypeError, ValueError):
            data_text = data  # not JSON (a NaN): the flush's salvage drops this row alone
        self._storage.wake_flusher("history record")
        self._history.append((ts, kind, key, data_text))

    # -- the flush (called by Storage under its flush lock) ----------------------------------

    def take(self) -> _RuleBatch | None:
        """Detach what is queued, with a history purge when one is due."""
        purge_before: float | None = None
        now = self._clock()
        if self._purge_more or now >= self._next_purge:
            self._purge_more = False
            self._next_purge = now + self._purge_every
            if math.isfinite(self._history_keep):
                purge_before = now - self._history_keep
        if not self._timers and not self._traces and not self._history and purge_before is None:
            return None
        batch = _RuleBatch(self, self._timers, self._traces, self._history, purge_before)
        self._timers, self._traces, self._history = {}, {}, []
        return batch

    def _put_back(self, batch: _RuleBatch) -> None:
        # What was queued meanwhile is newer: it wins per timer id and per run.
        timers, self._timers = self._timers, dict(batch.timers)
        for timer_id, timer in timers.items():
            self._timers.pop(timer_id, None)
            self._timers[timer_id] = timer
        traces, self._traces = self._traces, dict(batch.traces)
        for key, trace in traces.items():
            self._traces.pop(key, None)
            self._traces[key] = trace
        self._history[:0] = batch.history
        if batch.purge_before is not None:
            self._purge_more = True

    async def _write(self, conn: AsyncConnection, batch: _RuleBatch, *, salvage: bool) -> _Refused:
        """Write ``batch`` on ``conn``; with ``salvage``, row by row, returning refused rows."""
        st = self._statements
        refused: _Refused = []
        removed = [timer_id for timer_id, timer in batch.timers.items() if timer is None]
        for chunk in _chunks(removed):
            await conn.execute(delete(schema.rule_timers).where(schema.rule_timers.c.id.in_(chunk)))
        timer_rows = [_timer_row(t) for t in batch.timers.values() if t is not None]
        trace_rows = [_trace_row(t) for t in batch.traces.values()]
        history_rows: list[dict[str, Any]] = []
        if batch.history:
            ready = not salvage and all(type(row[3]) is str for row in batch.history)
            if ready:
                # A row per state change: straight to the driver (see DriverInsert).
                await st.history_driver_insert(conn).execute(conn, batch.history)
            else:
                history_rows = [
                    {
                        "ts": ts,
                        "kind": kind,
                        "key": key,
                        "data": orjson.loads(data) if isinstance(data, str) else data,
                    }
                    for ts, kind, key, data in batch.history
                ]
        for stmt, rows in (
            (st.timer_upsert, timer_rows),
            (st.trace_upsert, trace_rows),
            (st.history_insert, history_rows),
        ):
            if not rows:
                continue
            if salvage:
                refused.extend(await _one_by_one(conn, stmt, rows))
            else:
                await execute_in_chunks(conn, stmt, rows)
        if batch.traces:
            # One DELETE per (rule, outcome) that got a trace, keeping the newest few.
            pairs = {(t.rule_id, t.outcome) for t in batch.traces.values()}
            await conn.execute(
                st.trace_prune, [{"p_rule": rule, "p_outcome": outcome} for rule, outcome in pairs]
            )
        if batch.purge_before is not None:
            result = await conn.execute(st.history_purge_chunk, {"p_before": batch.purge_before})
            # A full chunk means more is due; the next flush goes on, not the next hour.
            self._purge_more = result.rowcount >= self._purge_chunk
        return refused

    # -- reads ---------------------------------------------------------------------------------

    async def load_timers(self) -> list[TimerRecord]:
        """Return every stored timer, soonest due first."""
        table = schema.rule_timers
        stmt = select(table).order_by(table.c.due, table.c.id)
        with self._storage._mapped("loading rule timers"):
            async with self._storage._read() as conn:
                rows = (await conn.execute(stmt)).all()
        out: list[TimerRecord] = []
        for row in rows:
            try:
                out.append(
                    TimerRecord(
                        id=row.id,
                        rule_id=row.rule_id,
                        kind=row.kind,
                        due=float(row.due),
                        data=row.data,
                        created=float(row.created),
                    )
                )
            except (ValueError, TypeError) as exc:
                self._storage._corrupt("rule_timers", str(row.id), exc)
        return out

    async def traces(
        self, rule_id: str, *, limit: int = 20, outcome: str | None = None
    ) -> list[TraceRecord]:
        """Return up to ``limit`` stored traces of ``rule_id``, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"traces limit must be a whole number of at least 1, got {limit!r}")
        table = schema.rule_traces
        stmt = (
            select(table)
            .where(table.c.rule_id == rule_id)
            .order_by(table.c.started.desc(), table.c.id.desc())
            .limit(limit)
        )
        if outcome is not None:
            stmt = stmt.where(table.c.outcome == outcome)
        with self._storage._mapped(f"reading the traces of rule {rule_id!r}"):
            async with self._storage._read() as conn:
                rows = (await conn.execute(stmt)).all()
        out: list[TraceRecord] = []
        for row in rows:
            try:
                out.append(
                    TraceRecord(
                        rule_id=row.rule_id,
                        run_id=row.run_id,
                        started=float(row.started),
                        finished=None if row.finished is None else float(row.finished),
                        outcome=row.outcome,
                        trace=row.trace,
                    )
                )
            except (ValueError, TypeError) as exc:
                self._storage._corrupt("rule_traces", str(row.id), exc)
        return out

    async def last_trace(self, rule_id: str) -> TraceRecord | None:
        """Return the newest stored trace of ``rule_id``, or None."""
        found = await self.traces(rule_id, limit=1)
        return found[0] if found else None

    async def iter_history(
        self,
        since: float,
        until: float | None = None,
        *,
        kinds: Collection[str] | None = None,
        keys: Collection[str] | None = None,
        chunk: int = 1000,
    ) -> AsyncIterator[HistoryRecord]:
        """Yield the stored history with ``since <= ts < until``, oldest first.

        Reads ``chunk`` rows per short read transaction, so a long replay holds no
        connection (nor SQLite's in-memory lock) while the caller works.
        """
        _check_time("history query", "since", since)
        if until is not None:
            _check_time("history query", "until", until)
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"history chunk must be a whole number of at least 1, got {chunk!r}")
        table = schema.event_history
        filters: list[ColumnElement[bool]] = []
        if until is not None:
            filters.append(table.c.ts < until)
        if kinds is not None:
            filters.append(table.c.kind.in_(_kinds(kinds)))
        if keys is not None:
            if isinstance(keys, str):
                raise ValueError(f"history keys: expected a collection of keys, got {keys!r}")
            filters.append(table.c.key.in_(list(keys)))
        after: tuple[float, int] | None = None
        while True:
            if after is None:
                position = table.c.ts >= since
            else:
                last_ts, last_id = after
                position = and_(
                    table.c.ts >= last_ts, or_(table.c.ts > last_ts, table.c.id > last_id)
                )
            stmt = (
                select(table)
                .where(position, *filters)
                .order_by(table.c.ts, table.c.id)
                .limit(chunk)
            )
            with self._storage._mapped("reading the event history"):
                async with self._storage._read() as conn:
                    rows = (await conn.execute(stmt)).all()
            for row in rows:
                try:
                    record = HistoryRecord(
                        ts=float(row.ts), kind=row.kind, key=row.key, data=row.data
                    )
                except (ValueError, TypeError) as exc:
                    self._storage._corrupt("event_history", str(row.id), exc)
                yield record
            if len(rows) < chunk:
                return
            after = (float(rows[-1].ts), int(rows[-1].id))

    async def history(
        self,
        since: float,
        until: float | None = None,
        *,
        kinds: Collection[str] | None = None,
        keys: Collection[str] | None = None,
    ) -> list[HistoryRecord]:
        """Return the stored history with ``since <= ts < until``, oldest first."""
        return [record async for record in self.iter_history(since, until, kinds=kinds, keys=keys)]

    async def purge_history(self, before: float) -> int:
        """Delete the stored history older than ``before`` now; return how many rows went."""
        _check_time("history purge", "before", before)
        table = schema.event_history
        with self._storage._mapped("purging the event history"):
            async with self._storage._write() as conn:
                result = await conn.execute(delete(table).where(table.c.ts < before))
        return int(result.rowcount)


def _kinds(kinds: Collection[str]) -> list[str]:
    if isinstance(kinds, str):
        raise ValueError(f"history kinds: expected a collection of kinds, got {kinds!r}")
    out = list(kinds)
    for kind in out:
        _check_kind("history query", kind, HISTORY_KINDS)
    return out


def _timer_row(timer: TimerRecord) -> dict[str, Any]:
    return {
        "id": timer.id,
        "rule_id": timer.rule_id,
        "kind": timer.kind,
        "due": float(timer.due),
        "data": timer.data,
        "created": float(timer.created),
    }


def _trace_row(trace: TraceRecord) -> dict[str, Any]:
    return {
        "rule_id": trace.rule_id,
        "run_id": trace.run_id,
        "started": float(trace.started),
        "finished": None if trace.finished is None else float(trace.finished),
        "outcome": trace.outcome,
        "trace": trace.trace,
    }


async def _one_by_one(conn: AsyncConnection, stmt: Any, rows: Sequence[dict[str, Any]]) -> _Refused:
    """Write ``rows`` one per savepoint; return those refused; raise if all are."""
    refused: _Refused = []
    last_error: BaseException | None = None
    for row in rows:
        try:
            async with conn.begin_nested():
                await conn.execute(stmt, [row])
        except _DB_ERRORS as exc:
            refused.append((row, _reason(exc)))
            last_error = exc
    if last_error is not None and len(refused) == len(rows):
        # The table or the database is at fault, not the data: fail the flush.
        raise last_error
    return refused


class _Statements:
    """The statements a flush runs, built once per store."""

    def __init__(self, storage: Storage, keep_traces: int, purge_chunk: int) -> None:
        timers, traces, history = schema.rule_timers, schema.rule_traces, schema.event_history
        self.timer_upsert = storage._upsert(
            timers, ["id"], [c.name for c in timers.c if c.name != "id"]
        )
        self.trace_upsert = storage._upsert(
            traces, ["rule_id", "run_id"], ["started", "finished", "outcome", "trace"]
        )
        self.history_insert = history.insert()
        self._history_driver_insert: DriverInsert | None = None
        same_pair = (
            traces.c.rule_id == bindparam("p_rule"),
            traces.c.outcome == bindparam("p_outcome"),
        )
        newest = (
            select(traces.c.id)
            .where(*same_pair)
            .order_by(traces.c.started.desc(), traces.c.id.desc())
            .limit(keep_traces)
        )
        self.trace_prune = delete(traces).where(*same_pair, traces.c.id.not_in(newest))
        oldest = (
            select(history.c.id)
            .where(history.c.ts < bindparam("p_before"))
            .order_by(history.c.ts)
            .limit(purge_chunk)
        )
        self.history_purge_chunk = delete(history).where(history.c.id.in_(oldest))

    def history_driver_insert(self, conn: AsyncConnection) -> DriverInsert:
        """The history insert in the driver's own SQL (one database per store)."""
        if self._history_driver_insert is None:
            self._history_driver_insert = DriverInsert(
                conn.dialect, schema.event_history, _HISTORY_COLUMNS
            )
        return self._history_driver_insert


_HISTORY_COLUMNS = ("ts", "kind", "key", "data")


@dataclass(slots=True)
class _RuleBatch:
    """What one flush takes from a RuleStore."""

    store: RuleStore
    timers: dict[str, TimerRecord | None]
    traces: dict[tuple[str, str], TraceRecord]
    history: list[_HistoryRow]
    purge_before: float | None

    def __len__(self) -> int:
        return len(self.timers) + len(self.traces) + len(self.history)

    async def write(self, conn: AsyncConnection) -> None:
        await self.store._write(conn, self, salvage=False)

    async def write_salvaging(self, conn: AsyncConnection) -> _Refused:
        return await self.store._write(conn, self, salvage=True)

    def put_back(self) -> None:
        self.store._put_back(self)
