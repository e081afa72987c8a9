"""Alerts, tickets and ticket events, with RECOVERING/chatter/ack state and reopen bookkeeping.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copy of alerts.tickets.DONE_STATUSES: a revision must not change when the code does.
_DONE_SQL = "'CANCELLED', 'CLOSED', 'RESOLVED'"


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("building", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("fired_at", _utc(), nullable=True),
        sa.Column("resolved_at", _utc(), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("recovering_since", _utc(), nullable=True),
        sa.Column("cycles", sa.Integer(), nullable=False),
        sa.Column("chattering", sa.Boolean(), nullable=False),
        sa.Column("acked_at", _utc(), nullable=True),
        sa.Column("acked_by", sa.String(64), nullable=True),
    )
    op.create_index(
        "uq_alerts_unresolved_fingerprint",
        "alerts",
        ["fingerprint"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("ix_alerts_device", "alerts", ["device"])

    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("number", sa.String(32), nullable=True, unique=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("building", sa.String(64), nullable=False),
        sa.Column("fault_class", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(4), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("due_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("source_alert_id", sa.Integer(), sa.ForeignKey("alerts.id"), nullable=True),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("resolved_at", _utc(), nullable=True),
        sa.Column("closed_at", _utc(), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
    )
    op.create_index(
        "uq_tickets_open_device_fault",
        "tickets",
        ["device", "fault_class"],
        unique=True,
        sqlite_where=sa.text(f"status NOT IN ({_DONE_SQL})"),
        postgresql_where=sa.text(f"status NOT IN ({_DONE_SQL})"),
    )
    op.create_index("ix_tickets_created", "tickets", ["created_at"])
    op.create_index("ix_tickets_building", "tickets", ["building"])

    op.create_table(
        "ticket_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("who", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id"), nullable=True),
    )
    op.create_index("ix_ticket_events_ticket_id", "ticket_events", ["ticket_id"])


def downgrade() -> None:
    op.drop_table("ticket_events")
    op.drop_table("tickets")
    op.drop_table("alerts")
