"""Alembic migrations of the hub's database; run by Storage.start(), no alembic.ini needed."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """Return an Alembic config for these migrations, bound to ``connection`` or ``url``.

    With a connection, env.py runs on it (inside the caller's transaction); with only a URL,
    alembic's offline mode (``upgrade --sql``) renders the SQL for that kind of database.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url)
    if connection is not None:
        config.attributes["connection"] = connection
    return config
