"""The admin API refuses everyone without the admin token, before doing any work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.admin import ADMIN_FAILURES_PER_CLIENT, ADMIN_TOKEN_MIN_CHARS
from bot.app import create_app
from bot.settings import Settings
from tests.bot.helpers import run_cli, sqlite_url

TOKEN = "an-admin-token-of-thirty-two-characters-or-more"


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
    assert list(data["subscribers"]) == ["wechat", "telegram", "email", "wecom", "feishu"]  # the registry's
    assert data["subscribers"]["email"]["active"] == 0
    assert data["sending"] == {
        "wechat": "off: JIANBAO_WECHAT_APPID and JIANBAO_WECHAT_SECRET are not set",
        "telegram": "off: JIANBAO_TELEGRAM_TOKEN is not set",
        "email": "off: JIANBAO_SMTP_URL is not set",
        "wecom": "on",
        "feishu": "on",
    }


async def test_no_admin_token_configured_means_no_admin_api(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'admin.db'}")
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.get("/api/status", headers={"Authorization": "Bearer "})
        assert response.status == 404


async def test_a_token_that_is_not_utf8_is_a_401_not_a_500(client: TestClient[object, object]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(
            b"GET /api/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\x80tok\r\n"
            b"Connection: close\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 401")
    assert b"Traceback" not in answer


async def test_wrong_tokens_are_throttled_per_client(client: TestClient[object, object]) -> None:
    wrong = {"Authorization": "Bearer " + "x" * 40}
    for _ in range(ADMIN_FAILURES_PER_CLIENT):
        assert (await client.get("/api/status", headers=wrong)).status == 401
    refused = await client.get("/api/status", headers=wrong)
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (await refused.json())["error"].startswith("too many wrong admin tokens")
    # While throttled, even the right token is not checked: guessing gains nothing by getting lucky.
    right = await client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status == 429


def test_a_short_admin_token_stops_the_app_and_serve_at_start(tmp_path: Path) -> None:
    short = "x" * (ADMIN_TOKEN_MIN_CHARS - 1)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'admin.db'}", admin_token=short)
    with pytest.raises(ValueError, match="JIANBAO_ADMIN_TOKEN has 31 characters; it needs at least 32"):
        create_app(settings)
    (tmp_path / ".env").write_text(f"JIANBAO_ADMIN_TOKEN={short}\n")
    result = run_cli("serve", "--port", "1", database_url=sqlite_url(tmp_path / "cli.db"), cwd=tmp_path)
    assert result.code == 1
    assert result.stderr.strip().splitlines() == [
        "jianbao: serve: JIANBAO_ADMIN_TOKEN has 31 characters; it needs at least 32 (try `openssl rand -hex 32`)"
    ]
