"""Rule engine: pending timers, run traces and the event history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=255)
# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-incrementing rowid.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the rule_timers, rule_traces and event_history tables."""
    op.create_table(
        "rule_timers",
        sa.Column("id", ID, nullable=False),
        sa.Column("rule_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("due", sa.Double(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_timers")),
    )
    op.create_index(op.f("ix_rule_timers_rule_id"), "rule_timers", ["rule_id"], unique=False)
    op.create_index(op.f("ix_rule_timers_due"), "rule_timers", ["due"], unique=False)

    op.create_table(
        "rule_traces",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("rule_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("started", sa.Double(), nullable=False),
        sa.Column("finished", sa.Double(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("trace", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_traces")),
    )
    op.create_index(op.f("ix_rule_traces_started"), "rule_traces", ["started"], unique=False)
    op.create_index(
        op.f("ix_rule_traces_rule_id_run_id"), "rule_traces", ["rule_id", "run_id"], unique=True
    )
    op.create_index(
        op.f("ix_rule_traces_rule_id_outcome_started"),
        "rule_traces",
        ["rule_id", "outcome", "started"],
        unique=False,
    )

    op.create_table(
        "event_history",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_history")),
    )
    op.create_index(op.f("ix_event_history_ts"), "event_history", ["ts"], unique=False)
    op.create_index(
        op.f("ix_event_history_key_ts"), "event_history", ["key", "ts"], unique=False
    )


def downgrade() -> None:
    """Drop the rule engine's tables."""
    op.drop_index(op.f("ix_event_history_key_ts"), table_name="event_history")
    op.drop_index(op.f("ix_event_history_ts"), table_name="event_history")
    op.drop_table("event_history")
    op.drop_index(op.f("ix_rule_traces_rule_id_outcome_started"), table_name="rule_traces")
    op.drop_index(op.f("ix_rule_traces_rule_id_run_id"), table_name="rule_traces")
    op.drop_index(op.f("ix_rule_traces_started"), table_name="rule_traces")
    op.drop_table("rule_traces")
    op.drop_index(op.f("ix_rule_timers_due"), table_name="rule_timers")
    op.drop_index(op.f("ix_rule_timers_rule_id"), table_name="rule_timers")
    op.drop_table("rule_timers")
