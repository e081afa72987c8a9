"""Shelving of alerts (A11) and silences / maintenance windows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    # Nullable columns: plain ADD COLUMN on both SQLite and PostgreSQL, no table copy, and the
    # alerts already there are simply not shelved.
    op.add_column("alerts", sa.Column("shelved_by", sa.String(64), nullable=True))
    op.add_column("alerts", sa.Column("shelved_reason", sa.Text(), nullable=True))
    op.add_column("alerts", sa.Column("shelved_at", _utc(), nullable=True))
    op.add_column("alerts", sa.Column("shelved_until", _utc(), nullable=True))

    op.create_table(
        "silences",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", _utc(), nullable=False),
        sa.Column("ends_at", _utc(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("cancelled_at", _utc(), nullable=True),
        sa.Column("cancelled_by", sa.String(64), nullable=True),
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_silences_ends_at", table_name="silences")
    op.drop_table("silences")
    with op.batch_alter_table("alerts") as batch:
        for name in ("shelved_until", "shelved_at", "shelved_reason", "shelved_by"):
            batch.drop_column(name)
