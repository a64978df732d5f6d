"""broadcasts: the broadcast and delivery ledger, the shared rate limits, bounce and last-seen columns

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch: SQLite adds a NOT NULL column with a default only by rebuilding the table.
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(sa.Column("bounces", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("subscriber") as batch:
        batch.alter_column("bounces", server_default=None)
    op.create_table(
        "broadcast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issue_date", name="uq_broadcast_issue_date"),
    )
    op.create_table(
        "delivery",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("broadcast_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("parts_done", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("uncertain", sa.Boolean(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(length=512), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["broadcast_id"], ["broadcast.id"], ondelete="CASCADE", name="fk_delivery_broadcast_id_broadcast"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            ondelete="CASCADE",
            name="fk_delivery_subscriber_id_subscriber",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "broadcast_id", "channel", "subscriber_id", name="uq_delivery_broadcast_id_channel_subscriber_id"
        ),
    )
    op.create_index("ix_delivery_claim", "delivery", ["broadcast_id", "channel", "state", "id"])
    op.create_index("ix_delivery_state_lease_until", "delivery", ["state", "lease_until"])
    op.create_table(
        "rate_limit",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit")
    op.drop_index("ix_delivery_state_lease_until", table_name="delivery")
    op.drop_index("ix_delivery_claim", table_name="delivery")
    op.drop_table("delivery")
    op.drop_table("broadcast")
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("last_seen_at")
        batch.drop_column("bounces")
