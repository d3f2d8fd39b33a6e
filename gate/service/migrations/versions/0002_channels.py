"""Channel tags: which version of an adapter name ``staging`` and ``prod`` point to.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """One row per (adapter name, channel)."""
    op.create_table(
        "channels",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("release_id", _ID, sa.ForeignKey("releases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("digest", sa.String(100), nullable=False),
        sa.Column("moved_by", sa.String(200), nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", "channel", name="uq_channels_name_channel"),
    )


def downgrade() -> None:
    """Drop the channel table."""
    op.drop_table("channels")
