from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

import storage.tables  # noqa: F401  (the tables the migrations must match)
from storage.database import Database
from storage.issues import IssueStore
from storage.migrate import MIGRATION_LOCK, alembic_config, current_revision, head_revision
from tests.conftest import postgres_url
from tests.storage.recorded_sql import recorded_sql, writes
from tests.storage.sample_issues import sample_issue

REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "issue",
    "section",
    "item",
    "subscriber",
    "link",
    "broadcast",
    "delivery",
    "rate_limit",
    "editor",
    "editor_session",
    "audit_entry",
    "click",
    "click_hour",
    "broadcast_tally",
}


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


def test_migrations_have_one_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == ["0010"]
    assert head_revision() == "0010"


async def test_empty_database_has_no_tables(empty_db: Database) -> None:
    async with empty_db.engine.connect() as connection:
        assert await connection.run_sync(table_names) == set()
        assert await connection.run_sync(current_revision) is None


async def test_migrate_creates_the_tables_at_head(empty_db: Database) -> None:
    await empty_db.migrate()

    async with empty_db.engine.connect() as connection:
        assert await connection.run_sync(table_names) == TABLES | {"alembic_version"}
        assert await connection.run_sync(current_revision) == "0010"


async def test_migrated_schema_matches_the_table_models(db: Database) -> None:
    async with db.engine.connect() as connection:
        assert await connection.run_sync(schema_differences) == []


async def test_migrate_twice_is_a_no_op(db: Database) -> None:
    issue, source = sample_issue(dt.date(2021, 7, 18))
    await IssueStore(db).save(issue, source)

    with recorded_sql(db) as statements:
        await db.migrate()

    assert writes(statements) == []
    assert await IssueStore(db).get(issue.date) == issue


async def test_downgrade_to_base_and_upgrade_again(db: Database) -> None:
    def downgrade_to_base(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "base")

    async with db.engine.connect() as connection:
        await connection.run_sync(downgrade_to_base)
        assert await connection.run_sync(table_names) == {"alembic_version"}

    await db.migrate()

    async with db.engine.connect() as connection:
        assert await connection.run_sync(table_names) == TABLES | {"alembic_version"}


def run_alembic(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONWARNINGS": "error"}
    environment.pop("JIANBAO_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_alembic_command_line_upgrades_and_finds_no_model_drift(tmp_path: Path) -> None:
    url = f"url=sqlite:///{tmp_path / 'cli.db'}"

    upgraded = run_alembic("-x", url, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    checked = run_alembic("-x", url, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr


def test_alembic_offline_mode_writes_postgresql_sql() -> None:
    result = run_alembic("-x", "url=postgresql://nobody@nowhere/none", "upgrade", "head", "--sql")

    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE issue" in result.stdout
    assert "ON DELETE CASCADE" in result.stdout


MIGRATE_SCRIPT = """
import asyncio, sys
from storage.database import Database

async def main():
    async with Database(sys.argv[1], schema=sys.argv[2] or None) as database:
        await database.migrate()

asyncio.run(main())
"""


async def start_migrating(url: str, schema: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        MIGRATE_SCRIPT,
        url,
        schema,
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_lock_waiters(session: AsyncSession, count: int) -> None:
    waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    for _ in range(300):
        if (await session.exec(waiting)).scalar_one() >= count:  # type: ignore[call-overload]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} migrations never queued for the migration lock")


async def test_services_migrating_at_once_take_turns(empty_db: Database, tmp_path: Path) -> None:
    # Separate processes, as two services would be: Alembic keeps its migration context in module globals,
    # so one process can't run two migrations at once whatever the database does.
    if empty_db.backend == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'jianbao.db'}", ""  # the file the fixture opened
    else:
        async with empty_db.engine.connect() as connection:
            schema = (await connection.execute(text("SELECT current_schema()"))).scalar_one()
        url = postgres_url()

    # Hold what a migration takes first, so that both are queued at once when it is let go.
    async with empty_db.session("write") as holder, holder.begin():
        if empty_db.backend == "sqlite":
            await holder.exec(text("SELECT 1"))  # type: ignore[call-overload]
        else:
            await holder.exec(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))  # type: ignore[call-overload]
        processes = [await start_migrating(url, schema) for _ in range(2)]
        if empty_db.backend == "sqlite":
            await asyncio.sleep(2)
        else:
            async with empty_db.session() as observer:
                await wait_for_lock_waiters(observer, 2)
        assert [process.returncode for process in processes] == [None, None]
        await holder.rollback()

    results = [await asyncio.wait_for(process.communicate(), 60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err.decode() for _, err in results]
    async with empty_db.engine.connect() as connection:
        assert await connection.run_sync(current_revision) == "0010"
