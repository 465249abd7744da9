"""The database tables, as one Core ``MetaData`` that the Alembic migrations must match."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

# The newest migration in migrations/versions. Storage.start() compares the database's
# alembic_version with this so that an up-to-date database never imports alembic; a test
# checks it against the migration scripts' real head.
HEAD_REVISION = "0004"

# Stable constraint names, so that later migrations (batch mode on SQLite) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

ID = String(255)

areas = Table(
    "areas",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("deleted_at", Double, nullable=True),
)

groups = Table(
    "groups",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", Text, nullable=False),
    Column("aggregate", String(16), nullable=False),
    Column("members", JSON, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("deleted_at", Double, nullable=True),
)

devices = Table(
    "devices",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", Text, nullable=False),
    Column("owner", ID, nullable=False),
    Column("area", ID, nullable=True),
    Column("manufacturer", Text, nullable=True),
    Column("model", Text, nullable=True),
    Column("firmware", Text, nullable=True),
    Column("via", ID, nullable=True),
    Column("identities", JSON, nullable=False),
    Column("native", JSON, nullable=False),
    Column("available", Boolean, nullable=False),
    Column("updated_at", Double, nullable=False),
)

entities = Table(
    "entities",
    metadata,
    Column("id", ID, primary_key=True),
    Column(
        "device_id",
        ID,
        ForeignKey("devices.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("key", ID, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("name", Text, nullable=False),
    Column("unit", Text, nullable=True),
    Column("device_class", Text, nullable=True),
    Column("options", JSON, nullable=False),
)

states = Table(
    "states",
    metadata,
    Column(
        "entity_id",
        ID,
        ForeignKey("entities.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("value", JSON, nullable=True),
    Column("attributes", JSON, nullable=False),
    Column("last_changed", Double, nullable=False),
    Column("last_updated", Double, nullable=False),
    Column("context", JSON, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    # BIGINT on PostgreSQL (an audit log outlives 2**31 rows); INTEGER on SQLite, where only
    # INTEGER PRIMARY KEY is the auto-incrementing rowid.
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("ts", Double, nullable=False, index=True),
    Column("kind", Text, nullable=False),
    Column("command_id", ID, nullable=True, index=True),
    Column("target", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("params", JSON, nullable=False),
    # SQL NULL, not JSON null, when an entry has no context.
    Column("context", JSON(none_as_null=True), nullable=True),
    Column("result", Text, nullable=False),
    Column("detail", Text, nullable=False),
)

# -- rule engine (migration 0002) ------------------------------------------------------------

# Pending `for:` holds, delays, waits and schedules, so that they survive a restart.
rule_timers = Table(
    "rule_timers",
    metadata,
    Column("id", ID, primary_key=True),
    Column("rule_id", ID, nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("due", Double, nullable=False, index=True),
    Column("data", JSON, nullable=False),
    Column("created", Double, nullable=False),
)

rule_traces = Table(
    "rule_traces",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("rule_id", ID, nullable=False),
    Column("run_id", ID, nullable=False),
    Column("started", Double, nullable=False, index=True),
    Column("finished", Double, nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("trace", JSON, nullable=False),
    # One row per run: a run stored as "running" (say at shutdown) is replaced by its end.
    Index("ix_rule_traces_rule_id_run_id", "rule_id", "run_id", unique=True),
    # Serves the per-(rule, outcome) retention and a rule's newest runs.
    Index("ix_rule_traces_rule_id_outcome_started", "rule_id", "outcome", "started"),
)

event_history = Table(
    "event_history",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("ts", Double, nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    # Text, not ID: an MQTT topic may be longer than 255 characters.
    Column("key", Text, nullable=True),
    Column("data", JSON, nullable=False),
    Index("ix_event_history_key_ts", "key", "ts"),
)

# -- notifications (migration 0003) -----------------------------------------------------------

# Every delivery the notification router made or decided against, with its outcome: sent,
# failed, suppressed (rate limit, duplicate), held for quiet hours (reloaded at start), or a
# later status from the service's callback.
notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", ID, primary_key=True),
    Column("created", Double, nullable=False, index=True),
    Column("updated", Double, nullable=False),
    Column("channel", String(64), nullable=False),
    Column("address", Text, nullable=False),
    Column("person", ID, nullable=True),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("urgent", Boolean, nullable=False),
    Column("key", Text, nullable=True),
    Column("status", String(32), nullable=False, index=True),
    Column("detail", Text, nullable=False),
    Column("external_id", Text, nullable=True, index=True),
    Column("attempts", Integer, nullable=False),
    Column("data", JSON, nullable=False),
)

# -- scenes (migration 0004) -------------------------------------------------------------------

# What a scene's entities were before it was applied, so that `revert` works after a restart:
# one row per (scene, entity). No foreign key to entities: an entity removed meanwhile must
# not take the rest of the snapshot with it (revert skips it and says so).
scene_snapshots = Table(
    "scene_snapshots",
    metadata,
    Column("scene_id", ID, primary_key=True),
    Column("entity_id", ID, primary_key=True),
    Column("value", JSON, nullable=True),
    # Only what a command can set again (brightness, colour temperature, position, setpoint).
    Column("attributes", JSON, nullable=False),
    Column("taken", Double, nullable=False),
)
