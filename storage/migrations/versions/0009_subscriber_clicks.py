"""subscriber clicks: whose click (JIANBAO_TRACK_SUBSCRIBERS), and the indexes a subscriber's history,
their erasure and the desk's address search read by

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ON DELETE CASCADE: erasing a subscriber deletes their clicks (their clicker, "s:<id>", names them).
    with op.batch_alter_table("click") as batch:
        batch.add_column(sa.Column("subscriber_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_click_subscriber_id_subscriber", "subscriber", ["subscriber_id"], ["id"], ondelete="CASCADE"
        )
    op.create_index("ix_click_subscriber_id_id", "click", ["subscriber_id", "id"])
    op.create_index("ix_delivery_subscriber_id_id", "delivery", ["subscriber_id", "id"])
    # The unique key uq_subscriber_channel_address_key begins with channel: it serves no search by
    # address over all channels.
    op.create_index("ix_subscriber_address_key", "subscriber", ["address_key"])
    # A broadcast report's unsubscribes, from the index alone (storage/tables.py says why).
    op.create_index(
        "ix_subscriber_unsubscribed_left_at",
        "subscriber",
        ["left_at", "channel"],
        postgresql_where=sa.text("status = 'unsubscribed'"),
        sqlite_where=sa.text("status = 'unsubscribed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_subscriber_unsubscribed_left_at", table_name="subscriber")
    op.drop_index("ix_subscriber_address_key", table_name="subscriber")
    op.drop_index("ix_delivery_subscriber_id_id", table_name="delivery")
    op.drop_index("ix_click_subscriber_id_id", table_name="click")
    with op.batch_alter_table("click") as batch:
        batch.drop_constraint("fk_click_subscriber_id_subscriber", type_="foreignkey")
        batch.drop_column("subscriber_id")
