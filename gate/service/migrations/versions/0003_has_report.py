"""gate_results.has_report: whether a gate wrote a report, answered without reading the report.

A list page shows, for 300 gates, whether each has a report. Computed from the
report column, the database read every report (kilobytes each, overflow pages on
SQLite, detoasting on PostgreSQL) for one bit; the flag is written with the report.
On SQLite the table is rebuilt with the report as its last column: a column stored
after a large value is reached only by walking that value's overflow pages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ORDER = ("id", "release_id", "gate", "status", "seconds", "has_report", "updated_at", "report")


def upgrade() -> None:
    """Add the flag and set it from the reports already stored (JSON null is no report)."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "gate_results",
        recreate="always" if sqlite else "auto",
        partial_reordering=[_ORDER] if sqlite else None,
    ) as batch:
        batch.add_column(sa.Column("has_report", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE gate_results SET has_report = (report IS NOT NULL AND CAST(report AS TEXT) <> 'null')")


def downgrade() -> None:
    """Drop the flag."""
    with op.batch_alter_table("gate_results") as batch:
        batch.drop_column("has_report")
