"""Runs the Alembic migrations in storage/migrations from code, on a connection the caller already has.

The service migrates itself at start-up, so the Alembic configuration is built here rather than read from
alembic.ini (which exists for developers running `alembic revision --autogenerate`).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The PostgreSQL advisory lock a migration holds. Any fixed number will do: it only has to be the same
# for every process migrating the database.
MIGRATION_LOCK = 7_320_411_905


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    # Config values go through ConfigParser interpolation, where "%" starts a reference.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        # env.py runs the migrations on this connection instead of opening its own.
        config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    """Upgrade in one transaction of its own: `connection` must not be in a transaction already."""
    command.upgrade(alembic_config(connection), "head")


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> frozenset[str]:
    """Every revision this code has a migration for: a database at any other was migrated by newer code."""
    return frozenset(
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    )


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
