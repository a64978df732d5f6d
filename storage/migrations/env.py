"""Alembic's entry point: runs the migrations on a given connection, or on the configured database.

The service passes its own connection (storage.migrate); the `alembic` command line opens one from
`-x url=...`, else $JIANBAO_DATABASE_URL, else the default SQLite file.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from storage.database import Database, database_url
from storage.migrate import MIGRATION_LOCK

config = context.config
target_metadata = SQLModel.metadata


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    # Straight to the driver: a PRAGMA sent through SQLAlchemy would first BEGIN a transaction, and
    # SQLite ignores PRAGMA foreign_keys inside one.
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(pragma)
    finally:
        cursor.close()


def run_migrations(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration rebuilds a table by copying it and dropping the original; with foreign keys
        # on, that DROP would cascade-delete every row that references the table.
        _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
    try:
        # One transaction for the whole upgrade, so a failed migration leaves the schema as it was (both
        # backends have transactional DDL; storage.database makes SQLite's BEGIN cover DDL too).
        with connection.begin():
            if connection.dialect.name == "postgresql":
                # Two services starting at once: the second waits here, then finds nothing left to do.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                transactional_ddl=True,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")
    finally:
        if sqlite:
            _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")


def _configured_url() -> str:
    return database_url(
        context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("JIANBAO_DATABASE_URL")
    )


async def _run_on_configured_database() -> None:
    async with Database(_configured_url()) as database, database.engine.connect() as connection:
        await connection.run_sync(run_migrations)


def _run_offline() -> None:
    url = _configured_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

given_connection = config.attributes.get("connection")
if given_connection is not None:
    run_migrations(given_connection)
elif context.is_offline_mode():
    _run_offline()
else:
    asyncio.run(_run_on_configured_database())
