"""Shared fixtures: a fresh database per test, on SQLite and on PostgreSQL.

SQLite gets a new file under the test's tmp_path. PostgreSQL gets a new schema in the server's database
(JIANBAO_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test), reached through the
connection's search_path and dropped after the test: much faster than a database per test, and just as
isolated. An unreachable PostgreSQL fails the postgres tests rather than skipping them, so a green run
always means both backends were tested.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp.web_app
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from storage.database import Database
from storage.issues import IssueStore

POSTGRES_URL_VARIABLE = "JIANBAO_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def forget_built_middleware() -> Iterator[None]:
    """aiohttp keeps each app's built middleware chain in one process-wide lru_cache (maxsize 1024), keyed
    on (handler, apps): right for a service with one app for life, but here every test builds its own, and
    the cache held up to 1024 closed apps with their storage and search index (~25 MB each; the suite grew
    past 10 GB and slowed to a quarter). Cleared after each test, as home-assistant/supervisor#7196 does;
    private to aiohttp, hence getattr."""
    yield
    cache = getattr(aiohttp.web_app, "_cached_build_middleware", None)
    if cache is not None:
        cache.cache_clear()


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def postgres_url() -> str:
    return os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A new, empty schema on the test PostgreSQL server, dropped with everything in it on exit."""
    url = make_url(postgres_url()).set(drivername="postgresql")
    try:
        admin = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.fail(
            f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable ({error!r}): "
            f"start it or point {POSTGRES_URL_VARIABLE} at one (deselect with -m 'not postgres')",
            pytrace=False,
        )
    schema = f"jianbao_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield schema
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


@asynccontextmanager
async def fresh_database(backend: str, folder: Path) -> AsyncIterator[Database]:
    if backend == "sqlite":
        async with Database(f"sqlite:///{folder / 'jianbao.db'}") as database:
            yield database
    else:
        async with postgres_schema() as schema, Database(postgres_url(), schema=schema) as database:
            yield database


@pytest.fixture(params=BACKENDS)
async def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """An open database with no tables yet."""
    async with fresh_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
async def db(empty_db: Database) -> Database:
    """An open database migrated to the newest schema, with no rows."""
    await empty_db.migrate()
    return empty_db


@pytest.fixture
def store(db: Database) -> IssueStore:
    return IssueStore(db)
