from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import text

from content.errors import BadInput, Unavailable
from storage.database import DEFAULT_URL, Database, database_url
from storage.issues import IssueStore, SaveOutcome
from tests.storage.recorded_sql import recorded_sql
from tests.storage.sample_issues import sample_issue

# --- database_url


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "sqlite+aiosqlite:///./var/jianbao.db"),
        ("", "sqlite+aiosqlite:///./var/jianbao.db"),
        ("  ", "sqlite+aiosqlite:///./var/jianbao.db"),
        ("sqlite:///data/x.db", "sqlite+aiosqlite:///data/x.db"),
        ("sqlite:////srv/jianbao/x.db", "sqlite+aiosqlite:////srv/jianbao/x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@db:5432/jianbao", "postgresql+asyncpg://u:p@db:5432/jianbao"),
        ("postgres://u@db/jianbao?ssl=require", "postgresql+asyncpg://u@db/jianbao?ssl=require"),
        ("postgresql+asyncpg://db/jianbao", "postgresql+asyncpg://db/jianbao"),
        (" postgresql://db/jianbao\n", "postgresql+asyncpg://db/jianbao"),
    ],
)
def test_database_url_normalises(raw: str | None, expected: str) -> None:
    assert database_url(raw) == expected


def test_default_url_is_the_local_sqlite_file() -> None:
    assert database_url(None) == DEFAULT_URL


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://root:s3cret@db/x",
        "postgresql+psycopg://u:s3cret@db/x",
        "http://u:s3cret@example.com",
        "jianbao.db",
    ],
)
def test_database_url_rejects_other_schemes_without_echoing_secrets(raw: str) -> None:
    with pytest.raises(BadInput) as raised:
        database_url(raw)

    message = str(raised.value)
    assert "s3cret" not in message
    assert "\n" not in message
    assert "sqlite:///" in message


# --- opening and closing


async def test_default_database_creates_its_folder_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async with Database(None) as database:
        await database.migrate()

    assert (tmp_path / "var" / "jianbao.db").is_file()


async def test_sqlite_parent_folders_are_created_on_open(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "jianbao.db"
    database = Database(f"sqlite:///{path}")
    assert not path.parent.exists()

    await database.open()
    await database.close()

    assert path.is_file()


async def test_engine_and_session_need_an_open_database(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")

    with pytest.raises(RuntimeError, match="not open"):
        _ = database.engine
    with pytest.raises(RuntimeError, match="not open"):
        database.session()


async def test_open_and_close_are_idempotent_and_async_with_closes(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")

    async with database:
        engine = database.engine
        await database.open()
        assert database.engine is engine
    await database.close()

    with pytest.raises(RuntimeError, match="not open"):
        _ = database.engine


async def test_open_fails_at_once_when_the_server_is_unreachable() -> None:
    # Port 1 on localhost: nothing listens there, so the connection is refused straight away.
    database = Database("postgresql://postgres:secret@127.0.0.1:1/test")

    with pytest.raises(Unavailable, match="Connect call failed") as caught:
        await database.open()
    assert "secret" not in str(caught.value)
    assert "\n" not in str(caught.value)

    with pytest.raises(RuntimeError, match="not open"):
        _ = database.engine


def test_schema_is_for_postgresql_only(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="PostgreSQL"):
        Database(f"sqlite:///{tmp_path / 'x.db'}", schema="other")


@pytest.mark.parametrize("schema", ["Public", "a-b", "x; DROP TABLE issue", "", "1abc"])
def test_schema_must_be_a_plain_identifier(schema: str) -> None:
    with pytest.raises(BadInput, match="identifier"):
        Database("postgresql://db/x", schema=schema)


async def test_backend_names_the_database_kind(db: Database) -> None:
    async with db.engine.connect() as connection:
        assert connection.dialect.name == db.backend


async def test_postgres_schema_holds_the_tables(db: Database) -> None:
    if db.backend == "sqlite":
        return  # SQLite has no schemas: the file is the database
    async with db.engine.connect() as connection:
        schema = (await connection.execute(text("SELECT current_schema()"))).scalar_one()
        tables = (
            await connection.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s ORDER BY 1"),
                {"s": schema},
            )
        ).scalars()
        assert schema.startswith("jianbao_test_")
        assert list(tables) == [
            "alembic_version",
            "audit_entry",
            "broadcast",
            "broadcast_tally",
            "click",
            "click_hour",
            "delivery",
            "editor",
            "editor_session",
            "issue",
            "item",
            "link",
            "rate_limit",
            "section",
            "subscriber",
        ]


# --- transactions


async def test_transaction_kinds(db: Database) -> None:
    with recorded_sql(db) as statements:
        isolation = {}
        for kind in ("plain", "snapshot", "write"):
            async with db.session(kind) as session, session.begin():
                if db.backend == "postgresql":
                    result = await session.exec(text("SHOW transaction_isolation"))  # type: ignore[call-overload]
                    isolation[kind] = result.scalar_one()
                else:
                    await session.exec(text("SELECT 1"))  # type: ignore[call-overload]

    if db.backend == "postgresql":
        assert isolation == {
            "plain": "read committed",
            "snapshot": "repeatable read",
            "write": "read committed",
        }
    else:
        # Every SQLite transaction starts with an explicit BEGIN, SELECTs included.
        assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN", "BEGIN", "BEGIN IMMEDIATE"]


# --- SQLite specifics


async def test_sqlite_connections_have_foreign_keys_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    async with (
        Database(f"sqlite:///{tmp_path / 'x.db'}") as database,
        database.engine.connect() as connection,
    ):
        pragmas = {
            name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
            for name in ("foreign_keys", "journal_mode", "busy_timeout")
        }

    assert pragmas == {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 30_000}


async def test_foreign_keys_stay_on_after_migrating(tmp_path: Path) -> None:
    async with Database(f"sqlite:///{tmp_path / 'x.db'}") as database:
        await database.migrate()
        async with database.engine.connect() as connection:
            assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1


async def test_two_databases_on_one_sqlite_file_take_turns_to_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    issue, source = sample_issue(dt.date(2021, 7, 18))
    async with Database(url) as first, Database(url) as second:
        await first.migrate()
        lock_taken = asyncio.Event()

        async def hold_the_write_lock() -> None:
            async with first.session("write") as session, session.begin():
                await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
                lock_taken.set()
                await asyncio.sleep(0.3)

        holder = asyncio.create_task(hold_the_write_lock())
        await lock_taken.wait()
        started = asyncio.get_running_loop().time()

        # Waits for the other connection's transaction instead of failing with "database is locked".
        assert await IssueStore(second).save(issue, source) == SaveOutcome.CREATED

        assert asyncio.get_running_loop().time() - started >= 0.2
        await holder
        assert await IssueStore(first).get(issue.date) == issue
