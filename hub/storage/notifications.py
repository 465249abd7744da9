"""Durable record of notification deliveries: what was sent, failed, suppressed or held.

Writes are queued synchronously (the router never waits for the database) and written by
Storage's flusher, one transaction per flush. Reads see what has been flushed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.storage import schema
from hub.storage.store import Storage

#: What became of a delivery. ``held`` rows wait for the end of quiet hours (and are reloaded
#: at start); ``digested`` ones went out inside a digest, whose own row says how that went.
DELIVERY_STATUSES = frozenset(
    {
        "sending",
        "sent",
        "failed",
        "delivered",  # a later callback said it arrived
        "undelivered",  # a later callback said it did not
        "duplicate",
        "rate_limited",
        "held",
        "digested",
        "undeliverable",  # nobody to send it to: unknown person, no channel, no address
    }
)

_MAX_STATUS = 32


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One row of ``notification_deliveries``."""

    id: str
    created: float
    channel: str
    address: str
    title: str
    text: str
    status: str
    detail: str = ""
    person: str | None = None
    urgent: bool = False
    key: str | None = None
    external_id: str | None = None
    attempts: int = 0
    updated: float = 0.0
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in DELIVERY_STATUSES:
            raise ValueError(f"delivery {self.id!r}: unknown status {self.status!r}")
        if not self.id or len(self.id) > 255:
            raise ValueError(f"delivery id must be 1 to 255 characters, got {self.id!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for `hub notifications --json`)."""
        return {
            "id": self.id,
            "created": self.created,
            "updated": self.updated,
            "channel": self.channel,
            "address": self.address,
            "person": self.person,
            "title": self.title,
            "text": self.text,
            "urgent": self.urgent,
            "key": self.key,
            "status": self.status,
            "detail": self.detail,
            "external_id": self.external_id,
            "attempts": self.attempts,
            "data": dict(self.data),
        }


@dataclass(frozen=True, slots=True)
class _StatusUpdate:
    ref: str  # a delivery id or the service's id for it
    status: str
    detail: str
    ts: float


class DeliveryStore:
    """The deliveries table, written by ``storage``'s flushes."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._rows: dict[str, DeliveryRecord] = {}  # latest intent per delivery id
        self._updates: list[_StatusUpdate] = []
        table = schema.notification_deliveries
        self._upsert = storage._upsert(table, ["id"], [c.name for c in table.c if c.name != "id"])
        ref: Any = bindparam("p_ref")
        self._status_update = (
            update(table)
            .where(or_(table.c.id == ref, table.c.external_id == ref))
            .values(
                status=bindparam("p_status"),
                detail=bindparam("p_detail"),
                updated=bindparam("p_ts"),
            )
        )
        self._detach = storage.add_flush_part(self)

    def detach(self) -> None:
        """Stop adding this store's writes to the storage's flushes."""
        self._detach()

    @property
    def pending_writes(self) -> int:
        """How many row writes and status updates wait for the next flush."""
        return len(self._rows) + len(self._updates)

    def queue(self, record: DeliveryRecord) -> None:
        """Store ``record`` (replacing the stored row of its id) at the next flush."""
        self._storage.wake_flusher(f"delivery {record.id!r}")
        self._rows.pop(record.id, None)
        self._rows[record.id] = record

    def queue_status(self, ref: str, status: str, detail: str, ts: float) -> None:
        """Set the status of the delivery whose id or external id is ``ref``, at the next flush."""
        if status not in DELIVERY_STATUSES:
            raise ValueError(f"unknown delivery status {status!r}")
        self._storage.wake_flusher(f"status of delivery {ref!r}")
        self._updates.append(_StatusUpdate(ref, status, detail, ts))

    # -- the flush (called by Storage under its flush lock) ---------------------------------

    def take(self) -> _DeliveryBatch | None:
        """Detach what is queued."""
        if not self._rows and not self._updates:
            return None
        batch = _DeliveryBatch(self, self._rows, self._updates)
        self._rows, self._updates = {}, []
        return batch

    def _put_back(self, batch: _DeliveryBatch) -> None:
        rows, self._rows = self._rows, dict(batch.rows)
        for delivery_id, record in rows.items():  # newer intents win
            self._rows.pop(delivery_id, None)
            self._rows[delivery_id] = record
        self._updates[:0] = batch.updates

    async def _write(
        self, conn: AsyncConnection, batch: _DeliveryBatch, *, salvage: bool
    ) -> list[tuple[dict[str, Any], str]]:
        from hub.storage.rules import _one_by_one

        rows = [_row(record) for record in batch.rows.values()]
        refused: list[tuple[dict[str, Any], str]] = []
        if rows:
            if salvage:
                refused.extend(await _one_by_one(conn, self._upsert, rows))
            else:
                await conn.execute(self._upsert, rows)
        # After the rows: a callback may refer to a delivery written in this same flush.
        for item in batch.updates:
            await conn.execute(
                self._status_update,
                {
                    "p_ref": item.ref,
                    "p_status": item.status,
                    "p_detail": item.detail,
                    "p_ts": item.ts,
                },
            )
        return refused

    # -- reads ------------------------------------------------------------------------------

    async def recent(self, *, limit: int = 50, status: str | None = None) -> list[DeliveryRecord]:
        """The newest ``limit`` deliveries, newest first (optionally of one status)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number of at least 1, got {limit!r}")
        table = schema.notification_deliveries
        stmt = select(table).order_by(table.c.created.desc(), table.c.id.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(table.c.status == status)
        return await self._select(stmt, "reading notification deliveries")

    async def held(self) -> list[DeliveryRecord]:
        """Every delivery held for the end of quiet hours, oldest first."""
        table = schema.notification_deliveries
        stmt = select(table).where(table.c.status == "held").order_by(table.c.created)
        return await self._select(stmt, "loading held notifications")

    async def _select(self, stmt: Any, action: str) -> list[DeliveryRecord]:
        storage = self._storage
        with storage._mapped(action):
            async with storage._read() as conn:
                rows = (await conn.execute(stmt)).all()
        out: list[DeliveryRecord] = []
        for row in rows:
            try:
                out.append(
                    DeliveryRecord(
                        id=row.id,
                        created=float(row.created),
                        updated=float(row.updated),
                        channel=row.channel,
                        address=row.address,
                        person=row.person,
                        title=row.title,
                        text=row.text,
                        urgent=bool(row.urgent),
                        key=row.key,
                        status=row.status,
                        detail=row.detail,
                        external_id=row.external_id,
                        attempts=int(row.attempts),
                        data=dict(row.data or {}),
                    )
                )
            except (ValueError, TypeError) as exc:
                storage._corrupt("notification_deliveries", str(row.id), exc)
        return out


def _row(record: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "created": float(record.created),
        "updated": float(record.updated or record.created),
        "channel": record.channel[:64],
        "address": record.address,
        "person": record.person,
        "title": record.title,
        "text": record.text,
        "urgent": bool(record.urgent),
        "key": record.key,
        "status": record.status[:_MAX_STATUS],
        "detail": record.detail,
        "external_id": record.external_id,
        "attempts": int(record.attempts),
        "data": dict(record.data),
    }


@dataclass(slots=True)
class _DeliveryBatch:
    """What one flush takes from a DeliveryStore."""

    store: DeliveryStore
    rows: dict[str, DeliveryRecord]
    updates: list[_StatusUpdate]

    def __len__(self) -> int:
        return len(self.rows) + len(self.updates)

    async def write(self, conn: AsyncConnection) -> None:
        await self.store._write(conn, self, salvage=False)

    async def write_salvaging(self, conn: AsyncConnection) -> list[tuple[dict[str, Any], str]]:
        return await self.store._write(conn, self, salvage=True)

    def put_back(self) -> None:
        self.store._put_back(self)
