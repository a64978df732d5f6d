"""The connection to the database: URL normalisation, the async engine and its transactions.

SQLite and PostgreSQL are both first-class; everything backend-specific about connecting lives here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from content.errors import BadInput, Unavailable
from storage.migrate import upgrade_to_head

DEFAULT_URL = "sqlite+aiosqlite:///./var/jianbao.db"

_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Execution option read by the SQLite "begin" hook: which BEGIN statement starts a transaction.
_SQLITE_BEGIN = "jianbao_sqlite_begin"
# Long enough to outwait another writer's transaction, short enough to surface a stuck one.
_SQLITE_BUSY_TIMEOUT_MS = 30_000

Backend = Literal["sqlite", "postgresql"]
TransactionKind = Literal["plain", "snapshot", "write"]


def database_url(raw: str | None) -> str:
    """The async SQLAlchemy URL for a configured database URL; None or "" means the local SQLite file."""
    if raw is None or not raw.strip():
        return DEFAULT_URL
    scheme, separator, rest = raw.strip().partition("://")
    # Only the scheme is ever echoed back: the rest of a URL may hold a password.
    if not separator:
        raise BadInput("database URL must look like sqlite:///path/to/file.db or postgresql://host/dbname")
    if scheme.lower() in _SQLITE_SCHEMES:
        return f"sqlite+aiosqlite://{rest}"
    if scheme.lower() in _POSTGRES_SCHEMES:
        return f"postgresql+asyncpg://{rest}"
    raise BadInput(f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://host/db")


class Database:
    """One database: an engine opened with `open()` (or `async with`), its sessions and its migrations.

    `schema` (PostgreSQL only) puts every table in that schema through the connection's search_path.
    """

    def __init__(self, url: str | None, *, schema: str | None = None) -> None:
        self._url = database_url(url)
        self.backend: Backend = "sqlite" if self._url.startswith("sqlite") else "postgresql"
        if schema is not None:
            if self.backend != "postgresql":
                raise BadInput("a database schema can only be given for PostgreSQL")
            if not _SCHEMA_NAME.fullmatch(schema):
                raise BadInput("database schema must be a lowercase SQL identifier (a-z, 0-9, _)")
        self._schema = schema
        self._engine: AsyncEngine | None = None
        self._engines: dict[TransactionKind, AsyncEngine] | None = None
        # SQLite has one writer at a time. Writers of this process queue here, in order, instead of on
        # SQLite's busy handler, which polls with sleeps of up to 100 ms: under a burst of writes (readers
        # subscribing after a broadcast) that turned a few milliseconds of work into seconds of waiting.
        # Other processes on the same file still meet the busy timeout.
        self._write_turn = asyncio.Lock()

    @property
    def display_url(self) -> str:
        """The URL without its password, for messages and logs."""
        return make_url(self._url).render_as_string(hide_password=True)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database is not open: call `await database.open()` first")
        return self._engine

    async def open(self) -> None:
        if self._engine is not None:
            return
        try:
            sqlite = self.backend == "sqlite"
            engine = self._create_sqlite_engine() if sqlite else self._create_postgres_engine()
        except OSError as exc:  # the SQLite file's folder cannot be created
            raise Unavailable(f"cannot open the database {self.display_url}: {_first_line(exc)}") from exc
        try:
            # Connect once now so that a wrong URL fails here rather than at the first query.
            async with engine.connect():
                pass
        except (OSError, TimeoutError, DBAPIError) as exc:
            await engine.dispose()
            raise Unavailable(f"cannot open the database {self.display_url}: {_first_line(exc)}") from exc
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._engines = _engines_by_transaction_kind(engine, self.backend)

    async def close(self) -> None:
        engine, self._engine, self._engines = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def session(self, transaction: TransactionKind = "plain") -> AsyncSession:
        """A new ORM session, to be used as `async with database.session() as session:`. The stores use
        `transaction` instead (storage/__init__.py); `transaction` takes the same kinds:

        "plain": the backend's default transaction (READ COMMITTED on PostgreSQL).
        "snapshot": for several SELECTs that must agree with each other while writers carry on; on
        PostgreSQL a REPEATABLE READ transaction, on SQLite any transaction already reads one snapshot.
        "write": for a transaction that reads and then writes. On SQLite it takes the write lock at BEGIN,
        so two such transactions queue up instead of the later one failing with "database is locked" once
        the other has written; PostgreSQL needs nothing extra (use SELECT ... FOR UPDATE where it matters).
        """
        if self._engines is None:
            raise RuntimeError("Database is not open: call `await database.open()` first")
        return AsyncSession(self._engines[transaction], expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self, transaction: TransactionKind = "plain") -> AsyncIterator[AsyncConnection]:
        """A Core connection in a transaction that commits on leaving (rolls back on an exception): where
        the stores run their statements. `transaction` is the kind, as for `session`."""
        if self._engines is None:
            raise RuntimeError("Database is not open: call `await database.open()` first")
        if transaction == "write" and self.backend == "sqlite":
            async with self._write_turn, self._engines[transaction].begin() as connection:
                yield connection
            return
        async with self._engines[transaction].begin() as connection:
            yield connection

    async def migrate(self) -> None:
        """Bring the schema up to the newest migration (Alembic `upgrade head`); a no-op when it is there.

        Processes migrating the same database at once take turns. Within one process, don't run two at
        once: Alembic keeps the running migration's context in module globals.
        """
        if self._engines is None:
            raise RuntimeError("Database is not open: call `await database.open()` first")
        # The write engine: on SQLite, a service starting while another migrates waits for it at BEGIN.
        async with self._engines["write"].connect() as connection:
            await connection.run_sync(upgrade_to_head)

    def _create_sqlite_engine(self) -> AsyncEngine:
        url = make_url(self._url)
        path = url.database
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        event.listen(engine.sync_engine, "begin", _begin_sqlite_transaction)
        return engine

    def _create_postgres_engine(self) -> AsyncEngine:
        connect_args: dict[str, Any] = {}
        if self._schema is not None:
            connect_args["server_settings"] = {"search_path": self._schema}
        return create_async_engine(self._url, connect_args=connect_args, pool_pre_ping=True)


def _engines_by_transaction_kind(engine: AsyncEngine, backend: Backend) -> dict[TransactionKind, AsyncEngine]:
    # Engines derived with execution_options share the original's connection pool and event hooks.
    if backend == "sqlite":
        return {
            "plain": engine,
            "snapshot": engine,
            "write": engine.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"}),
        }
    return {
        "plain": engine,
        "snapshot": engine.execution_options(isolation_level="REPEATABLE READ"),
        "write": engine,
    }


def _configure_sqlite_connection(dbapi_connection: Any, _connection_record: Any) -> None:
    # sqlite3 starts transactions only before INSERT/UPDATE/DELETE, which leaves the SELECTs of a
    # read-then-write transaction outside it; turning that off lets _begin_sqlite_transaction emit BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # Off by default in SQLite, per connection: without it ON DELETE CASCADE does nothing.
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets readers go on while one connection writes; it is a property of the file, kept once set.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    connection.exec_driver_sql(connection.get_execution_options().get(_SQLITE_BEGIN, "BEGIN"))


def _first_line(exc: BaseException) -> str:
    """The driver's own message, one line, without SQLAlchemy's boilerplate."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__
