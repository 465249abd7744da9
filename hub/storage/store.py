"""Storage: the registry, last states and the audit log in SQLite or PostgreSQL, same code."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import math
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, NoReturn, Protocol

import orjson
from sqlalchemy import Connection, Table, delete, event, inspect, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hub.model import (
    Aggregate,
    Area,
    Context,
    Device,
    Entity,
    EntityKind,
    Group,
    Registry,
    State,
)
from hub.storage import schema
from hub.storage.schema import HEAD_REVISION

_LOGGER = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Errors that mean "the database said no or could not be reached"; they never leave this
# module as themselves but as StorageError.
_DB_ERRORS = (SQLAlchemyError, OSError, sqlite3.Error)

# Ids per IN (...) list: well under SQLite's and asyncpg's bound-parameter limits.
_IN_CHUNK = 500

# Any 64-bit constant; serialises concurrent migrations from several hub services.
_PG_MIGRATION_LOCK = 0x6875625F6D6967  # "hub_mig"

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


def redact_url(text: str) -> str:
    """Return ``text`` with the password of every ``scheme://user:password@`` replaced by ***."""
    return _USERINFO.sub(r"\g<scheme>\g<user>:***@", text)


class StorageError(Exception):
    """The database refused or could not be reached; the message says which and why."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit-log line: a command or change, who caused it and how it ended."""

    ts: float
    kind: str
    target: str
    action: str
    params: dict[str, Any]
    context: Context | None
    result: str
    detail: str = ""
    command_id: str | None = None

    def __post_init__(self) -> None:
        # Checked here, not at flush time, so one bad entry cannot hold up a whole batch.
        if isinstance(self.ts, bool) or not isinstance(self.ts, int | float):
            raise ValueError(f"audit entry ts: expected epoch seconds, got {self.ts!r}")
        if not math.isfinite(self.ts):
            raise ValueError(f"audit entry ts: expected a finite number, got {self.ts!r}")
        if self.command_id is not None and len(self.command_id) > 255:
            raise ValueError(
                f"audit entry command_id: at most 255 characters, got {len(self.command_id)}"
            )


def _json_default(value: Any) -> Any:
    # A stray datetime or set in params must not make a whole flush fail; keep its text.
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


# NaN is not JSON (PostgreSQL rejects it); such a row fails alone and is reported, see flush().
_json_dumps = functools.partial(json.dumps, default=_json_default, allow_nan=False)

# What orjson would write otherwise than json.dumps(default=_json_default) does.
_ORJSON_AS_STDLIB = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_text(value: Any) -> str:
    """``value`` as the JSON text every JSON column stores (the engine's serializer, and the
    history rows' driver values): orjson's, checked against ``_json_dumps`` where the two may
    differ (NaN, which orjson writes as null, and non-text keys); raises ValueError for NaN as
    ``_json_dumps`` does."""
    try:
        text = orjson.dumps(value, default=_json_default, option=_ORJSON_AS_STDLIB)
    except TypeError:
        return _json_dumps(value)  # e.g. an int key, which json.dumps writes as text
    if b"null" in text:
        return _json_dumps(value)  # a None, or a NaN that must be refused
    return text.decode()


def _reason(exc: BaseException) -> str:
    """Return the useful part of a driver or SQLAlchemy error, on one line."""
    cause: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        cause = exc.orig
    message = str(cause).strip() or type(cause).__name__
    # asyncpg errors come through SQLAlchemy's adapter as "<class '...'>: message".
    message = re.sub(r"^<class '[\w.]+'>:\s*", "", message)
    message = message.split("\n", 1)[0]
    message = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", message)
    return redact_url(message)


def _normalise_url(url: str) -> URL:
    """Parse ``url``, choosing the async driver when only the database is named."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StorageError(
            f"invalid database URL {redact_url(url)!r}: use "
            "sqlite+aiosqlite:///path/to/hub.db or postgresql+asyncpg://user@host:5432/db"
        ) from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    wanted = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}.get(backend)
    if wanted is None or driver not in ("", wanted):
        raise StorageError(
            f"unsupported database URL {redact_url(url)!r}: the hub stores to "
            "sqlite+aiosqlite:///path/to/hub.db or postgresql+asyncpg://user@host:5432/db"
        )
    return parsed.set(drivername=f"{backend}+{wanted}")


def _make_parent_dir(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    parent = Path(database).parent
    for folder in (parent, *parent.parents):
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file, not a directory")
    parent.mkdir(parents=True, exist_ok=True)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when a transaction begins (see
    # _sqlite_on_begin); pysqlite's legacy mode would run DDL and SELECTs outside one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=5000")
        # WAL is a property of the file: switch only when needed. The switch needs an
        # exclusive lock, and SQLite answers "locked" at once (no busy wait) when another
        # connection starting at the same moment holds one, so retry it briefly.
        for attempt in range(50):
            try:
                cursor.execute("PRAGMA journal_mode")
                if str(cursor.fetchone()[0]).lower() != "wal":
                    cursor.execute("PRAGMA journal_mode=WAL")
                break
            except Exception as exc:  # sqlite3's, or SQLAlchemy's async adapter's copy of it
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.02)  # runs in aiosqlite's worker thread, not the event loop
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that reads and then writes
    # fails at once with "database is locked" when another writer got in between, while
    # BEGIN IMMEDIATE waits for busy_timeout.
    if connection.get_execution_options().get("hub_write"):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


def _current_revisions(connection: Connection) -> set[str]:
    if not inspect(connection).has_table("alembic_version"):
        return set()
    return {
        str(row[0]) for row in connection.execute(text("SELECT version_num FROM alembic_version"))
    }


def _upgrade(connection: Connection) -> None:
    from alembic import command

    from hub.storage.migrations import alembic_config

    command.upgrade(alembic_config(connection), "head")


class FlushBatch(Protocol):
    """Writes that a FlushPart hands to one flush, to be written in its transaction."""

    def __len__(self) -> int:
        """How many rows it holds (a purge or a delete alone counts none)."""
        ...

    async def write(self, conn: AsyncConnection) -> None:
        """Write everything on ``conn``; any error fails the whole flush."""
        ...

    async def write_salvaging(self, conn: AsyncConnection) -> list[tuple[dict[str, Any], str]]:
        """Write row by row in savepoints; return the rows refused, with the reason.

        Raises a database error when every row of one of its tables is refused.
        """
        ...

    def put_back(self) -> None:
        """Queue the writes again after a failed flush; anything queued since is newer."""
        ...


class FlushPart(Protocol):
    """A queue of other writes that each flush takes and writes with the states."""

    @property
    def pending_writes(self) -> int:
        """How many writes wait for the next flush."""
        ...

    def take(self) -> FlushBatch | None:
        """Detach what is queued (None when there is nothing to write)."""
        ...


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Rows per executemany in a flush. SQLAlchemy binds rows (JSON included) in the event-loop
# thread; a whole flush at once (hundreds of states and history rows) stalled ingest for tens
# of milliseconds, so the flush yields to the loop between chunks of this size. The driver
# path (DriverInsert) binds nothing in the loop with SQLite and sends larger chunks.
_WRITE_CHUNK = 100
_DRIVER_CHUNK = 4000


# Parameters one statement may have: SQLite's limit (999 before 3.32), asyncpg's (32767).
_MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_MAX_ROWS_PER_STATEMENT = 2000


class DriverInsert:
    """A bulk ``INSERT INTO table (columns) VALUES (...), (...), ...`` in the driver's own SQL,
    for rows of ready driver values (the ingest path: SQLAlchemy's per-row binding cost more
    than the insert itself).

    Up to 2,000 rows go in one statement, and a few statements in one call to the database:
    a flush of 50,000 history rows took 0.2 s of CPU instead of 0.6 s with one statement per
    row and one call per 100 rows (SQLite, measured in-process).
    """

    def __init__(self, dialect: Any, table: Table, columns: Sequence[str]) -> None:
        style = dialect.paramstyle
        if style not in ("qmark", "numeric_dollar", "format"):  # pragma: no cover
            raise ValueError(f"parameter style {style!r} is not supported")
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(name) for name in columns)
        # Our own schema's names, quoted by the dialect; the values travel as parameters.
        self._head = f"INSERT INTO {quote(table.name)} ({names}) VALUES "  # noqa: S608
        self._style = style
        self._width = len(columns)
        self.rows_per_statement = max(1, min(_MAX_ROWS_PER_STATEMENT, _MAX_PARAMS // self._width))
        self._sql: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        """The statement for ``rows`` rows."""
        sql = self._sql.get(rows)
        if sql is None:
            width = self._width
            if self._style == "numeric_dollar":
                groups = (
                    ", ".join(f"${row * width + col + 1}" for col in range(width))
                    for row in range(rows)
                )
            else:
                mark = "?" if self._style == "qmark" else "%s"
                groups = (", ".join([mark] * width) for _ in range(rows))
            sql = self._sql[rows] = self._head + ", ".join(f"({group})" for group in groups)
        return sql

    async def execute(self, conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows``, yielding to the loop between calls of about ``_DRIVER_CHUNK`` rows."""
        per = self.rows_per_statement
        full = len(rows) - len(rows) % per
        statements_per_call = max(1, _DRIVER_CHUNK // per)
        step = per * statements_per_call
        for start in range(0, full, step):
            if start:
                await asyncio.sleep(0)
            params = [
                tuple(chain.from_iterable(rows[at : at + per]))
                for at in range(start, min(start + step, full), per)
            ]
            await conn.exec_driver_sql(self.sql(per), params)
        if full < len(rows):
            rest = rows[full:]
            await conn.exec_driver_sql(self.sql(len(rest)), tuple(chain.from_iterable(rest)))


async def execute_in_chunks(conn: AsyncConnection, statement: Any, rows: list[Any]) -> None:
    """Execute ``statement`` for ``rows`` (executemany), yielding to the loop between chunks."""
    for start in range(0, len(rows), _WRITE_CHUNK):
        if start:
            await asyncio.sleep(0)
        await conn.execute(statement, rows[start : start + _WRITE_CHUNK])


class Storage:
    """Keeps the registry, the latest state of each entity and the audit log in a database.

    States and audit entries are queued synchronously and written in batches by a background
    flusher, one transaction per flush; everything else is written at once.
    """

    def __init__(self, url: str, *, flush_interval: float = 1.0) -> None:
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be a positive number, got {flush_interval!r}")
        self._url = _normalise_url(url)
        self._shown_url = redact_url(url)
        self._password = self._url.password
        self._flush_interval = flush_interval
        self._engine: AsyncEngine | None = None
        self._states: dict[str, State] = {}
        self._audit: list[AuditEntry] = []
        self._devices: dict[str, tuple[Device, list[Entity]]] = {}
        self._parts: list[FlushPart] = []
        self._flush_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        # An in-memory SQLite database is one connection shared by every checkout; two
        # transactions on it at once would interleave, so its users take turns.
        self._serial = asyncio.Lock() if self._url.database in (None, "", ":memory:") else None

    @property
    def url(self) -> str:
        """The database URL with its password replaced by ***."""
        return self._shown_url

    @property
    def pending_writes(self) -> int:
        """How many devices, states, audit entries and other writes wait for the next flush."""
        queued = len(self._devices) + len(self._states) + len(self._audit)
        return queued + sum(part.pending_writes for part in self._parts)

    def add_flush_part(self, part: FlushPart) -> Callable[[], None]:
        """Have every flush also write what ``part`` queued, in the same transaction.

        Returns the undo: after it, flushes no longer take from ``part``.
        """
        self._parts.append(part)

        def remove() -> None:
            if part in self._parts:
                self._parts.remove(part)

        return remove

    def wake_flusher(self, what: str) -> None:
        """Tell the background flusher that ``what`` was queued; StorageError once closed."""
        if self._closed:
            raise StorageError(f"storage {self._shown_url} is closed: {what} not stored")
        self._wakeup.set()

    # -- errors ---------------------------------------------------------------------------

    def _error(self, action: str, exc: BaseException) -> StorageError:
        message = f"{action} failed on {self._shown_url}: {_reason(exc)}"
        # In case a driver echoes it outside a URL; a very short one would mangle every word.
        if self._password and len(self._password) >= 4:
            message = message.replace(self._password, "***")
        return StorageError(message)

    def _fail(self, action: str, exc: BaseException) -> NoReturn:
        raise self._error(action, exc) from exc

    @contextlib.contextmanager
    def _mapped(self, action: str) -> Iterator[None]:
        try:
            yield
        except _DB_ERRORS as exc:
            self._fail(action, exc)

    def _require_engine(self) -> AsyncEngine:
        if self._closed:
            raise StorageError(f"storage {self._shown_url} is closed")
        if self._engine is None:
            raise StorageError(f"storage {self._shown_url} is not started: call start() first")
        return self._engine

    @contextlib.asynccontextmanager
    async def _connect(
        self, engine: AsyncEngine, *, write: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """Yield a connection inside one transaction, committed on success."""
        async with self._serial or contextlib.nullcontext(), engine.connect() as conn:
            if write:
                await conn.execution_options(hub_write=True)
            async with conn.begin():
                yield conn

    def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """Return a connection inside one write transaction, committed on success."""
        return self._connect(self._require_engine(), write=True)

    def _read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """Return a connection inside one read transaction (one consistent snapshot)."""
        return self._connect(self._require_engine())

    def _upsert(self, table: Table, keys: Sequence[str], updates: Iterable[str]) -> Any:
        """Return INSERT ... ON CONFLICT (keys) DO UPDATE for this database's dialect."""
        stmt: postgresql.Insert | sqlite.Insert
        if self._url.get_backend_name() == "postgresql":
            stmt = postgresql.insert(table)
        else:
            stmt = sqlite.insert(table)
        return stmt.on_conflict_do_update(
            index_elements=list(keys), set_={name: stmt.excluded[name] for name in updates}
        )

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, bring the schema up to date and start the background flusher."""
        if self._closed:
            raise StorageError(f"storage {self._shown_url} is closed and cannot be restarted")
        if self._engine is not None:
            return
        is_sqlite = self._url.get_backend_name() == "sqlite"
        if is_sqlite:
            with self._mapped("creating the database's directory"):
                _make_parent_dir(self._url)
        with self._mapped("opening the database"):
            engine = create_async_engine(
                self._url,
                json_serializer=json_text,
                pool_pre_ping=not is_sqlite,
                # asyncpg waits 60 s for an unreachable host by default.
                connect_args={} if is_sqlite else {"timeout": 10},
            )
            if is_sqlite:
                event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
                event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        self._engine = engine
        try:
            await self._migrate()
        except BaseException:
            self._engine = None
            await engine.dispose()
            raise
        self._flusher = asyncio.create_task(self._flush_loop(), name="hub-storage-flusher")

    async def _migrate(self) -> None:
        engine = self._require_engine()
        # The common case, an up-to-date database, costs one small query and no alembic import.
        with self._mapped("connecting to the database"):
            async with self._connect(engine) as conn:
                current = await conn.run_sync(_current_revisions)
        if current == {HEAD_REVISION}:
            return
        _LOGGER.info(
            "migrating %s from %s to %s",
            self._shown_url,
            ", ".join(sorted(current)) or "an empty database",
            HEAD_REVISION,
        )
        try:
            async with self._write() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                await conn.run_sync(_upgrade)
        except _DB_ERRORS as exc:
            self._fail("migrating the database", exc)
        except Exception as exc:
            # alembic's own errors, e.g. a database migrated by a newer hub than this one.
            if type(exc).__module__.startswith("alembic"):
                self._fail("migrating the database", exc)
            raise

    async def close(self) -> None:
        """Write what is queued, stop the flusher and release the database; idempotent."""
        if self._closed:
            return
        self._closed = True
        engine, self._engine = self._engine, None
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            # Holding the lock means the flusher is not inside a transaction when cancelled.
            async with self._flush_lock:
                flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        if engine is None:
            return
        try:
            await self._flush_with(engine)
        finally:
            await engine.dispose()

    # -- registry -------------------------------------------------------------------------

    async def load_into(self, registry: Registry) -> None:
        """Add the stored areas, groups, devices, entities and last states to ``registry``."""
        with self._mapped("loading the registry"):
            async with self._read() as conn:
                area_rows = await conn.execute(
                    select(schema.areas).where(schema.areas.c.deleted_at.is_(None))
                )
                group_rows = await conn.execute(
                    select(schema.groups).where(schema.groups.c.deleted_at.is_(None))
                )
                areas = [Area(id=row.id, name=row.name) for row in area_rows]
                groups = [self._group(row) for row in group_rows]
                device_list = await self._device_rows(conn)
        for area in areas:
            registry.areas[area.id] = area
        for group in groups:
            registry.groups[group.id] = group
        for device, entity_list, device_states in device_list:
            registry.devices[device.id] = device
            for entity in entity_list:
                registry.entities[entity.id] = entity
            registry.states.update(device_states)

    async def device_rows(self) -> list[tuple[Device, list[Entity], dict[str, State]]]:
        """Return every device with its entities and their last states, ordered by device id."""
        with self._mapped("listing devices"):
            async with self._read() as conn:
                return await self._device_rows(conn)

    async def _device_rows(
        self, conn: AsyncConnection
    ) -> list[tuple[Device, list[Entity], dict[str, State]]]:
        devices = (await conn.execute(select(schema.devices).order_by(schema.devices.c.id))).all()
        entity_rows = (
            await conn.execute(
                select(schema.entities).order_by(schema.entities.c.device_id, schema.entities.c.id)
            )
        ).all()
        state_rows = (await conn.execute(select(schema.states))).all()
        by_device: dict[str, list[Entity]] = {}
        for row in entity_rows:
            by_device.setdefault(row.device_id, []).append(self._entity(row))
        states = {row.entity_id: self._state(row) for row in state_rows}
        out: list[tuple[Device, list[Entity], dict[str, State]]] = []
        for row in devices:
            entity_list = by_device.get(row.id, [])
            device = Device(
                id=row.id,
                name=row.name,
                owner=row.owner,
                area=row.area,
                manufacturer=row.manufacturer,
                model=row.model,
                firmware=row.firmware,
                via=row.via,
                identities=dict(row.identities or {}),
                entity_ids=[entity.id for entity in entity_list],
                available=bool(row.available),
                native=dict(row.native or {}),
            )
            device_states = {e.id: states[e.id] for e in entity_list if e.id in states}
            out.append((device, entity_list, device_states))
        return out

    @staticmethod
    def _corrupt(table: str, row_id: str, exc: Exception) -> NoReturn:
        raise StorageError(f"{table} row {row_id!r} cannot be read: {exc}") from exc

    def _group(self, row: Any) -> Group:
        try:
            return Group(
                id=row.id,
                name=row.name,
                members=[str(member) for member in row.members or []],
                aggregate=Aggregate(row.aggregate),
            )
        except (ValueError, TypeError) as exc:
            self._corrupt("groups", row.id, exc)

    def _entity(self, row: Any) -> Entity:
        try:
            kind = EntityKind(row.kind)
        except ValueError as exc:
            self._corrupt("entities", row.id, exc)
        return Entity(
            id=row.id,
            device_id=row.device_id,
            key=row.key,
            kind=kind,
            name=row.name,
            unit=row.unit,
            device_class=row.device_class,
            options=dict(row.options or {}),
        )

    def _state(self, row: Any) -> State:
        try:
            context = Context.from_dict(row.context)
        except (KeyError, ValueError, TypeError) as exc:
            self._corrupt("states", row.entity_id, exc)
        return State(
            entity_id=row.entity_id,
            value=row.value,
            attributes=dict(row.attributes or {}),
            last_changed=float(row.last_changed),
            last_updated=float(row.last_updated),
            context=context,
        )

    async def save_device(self, device: Device, entities: Sequence[Entity]) -> None:
        """Store ``device`` and its entities now; its stored entities not listed are deleted."""
        _check_entities(device, entities)
        with self._mapped(f"saving device {device.id!r}"):
            async with self._write() as conn:
                await self._write_device(conn, device, entities)

    def queue_device(self, device: Device, entities: Sequence[Entity]) -> None:
        """Queue a device and its entities for the next flush, written before any state.

        The hub registers devices on its ingest path; queueing keeps that path free of
        database round trips, writes a burst of announcements in one transaction, and
        guarantees a device's row exists before the states of its entities are written.
        """
        if self._closed:
            raise StorageError(f"storage {self._shown_url} is closed: device not stored")
        _check_entities(device, entities)
        snapshot = dataclasses.replace(
            device,
            identities=dict(device.identities),
            entity_ids=list(device.entity_ids),
            native=dict(device.native),
        )
        self._devices[device.id] = (snapshot, list(entities))
        self._wakeup.set()

    async def _write_device(
        self, conn: AsyncConnection, device: Device, entities: Sequence[Entity]
    ) -> None:
        device_row = {
            "id": device.id,
            "name": device.name,
            "owner": device.owner,
            "area": device.area,
            "manufacturer": device.manufacturer,
            "model": device.model,
            "firmware": device.firmware,
            "via": device.via,
            "identities": dict(device.identities),
            "native": dict(device.native),
            "available": bool(device.available),
            "updated_at": time.time(),
        }
        entity_rows = [
            {
                "id": entity.id,
                "device_id": entity.device_id,
                "key": entity.key,
                "kind": EntityKind(entity.kind).value,
                "name": entity.name,
                "unit": entity.unit,
                "device_class": entity.device_class,
                "options": dict(entity.options),
            }
            for entity in entities
        ]
        keep = [row["id"] for row in entity_rows]
        table = schema.entities
        await conn.execute(
            self._upsert(schema.devices, ["id"], [k for k in device_row if k != "id"]),
            device_row,
        )
        stale = delete(table).where(table.c.device_id == device.id)
        if keep:
            stale = stale.where(table.c.id.not_in(keep))
        await conn.execute(stale)
        if entity_rows:
            await conn.execute(
                self._upsert(table, ["id"], [c.name for c in table.c if c.name != "id"]),
                entity_rows,
            )

    async def remove_device(self, device_id: str) -> None:
        """Delete a device, its entities and their states (nothing happens if it is unknown)."""
        self._devices.pop(device_id, None)
        with self._mapped(f"removing device {device_id!r}"):
            async with self._write() as conn:
                await conn.execute(delete(schema.devices).where(schema.devices.c.id == device_id))

    async def save_area(self, area: Area) -> None:
        """Store ``area``; saving a soft-deleted area brings it back."""
        row = {"id": area.id, "name": area.name, "created_at": time.time(), "deleted_at": None}
        with self._mapped(f"saving area {area.id!r}"):
            async with self._write() as conn:
                await conn.execute(self._upsert(schema.areas, ["id"], ["name", "deleted_at"]), row)

    async def delete_area(self, area_id: str) -> None:
        """Mark an area deleted; the row stays, and is no longer loaded."""
        await self._soft_delete(schema.areas, "area", area_id)

    async def save_group(self, group: Group) -> None:
        """Store ``group``; saving a soft-deleted group brings it back."""
        row = {
            "id": group.id,
            "name": group.name,
            "aggregate": Aggregate(group.aggregate).value,
            "members": list(group.members),
            "created_at": time.time(),
            "deleted_at": None,
        }
        updates = ["name", "aggregate", "members", "deleted_at"]
        with self._mapped(f"saving group {group.id!r}"):
            async with self._write() as conn:
                await conn.execute(self._upsert(schema.groups, ["id"], updates), row)

    async def delete_group(self, group_id: str) -> None:
        """Mark a group deleted; the row stays, and is no longer loaded."""
        await self._soft_delete(schema.groups, "group", group_id)

    async def _soft_delete(self, table: Table, what: str, row_id: str) -> None:
        stmt = (
            update(table)
            .where(table.c.id == row_id, table.c.deleted_at.is_(None))
            .values(deleted_at=time.time())
        )
        with self._mapped(f"deleting {what} {row_id!r}"):
            async with self._write() as conn:
                await conn.execute(stmt)

    # -- audit log ------------------------------------------------------------------------

    async def audit(
        self, *, limit: int = 100, target: str | None = None, command_id: str | None = None
    ) -> list[AuditEntry]:
        """Return up to ``limit`` flushed audit entries, newest first, optionally filtered."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"audit limit must be a whole number of at least 1, got {limit!r}")
        table = schema.audit
        stmt = select(table).order_by(table.c.ts.desc(), table.c.id.desc()).limit(limit)
        if target is not None:
            stmt = stmt.where(table.c.target == target)
        if command_id is not None:
            stmt = stmt.where(table.c.command_id == command_id)
        with self._mapped("reading the audit log"):
            async with self._read() as conn:
                rows = (await conn.execute(stmt)).all()
        out: list[AuditEntry] = []
        for row in rows:
            try:
                context = Context.from_dict(row.context) if row.context else None
                entry = AuditEntry(
                    ts=float(row.ts),
                    kind=row.kind,
                    target=row.target,
                    action=row.action,
                    params=dict(row.params or {}),
                    context=context,
                    result=row.result,
                    detail=row.detail,
                    command_id=row.command_id,
                )
            except (KeyError, ValueError, TypeError) as exc:
                self._corrupt("audit", str(row.id), exc)
            out.append(entry)
        return out

    # -- batched writes -------------------------------------------------------------------

    def queue_state(self, state: State) -> None:
        """Queue ``state`` for the next flush, replacing any older queued state of its entity."""
        if self._closed:
            raise StorageError(f"storage {self._shown_url} is closed: state not stored")
        self._states[state.entity_id] = state
        self._wakeup.set()

    def queue_audit(self, entry: AuditEntry) -> None:
        """Queue ``entry`` for the next flush."""
        if self._closed:
            raise StorageError(f"storage {self._shown_url} is closed: audit entry not stored")
        self._audit.append(entry)
        self._wakeup.set()

    async def flush(self) -> None:
        """Write the queued states and audit entries in one transaction.

        On failure nothing is written, everything stays queued for the next flush, the
        error is logged and raised as StorageError. The one exception is a row the database
        refuses while other rows of its table are accepted (say a NaN in params): it is
        dropped and logged, so that it cannot hold up every later flush.
        """
        await self._flush_with(self._require_engine())

    async def _flush_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(self._flush_interval)
            # Cleared before the flush: anything queued while it runs wakes the next round.
            self._wakeup.clear()
            with contextlib.suppress(StorageError):  # already logged; the items are kept
                await self.flush()
            if self.pending_writes:
                self._wakeup.set()

    async def _flush_with(self, engine: AsyncEngine) -> None:
        async with self._flush_lock:
            states, audit, devices = self._states, self._audit, self._devices
            extra = [batch for part in self._parts if (batch := part.take()) is not None]
            if not states and not audit and not devices and not extra:
                return
            self._states, self._audit, self._devices = {}, [], {}
            try:
                await self._write_batch(engine, states, audit, devices, extra)
            except BaseException as exc:
                # Put everything back; anything queued meanwhile is newer and wins.
                for entity_id, state in states.items():
                    self._states.setdefault(entity_id, state)
                for device_id, item in devices.items():
                    self._devices.setdefault(device_id, item)
                self._audit[:0] = audit
                for batch in extra:
                    batch.put_back()
                if not isinstance(exc, _DB_ERRORS):
                    raise
                error = self._error("writing states and audit entries", exc)
                _LOGGER.error("%s; %d writes kept for the next flush", error, self.pending_writes)
                raise error from exc

    async def _write_batch(
        self,
        engine: AsyncEngine,
        states: dict[str, State],
        audit: list[AuditEntry],
        devices: dict[str, tuple[Device, list[Entity]]],
        extra: Sequence[FlushBatch] = (),
    ) -> None:
        state_rows = [
            {
                "entity_id": s.entity_id,
                "value": s.value,
                "attributes": dict(s.attributes),
                "last_changed": s.last_changed,
                "last_updated": s.last_updated,
                "context": s.context.to_dict(),
            }
            for s in states.values()
        ]
        audit_rows = [
            {
                "ts": float(a.ts),
                "kind": a.kind,
                "command_id": a.command_id,
                "target": a.target,
                "action": a.action,
                "params": dict(a.params),
                "context": a.context.to_dict() if a.context is not None else None,
                "result": a.result,
                "detail": a.detail,
            }
            for a in audit
        ]
        state_upsert = self._upsert(
            schema.states,
            ["entity_id"],
            ["value", "attributes", "last_changed", "last_updated", "context"],
        )
        audit_insert = schema.audit.insert()
        try:
            async with self._connect(engine, write=True) as conn:
                for device, entities in devices.values():
                    await self._write_device(conn, device, entities)
                state_rows = await self._known_entities(conn, state_rows)
                if state_rows:
                    await execute_in_chunks(conn, state_upsert, state_rows)
                if audit_rows:
                    await execute_in_chunks(conn, audit_insert, audit_rows)
                for batch in extra:
                    await batch.write(conn)
        except _DB_ERRORS as exc:
            if len(state_rows) + len(audit_rows) + sum(len(batch) for batch in extra) < 2:
                raise
            # One bad row (say a NaN in params) must not hold up every later flush: retry
            # row by row and drop only rows that fail when others of their table succeed.
            await self._salvage(
                engine,
                exc,
                devices,
                (state_upsert, state_rows),
                (audit_insert, audit_rows),
                extra=extra,
            )

    async def _known_entities(
        self, conn: AsyncConnection, rows: list[dict[str, Any]], *, warn: bool = True
    ) -> list[dict[str, Any]]:
        """Return the rows whose entity is stored; the others are dropped (and logged)."""
        if not rows:
            return rows
        table = schema.entities
        ids = [row["entity_id"] for row in rows]
        known: set[str] = set()
        for chunk in _chunks(ids):
            result = await conn.execute(select(table.c.id).where(table.c.id.in_(chunk)))
            known.update(result.scalars())
        if len(known) == len(ids):
            return rows
        unknown = [entity_id for entity_id in ids if entity_id not in known]
        if warn:
            _LOGGER.warning(
                "dropped the states of %d entities that are not stored: %s%s",
                len(unknown),
                ", ".join(unknown[:10]),
                " ..." if len(unknown) > 10 else "",
            )
        return [row for row in rows if row["entity_id"] in known]

    async def _salvage(
        self,
        engine: AsyncEngine,
        first_error: BaseException,
        devices: dict[str, tuple[Device, list[Entity]]],
        *batches: tuple[Any, list[dict[str, Any]]],
        extra: Sequence[FlushBatch] = (),
    ) -> None:
        dropped: list[tuple[dict[str, Any], str]] = []
        async with self._connect(engine, write=True) as conn:
            # Devices first, whole: a device that cannot be written fails the flush and is
            # kept, so its states are never written without it.
            for device, entities in devices.values():
                await self._write_device(conn, device, entities)
            for index, (stmt, all_rows) in enumerate(batches):
                # The states batch (first) is filtered again: entities may have gone.
                if index == 0:
                    rows = await self._known_entities(conn, all_rows, warn=False)
                else:
                    rows = all_rows
                bad: list[tuple[dict[str, Any], str]] = []
                for row in rows:
                    try:
                        async with conn.begin_nested():
                            await conn.execute(stmt, [row])
                    except _DB_ERRORS as row_error:
                        bad.append((row, _reason(row_error)))
                if rows and len(bad) == len(rows):
                    # Every row failed: the table or the database is at fault, not the
                    # data. Roll back and keep the whole batch.
                    raise first_error
                dropped.extend(bad)
            for batch in extra:
                refused: list[tuple[dict[str, Any], str]] | None
                try:
                    refused = await batch.write_salvaging(conn)
                except _DB_ERRORS:
                    refused = None  # a whole table refused: roll back, keep everything
                if refused is None:
                    raise first_error
                dropped.extend(refused)
        for row, reason in dropped:
            _LOGGER.error("dropped a row that cannot be stored (%s): %r", reason, row)


def _check_entities(device: Device, entities: Sequence[Entity]) -> None:
    for entity in entities:
        if entity.device_id != device.id:
            raise ValueError(
                f"entity {entity.id!r} belongs to device {entity.device_id!r}, not to {device.id!r}"
            )
