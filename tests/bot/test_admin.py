"""The admin API refuses everyone without the admin token, before doing any work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.settings import Settings

TOKEN = "an-admin-token-of-some-length"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[object, object]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'admin.db'}", admin_token=TOKEN)
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
    ],
)
async def test_without_the_token_401(client: TestClient[object, object], header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await client.get("/api/status", headers=headers)
    assert response.status == 401
    assert await response.json() == {"error": "admin token missing or wrong (Authorization: Bearer ...)"}


async def test_with_the_token(client: TestClient[object, object]) -> None:
    response = await client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200
    data = await response.json()
    assert data["issues"] == 0
    assert set(data["subscribers"]) == {"wechat", "telegram", "email"}
    assert data["subscribers"]["email"]["active"] == 0


async def test_no_admin_token_configured_means_no_admin_api(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'admin.db'}")
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.get("/api/status", headers={"Authorization": "Bearer "})
        assert response.status == 404
