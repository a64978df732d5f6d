"""delivery outcome: why a delivery failed (blocked, bounced), finished broadcasts' tallies, the indexes
that count who left or joined after a broadcast

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the worker wrote as last_error of a refused subscriber (bot/broadcast/worker.py: "blocked" or
# "blocked: <the platform's words>"), which is all older rows say of why they failed.
_OUTCOMES = ("blocked", "bounced")


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
    for outcome in _OUTCOMES:
        op.execute(
            sa.text(
                "UPDATE delivery SET outcome = :outcome "
                "WHERE state = 'failed' AND (last_error = :outcome OR last_error LIKE :prefix)"
            ).bindparams(outcome=outcome, prefix=f"{outcome}: %")
        )
    op.create_table(
        "broadcast_tally",
        sa.Column("broadcast_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("blocked", sa.Integer(), nullable=False),
        sa.Column("bounced", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("uncertain", sa.Integer(), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcast.id"],
            ondelete="CASCADE",
            name="fk_broadcast_tally_broadcast_id_broadcast",
        ),
        sa.PrimaryKeyConstraint("broadcast_id", "channel"),
    )
    op.create_index("ix_subscriber_left_at", "subscriber", ["left_at"])
    op.create_index("ix_subscriber_created_at", "subscriber", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_subscriber_created_at", table_name="subscriber")
    op.drop_index("ix_subscriber_left_at", table_name="subscriber")
    op.drop_table("broadcast_tally")
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("outcome")
