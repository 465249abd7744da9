"""Alembic environment: runs the migrations on the connection Storage hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from hub.storage.schema import metadata


def _run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # SQLite alters tables by copying them; batch mode makes later migrations do so.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline(url: str) -> None:
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run_online(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode() and url:
        _run_offline(url)
        return
    raise RuntimeError(
        "hub migrations run through hub.storage.Storage.start(), which passes a connection "
        "(config.attributes['connection']); for SQL output use offline mode with sqlalchemy.url"
    )


_main()
