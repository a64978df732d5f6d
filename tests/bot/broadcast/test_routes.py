"""POST /api/broadcasts and GET /api/broadcasts/{id}: the editor's API, with `serve`'s in-process worker
doing the sending against the fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.importing import import_paths
from bot.settings import Settings
from storage.database import Database
from storage.issues import IssueStore
from storage.subscribers import SubscriberStore
from tests.bot.broadcast.conftest import DAY, chat_ids
from tests.bot.helpers import DEMO_DIR
from tests.fakes.telegram_api import TOKEN, FakeTelegram, running_fake_telegram

ADMIN = "an-admin-token-for-the-broadcast-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
LATER_DAY = "2020-07-18"


@dataclass
class Api:
    client: TestClient[Any, Any]
    telegram: FakeTelegram
    database_url: str

    async def broadcasts(self) -> int:
        async with Database(self.database_url) as database:
            from storage.broadcasts import BroadcastStore

            return len(await BroadcastStore(database).list())


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    async with Database(url) as database:
        await database.migrate()
        await import_paths([DEMO_DIR / f"{DAY}.md", DEMO_DIR / f"{LATER_DAY}.md"], IssueStore(database))
        await SubscriberStore(database).import_active([("telegram", str(chat), ()) for chat in chat_ids(3)])
    async with running_fake_telegram() as telegram:
        settings = Settings(
            database_url=url,
            admin_token=ADMIN,
            telegram_token=TOKEN,
            telegram_secret="a-webhook-secret",
            telegram_api_url=telegram.url,
            serve_worker="on",
            rate_limits=False,
            worker_poll_seconds=0.05,
        )
        async with TestClient(TestServer(create_app(settings))) as client:
            yield Api(client, telegram, url)


async def test_an_editor_sends_an_issue_and_follows_it_to_done(api: Api) -> None:
    response = await api.client.post("/api/broadcasts", json={"date": str(DAY)}, headers=AUTH)
    assert response.status == 201, await response.text()
    created = await response.json()
    # Every channel that can send: Telegram is configured, the robots need no credentials of ours.
    assert created["channels"] == ["telegram", "wecom", "feishu"]
    assert created["added_pending"] == 3
    again = await api.client.post("/api/broadcasts", json={"date": str(DAY)}, headers=AUTH)
    assert again.status == 200
    assert (await again.json())["added_pending"] == 0
    status: dict[str, Any] = {}
    for _ in range(200):
        status = await (await api.client.get(f"/api/broadcasts/{created['id']}", headers=AUTH)).json()
        if status["state"] == "done":
            break
        await asyncio.sleep(0.05)
    assert status["state"] == "done", status
    assert status["counts"] == {"telegram": {"sent": 3}}
    assert status["unfinished"] == 0
    delivered = api.telegram.delivered()
    assert {chat for chat, _ in delivered} == set(chat_ids(3))
    assert all(count == 1 for count in delivered.values())


async def test_pause_resume_cancel_through_the_api(api: Api) -> None:
    body = {"date": LATER_DAY, "at": "2999-01-01 08:00"}
    created = await (await api.client.post("/api/broadcasts", json=body, headers=AUTH)).json()
    assert created["start_at"] == "2999-01-01T00:00:00+00:00"  # 08:00 in Asia/Shanghai
    path = f"/api/broadcasts/{created['id']}"
    paused = await api.client.post(f"{path}/pause", headers=AUTH)
    assert paused.status == 200
    assert (await paused.json())["state"] == "paused"
    assert (await (await api.client.post(f"{path}/resume", headers=AUTH)).json())["state"] == "running"
    cancelled = await (await api.client.post(f"{path}/cancel", headers=AUTH)).json()
    assert cancelled["state"] == "cancelled"
    assert cancelled["counts"] == {"telegram": {"skipped": 3}}
    refused = await api.client.post(f"{path}/resume", headers=AUTH)
    assert refused.status == 409
    assert (await refused.json()) == {
        "error": f"the broadcast of {LATER_DAY} is cancelled; it cannot be running"
    }
    assert api.telegram.delivered() == {}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"not json", 400, "the request body must be a JSON object"),
        (b"[]", 400, "the request body must be a JSON object"),
        (b"\xff\xfe", 400, "the request body must be a JSON object"),
        (b"[" * 16_000, 400, "the request body must be a JSON object"),
        (b"{}", 400, '"date" is required: the issue date as "YYYY-MM-DD"'),
        (b'{"date": "yesterday"}', 400, "not a date: 'yesterday' (use YYYY-MM-DD)"),
        (
            b'{"date": "2020-07-02", "extra": 1}',
            400,
            "unknown field 'extra': use at, channels, date, dry_run, wechat_text",
        ),
        (b'{"date": "2020-07-02", "channels": {"a": 1}}', 400, '"channels" must be a list of channel names'),
        (
            b'{"date": "2020-07-02", "channels": ["sms"]}',
            400,
            "unknown channel 'sms': use one of wechat, telegram, email, wecom, feishu",
        ),
        (
            b'{"date": "2020-07-02", "channels": ["email"]}',
            400,
            "email cannot send: JIANBAO_SMTP_URL is not set",
        ),
        (
            b'{"date": "2020-07-02", "at": "soon"}',
            400,
            "not a time: 'soon' (use YYYY-MM-DD HH:MM, optionally with +08:00)",
        ),
        (b'{"date": "2020-07-02", "dry_run": "yes"}', 400, '"dry_run" must be true or false'),
        (
            b'{"date": "2020-07-02", "at": "9999-12-31T23:59:59-23:59"}',
            400,
            "not a time: '9999-12-31T23:59:59-23:59' is out of range",
        ),
        (
            b'{"date": "2020-07-02", "at": ""}',
            400,
            "not a time: '' (use YYYY-MM-DD HH:MM, optionally with +08:00)",
        ),
        (b'{"date": "1999-01-01"}', 404, "no issue of 1999-01-01 in the database (import it first)"),
        (b'{"date": "2020-07-02", "x": "' + b"a" * 20_000 + b'"}', 400, "the request body is over 16 KiB"),
    ],
)
async def test_bad_requests_get_a_one_line_error_and_create_nothing(
    api: Api, body: bytes, status: int, error: str
) -> None:
    response = await api.client.post("/api/broadcasts", data=body, headers=AUTH)
    assert response.status == status
    assert await response.json() == {"error": error}
    assert await api.broadcasts() == 0


async def test_the_token_is_checked_before_anything_else(api: Api) -> None:
    response = await api.client.post("/api/broadcasts", json={"date": str(DAY)})
    assert response.status == 401
    assert (await api.client.get("/api/broadcasts/1")).status == 401
    assert await api.broadcasts() == 0


async def test_unknown_broadcasts_are_404(api: Api) -> None:
    for path in ("/api/broadcasts/99", "/api/broadcasts/abc", "/api/broadcasts/99999999999999"):
        response = await api.client.get(path, headers=AUTH)
        assert response.status == 404, path
        assert "no broadcast with id" in (await response.json())["error"]


async def test_a_dry_run_shows_the_audience_and_sizes_and_writes_nothing(api: Api) -> None:
    response = await api.client.post(
        "/api/broadcasts", json={"date": str(DAY), "dry_run": True}, headers=AUTH
    )
    assert response.status == 200
    data = await response.json()
    assert data["audience"] == {"telegram": {"pending": 3}}
    assert data["payloads"]["telegram"]["messages"] == 3
    assert await api.broadcasts() == 0
