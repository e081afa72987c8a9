"""Where a ticket came from (an alert, a technician, a tenant's repair request, a maintenance
plan) and who asked for it (alerts/tickets.py, T5).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A server default makes ADD COLUMN ... NOT NULL work on both databases without a table
    # copy, and every ticket already there was opened by an alert or a maintenance plan.
    op.add_column(
        "tickets",
        sa.Column("source", sa.String(16), nullable=False, server_default="alert"),
    )
    op.add_column("tickets", sa.Column("requester", sa.String(200), nullable=True))
    # Planned work was told apart by its fault class until now: keep that in the new column.
    op.execute("UPDATE tickets SET source = 'preventive' WHERE fault_class LIKE 'preventive:%'")


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("requester")
        batch.drop_column("source")
