"""subscriber pause: how many issues a reader asked to skip (the email preference page)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The default stays on the column (storage/tables.py has it too): with it SQLite's ALTER TABLE adds the
    # column in place and PostgreSQL without rewriting the table, however many subscribers there are.
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(sa.Column("paused_issues", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("paused_issues")
