"""GET /readyz against real databases: ready at the code's head revision, 503 with the reason when the
schema is behind or ahead of it (changed with Alembic and SQL, as an operator would) or when PostgreSQL
stops answering (a loopback TCP relay between the app and the server is cut or stalled). Each test ends
ready again: nothing about a failed check sticks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from bot.app import create_app
from bot.settings import Settings
from bot.site import READY_TIMEOUT_SECONDS
from storage.database import Database
from storage.migrate import alembic_config, head_revision
from tests.bot.helpers import postgres_database, sqlite_url
from tests.conftest import BACKENDS

Client = TestClient[web.Request, web.Application]


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of the service's own (the app takes a URL, not the tests' per-test schema)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "ready.db")
    else:
        async with postgres_database() as url:
            yield url


@contextlib.asynccontextmanager
async def service(url: str) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(Settings(database_url=url)))) as client:
        yield client


async def readiness(client: Client) -> tuple[int, dict[str, str]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


READY = (200, {"status": "ready"})


async def test_ready_at_the_head_revision(database_url: str) -> None:
    async with service(database_url) as client:
        assert await readiness(client) == READY
        assert (await client.get("/healthz")).status == 200


async def test_not_ready_while_the_schema_is_behind(database_url: str) -> None:
    head = head_revision()
    assert head is not None
    previous = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    assert isinstance(previous, str)

    def downgrade_one(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "-1")

    async with service(database_url) as client, Database(database_url) as database:
        async with database.engine.connect() as connection:
            await connection.run_sync(downgrade_one)
        assert await readiness(client) == (
            503,
            {"status": "not ready", "reason": f"migrations behind: at {previous}, code expects {head}"},
        )
        await database.migrate()
        assert await readiness(client) == READY


async def test_not_ready_while_the_schema_is_ahead(database_url: str) -> None:
    """Newer code migrated the database (a rolling deploy): this older code is not ready for it."""
    head = head_revision()
    async with service(database_url) as client, Database(database_url) as database:
        async with database.transaction() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        status, body = await readiness(client)
        assert (status, body["status"]) == (503, "not ready")
        assert (
            body["reason"] == f"migrations ahead: at 9999, which this code does not know; it expects {head}"
        )
        async with database.transaction() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})
        assert await readiness(client) == READY


class Relay:
    """A loopback TCP relay to PostgreSQL that a test can cut (connections refused, open ones dropped) or
    stall (connections accepted, nothing passed on), and restore on the same port."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0
        self.stalled = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        self._drop()

    def stall(self) -> None:
        self.stalled = True
        self._drop()

    async def restore(self) -> None:
        self.stalled = False
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()
        self._drop()

    def _drop(self) -> None:
        for writer in self._connections:
            writer.transport.abort()
        self._connections.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        if self.stalled:
            return  # accepted, and never answered: a server that hangs
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._connections.add(upstream_writer)
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.transport.abort()


@contextlib.asynccontextmanager
async def relayed_postgres() -> AsyncIterator[tuple[str, Relay]]:
    """A new PostgreSQL database, and its URL through a relay."""
    async with postgres_database() as url:
        server = make_url(url)
        relay = Relay(server.port or 5432)
        await relay.start()
        try:
            yield server.set(port=relay.port).render_as_string(hide_password=False), relay
        finally:
            await relay.close()


UNREACHABLE = (503, {"status": "not ready", "reason": "database unreachable"})


@pytest.mark.postgres
async def test_not_ready_while_postgres_refuses_connections() -> None:
    async with relayed_postgres() as (url, relay), service(url) as client:
        assert await readiness(client) == READY
        await relay.cut()
        assert await readiness(client) == UNREACHABLE
        health = await client.get("/healthz")  # liveness does not ask the database: nothing to restart
        assert health.status == 200
        await relay.restore()
        assert await readiness(client) == READY


@pytest.mark.postgres
async def test_not_ready_when_postgres_does_not_answer_in_time() -> None:
    async with relayed_postgres() as (url, relay), service(url) as client:
        assert await readiness(client) == READY
        relay.stall()
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await readiness(client) == UNREACHABLE
        # Bounded by the check's own timeout (not by asyncpg's minute-long connect timeout).
        assert loop.time() - started < READY_TIMEOUT_SECONDS + 5
        await relay.restore()
        assert await readiness(client) == READY
