"""Helpers the storage suites share: raw SQL behind Storage's back, an old schema to migrate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine


async def raw(url: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run SQL on the database behind Storage's back; return the last statement's rows."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = None
            for statement in statements:
                result = await conn.execute(text(statement))
            return (
                [tuple(row) for row in result] if result is not None and result.returns_rows else []
            )
    finally:
        await engine.dispose()


async def database_at(url: str, revision: str) -> None:
    """Migrate an empty database to ``revision`` only and store an area in it (the data a
    later migration must keep)."""
    from alembic import command

    from hub.storage.migrations import alembic_config

    database = make_url(url).database
    if url.startswith("sqlite") and database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), revision))
            await conn.execute(
                text("INSERT INTO areas (id, name, created_at) VALUES ('attic', 'Attic', 1.0)")
            )
    finally:
        await engine.dispose()
