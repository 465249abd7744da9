"""Fixtures for the storage suite: one database URL per backend, each test its own database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from hub.storage import Storage

PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Yield the URL of a fresh, empty database: a SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        # A directory that does not exist yet: Storage must create it.
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'hub.db'}"
        return
    admin = create_async_engine(
        f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT", connect_args={"timeout": 5}
    )
    name = f"hub_test_{secrets.token_hex(6)}"
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (OSError, SQLAlchemyError) as exc:
        await admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    """A started Storage on the test's database; tests flush by hand."""
    store = Storage(storage_url, flush_interval=60)
    await store.start()
    yield store
    await store.close()
