"""clicks of tracked links: one row per click, and the aggregates the analytics pages read

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 64-bit ids on PostgreSQL; SQLite autoincrements only a column declared INTEGER (64-bit there anyway).
_CLICK_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "click",
        sa.Column("id", _CLICK_ID, nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clicker", sa.String(length=32), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("filtered", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["token"], ["link.token"], ondelete="CASCADE", name="fk_click_token_link"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_click_token_at", "click", ["token", "at"])
    op.create_index("ix_click_token_clicker_at", "click", ["token", "clicker", "at"])
    with op.batch_alter_table("link") as batch:
        batch.add_column(sa.Column("unique_clicks", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("filtered_clicks", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "click_hour",
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("unique_clicks", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["token"], ["link.token"], ondelete="CASCADE", name="fk_click_hour_token_link"
        ),
        sa.PrimaryKeyConstraint("token", "hour"),
    )
    op.create_index("ix_click_hour_issue_date_hour", "click_hour", ["issue_date", "hour"])


def downgrade() -> None:
    op.drop_index("ix_click_hour_issue_date_hour", table_name="click_hour")
    op.drop_table("click_hour")
    with op.batch_alter_table("link") as batch:
        batch.drop_column("filtered_clicks")
        batch.drop_column("unique_clicks")
    op.drop_index("ix_click_token_clicker_at", table_name="click")
    op.drop_index("ix_click_token_at", table_name="click")
    op.drop_table("click")
