"""Scenes: the states to restore when a scene is reverted, kept across restarts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=255)


def upgrade() -> None:
    """Create the scene_snapshots table."""
    op.create_table(
        "scene_snapshots",
        sa.Column("scene_id", ID, nullable=False),
        sa.Column("entity_id", ID, nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("taken", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("scene_id", "entity_id", name=op.f("pk_scene_snapshots")),
    )


def downgrade() -> None:
    """Drop the scene_snapshots table."""
    op.drop_table("scene_snapshots")
