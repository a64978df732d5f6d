"""editors and their console sessions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "editor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_editor_name"),
    )
    op.create_table(
        "editor_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("editor_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["editor_id"], ["editor.id"], ondelete="CASCADE", name="fk_editor_session_editor_id_editor"
        ),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_editor_session_editor_id", "editor_session", ["editor_id"])


def downgrade() -> None:
    op.drop_index("ix_editor_session_editor_id", table_name="editor_session")
    op.drop_table("editor_session")
    op.drop_table("editor")
